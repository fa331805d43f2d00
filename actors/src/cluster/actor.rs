//! The clustered log actor: one per `clustered-core` / `clustered-disk` log instance. It
//! serves its kernel from a [`Replica`] of the log that every host's daemon keeps alike
//! through the log's CPG group.
//!
//! A state-changing request becomes one [`Op`], multicast in agreed order; every member
//! applies it at the same point, and this member answers its kernel when its own op comes
//! back, except for MARK and CLEAR, answered as they are queued (`work::answers_ahead` says
//! why that is safe), and a FLUSH that owes nothing (`work::flush_owes_nothing`), answered
//! with nothing sent. The MARKs and CLEARs wait, unsent, for what follows them (at most
//! [`HOLD`]): a FLUSH takes its MARKs in, and all a member has to send goes in one message,
//! so a mirror write costs one multicast. IS_CLEAN and IS_REMOTE_RECOVERING are ops too,
//! read at their place in the total order, so no mark or recovery another host's kernel was
//! told about is missed. IN_SYNC and GET_SYNC_COUNT are answered from the local replica (as
//! cmirrord does), behind this log's earlier requests but past MARKs and CLEARs still on
//! their way. Requests wait, unanswered (the kernel resends after 15 s), while this member
//! holds no state, has no quorum, or CPG pushes back (`CS_ERR_TRY_AGAIN`, retried, never a
//! failure).
//!
//! The log device of a clustered-disk log is the [`disk`] module's business.

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use roaring::RoaringBitmap;
use tokio::sync::oneshot;

use super::cpg::{CpgGroup, GroupEvent, Sent};
use super::message::Message;
use super::quorum::Quorum;
use super::replica::{Effect, Replica};
use super::state::{ClusterState, Op};
use crate::fnv::fnv1a;
use crate::handover::CarriedLog;
use crate::log_core::{serve_log, LogCore, ServesLog, Tally};
use crate::reply_to::ReplyTo;
use crate::status::ClusterStatus;
use crate::wire::{Errno, LogKey, ReplyPayload, Request};
use disk::Disk;
use work::{absorb_held_marks, answers_ahead, flush_owes_nothing, is_answered_mark_or_clear};
use work::{is_held, read, work_of, Slot, Work};

mod disk;
mod work;

/// How soon a multicast CPG pushed back (`CS_ERR_TRY_AGAIN`) is tried again: corosync
/// frees room as it delivers, within milliseconds.
const FLOW_CONTROL_RETRY: Duration = Duration::from_millis(2);
/// How often held work is retried while waiting for quorum or the group.
const WAIT_RETRY: Duration = Duration::from_millis(100);
/// How long a MARK or CLEAR answered ahead waits, unsent, for what follows it (`work::is_held`):
/// the FLUSH that takes the MARKs in, and the next write's FLUSH for a CLEAR. Nothing waits on
/// it: a clear that is late only keeps a region dirty for this long, and past it, what the
/// kernel (or another client) left alone goes on its own.
const HOLD: Duration = Duration::from_millis(50);

/// One clustered log on this host: it turns its kernel's requests into ops in the group's
/// agreed order and answers them when they come back, so every host's replica agrees.
pub(crate) struct ClusterLogActor {
    core: LogCore,
    quorum: Quorum,
    /// What the state starts from should this member be the group's first: from CTR until
    /// the replica is made, which keeps it from then on ([`Replica::fresh`]).
    fresh: RoaringBitmap,
    /// Made when the member first joins its group, and kept (detached) when it leaves.
    replica: Option<Replica>,
    group: Option<CpgGroup>,
    events: Option<SpawnHandle>,
    disk: Option<Disk>,
    /// RESUME seen and POSTSUSPEND not yet: the member belongs in the group.
    active: bool,
    slots: VecDeque<Slot>,
    /// Snapshot chunks and durability notes not yet accepted by CPG.
    outbox: VecDeque<Vec<u8>>,
    /// The position in the total order up to which the log device is durable.
    durable: u64,
    retry_scheduled: bool,
    /// For the status report: messages multicast for this log, views seen, and the bytes
    /// of state transferred to joiners and from the group.
    multicasts: u64,
    view_changes: u64,
    transfer_sent_bytes: u64,
    transfer_received_bytes: u64,
    /// Counts the multicasts of ops: a hold (the MARKs and CLEARs waiting at the back of the
    /// order for what follows) lasts from the first op held to the next multicast of ops.
    hold_epoch: u64,
    /// The hold whose HOLD ran out: its ops go on their own.
    hold_expired: Option<u64>,
}

