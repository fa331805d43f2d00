//! What must hold, from the kernel's point of view, checked at every reply.
//!
//! The oracle knows what the simulated mirror knows: which regions have writes in flight
//! and which of their marks a FLUSH reply has made durable. Two rules follow:
//! - a region with a durable mark and no clear since is never reported clean;
//! - after the daemon was killed and restarted, every region that had a durable mark at the
//!   kill is reported out of sync until the mirror has recovered it or finished its writes.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct Oracle {
    /// Writes in flight per region (dm-region-hash's pending count).
    pending: HashMap<u64, u32>,
    /// Marks sent whose FLUSH has not been answered yet.
    unflushed: HashSet<u64>,
    /// Marks a FLUSH reply promised, not cleared since.
    durable: HashSet<u64>,
    /// Regions dirty at a daemon restart, not yet recovered by the mirror.
    must_resync: HashSet<u64>,
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
        // Only the daemon died, not the kernel: the writes finished on every leg, so once
        // the clear is committed the region may come back in sync at the next resume.
        self.must_resync.remove(&region);
        true
    }

    /// A FLUSH was answered with success: every mark sent before it is durable.
    pub fn flushed(&mut self) {
        self.durable.extend(self.unflushed.drain());
    }

    /// The daemon was found gone and the log reconnected (CTR + RESUME to a new daemon).
    /// Marks it had not made durable died with it.
    pub fn reconnected(&mut self) {
        self.must_resync.extend(self.durable.iter().copied());
        self.unflushed.clear();
    }

    /// The mirror recovered `region` and reported it in sync.
    pub fn recovered(&mut self, region: u64) {
        self.must_resync.remove(&region);
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
        if in_sync && self.must_resync.contains(&region) {
            self.violations
                .push(format!("{log}: region {region} dirty at a restart reported in sync"));
        }
    }

    /// Regions that the last restart left for resync.
    pub fn must_resync(&self) -> Vec<u64> {
        self.must_resync.iter().copied().collect()
    }
}
