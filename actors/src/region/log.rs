//! [`RegionLog`]: one log's clean, sync and recovering sets, answering each request type as
//! dm-log.c's core log does.
//!
//! The kernel keeps three bit arrays with 1 = clean / in sync. We keep their complements
//! (`dirty`, `out_of_sync`) because in a healthy mirror almost every region is clean and in
//! sync, so the sets are nearly empty and a roaring bitmap of them costs almost nothing.
//!
//! One deliberate difference from dm-log.c: the kernel's `core_set_region_sync` adds one to
//! `sync_count` even for a region already in sync. The userspace kernel side resends a
//! request after a 15 s timeout, so the same SET_REGION_SYNC can arrive twice; here the sync
//! count is the number of regions in sync, and every request is idempotent.
//!
//! A second one: a region out of sync is never clean. dm-log.c keeps the clean and sync bits
//! apart, so a CLEAR_REGION of a region out of sync sets its clean bit, the disk log writes
//! it, and the next resume (which takes "clean" for "in sync") counts it in sync with legs
//! that may differ. Kernel 6.1 did just that after a daemon restart (tests/kernel/README.md,
//! finding C). Here IS_CLEAN and the disk image show a region clean only when it is neither
//! dirty nor out of sync, so its clean bit stays 0 until SET_REGION_SYNC(1) puts it in sync.

use roaring::RoaringBitmap;

use super::args::{LogArgs, LogKind};
use super::change::Change;
use super::error::LogError;
use super::observer::RegionObserver;
use crate::units::{RegionCount, RegionIndex, RegionSize};
use crate::wire::{Reply, ReplyPayload, Request};

/// The dirty-log state of one log instance.
#[derive(Debug, Clone)]
pub struct RegionLog {
    region_size: RegionSize,
    /// At most `u32::MAX` (checked when the arguments were parsed).
    region_count: u32,
    /// Regions whose clean bit is 0: marked and not yet cleared.
    dirty: RoaringBitmap,
    /// Regions whose sync bit is 0: the legs may differ, recovery will copy them.
    out_of_sync: RoaringBitmap,
    /// Regions handed out by GET_RESYNC_WORK and not yet reported by SET_REGION_SYNC.
    recovering: RoaringBitmap,
    /// Where GET_RESYNC_WORK looks next; RESUME starts it over.
    sync_search: u64,
    /// A disk log, whose dirty set a shadow keeps too.
    disk: bool,
}

/// What a RESUME starts the log from, besides the state it holds.
pub enum ResumeFrom<'a> {
    /// Nothing else, as dm-log.c's `core_resume` (and [`RegionLog::answer`]).
    Itself,
    /// A real RESUME (not the one a reconnect sends): dm-raid1's presuspend waited for every
    /// recovery to end, so nothing is being recovered, and a region a shadow kept as
    /// recovering, whose GET_RESYNC_WORK reply a daemon crash cut off, is handed out again.
    /// A disk log takes the dirty set `loaded` from its device and, as in `disk_resume`, a
    /// region is in sync exactly when it is clean.
    Real { loaded: Option<RoaringBitmap> },
    /// The RESUME right after a reconnect took the shadow back: the kernel kept running, so
    /// the shadow's sync and recovering sets stand. But a shadow never makes the log cleaner
    /// than its device: a region dirty on a disk log's `device` stays dirty, even one whose
    /// CLEAR was answered (and which the kernel will not clear again) until the next real
    /// resume resyncs it. A lost clear costs one region's resync; trusting a wrong shadow
    /// could cost data.
    Reconnect { device: Option<&'a RoaringBitmap> },
}

/// The sets a shadow keeps, as a snapshot holds them and a restore gives them back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowSets {
    pub out_of_sync: RoaringBitmap,
    pub recovering: RoaringBitmap,
    /// A disk log's dirty regions. A core log's marks matter to nobody after a reconnect
    /// (the kernel's region hash knows what it marked and clears it), so its journal leaves
    /// them out; but a handover, which the kernel does not see, carries them too.
    pub dirty: RoaringBitmap,
}

impl RegionLog {
    /// A new log as `core_ctr` sets it up: every region clean; in sync only with `nosync`.
    pub fn new(args: &LogArgs) -> RegionLog {
        let region_count = args.region_count().bitmap_bound();
        let out_of_sync = args.initial_out_of_sync();
        RegionLog {
            region_size: args.region_size,
            region_count,
            dirty: RoaringBitmap::new(),
            out_of_sync,
            recovering: RoaringBitmap::new(),
            sync_search: 0,
            disk: matches!(args.kind, LogKind::Disk { .. }),
        }
    }

