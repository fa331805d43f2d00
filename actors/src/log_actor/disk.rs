//! A single-host disk log's device side: resume (the image loaded and written back whole on
//! the I/O thread) and group commit, by the [`Committer`]'s rules. A POSTSUSPEND or DTR is
//! answered once everything received before it is durable, a FLUSH once every change
//! towards unclean is (one that owes nothing is answered at once, its clears committed
//! behind it); the FLUSHes that arrive while a write is in flight are answered together by
//! the next write. A durable
//! commit's FLUSHes are answered from the I/O thread; a failed one hands its waiters back
//! to the actor, and leaves the device stale: the next commit rewrites the whole image.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::LogActor;
use crate::handover::CarriedLog;
use crate::log_core::lifecycle;
use crate::metrics::Metrics;
use crate::region::{ResumeFrom, SyncMode};
use crate::reply_to::ReplyTo;
use crate::store::format::{self, Header};
use crate::store::COMMIT_BEHIND_DELAY;
use crate::store::{Claim, Committer, DeviceError, Extent, Flusher, Health, Layout};
use crate::transport::ReplySink;
use crate::units::RegionCount;
use crate::wire::{LogKey, Reply, ReplyPayload};

/// Someone waiting for a commit to be durable.
pub(super) enum Waiter {
    Kernel(ReplyTo),
    /// The engine's shutdown, and what the log hands the next daemon.
    Shutdown(oneshot::Sender<Option<CarriedLog>>, Option<CarriedLog>),
}

/// What a commit's I/O thread needs to answer its waiters once the commit is durable.
struct Answerer {
    sink: ReplySink,
    metrics: Arc<Metrics>,
    key: LogKey,
}

impl Answerer {
    fn durable(&self, waiter: Waiter) {
        match waiter {
            Waiter::Kernel(to) => {
                // An empty reply always fits.
                let _ = to.send(&self.sink, &self.metrics, &self.key, &Ok(ReplyPayload::Empty));
            }
            Waiter::Shutdown(done, carried) => drop(done.send(carried)),
        }
    }
}

/// What the I/O thread hands back when a commit is over: how long it took, how it went, and
/// who still waits for an answer (everyone, if it failed or repaired a stale device).
struct Committed {
    took: Duration,
    written: Result<(), DeviceError>,
    waiting: Vec<Waiter>,
}

/// The device side of a log of `count` regions, opened, before its first resume.
pub(super) fn committer(flusher: Flusher, claim: Claim, count: RegionCount) -> Committer {
    let block_size = flusher.device().block_size();
    let layout = Layout { count, block_size, header_block: Header::fresh_block(count) };
    Committer::new(flusher, claim, layout, false)
}

impl LogActor {
    fn release(&mut self, waiter: Waiter, reply: Reply) {
        match waiter {
            Waiter::Kernel(to) => self.core.respond(&to, reply),
            Waiter::Shutdown(done, carried) => drop(done.send(carried)),
        }
    }

    /// RESUME of a disk log: load the image as `disk_resume` does and write it back whole,
    /// both on the log's I/O thread (they take time with the log's size).
    pub(super) fn resume_disk(&mut self, to: ReplyTo, ctx: &mut Context<Self>) {
        let Some(device) = &self.core.device else { return };
        // A reconnect's RESUME reads what the last daemon wrote for this very table,
        // whatever its sync mode: `sync` and `nosync` speak of a table's first resume.
        let restored = std::mem::take(&mut self.restored);
        let sync = if restored { SyncMode::Default } else { self.core.args.sync };
        let count = device.layout().count;
        let load = device.flusher().load(count, sync);
        ctx.wait(load.into_actor(self).map(move |loaded, act, ctx| {
            let (uuid, luid) = (act.core.key.uuid.clone(), act.core.key.luid);
            // This resume decides the device's health afresh: a device that failed before and
            // reads and writes now is alive again.
            let mut health = Health::Alive;
            let loaded = loaded.unwrap_or_else(|error| {
                tracing::error!(%uuid, luid, %error, "log device unreadable; every region will be resynced");
                health = Health::Failed;
                format::load(&[], count, sync)
            });
            if loaded.incompatible {
                tracing::error!(%uuid, luid, "incompatible disk log version; every region will be resynced");
                health = Health::Failed;
            }
            let from = if restored {
                ResumeFrom::Reconnect { device: Some(&loaded.dirty) }
            } else {
                ResumeFrom::Real { loaded: Some(loaded.dirty) }
            };
            act.region.resume(from);
            act.save_shadow();
            lifecycle!(act.core.quiet, %uuid, luid, dirty = act.region.dirty_count(), in_sync = act.region.sync_count(), "log resumed");
            let Some(device) = act.core.device.as_mut() else { return };
            device.keep_header(loaded.header_block);
            let whole = device.whole(&act.region.unclean());
            let write = device.flusher().write(whole);
            ctx.wait(write.into_actor(act).map(move |written, act, _| {
                if let Some(device) = act.core.device.as_mut() {
                    device.resumed(health, &written);
                }
                let reply = act.commit_result(written);
                act.core.respond(&to, reply);
            }));
        }));
    }

