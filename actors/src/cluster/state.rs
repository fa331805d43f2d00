//! [`ClusterState`]: one clustered log as every member of its group holds it, a replicated
//! state machine.
//!
//! Every member applies the same [`Op`]s and the same membership changes in the order CPG
//! agreed, so every replica is the same without any further talk. What differs from the
//! single-host [`RegionLog`](crate::region::RegionLog):
//! - marks are kept per member, and a region is clean only when no member holds a mark on it
//!   (two hosts write region R, one clears it: R stays dirty until the other clears it too);
//! - recovery is handed out per region, each with its owner, to any number of members at once;
//!   a region another member has marked is not handed out, as its writes are in flight;
//! - a member that goes away without suspending leaves its marked regions out of sync (its
//!   writes may have reached one leg only) and its recovery work to the others.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;

use crate::region::{self, LogArgs};
use crate::units::{RegionCount, RegionIndex};
use crate::wire::{Errno, Reply, ReplyPayload};

/// One daemon in a log's group: a node, and the process on it (a restarted daemon is a new
/// member, so the marks of the one that died are told apart from its successor's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    pub node: u32,
    pub pid: u32,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.pid)
    }
}

/// A state change, applied by every member in the agreed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mark(Vec<u64>),
    Clear(Vec<u64>),
    /// FLUSH: its marks (with `integrated_flush`), then a commit of the log device.
    Flush(Vec<u64>),
    GetResyncWork,
    SetRegionSync {
        region: u64,
        in_sync: bool,
    },
    /// RESUME: the member's recovery search starts over.
    Resume,
    /// POSTSUSPEND: the member's I/O is over; whatever it still has marked was written to
    /// every leg, so its marks go and nothing of it needs resync.
    Postsuspend,
    /// IS_CLEAN, read at its place in the total order: a mark another member's kernel was
    /// told about is never missed because this replica has not applied it yet.
    IsClean(u64),
    /// IS_REMOTE_RECOVERING, read at its place in the total order.
    IsRemoteRecovering(u64),
}

/// The clustered log's state.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterState {
    /// At most `u32::MAX` (checked when the arguments were parsed).
    pub(super) region_count: u32,
    /// Each member's marks; a member with none has no entry.
    pub(super) marks: BTreeMap<Member, RoaringBitmap>,
    /// Regions whose legs may differ.
    pub(super) out_of_sync: RoaringBitmap,
    /// Regions being recovered, and by whom.
    pub(super) recovering: BTreeMap<u32, Member>,
    /// Where each member's GET_RESYNC_WORK looks next.
    pub(super) sync_search: BTreeMap<Member, u32>,
    /// How many ops the group has applied: a position in the total order, which durability
    /// acknowledgements refer to.
    pub(super) applied: u64,
}

impl ClusterState {
    /// The state of a log whose group starts afresh: every region clean, and `out_of_sync`
    /// as the first member found it.
    pub fn new(args: &LogArgs, out_of_sync: RoaringBitmap) -> ClusterState {
        let region_count = args.region_count().bitmap_bound();
        ClusterState {
            region_count,
            marks: BTreeMap::new(),
            out_of_sync,
            recovering: BTreeMap::new(),
            sync_search: BTreeMap::new(),
            applied: 0,
        }
    }

    pub fn region_count(&self) -> RegionCount {
        RegionCount(u64::from(self.region_count))
    }

    /// The position in the total order: how many ops have been applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies `op` from `from`; the answer is what `from` tells its kernel.
    pub fn apply(&mut self, from: Member, op: &Op) -> Reply {
        // 2^64 ops are never applied; a position a snapshot sent near the end must not panic.
        self.applied = self.applied.wrapping_add(1);
        match op {
            Op::Mark(regions) | Op::Flush(regions) => {
                self.check_all(regions)?;
                let marks = self.marks.entry(from).or_default();
                marks.extend(as_indices(regions));
                if marks.is_empty() {
                    self.marks.remove(&from);
                }
                Ok(ReplyPayload::Empty)
            }
            Op::Clear(regions) => {
                self.check_all(regions)?;
                if let Some(marks) = self.marks.get_mut(&from) {
                    for region in as_indices(regions) {
                        marks.remove(region);
                    }
                    if marks.is_empty() {
                        self.marks.remove(&from);
                    }
                }
                Ok(ReplyPayload::Empty)
            }
            Op::GetResyncWork => Ok(ReplyPayload::ResyncWork(
                self.resync_work(from).map(|r| RegionIndex(u64::from(r))),
            )),
            Op::SetRegionSync { region, in_sync } => {
                let region = self.check(*region)?;
                if self.recovering.get(&region) == Some(&from) {
                    self.recovering.remove(&region);
                }
                if *in_sync {
                    self.out_of_sync.remove(region);
                } else {
                    self.out_of_sync.insert(region);
                }
                Ok(ReplyPayload::Empty)
            }
            Op::Resume => {
                self.sync_search.insert(from, 0);
                Ok(ReplyPayload::Empty)
            }
            Op::Postsuspend => {
                self.marks.remove(&from);
                self.release_recovery(from);
                Ok(ReplyPayload::Empty)
            }
            Op::IsClean(region) => self.is_clean(*region).map(ReplyPayload::Flag),
            Op::IsRemoteRecovering(region) => self.is_remote_recovering(from, *region),
        }
    }