    /// What a shadow snapshot holds.
    pub fn shadow_sets(&self) -> ShadowSets {
        ShadowSets {
            out_of_sync: self.out_of_sync.clone(),
            recovering: self.recovering.clone(),
            dirty: if self.disk { self.dirty.clone() } else { RoaringBitmap::new() },
        }
    }

    /// What a handover's snapshot holds: the marks of a core log too.
    pub fn carried_sets(&self) -> ShadowSets {
        ShadowSets { dirty: self.dirty.clone(), ..self.shadow_sets() }
    }

    /// Takes the state a shadow kept across a daemon crash: the kernel's view of this log.
    pub fn restore(&mut self, sets: ShadowSets) {
        self.out_of_sync = sets.out_of_sync;
        self.recovering = sets.recovering;
        self.dirty = sets.dirty;
    }

    pub fn region_size(&self) -> RegionSize {
        self.region_size
    }

    pub fn region_count(&self) -> RegionCount {
        RegionCount(u64::from(self.region_count))
    }

    /// Answers a request that only reads or changes region state, as a core log does, and
    /// tells `seen` what changed; `None` for the requests that need more than the regions
    /// (CTR, DTR, status lines).
    pub fn answer(&mut self, request: &Request, seen: impl RegionObserver) -> Option<Reply> {
        let errno = |e: LogError| e.errno();
        let done = |r: Result<(), LogError>| r.map(|()| ReplyPayload::Empty).map_err(errno);
        Some(match request {
            Request::Ctr { .. } | Request::Dtr | Request::StatusInfo | Request::StatusTable => {
                return None
            }
            Request::Presuspend | Request::Postsuspend => Ok(ReplyPayload::Empty),
            Request::Resume => {
                self.resume(ResumeFrom::Itself);
                Ok(ReplyPayload::Empty)
            }
            Request::GetRegionSize => {
                Ok(ReplyPayload::Count(u64::from(self.region_size.sectors())))
            }
            Request::IsClean(r) => self.is_clean(*r).map(ReplyPayload::Flag).map_err(errno),
            Request::InSync(r) => self.in_sync(*r).map(ReplyPayload::Flag).map_err(errno),
            Request::Flush(marks) | Request::MarkRegion(marks) => {
                done(self.mark(marks.iter(), seen))
            }
            Request::ClearRegion(regions) => done(self.clear(regions.iter(), seen)),
            Request::GetResyncWork => Ok(ReplyPayload::ResyncWork(self.get_resync_work(seen))),
            Request::SetRegionSync { region, in_sync } => {
                done(self.set_region_sync(*region, *in_sync, seen))
            }
            Request::GetSyncCount => Ok(ReplyPayload::Count(self.sync_count())),
            Request::IsRemoteRecovering(r) => self
                .is_remote_recovering(*r)
                .map(|(recovering, in_sync_hint)| ReplyPayload::RemoteRecovering {
                    recovering,
                    in_sync_hint,
                })
                .map_err(errno),
        })
    }

    /// RESUME: recovery starts its search over, and the log starts from what `from` says.
    pub fn resume(&mut self, from: ResumeFrom<'_>) {
        self.sync_search = 0;
        match from {
            ResumeFrom::Itself => {}
            ResumeFrom::Real { loaded } => {
                self.recovering.clear();
                if let Some(dirty) = loaded {
                    self.out_of_sync = dirty.clone();
                    self.dirty = dirty;
                }
            }
            ResumeFrom::Reconnect { device } => {
                if let Some(device) = device {
                    self.dirty |= device;
                }
            }
        }
    }

    /// IS_CLEAN: neither dirty nor out of sync (finding C, in the module header).
    pub fn is_clean(&self, region: RegionIndex) -> Result<bool, LogError> {
        let region = self.check(region)?;
        Ok(super::is_clean(self.dirty.contains(region), !self.out_of_sync.contains(region)))
    }

    /// IN_SYNC.
    pub fn in_sync(&self, region: RegionIndex) -> Result<bool, LogError> {
        Ok(!self.out_of_sync.contains(self.check(region)?))
    }

    /// MARK_REGION, and the marks a FLUSH carries with `integrated_flush`: the regions are
    /// dirty until cleared. All regions are checked before any is marked.
    pub fn mark(
        &mut self,
        regions: impl Iterator<Item = RegionIndex> + Clone,
        seen: impl RegionObserver,
    ) -> Result<(), LogError> {
        let regions = self.check_all(regions)?;
        self.set_dirty(regions, true, seen);
        Ok(())
    }

