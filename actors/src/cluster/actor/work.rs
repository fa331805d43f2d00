//! What a kernel request becomes in a clustered log's order: an [`Op`] for the group, or a
//! read of the local replica, held in a [`Slot`] until its turn to be answered; and which of
//! them are answered before the group has them.

use std::collections::VecDeque;

use crate::cluster::state::{ClusterState, Op};
use crate::reply_to::ReplyTo;
use crate::wire::{Reply, ReplyPayload, Request};

/// One kernel request in its place in this log's order; `to` is `None` once it is
/// answered ahead of its op ([`answers_ahead`]).
pub(super) struct Slot {
    pub(super) to: Option<ReplyTo>,
    pub(super) work: Work,
}

pub(super) enum Work {
    /// An op, held until it is multicast (`sent`), then answered when it comes back.
    Op { op: Op, sent: bool },
    /// Applied by the group at `position`; a clustered-disk FLUSH also waits for the disk.
    /// After a POSTSUSPEND the member leaves the group.
    Applied { reply: Reply, position: u64, needs_disk: bool, then_leave: bool },
    /// Answered from the replica once everything before it is answered.
    Read(LocalRead),
}

/// The requests a member answers from its own replica.
pub(super) enum LocalRead {
    InSync(u64),
    SyncCount,
}

/// A read answered from the replica.
pub(super) fn read(state: &ClusterState, request: &LocalRead) -> Reply {
    match request {
        LocalRead::InSync(region) => state.in_sync(*region).map(ReplyPayload::Flag),
        LocalRead::SyncCount => Ok(ReplyPayload::Count(state.sync_count())),
    }
}

/// Whether `op` is answered as soon as it is queued, ahead of the group. dm-raid1 writes no
/// data until the FLUSH after its marks is answered, and the kernel sends each MARK and CLEAR
/// on its own and waits for it: answered ahead, they cost no round trip of the group each,
/// and this member's order in the group keeps them before its next FLUSH, which is answered
/// only when it comes back (and, for clustered-disk, once the device holds it). A MARK or
/// CLEAR the group refuses would be refused for a region past the log's end, which is
/// answered here, before anything is sent.
pub(super) fn answers_ahead(op: &Op) -> bool {
    matches!(op, Op::Mark(_) | Op::Clear(_))
}

/// Whether a FLUSH may be answered as it arrives, with nothing sent for it, as far as this
/// log's order can tell: it carries no marks, and nothing before it that is still on its way
/// carries any (only CLEARs may wait there). Such a FLUSH promises nothing
/// the kernel relies on: a clear that is late, or lost in a crash, only keeps its region
/// dirty, which costs a resync of a region that was in sync, never data (store::committer
/// says the same of single-host logs). The next FLUSH that carries marks still waits for
/// everything before it. The caller adds what only it knows: that the member is in its group
/// with the state, and for clustered-disk that the device owes nothing
/// ([`Committer::owes_nothing`](crate::store::Committer::owes_nothing)).
pub(super) fn flush_owes_nothing(slots: &VecDeque<Slot>, op: &Op) -> bool {
    let answered_ahead = |slot: &Slot| slot.to.is_none();
    matches!(op, Op::Flush(marks) if marks.is_empty())
        && slots.iter().all(|slot| match &slot.work {
            Work::Op { op: Op::Clear(_), .. } => true,
            Work::Applied { needs_disk, .. } => !needs_disk && answered_ahead(slot),
            _ => false,
        })
}

/// Whether `slot` is a MARK or CLEAR answered ahead and not yet back from the group: nothing
/// waits for it, and no read depends on it (neither changes what is in sync).
pub(super) fn is_answered_mark_or_clear(slot: &Slot) -> bool {
    matches!(slot, Slot { to: None, work: Work::Op { op: Op::Mark(_) | Op::Clear(_), .. } })
}

/// Whether `slot`, at the back of the order, may wait there unsent for what comes next: a
/// MARK or CLEAR answered ahead. dm-log-userspace sends its CLEARs and MARKs from its flush,
/// right before the FLUSH, and a CLEAR after a write before the next write's MARKs and FLUSH:
/// held, they go in one multicast with it.
pub(super) fn is_held(slot: &Slot) -> bool {
    matches!(slot.work, Work::Op { sent: false, .. }) && is_answered_mark_or_clear(slot)
}

fn is_held_mark(slot: &Slot) -> bool {
    is_held(slot) && matches!(slot.work, Work::Op { op: Op::Mark(_), .. })
}

/// A FLUSH takes in the MARKs just before it that are not sent yet: dm-log-userspace sends
/// its MARKs right before the FLUSH that makes them durable, and they were answered ahead. The
/// group applies them at the FLUSH, as it does integrated_flush's.
pub(super) fn absorb_held_marks(slots: &mut VecDeque<Slot>, op: &mut Op) {
    let Op::Flush(marks) = op else { return };
    while slots.back().is_some_and(is_held_mark) {
        if let Some(Slot { work: Work::Op { op: Op::Mark(held), .. }, .. }) = slots.pop_back() {
            marks.splice(0..0, held);
        }
    }
}

/// Where a request goes: an op for the group, or a read of the replica; `None` for the
/// requests answered on the spot.
pub(super) fn work_of(request: &Request) -> Option<Work> {
    let regions = |batch: &crate::wire::RegionBatch| batch.iter().map(|r| r.0).collect();
    let op = match request {
        Request::MarkRegion(batch) => Op::Mark(regions(batch)),
        Request::ClearRegion(batch) => Op::Clear(regions(batch)),
        Request::Flush(batch) => Op::Flush(regions(batch)),
        Request::GetResyncWork => Op::GetResyncWork,
        Request::SetRegionSync { region, in_sync } => {
            Op::SetRegionSync { region: region.0, in_sync: *in_sync }
        }
        Request::Resume => Op::Resume,
        Request::Postsuspend => Op::Postsuspend,
        Request::IsClean(region) => Op::IsClean(region.0),
        Request::IsRemoteRecovering(region) => Op::IsRemoteRecovering(region.0),
        Request::InSync(region) => return Some(Work::Read(LocalRead::InSync(region.0))),
        Request::GetSyncCount => return Some(Work::Read(LocalRead::SyncCount)),
        _ => return None,
    };
    Some(Work::Op { op, sent: false })
}