impl ClusterLogActor {
    pub(crate) fn new(core: LogCore, quorum: Quorum) -> ClusterLogActor {
        ClusterLogActor {
            core,
            quorum,
            fresh: RoaringBitmap::new(),
            replica: None,
            group: None,
            events: None,
            disk: None,
            active: false,
            slots: VecDeque::new(),
            outbox: VecDeque::new(),
            durable: 0,
            retry_scheduled: false,
            multicasts: 0,
            view_changes: 0,
            transfer_sent_bytes: 0,
            transfer_received_bytes: 0,
            hold_epoch: 0,
            hold_expired: None,
        }
    }

    /// The CPG group of this log: one per uuid, the same on every host.
    fn group_name(&self) -> String {
        let uuid = self.core.key.uuid.as_bytes();
        let name = format!("dm-ulogd/{}", String::from_utf8_lossy(uuid));
        if name.len() < 128 {
            return name;
        }
        let hash = fnv1a(uuid);
        format!("dm-ulogd/#{hash:016x}")
    }

    /// Puts a request in this log's order, answering it ahead of its op where the kernel
    /// relies on nothing more ([`answers_ahead`], [`ClusterLogActor::owes_nothing`]).
    fn queue(&mut self, to: ReplyTo, mut work: Work, ctx: &mut Context<Self>) {
        let mut to = Some(to);
        if let Work::Op { op, .. } = &mut work {
            if let Some(errno) = self.out_of_range(op) {
                return self.core.respond(&to.expect("not answered"), Err(errno));
            }
            absorb_held_marks(&mut self.slots, op);
            if self.owes_nothing(op) {
                // Nothing for the group to do: the clears before it are on their way, and
                // the writer commits them behind ([`ClusterLogActor::commit_behind`]).
                return self.core.respond(&to.expect("not answered"), Ok(ReplyPayload::Empty));
            }
            if answers_ahead(op) {
                self.core.respond(&to.take().expect("not answered"), Ok(ReplyPayload::Empty));
            }
            // The first op of a hold starts its clock: a later timer must not cut short the
            // hold of ops queued after the ones it was started for.
            if matches!(op, Op::Mark(_) | Op::Clear(_)) && !self.slots.back().is_some_and(is_held) {
                let epoch = self.hold_epoch;
                ctx.run_later(HOLD, move |act, ctx| {
                    if act.hold_epoch == epoch {
                        act.hold_expired = Some(epoch);
                        act.pump(ctx);
                    }
                });
            }
        }
        self.slots.push_back(Slot { to, work });
        self.pump(ctx);
    }

    /// Whether `op` is a FLUSH this member may answer before the group has it
    /// ([`flush_owes_nothing`]): it is in its group, holding the state, with quorum, and on a
    /// clustered-disk log it is the writer and its device owes nothing, by the single-host
    /// rule (only the writer knows whether a write failed and waits for its repair).
    fn owes_nothing(&self, op: &Op) -> bool {
        let Some(replica) = &self.replica else { return false };
        let in_group =
            self.group.is_some() && self.quorum.is_quorate() && replica.state().is_some();
        let device_owes_nothing = match (&self.disk, &self.core.device) {
            (None, _) => true,
            (Some(_), Some(device)) => {
                replica.writer() == Some(replica.me()) && device.owes_nothing()
            }
            (Some(_), None) => false,
        };
        in_group && device_owes_nothing && flush_owes_nothing(&self.slots, op)
    }

    /// EINVAL for an op naming a region past the log's end, as every member would answer it.
    fn out_of_range(&self, op: &Op) -> Option<Errno> {
        let count = self.core.args.region_count().0;
        let regions = match op {
            Op::Mark(regions) | Op::Clear(regions) | Op::Flush(regions) => regions.as_slice(),
            _ => return None,
        };
        regions.iter().any(|region| *region >= count).then_some(Errno::EINVAL)
    }

