//! The log device of a clustered-disk log, as the clustered log actor handles it.
//!
//! Every member opens the device and reads it at CTR (and again before it rejoins its group):
//! should it start the group's state, it starts from what the device says. Only the group's
//! writer, the lowest member holding the state, writes it, by the [`Committer`]'s rules.
//! After applying a FLUSH from anyone the writer commits the changed blocks, then multicasts
//! how far the device is durable; a FLUSH is answered only then, and fails with EIO
//! everywhere if the write failed. Clears no FLUSH waits for are committed behind, as on a
//! single-host disk log. When the writer goes, the next one writes the whole image
//! before saying anything is durable.

use std::time::Instant;

use actix::prelude::*;
use roaring::RoaringBitmap;

use super::{ClusterLogActor, Work};
use crate::cluster::message::Message;
use crate::region::LogKind;
use crate::reply_to::ReplyTo;
use crate::store::{Committer, Health, Layout, COMMIT_BEHIND_DELAY};
use crate::wire::{Errno, ReplyPayload};

/// The log device side of a clustered-disk log, beside its [`Committer`] (in the core).
pub(super) struct Disk {
    /// What the device holds as not clean, as this member last wrote it: worth building on
    /// only while the committer does not call the device stale, which it does until this
    /// member has written the whole image.
    on_disk: RoaringBitmap,
    /// A FLUSH (or a change of writer) asks for a commit.
    pub(super) wanted: bool,
    /// A commit of the changes no FLUSH waits for is scheduled ([`ClusterLogActor::commit_behind`]).
    pub(super) behind_scheduled: bool,
    /// Set on leaving the group: what the device holds now is read before joining again.
    pub(super) read_before_join: bool,
    pub(super) reading: bool,
}

impl ClusterLogActor {
    /// CTR: the replica starts from all regions out of sync (core), or from the log device.
    pub(super) fn construct(&mut self, to: ReplyTo, ctx: &mut Context<Self>) {
        let LogKind::Disk { device } = &self.core.args.kind else {
            self.fresh = self.core.args.initial_out_of_sync();
            return self.core.constructed(&to, Ok(ReplyPayload::Empty), ctx);
        };
        let (count, sync) = (self.core.args.region_count(), self.core.args.sync);
        let open = self.core.open_device(device, move |device| device.load(count, sync));
        ctx.wait(open.into_actor(self).map(move |opened, act, ctx| match opened {
            Ok((flusher, claim, loaded)) => {
                let name = flusher.device().name().to_owned();
                let block_size = flusher.device().block_size();
                let layout = Layout { count, block_size, header_block: loaded.header_block };
                let mut committer = Committer::new(flusher, claim, layout, true);
                if loaded.incompatible {
                    committer.mark_stale(Some(Health::Failed));
                }
                act.core.device = Some(committer);
                act.disk = Some(Disk {
                    on_disk: RoaringBitmap::new(),
                    wanted: false,
                    behind_scheduled: false,
                    read_before_join: false,
                    reading: false,
                });
                act.fresh = loaded.dirty;
                act.core.constructed(&to, Ok(ReplyPayload::DeviceName(name)), ctx);
            }
            Err(error) => act.core.not_constructed(&to, &error, ctx),
        }));
    }

    /// Reads the log device into what the state would start from, then tries to join.
    pub(super) fn read_device(&mut self, ctx: &mut Context<Self>) {
        let Some(device) = &self.core.device else { return };
        let load = device.flusher().load(self.core.args.region_count(), self.core.args.sync);
        ctx.spawn(load.into_actor(self).map(move |loaded, act, ctx| {
            let Some(disk) = act.disk.as_mut() else { return };
            disk.reading = false;
            match loaded {
                Ok(loaded) => {
                    disk.read_before_join = false;
                    let fresh = loaded.dirty;
                    match &mut act.replica {
                        Some(replica) => replica.detach(fresh),
                        None => act.fresh = fresh,
                    }
                }
                // Joining waits for a readable device; the retry reads again.
                _ => tracing::warn!(uuid = %act.core.key.uuid, luid = act.core.key.luid, "log device unreadable; not joining yet"),
            }
            act.pump(ctx);
        }));
    }

    /// The writer commits what FLUSHes asked for; everyone else waits to be told.
    pub(super) fn maybe_commit(&mut self, ctx: &mut Context<Self>) {
        let Some(replica) = &self.replica else { return };
        let (Some(state), Some(disk), Some(device)) =
            (replica.state(), self.disk.as_mut(), self.core.device.as_mut())
        else {
            return;
        };
        if replica.writer() != Some(replica.me()) || device.is_committing() || !disk.wanted {
            return;
        }
        disk.wanted = false;
        let unclean = state.unclean();
        let position = state.applied();
        device.changed().add(&(&disk.on_disk ^ &unclean));
        let (writing, _) = device.begin(&[&unclean]);
        let started = Instant::now();
        let write = device.flusher().write(writing);
        ctx.spawn(write.into_actor(self).map(move |written, act, ctx| {
            let (Some(disk), Some(device)) = (act.disk.as_mut(), act.core.device.as_mut()) else {
                return;
            };
            device.end(started.elapsed(), &written);
            match written {
                Ok(()) => {
                    disk.on_disk = unclean;
                    act.durable = act.durable.max(position);
                    if act.replica.as_ref().is_some_and(|r| r.members().len() > 1) {
                        act.outbox.push_back(Message::Durable(position).encode());
                    }
                }
                Err(error) => {
                    act.core.device_failed(&error);
                    act.fail_flushes(position);
                    act.outbox.push_back(Message::CommitFailed(position).encode());
                }
            }
            act.pump(ctx);
        }));
    }

    /// Clears and recoveries that no FLUSH waits for (a FLUSH that owes nothing is answered
    /// without one) reach the device by the single-host rule: with the next commit someone
    /// waits for, or [`COMMIT_BEHIND_DELAY`] after they were applied. Only the writer acts
    /// on it; [`ClusterLogActor::maybe_commit`] says so.
    pub(super) fn commit_behind(&mut self, ctx: &mut Context<Self>) {
        let Some(disk) = self.disk.as_mut() else { return };
        if std::mem::replace(&mut disk.behind_scheduled, true) {
            return;
        }
        ctx.run_later(COMMIT_BEHIND_DELAY, |act, ctx| {
            let Some(disk) = act.disk.as_mut() else { return };
            disk.behind_scheduled = false;
            disk.wanted = true;
            act.pump(ctx);
        });
    }

    /// The FLUSHes (and POSTSUSPENDs) waiting on a commit up to `position` fail, as the
    /// kernel's disk log fails them: with EIO.
    pub(super) fn fail_flushes(&mut self, position: u64) {
        for slot in &mut self.slots {
            if let Work::Applied { reply, position: p, needs_disk, .. } = &mut slot.work {
                if *needs_disk && *p <= position {
                    *reply = Err(Errno::EIO);
                    *needs_disk = false;
                }
            }
        }
    }
}