    /// Queues a waiter for the next commit, and starts one if none is in flight.
    pub(super) fn commit(&mut self, waiter: Waiter, ctx: &mut Context<Self>) {
        let Some(device) = &self.core.device else {
            self.release(waiter, Ok(ReplyPayload::Empty));
            return self.stop_if_closing(ctx);
        };
        self.queued.push(waiter);
        if !device.is_committing() {
            self.start_commit(ctx);
        }
    }

    /// Commits what changed, with no one waiting, [`COMMIT_BEHIND_DELAY`] from now, unless a
    /// commit someone waits for takes it along first (as the next FLUSH after a mark does).
    pub(super) fn commit_behind(&mut self, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.behind_scheduled, true) {
            return;
        }
        ctx.run_later(COMMIT_BEHIND_DELAY, |act, ctx| {
            act.behind_scheduled = false;
            let Some(device) = &act.core.device else { return };
            if device.is_committing() {
                act.commit_behind(ctx);
            } else if device.has_changes_behind() {
                act.start_commit(ctx);
            }
        });
    }

    fn start_commit(&mut self, ctx: &mut Context<Self>) {
        let Some(device) = self.core.device.as_mut() else { return };
        let waiters = std::mem::take(&mut self.queued);
        if !device.has_work() {
            // Everything the log holds is durable already.
            for waiter in waiters {
                self.release(waiter, Ok(ReplyPayload::Empty));
            }
            return self.stop_if_closing(ctx);
        }
        let (writing, extent) = device.begin(&self.region.unclean());
        let started = Instant::now();
        let (done, committed) = oneshot::channel();
        let answerer = Answerer {
            sink: self.core.sink().clone(),
            metrics: self.core.metrics().clone(),
            key: self.core.key.clone(),
        };
        let Some(device) = &self.core.device else { return };
        device.flusher().write_then(writing, move |written| {
            let took = started.elapsed();
            // Counted first, so that whoever has a reply finds its commit counted.
            answerer.metrics.committed(took);
            // A repair's waiters are answered by the actor, once it shows the device alive.
            let mut waiting = waiters;
            if written.is_ok() && extent == Extent::Touched {
                waiting.drain(..).for_each(|waiter| answerer.durable(waiter));
            }
            let _ = done.send(Committed { took, written, waiting });
        });
        ctx.spawn(committed.into_actor(self).map(|committed, act, ctx| {
            // The I/O thread ends only with this actor's Flusher, so it always answers.
            if let Ok(committed) = committed {
                act.commit_done(committed, ctx);
            }
        }));
    }

    fn commit_done(&mut self, committed: Committed, ctx: &mut Context<Self>) {
        let Committed { took, written, waiting } = committed;
        let Some(device) = self.core.device.as_mut() else { return };
        device.end(took, &written);
        let reply = self.commit_result(written);
        for waiter in waiting {
            self.release(waiter, reply.clone());
        }
        if self.queued.is_empty() {
            self.stop_if_closing(ctx);
        } else {
            self.start_commit(ctx);
        }
    }

    /// The reply a commit's waiters get.
    fn commit_result(&mut self, result: Result<(), DeviceError>) -> Reply {
        result.map(|()| ReplyPayload::Empty).map_err(|error| self.core.device_failed(&error))
    }
}
