//! The log device of a clustered-disk log, as the clustered log actor handles it.
//!
//! Every member opens the device and reads it at CTR (and again before it rejoins its group):
//! should it start the group's state, it starts from what the device says. Only the group's
//! writer, the lowest member holding the state, writes it. After applying a FLUSH from anyone
//! the writer commits the changed blocks, then multicasts how far the device is durable; a
//! FLUSH is answered only then, and fails with EIO everywhere if the write failed. When the
//! writer goes, the next one writes the whole image before saying anything is durable.

use std::sync::Arc;

use actix::prelude::*;
use roaring::RoaringBitmap;

use super::{ClusterLogActor, Work};
use crate::cluster::message::Message;
use crate::flusher::{Flusher, Writing};
use crate::region::LogKind;
use crate::reply_to::ReplyTo;
use crate::store::{Claim, DeviceError, Layout, LogDevice};
use crate::wire::{Errno, ReplyPayload};

/// The log device side of a clustered-disk log.
pub(super) struct Disk {
    pub(super) flusher: Flusher,
    pub(super) layout: Layout,
    pub(super) status_name: String,
    /// Keeps other mirrors off this device while the log lives.
    _claim: Claim,
    pub(super) failed: bool,
    /// What the device holds as not clean, as far as this member wrote it; `None` until this
    /// member has written the whole image.
    pub(super) on_disk: Option<RoaringBitmap>,
    pub(super) committing: bool,
    /// A FLUSH (or a change of writer) asks for a commit.
    pub(super) wanted: bool,
    /// Set on leaving the group: what the device holds now is read before joining again.
    pub(super) read_before_join: bool,
    pub(super) reading: bool,
}

impl Disk {
    /// The health letter of the status line (dm-log.c): D once the device failed, else A.
    pub(super) fn health(&self) -> char {
        if self.failed {
            'D'
        } else {
            'A'
        }
    }
}

impl ClusterLogActor {
    /// CTR: the replica starts from all regions out of sync (core), or from the log device.
    pub(super) fn construct(&mut self, to: ReplyTo, ctx: &mut Context<Self>) {
        let LogKind::Disk { device } = &self.args.kind else {
            self.fresh = self.args.initial_out_of_sync();
            tracing::info!(uuid = %self.key.uuid, luid = self.key.luid, args = %self.args, "clustered log created");
            return self.respond(&to, Ok(ReplyPayload::Empty));
        };
        let (name, count, sync) = (device.clone(), self.args.region_count(), self.args.sync);
        let (claims, uuid) = (self.claims.clone(), self.key.uuid.clone());
        let open = tokio::task::spawn_blocking(move || {
            let (device, claim) = LogDevice::open_for_log(&name, count, &claims, &uuid)?;
            let loaded = device.load(count, sync)?;
            Ok::<_, DeviceError>((Flusher::start(Arc::new(device))?, claim, loaded))
        });
        ctx.wait(open.into_actor(self).map(move |opened, act, ctx| {
            let opened = opened.unwrap_or_else(|_| {
                Err(DeviceError::NotADevice { name: "(open task panicked)".into() })
            });
            match opened {
                Ok((flusher, claim, loaded)) => {
                    let device = flusher.device();
                    let name = device.name().to_owned();
                    act.disk = Some(Disk {
                        layout: Layout {
                            count,
                            block_size: device.block_size(),
                            header_block: loaded.header_block,
                        },
                        status_name: device.status_name(),
                        flusher,
                        _claim: claim,
                        failed: loaded.incompatible,
                        on_disk: None,
                        committing: false,
                        wanted: false,
                        read_before_join: false,
                        reading: false,
                    });
                    act.fresh = loaded.dirty;
                    // A CTR refused on its way out (a name too long) leaves nothing behind.
                    if !act.respond_ok(&to, Ok(ReplyPayload::DeviceName(name))) {
                        return ctx.stop();
                    }
                    tracing::info!(uuid = %act.key.uuid, luid = act.key.luid, args = %act.args, "clustered log created");
                }
                Err(error) => {
                    tracing::warn!(uuid = %act.key.uuid, luid = act.key.luid, %error, "log not created");
                    act.respond(&to, Err(error.errno()));
                    ctx.stop();
                }
            }
        }));
    }

    /// Reads the log device into what the state would start from, then tries to join.
    pub(super) fn read_device(&mut self, ctx: &mut Context<Self>) {
        let Some(disk) = &self.disk else { return };
        let load = disk.flusher.load(self.args.region_count(), self.args.sync);
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
                _ => tracing::warn!(uuid = %act.key.uuid, luid = act.key.luid, "log device unreadable; not joining yet"),
            }
            act.pump(ctx);
        }));
    }

    /// The writer commits what FLUSHes asked for; everyone else waits to be told.
    pub(super) fn maybe_commit(&mut self, ctx: &mut Context<Self>) {
        let Some(replica) = &self.replica else { return };
        let (Some(state), Some(disk)) = (replica.state(), self.disk.as_mut()) else { return };
        if replica.writer() != Some(replica.me()) || disk.committing || !disk.wanted {
            return;
        }
        disk.wanted = false;
        disk.committing = true;
        let unclean = state.unclean();
        let position = state.applied();
        let writing = match &disk.on_disk {
            Some(on_disk) => {
                Writing::Blocks(disk.layout.render_touched(&(on_disk ^ &unclean), &[&unclean]))
            }
            None => Writing::Whole { layout: disk.layout.clone(), unclean: vec![unclean.clone()] },
        };
        let write = disk.flusher.write(writing);
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            let Some(disk) = act.disk.as_mut() else { return };
            disk.committing = false;
            match result {
                Ok(()) => {
                    disk.on_disk = Some(unclean);
                    act.durable = act.durable.max(position);
                    if act.replica.as_ref().is_some_and(|r| r.members().len() > 1) {
                        act.outbox.push_back(Message::Durable(position).encode());
                    }
                }
                Err(error) => {
                    tracing::error!(uuid = %act.key.uuid, luid = act.key.luid, %error, "log device failed");
                    disk.failed = true;
                    disk.on_disk = None;
                    act.last_error = Some(error.to_string());
                    act.fail_flushes(position);
                    act.outbox.push_back(Message::CommitFailed(position).encode());
                }
            }
            act.pump(ctx);
        }));
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