    /// Joins the log's group, if this member belongs there and can.
    fn join(&mut self, ctx: &mut Context<Self>) {
        if self.group.is_some() || !self.active || !self.quorum.is_quorate() {
            return;
        }
        if let Some(disk) = &mut self.disk {
            if disk.reading {
                return;
            }
            if disk.read_before_join {
                disk.reading = true;
                return self.read_device(ctx);
            }
        }
        match CpgGroup::join(&self.group_name()) {
            Ok((group, events)) => {
                let me = group.me();
                if self.replica.as_ref().is_none_or(|r| r.me() != me) {
                    let fresh = std::mem::take(&mut self.fresh);
                    self.replica = Some(Replica::new(me, self.core.args.clone(), fresh));
                }
                tracing::info!(uuid = %self.core.key.uuid, luid = self.core.key.luid, member = %me, "joined the log's group");
                self.group = Some(group);
                self.events = Some(ctx.add_stream(events));
            }
            Err(error) => {
                tracing::warn!(uuid = %self.core.key.uuid, luid = self.core.key.luid, ?error, "cannot join the log's group; retrying");
            }
        }
    }

    /// Leaves the group (`clean`: after POSTSUSPEND): the replica stops being current, and
    /// ops in flight will be sent again once this member is back (every op is idempotent
    /// for its sender).
    fn leave(&mut self, ctx: &mut Context<Self>, clean: bool) {
        if let Some(events) = self.events.take() {
            ctx.cancel_future(events);
        }
        self.group = None;
        self.outbox.clear();
        if let Some(replica) = &mut self.replica {
            let knowledge = replica.leaving_knowledge(clean);
            replica.detach(knowledge);
        }
        if let (Some(disk), Some(device)) = (&mut self.disk, &mut self.core.device) {
            // The writer may change while this member is away: the device is read again
            // before it joins, in case it has to start the state from it.
            device.mark_stale(None);
            disk.read_before_join = true;
        }
        for slot in &mut self.slots {
            if let Work::Op { sent, .. } = &mut slot.work {
                *sent = false;
            }
        }
        // What goes again goes at once: no hold has a clock running for it.
        self.hold_expired = Some(self.hold_epoch);
    }

