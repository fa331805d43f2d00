//! [`RegionObserver`]: who learns of a region log's changes as it makes them, so that the
//! log itself keeps none of their state.
//!
//! Two parts of a log actor follow its regions: the committer, which must write the blocks
//! whose clean bit changed at its next commit (a touched set, a [`RoaringBitmap`]), and the
//! shadow, which journals each change of the sync state before the reply that makes the
//! kernel rely on it (a list of [`Change`]s). Either may be absent (a core log has no
//! device, a log without a state directory no shadow), so an `Option` of an observer is
//! one, and so is a pair of observers.

use roaring::RoaringBitmap;

use super::change::Change;

/// What a [`RegionLog`](super::RegionLog) reports as it changes.
pub trait RegionObserver {
    /// The clean bit of `region` in the disk image changed, towards `clean` or away from it.
    fn clean_bit_changed(&mut self, _region: u32, _clean: bool) {}

    /// Whether [`RegionObserver::changed`] is wanted: a change is built only then.
    fn wants_changes(&self) -> bool {
        false
    }

    /// A change of the state a shadow keeps.
    fn changed(&mut self, _change: Change) {}
}

/// Nobody is told.
impl RegionObserver for () {}

/// The regions a disk log's next commit must write.
impl RegionObserver for RoaringBitmap {
    fn clean_bit_changed(&mut self, region: u32, _clean: bool) {
        self.insert(region);
    }
}

/// The changes a shadow has yet to journal.
impl RegionObserver for Vec<Change> {
    fn wants_changes(&self) -> bool {
        true
    }

    fn changed(&mut self, change: Change) {
        self.push(change);
    }
}

impl<T: RegionObserver> RegionObserver for Option<T> {
    fn clean_bit_changed(&mut self, region: u32, clean: bool) {
        if let Some(observer) = self {
            observer.clean_bit_changed(region, clean);
        }
    }

    fn wants_changes(&self) -> bool {
        self.as_ref().is_some_and(T::wants_changes)
    }

    fn changed(&mut self, change: Change) {
        if let Some(observer) = self {
            observer.changed(change);
        }
    }
}

impl<T: RegionObserver + ?Sized> RegionObserver for &mut T {
    fn clean_bit_changed(&mut self, region: u32, clean: bool) {
        (**self).clean_bit_changed(region, clean);
    }

    fn wants_changes(&self) -> bool {
        (**self).wants_changes()
    }

    fn changed(&mut self, change: Change) {
        (**self).changed(change);
    }
}

/// Both are told.
impl<A: RegionObserver, B: RegionObserver> RegionObserver for (A, B) {
    fn clean_bit_changed(&mut self, region: u32, clean: bool) {
        self.0.clean_bit_changed(region, clean);
        self.1.clean_bit_changed(region, clean);
    }

    fn wants_changes(&self) -> bool {
        self.0.wants_changes() || self.1.wants_changes()
    }

    fn changed(&mut self, change: Change) {
        match (self.0.wants_changes(), self.1.wants_changes()) {
            (true, true) => {
                self.0.changed(change.clone());
                self.1.changed(change);
            }
            (true, false) => self.0.changed(change),
            _ => self.1.changed(change),
        }
    }
}