    /// CLEAR_REGION: the writes to these regions are done on every leg.
    pub fn clear(
        &mut self,
        regions: impl Iterator<Item = RegionIndex> + Clone,
        seen: impl RegionObserver,
    ) -> Result<(), LogError> {
        let regions = self.check_all(regions)?;
        self.set_dirty(regions, false, seen);
        Ok(())
    }

    /// Marks or clears `regions`; the dirty set of a disk log is the shadow's too, so the
    /// regions that changed are reported for it.
    fn set_dirty(
        &mut self,
        regions: impl Iterator<Item = u32>,
        dirty: bool,
        mut seen: impl RegionObserver,
    ) {
        let reported = self.disk && seen.wants_changes();
        let mut changed = Vec::new();
        for region in regions {
            let flipped = if dirty { self.dirty.insert(region) } else { self.dirty.remove(region) };
            if flipped {
                seen.clean_bit_changed(region, !dirty);
                if reported {
                    changed.push(region);
                }
            }
        }
        if !changed.is_empty() {
            seen.changed(if dirty { Change::Marked(changed) } else { Change::Cleared(changed) });
        }
    }

    /// GET_RESYNC_WORK: the next out-of-sync region from the search position that is not
    /// already being recovered; it is recovering from now on.
    pub fn get_resync_work(&mut self, mut seen: impl RegionObserver) -> Option<RegionIndex> {
        if self.sync_search >= u64::from(self.region_count) {
            return None;
        }
        let start = self.sync_search as u32;
        let found = self.out_of_sync.range(start..).find(|r| !self.recovering.contains(*r));
        match found {
            Some(region) => {
                self.sync_search = u64::from(region) + 1;
                self.recovering.insert(region);
                seen.changed(Change::Recovering(region));
                Some(RegionIndex(u64::from(region)))
            }
            None => {
                self.sync_search = u64::from(self.region_count);
                None
            }
        }
    }

    /// SET_REGION_SYNC: recovery of `region` ended, and left it in sync or not.
    pub fn set_region_sync(
        &mut self,
        region: RegionIndex,
        in_sync: bool,
        mut seen: impl RegionObserver,
    ) -> Result<(), LogError> {
        let region = self.check(region)?;
        self.recovering.remove(region);
        let changed =
            if in_sync { self.out_of_sync.remove(region) } else { self.out_of_sync.insert(region) };
        if changed {
            // The region's clean bit on disk follows its sync state (finding C).
            seen.clean_bit_changed(region, in_sync);
        }
        seen.changed(if in_sync { Change::InSync(region) } else { Change::OutOfSync(region) });
        Ok(())
    }

    /// GET_SYNC_COUNT.
    pub fn sync_count(&self) -> u64 {
        u64::from(self.region_count) - self.out_of_sync.len()
    }

    /// IS_REMOTE_RECOVERING on a single host: nobody else recovers anything. The hint is the
    /// lowest region not in sync, below which the kernel need not ask again.
    pub fn is_remote_recovering(
        &self,
        region: RegionIndex,
    ) -> Result<(bool, RegionIndex), LogError> {
        self.check(region)?;
        let hint = self.out_of_sync.min().unwrap_or(self.region_count);
        Ok((false, RegionIndex(u64::from(hint))))
    }

    /// The regions whose clean bit is 0 in the disk image: the dirty ones and, so that a
    /// resume never takes a region out of sync for in sync, the ones out of sync.
    pub fn unclean(&self) -> [&RoaringBitmap; 2] {
        [&self.dirty, &self.out_of_sync]
    }

    /// How many regions are being recovered right now.
    pub fn recovering_count(&self) -> u64 {
        self.recovering.len()
    }

    /// How many regions are dirty right now.
    pub fn dirty_count(&self) -> u64 {
        self.dirty.len()
    }

    fn check(&self, region: RegionIndex) -> Result<u32, LogError> {
        u32::try_from(region.0)
            .ok()
            .filter(|r| *r < self.region_count)
            .ok_or(LogError::OutOfRange { region, count: self.region_count() })
    }

    fn check_all(
        &self,
        regions: impl Iterator<Item = RegionIndex> + Clone,
    ) -> Result<impl Iterator<Item = u32>, LogError> {
        for region in regions.clone() {
            self.check(region)?;
        }
        Ok(regions.map(|r| r.0 as u32))
    }
}