    /// A member left the group, cleanly or not. Its marks become out of sync, its recovery
    /// work is handed out again, and every member's search goes back to cover both.
    pub fn member_left(&mut self, member: Member) {
        if let Some(marks) = self.marks.remove(&member) {
            self.out_of_sync |= &marks;
            if let Some(first) = marks.min() {
                self.rewind_searches(first);
            }
        }
        self.release_recovery(member);
        self.sync_search.remove(&member);
    }

    /// IS_CLEAN: no member holds a mark on the region, and it is in sync (the one rule,
    /// [`region::is_clean`]).
    pub fn is_clean(&self, region: u64) -> Result<bool, Errno> {
        let region = self.check(region)?;
        let marked = self.marks.values().any(|marks| marks.contains(region));
        Ok(region::is_clean(marked, !self.out_of_sync.contains(region)))
    }

    /// IN_SYNC.
    pub fn in_sync(&self, region: u64) -> Result<bool, Errno> {
        Ok(!self.out_of_sync.contains(self.check(region)?))
    }

    /// GET_SYNC_COUNT.
    pub fn sync_count(&self) -> u64 {
        u64::from(self.region_count) - self.out_of_sync.len()
    }

    /// IS_REMOTE_RECOVERING for `asker`: whether another member recovers the region, and the
    /// lowest region not in sync.
    pub fn is_remote_recovering(&self, asker: Member, region: u64) -> Reply {
        let region = self.check(region)?;
        let recovering = self.recovering.get(&region).is_some_and(|owner| *owner != asker);
        let hint = self.out_of_sync.min().unwrap_or(self.region_count);
        Ok(ReplyPayload::RemoteRecovering {
            recovering,
            in_sync_hint: RegionIndex(u64::from(hint)),
        })
    }

    /// Regions some member has marked.
    pub fn dirty(&self) -> RoaringBitmap {
        let mut dirty = RoaringBitmap::new();
        for marks in self.marks.values() {
            dirty |= marks;
        }
        dirty
    }

    /// What the log device records as not clean: marked, or out of sync. A region cleared
    /// while out of sync must not read back as in sync at the next activation.
    pub fn unclean(&self) -> RoaringBitmap {
        self.dirty() | &self.out_of_sync
    }

    pub fn recovering_count(&self) -> u64 {
        self.recovering.len() as u64
    }

    /// The next out-of-sync region for `member` to recover. Regions being recovered by
    /// another member, or marked by one, are passed over; the search stays on the first of
    /// them, so they are offered again once free.
    fn resync_work(&mut self, member: Member) -> Option<u32> {
        let start = self.sync_search.get(&member).copied().unwrap_or(0);
        let mut passed_over = None;
        let mut found = None;
        for region in self.out_of_sync.range(start..) {
            let busy = self.recovering.contains_key(&region)
                || self.marks.iter().any(|(m, marks)| *m != member && marks.contains(region));
            if !busy {
                found = Some(region);
                break;
            }
            passed_over.get_or_insert(region);
        }
        let next = match (found, passed_over) {
            (_, Some(first_busy)) => first_busy,
            (Some(region), None) => region + 1,
            (None, None) => self.region_count,
        };
        self.sync_search.insert(member, next);
        if let Some(region) = found {
            self.recovering.insert(region, member);
        }
        found
    }