    /// Moves every request as far as it can go, in order, and schedules a retry if some
    /// must wait for quorum, the group or flow control.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.group.is_some() && !self.quorum.is_quorate() {
            tracing::warn!(uuid = %self.core.key.uuid, luid = self.core.key.luid, "quorum lost: leaving the log's group until it is back");
            self.leave(ctx, false);
        }
        self.join(ctx);
        let blocked = !self.send_outbox() || !self.send_held();
        if self.answer_front() {
            self.leave(ctx, true);
        }
        self.maybe_commit(ctx);
        let waiting = self.slots.iter().any(|s| matches!(s.work, Work::Op { sent: false, .. }))
            || !self.outbox.is_empty()
            || (self.active && self.group.is_none());
        if (blocked || waiting) && !self.retry_scheduled {
            self.retry_scheduled = true;
            let after = if blocked { FLOW_CONTROL_RETRY } else { WAIT_RETRY };
            ctx.run_later(after, |act, ctx| {
                act.retry_scheduled = false;
                act.pump(ctx);
            });
        }
    }

    /// Sends what the protocol itself must say; false if CPG pushed back.
    fn send_outbox(&mut self) -> bool {
        let Some(group) = &self.group else { return true };
        while let Some(bytes) = self.outbox.front() {
            if !multicast(group, bytes, &self.core.key) {
                return false;
            }
            self.multicasts += 1;
            self.outbox.pop_front();
        }
        true
    }

    /// Multicasts the ops not sent yet, in order and all in one message, once this member
    /// holds the state; false if CPG pushed back.
    fn send_held(&mut self) -> bool {
        let Some(group) = &self.group else { return true };
        if self.replica.as_ref().and_then(Replica::state).is_none() {
            return true;
        }
        // Reads behind the held ops send nothing and are answered past them (answer_front).
        let held = if self.hold_expired != Some(self.hold_epoch) {
            let read = |slot: &Slot| matches!(slot.work, Work::Read(_));
            self.slots.iter().rev().take_while(|slot| is_held(slot) || read(slot)).count()
        } else {
            0
        };
        let sendable = self.slots.len() - held;
        let mut going: Vec<(&Op, &mut bool)> = (self.slots.iter_mut().take(sendable))
            .filter_map(|slot| match &mut slot.work {
                Work::Op { op, sent } if !*sent => Some((&*op, sent)),
                _ => None,
            })
            .collect();
        let bytes = match going.as_slice() {
            [] => return true,
            [(op, _)] => Message::encode_op(op),
            _ => Message::encode_ops(going.iter().map(|(op, _)| *op)),
        };
        if !multicast(group, &bytes, &self.core.key) {
            return false;
        }
        self.multicasts += 1;
        self.hold_epoch += 1;
        for (_, sent) in &mut going {
            **sent = true;
        }
        true
    }

    /// Answers requests from the front of the order while they are ready; true if one of
    /// them was the POSTSUSPEND after which the member leaves its group.
    fn answer_front(&mut self) -> bool {
        let mut leave = false;
        // Slots before this one wait; past the front only MARKs and CLEARs answered ahead
        // are looked beyond, and only reads answered, which neither changes.
        let mut at = 0;
        while let Some(slot) = self.slots.get(at) {
            let reply = match &slot.work {
                Work::Applied { reply, position, needs_disk, then_leave } if at == 0 => {
                    if *needs_disk && self.durable < *position {
                        break;
                    }
                    leave |= *then_leave;
                    reply.clone()
                }
                Work::Read(request) => match self.replica.as_ref().and_then(Replica::state) {
                    Some(state) => read(state, request),
                    // Before RESUME (the kernel asks GET_SYNC_COUNT at CTR) or after
                    // POSTSUSPEND, what this host knows; once resumed, the group's state is
                    // worth waiting for.
                    None if !self.active => {
                        let fresh = self.replica.as_ref().map_or(&self.fresh, Replica::fresh);
                        let before = ClusterState::new(&self.core.args, fresh.clone());
                        read(&before, request)
                    }
                    None => break,
                },
                _ if is_answered_mark_or_clear(slot) => {
                    at += 1;
                    continue;
                }
                _ => break,
            };
            let slot = self.slots.remove(at).expect("the slot exists");
            if let Some(to) = &slot.to {
                self.core.respond(to, reply);
            }
        }
        leave
    }

    fn on_event(&mut self, event: GroupEvent, ctx: &mut Context<Self>) {
        let Some(replica) = self.replica.as_mut() else { return };
        let mut commit_behind = false;
        let effects = match event {
            GroupEvent::View { members, left, joined } => {
                let was_writer = replica.writer() == Some(replica.me());
                let effects = replica.on_view(&members, &left, &joined);
                let is_writer = replica.writer() == Some(replica.me());
                if let Some(disk) = &mut self.disk {
                    // A new writer writes the whole image; members that left may have left
                    // marks that are now out of sync, which the device must show.
                    if is_writer && (!was_writer || !left.is_empty()) {
                        disk.wanted = true;
                    }
                }
                tracing::info!(uuid = %self.core.key.uuid, members = ?members, left = ?left, "group view");
                self.view_changes += 1;
                effects
            }
            GroupEvent::Delivered { from, bytes } => match Message::decode(&bytes) {
                Ok(message) => {
                    if matches!(message, Message::Snapshot(_)) && replica.state().is_none() {
                        self.transfer_received_bytes += bytes.len() as u64;
                    }
                    let ops = match &message {
                        Message::Op(op) => std::slice::from_ref(op),
                        Message::Ops(ops) => ops.as_slice(),
                        _ => &[],
                    };
                    if let Some(disk) = &mut self.disk {
                        for op in ops {
                            match op {
                                Op::Flush(_) | Op::Resume | Op::Postsuspend => disk.wanted = true,
                                Op::Clear(_) | Op::SetRegionSync { .. } => commit_behind = true,
                                _ => {}
                            }
                        }
                    }
                    replica.on_message(from, message)
                }
                Err(error) => {
                    tracing::error!(uuid = %self.core.key.uuid, %from, %error, "group message ignored");
                    Vec::new()
                }
            },
            GroupEvent::Lost(error) => {
                tracing::error!(uuid = %self.core.key.uuid, luid = self.core.key.luid, ?error, "lost corosync; rejoining when it is back");
                self.leave(ctx, false);
                return self.pump(ctx);
            }
        };
        for effect in effects {
            self.apply_effect(effect);
        }
        if commit_behind {
            self.commit_behind(ctx);
        }
        self.pump(ctx);
    }

    fn apply_effect(&mut self, effect: Effect) {
        match effect {
            Effect::Send(message) => {
                if let Message::Snapshot(chunk) = &message {
                    if chunk.index == 0 {
                        tracing::info!(
                            uuid = %self.core.key.uuid, luid = self.core.key.luid, chunks = chunk.total,
                            "state snapshot sent to joining members"
                        );
                    }
                }
                let bytes = message.encode();
                if matches!(message, Message::Snapshot(_)) {
                    self.transfer_sent_bytes += bytes.len() as u64;
                }
                self.outbox.push_back(bytes);
            }
            Effect::Installed => {
                tracing::info!(uuid = %self.core.key.uuid, luid = self.core.key.luid, "log state installed");
            }
            Effect::Durable(position) => self.durable = self.durable.max(position),
            Effect::CommitFailed(position) => self.fail_flushes(position),
            Effect::Answer { reply, position } => {
                let is_disk = self.disk.is_some();
                let Some(slot) =
                    self.slots.iter_mut().find(|s| matches!(s.work, Work::Op { sent: true, .. }))
                else {
                    return;
                };
                let Work::Op { op, .. } = &slot.work else { return };
                // What was answered ahead waits for nothing more.
                let waits = slot.to.is_some();
                let needs_disk = is_disk && waits && matches!(op, Op::Flush(_) | Op::Postsuspend);
                let then_leave = matches!(op, Op::Postsuspend);
                slot.work = Work::Applied { reply, position, needs_disk, then_leave };
                if then_leave {
                    self.active = false;
                }
            }
        }
    }
}

