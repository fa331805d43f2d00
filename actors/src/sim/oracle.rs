//! What must hold, from the kernel's point of view, checked at every reply.
//!
//! The oracle knows what the simulated mirror knows: which regions have writes in flight,
//! which of their marks a FLUSH reply has made durable, and which regions it recovered. Two
//! rules follow:
//! - a region with a durable mark and no clear since is never reported clean;
//! - a kill of the daemon changes nothing the kernel relies on: a region in sync at the kill
//!   is reported in sync after the reconnect, dirty on the log device or not, since only the
//!   daemon died and every write went to every leg. The real kernel asks for no resync work
//!   after a reconnect (tests/kernel/README.md, finding B), so a region wrongly reported out
//!   of sync there would stall the mirror. The rule holds until the next real resume, which
//!   rereads a disk log and may resync a region whose clear a kill cut off.
//!
//! A clear or a recovery proves nothing about the device until a commit that waits for
//! everything (the POSTSUSPEND before a real resume) made it durable: the FLUSH after it
//! may be answered before its commit lands, and a kill before then leaves the region dirty
//! on the device. The new daemon keeps a region dirty that its device holds dirty, whatever
//! the old one had answered (a shadow never makes a log cleaner than its device), until the
//! region is cleared again. Such a region stays "maybe dirty" for the next real resume.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct Oracle {
    /// Writes in flight per region (dm-region-hash's pending count).
    pending: HashMap<u64, u32>,
    /// Marks sent whose FLUSH has not been answered yet.
    unflushed: HashSet<u64>,
    /// Marks a FLUSH reply promised, not cleared since.
    durable: HashSet<u64>,
    /// Regions the mirror recovered, and may rely on as in sync.
    in_sync: HashSet<u64>,
    /// Regions marked whose clear is not known to be on the device: a real resume of a disk
    /// log may find them dirty and take them out of sync.
    maybe_dirty: HashSet<u64>,
    /// Regions cleared or recovered since the last real resume, with no reconnect between:
    /// on the device once the suspend before the next real resume has committed them.
    unproven: HashSet<u64>,
    /// Regions in sync at the last reconnect, to be reported in sync until a real resume.
    in_sync_at_kill: HashSet<u64>,
    /// How many reconnects there were: a clear or recovery started before the last one
    /// carries an older count.
    reconnects: u64,
    pub checks: u64,
    pub violations: Vec<String>,
}

impl Oracle {
    /// A write starts on `region`; true when the region needs a mark (its first write).
    pub fn start_write(&mut self, region: u64) -> bool {
        let count = self.pending.entry(region).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.unflushed.insert(region);
            self.maybe_dirty.insert(region);
            true
        } else {
            false
        }
    }

    /// A write on `region` completes; true when the region needs a clear (its last write).
    pub fn end_write(&mut self, region: u64) -> bool {
        let Some(count) = self.pending.get_mut(&region) else { return false };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        self.pending.remove(&region);
        self.unflushed.remove(&region);
        self.durable.remove(&region);
        true
    }

    /// Marks the start of a clear or a recovery, for [`Oracle::cleared`] and
    /// [`Oracle::recovered`].
    pub fn epoch(&self) -> u64 {
        self.reconnects
    }

    /// The clears of `regions`, sent in `epoch`, were flushed: the next suspend commits
    /// them, unless a reconnect came between.
    pub fn cleared(&mut self, regions: &[u64], epoch: u64) {
        if epoch == self.reconnects {
            self.unproven.extend(regions);
        }
    }

    /// A FLUSH was answered with success: every mark sent before it is durable.
    pub fn flushed(&mut self) {
        self.durable.extend(self.unflushed.drain());
    }

    /// The daemon was found gone and the log reconnected (CTR + RESUME to a new daemon).
    /// Marks it had not made durable are not promised, nor clears it had not committed.
    pub fn reconnected(&mut self) {
        self.reconnects += 1;
        self.unproven.clear();
        self.in_sync_at_kill.clone_from(&self.in_sync);
        self.unflushed.clear();
    }

    /// A real resume (create, or suspend + resume): a disk log is read again from its device.
    pub fn resumed(&mut self) {
        // The suspend before it committed every clear since the last reconnect; a region
        // written again since is marked (pending) and stays maybe dirty.
        for region in self.unproven.drain() {
            if !self.pending.contains_key(&region) {
                self.maybe_dirty.remove(&region);
            }
        }
        self.in_sync.retain(|region| !self.maybe_dirty.contains(region));
        self.in_sync_at_kill.clear();
    }

    /// The mirror recovered `region`, from `epoch` on: cleared, reported in sync, flushed.
    pub fn recovered(&mut self, region: u64, epoch: u64) {
        self.in_sync.insert(region);
        if epoch == self.reconnects {
            self.unproven.insert(region);
        }
    }

    /// Recovery of `region` failed: it is out of sync.
    pub fn recovery_failed(&mut self, region: u64) {
        self.in_sync.remove(&region);
        self.in_sync_at_kill.remove(&region);
    }

    pub fn writes_in_flight(&self) -> Vec<u64> {
        self.pending.keys().copied().collect()
    }

    pub fn has_writes(&self, region: u64) -> bool {
        self.pending.contains_key(&region)
    }

    pub fn check_clean(&mut self, log: &str, region: u64, clean: bool) {
        self.checks += 1;
        if clean && self.durable.contains(&region) {
            self.violations
                .push(format!("{log}: region {region} reported clean with a durable mark"));
        }
    }

    pub fn check_in_sync(&mut self, log: &str, region: u64, in_sync: bool) {
        self.checks += 1;
        if !in_sync && self.in_sync_at_kill.contains(&region) {
            self.violations.push(format!(
                "{log}: region {region}, in sync at a kill, reported out of sync after the reconnect"
            ));
        }
    }

    /// Regions in sync at the last kill, whose sync state the new daemon must have kept.
    pub fn in_sync_at_kill(&self) -> Vec<u64> {
        self.in_sync_at_kill.iter().copied().collect()
    }
}