    fn release_recovery(&mut self, member: Member) {
        let released: Vec<u32> =
            self.recovering.iter().filter(|(_, m)| **m == member).map(|(r, _)| *r).collect();
        for region in &released {
            self.recovering.remove(region);
        }
        if let Some(first) = released.first() {
            self.rewind_searches(*first);
        }
    }

    fn rewind_searches(&mut self, region: u32) {
        for search in self.sync_search.values_mut() {
            *search = (*search).min(region);
        }
    }

    fn check(&self, region: u64) -> Result<u32, Errno> {
        u32::try_from(region).ok().filter(|r| *r < self.region_count).ok_or(Errno::EINVAL)
    }

    /// Checks every region before any is used, so that a bad one changes nothing.
    fn check_all(&self, regions: &[u64]) -> Result<(), Errno> {
        regions.iter().try_for_each(|r| self.check(*r).map(drop))
    }
}

/// Regions that [`ClusterState::check_all`] passed, as bitmap indices.
fn as_indices(regions: &[u64]) -> impl Iterator<Item = u32> + '_ {
    regions.iter().map(|r| *r as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Member = Member { node: 1, pid: 10 };
    const B: Member = Member { node: 2, pid: 20 };
    const C: Member = Member { node: 3, pid: 30 };

    fn log(sync: &str) -> ClusterState {
        let args: LogArgs = format!("80 clustered-core 8{sync}").parse().unwrap();
        ClusterState::new(&args, args.initial_out_of_sync())
    }

    #[test]
    fn a_region_is_clean_only_when_no_member_holds_a_mark() {
        let mut s = log(" nosync");
        s.apply(A, &Op::Mark(vec![4])).unwrap();
        s.apply(B, &Op::Flush(vec![4])).unwrap();
        s.apply(A, &Op::Clear(vec![4])).unwrap();
        assert_eq!(s.apply(C, &Op::IsClean(4)), Ok(ReplyPayload::Flag(false)), "B still writes 4");
        s.apply(B, &Op::Clear(vec![4])).unwrap();
        assert_eq!(s.is_clean(4), Ok(true));
        assert!(s.marks.is_empty());
    }

    #[test]
    fn a_region_out_of_sync_is_never_clean() {
        let mut s = log(" nosync");
        s.apply(A, &Op::SetRegionSync { region: 3, in_sync: false }).unwrap();
        assert_eq!(s.apply(B, &Op::IsClean(3)), Ok(ReplyPayload::Flag(false)));
        s.apply(A, &Op::SetRegionSync { region: 3, in_sync: true }).unwrap();
        assert_eq!(s.apply(B, &Op::IsClean(3)), Ok(ReplyPayload::Flag(true)));
    }

    #[test]
    fn a_lost_member_leaves_its_marks_out_of_sync_and_its_recovery_free() {
        let mut s = log(" nosync");
        s.apply(A, &Op::Mark(vec![2, 7])).unwrap();
        s.apply(B, &Op::Mark(vec![7])).unwrap();
        s.apply(B, &Op::SetRegionSync { region: 5, in_sync: false }).unwrap();
        s.apply(A, &Op::Resume).unwrap();
        s.apply(B, &Op::Resume).unwrap();
        // A recovers 5; B finds nothing else (7 is marked by A, 2 is in sync).
        assert_eq!(
            s.apply(A, &Op::GetResyncWork),
            Ok(ReplyPayload::ResyncWork(Some(RegionIndex(5))))
        );
        assert_eq!(s.apply(B, &Op::GetResyncWork), Ok(ReplyPayload::ResyncWork(None)));
        s.member_left(A);
        assert_eq!(s.in_sync(2), Ok(false));
        assert_eq!(s.in_sync(7), Ok(false));
        assert_eq!(s.is_clean(2), Ok(false), "out of sync, so not clean, though unmarked");
        assert_eq!(s.is_clean(7), Ok(false), "B's own mark stays");
        // A's recovery of 5 is handed out again. 7 goes to B too: B's own mark does not stop
        // it, as B's kernel quiesces its own writes to a region before recovering it.
        let work = |s: &mut ClusterState, m| s.apply(m, &Op::GetResyncWork);
        assert_eq!(work(&mut s, B), Ok(ReplyPayload::ResyncWork(Some(RegionIndex(2)))));
        assert_eq!(work(&mut s, B), Ok(ReplyPayload::ResyncWork(Some(RegionIndex(5)))));
        assert_eq!(work(&mut s, B), Ok(ReplyPayload::ResyncWork(Some(RegionIndex(7)))));
        assert_eq!(work(&mut s, B), Ok(ReplyPayload::ResyncWork(None)));
    }

    #[test]
    fn a_region_another_member_writes_waits_for_its_clear() {
        let mut s = log(" nosync");
        s.apply(A, &Op::Mark(vec![3])).unwrap();
        s.apply(B, &Op::SetRegionSync { region: 3, in_sync: false }).unwrap();
        s.apply(B, &Op::Resume).unwrap();
        let work = |s: &mut ClusterState| s.apply(B, &Op::GetResyncWork);
        assert_eq!(work(&mut s), Ok(ReplyPayload::ResyncWork(None)), "A writes region 3");
        s.apply(A, &Op::Clear(vec![3])).unwrap();
        assert_eq!(work(&mut s), Ok(ReplyPayload::ResyncWork(Some(RegionIndex(3)))));
    }

    #[test]
    fn recovery_is_handed_out_per_region_to_many_members() {
        let mut s = log("");
        for m in [A, B, C] {
            s.apply(m, &Op::Resume).unwrap();
        }
        let mut handed = Vec::new();
        for m in [A, B, C, A, B, C] {
            if let Ok(ReplyPayload::ResyncWork(Some(r))) = s.apply(m, &Op::GetResyncWork) {
                handed.push((m, r.0));
            }
        }
        assert_eq!(handed.len(), 6, "six regions recovered at once: {handed:?}");
        let mut regions: Vec<u64> = handed.iter().map(|(_, r)| *r).collect();
        regions.dedup();
        assert_eq!(regions.len(), 6, "no region handed out twice");
        assert_eq!(
            s.apply(B, &Op::IsRemoteRecovering(handed[0].1)),
            Ok(ReplyPayload::RemoteRecovering { recovering: true, in_sync_hint: RegionIndex(0) })
        );
        // Only the owner's SET_REGION_SYNC ends a recovery.
        s.apply(B, &Op::SetRegionSync { region: handed[0].1, in_sync: true }).unwrap();
        assert_eq!(s.recovering_count(), 6);
        s.apply(A, &Op::SetRegionSync { region: handed[0].1, in_sync: true }).unwrap();
        assert_eq!(s.recovering_count(), 5);
        assert_eq!(s.sync_count(), 1);
    }

    #[test]
    fn postsuspend_drops_marks_without_resync() {
        let mut s = log(" nosync");
        s.apply(A, &Op::Mark(vec![1, 2])).unwrap();
        s.apply(A, &Op::Postsuspend).unwrap();
        s.member_left(A);
        assert_eq!(s.sync_count(), 10);
        assert_eq!(s.is_clean(1), Ok(true));
    }

    #[test]
    fn bad_regions_change_nothing_anywhere() {
        let mut s = log(" nosync");
        let before = s.clone();
        assert_eq!(s.apply(A, &Op::Mark(vec![3, 10])), Err(Errno::EINVAL));
        assert_eq!(
            s.apply(A, &Op::SetRegionSync { region: u64::MAX, in_sync: false }),
            Err(Errno::EINVAL)
        );
        assert_eq!(s.marks, before.marks);
        assert_eq!(s.out_of_sync, before.out_of_sync);
        assert_eq!(s.is_clean(10), Err(Errno::EINVAL));
    }

    #[test]
    fn replicas_applying_the_same_order_agree() {
        // Three replicas, one random history each time, applied in the same order.
        let mut seed = 7u64;
        let mut below = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..200 {
            let mut replicas = [log(""), log(""), log("")];
            for _ in 0..300 {
                let member = [A, B, C][below(3) as usize];
                let op = match below(8) {
                    0 => Op::Mark(vec![below(10)]),
                    1 => Op::Flush(vec![below(10), below(10)]),
                    2 | 3 => Op::Clear(vec![below(10)]),
                    4 => Op::GetResyncWork,
                    5 => Op::SetRegionSync { region: below(10), in_sync: below(4) != 0 },
                    6 => Op::Resume,
                    _ => Op::Postsuspend,
                };
                let answers: Vec<Reply> =
                    replicas.iter_mut().map(|r| r.apply(member, &op)).collect();
                assert!(answers.windows(2).all(|w| w[0] == w[1]));
                if below(50) == 0 {
                    replicas.iter_mut().for_each(|r| r.member_left(member));
                }
            }
            assert!(replicas.windows(2).all(|w| w[0] == w[1]));
        }
    }
}