/// Multicasts `bytes`; false if it must be tried again later (flow control, or a failure
/// that the loss of the group will soon explain).
fn multicast(group: &CpgGroup, bytes: &[u8], key: &LogKey) -> bool {
    match group.send(bytes) {
        Ok(Sent::Queued) => true,
        Ok(Sent::TryAgain) => false,
        Err(error) => {
            tracing::warn!(uuid = %key.uuid, luid = key.luid, ?error, "multicast failed; retrying");
            false
        }
    }
}

impl StreamHandler<GroupEvent> for ClusterLogActor {
    fn handle(&mut self, event: GroupEvent, ctx: &mut Context<Self>) {
        self.on_event(event, ctx);
    }

    /// The stream of a group this member left ends here; the actor goes on.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl ServesLog for ClusterLogActor {
    fn tally(&self) -> Tally {
        let state = self.replica.as_ref().and_then(Replica::state);
        Tally {
            in_sync: state.map_or(0, ClusterState::sync_count),
            dirty: state.map_or(0, |s| s.dirty().len()),
            recovering: state.map_or(0, ClusterState::recovering_count),
        }
    }

    fn cluster_status(&self) -> Option<ClusterStatus> {
        let replica = self.replica.as_ref();
        Some(ClusterStatus {
            members: replica.map_or(0, |r| r.members().len() as u32),
            holds_state: replica.and_then(Replica::state).is_some(),
            writer: self.disk.is_some() && replica.is_some_and(|r| r.writer() == Some(r.me())),
            multicasts: self.multicasts,
            view_changes: self.view_changes,
            transfer_sent_bytes: self.transfer_sent_bytes,
            transfer_received_bytes: self.transfer_received_bytes,
            held_inquorate: if self.quorum.is_quorate() {
                0
            } else {
                self.slots.iter().filter(|slot| slot.to.is_some()).count() as u64
            },
        })
    }

    fn request(&mut self, request: Request, to: ReplyTo, ctx: &mut Context<Self>) {
        match &request {
            Request::Ctr { .. } => self.construct(to, ctx),
            Request::Dtr => {
                tracing::info!(uuid = %self.core.key.uuid, luid = self.core.key.luid, "log destroyed");
                self.leave(ctx, true);
                self.core.respond(&to, Ok(ReplyPayload::Empty));
                ctx.stop();
            }
            Request::Presuspend => self.core.respond(&to, Ok(ReplyPayload::Empty)),
            Request::GetRegionSize => {
                let size = u64::from(self.core.args.region_size.sectors());
                self.core.respond(&to, Ok(ReplyPayload::Count(size)));
            }
            _ => {
                if matches!(request, Request::Resume) {
                    self.active = true;
                }
                match work_of(&request) {
                    Some(work) => self.queue(to, work, ctx),
                    None => self.core.respond(&to, Err(Errno::EINVAL)),
                }
            }
        }
    }

    /// The daemon stops: the group carries on without this member, which the others see
    /// leave; nothing here needs committing (the writer's device is always committed). Its
    /// state is the group's and its membership ends here, so the log is not carried to a
    /// next daemon: the kernel's reconnect rejoins it ([`crate::handover`]).
    fn shutdown(&mut self, done: oneshot::Sender<Option<CarriedLog>>, ctx: &mut Context<Self>) {
        self.core.quiet = true;
        self.leave(ctx, false);
        let _ = done.send(None);
        ctx.stop();
    }
}

serve_log!(ClusterLogActor, core);
