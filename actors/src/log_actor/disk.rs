//! A disk log's device side: its health, resume (the image loaded and written back whole
//! on the I/O thread) and group commit. A FLUSH (or POSTSUSPEND, or DTR) is answered once
//! everything received before it is durable; the FLUSHes that arrive while a write is in
//! flight are answered together by the next write. A durable commit's FLUSHes are answered
//! from the I/O thread; a failed one hands its waiters back to the actor, and leaves the
//! device stale: the next commit rewrites the whole image, header included.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::LogActor;
use crate::flusher::{Flusher, Writing};
use crate::metrics::Metrics;
use crate::region::SyncMode;
use crate::reply_to::ReplyTo;
use crate::store::format::{self, Header};
use crate::store::{Claim, DeviceError, Layout};
use crate::transport::ReplySink;
use crate::units::RegionCount;
use crate::wire::{Errno, LogKey, Reply, ReplyPayload};

/// Someone waiting for a commit to be durable.
pub(super) enum Waiter {
    Kernel(ReplyTo),
    Shutdown(oneshot::Sender<()>),
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
            Waiter::Shutdown(done) => drop(done.send(())),
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

/// The health letter of a disk log's status line (dm-log.c: A, D, F).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    Alive,
    /// A read or write of the log device failed.
    Failed,
    /// Making a write durable failed.
    FlushFailed,
}

impl Health {
    pub(super) fn letter(self) -> char {
        match self {
            Health::Alive => 'A',
            Health::Failed => 'D',
            Health::FlushFailed => 'F',
        }
    }
}

/// A disk log's device side.
pub(super) struct DiskLog {
    flusher: Flusher,
    layout: Layout,
    pub(super) status_name: String,
    /// Keeps other mirrors off this device while the log lives.
    _claim: Claim,
    pub(super) health: Health,
    /// A write failed, so the device may hold anything where it was to write: the next commit
    /// rewrites the whole image, header included, and only then is the device `A` again.
    stale: bool,
    /// The commit being written (its waiters went with it).
    in_flight: Option<Extent>,
    /// Who waits for the next commit.
    queued: Vec<Waiter>,
    /// How long the last commits took, newest last, for the status report.
    pub(super) commit_times: VecDeque<Duration>,
}

/// What a commit on its way to the device writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// The blocks of the regions touched since the last commit.
    Touched,
    /// The whole image, repairing a stale device.
    Whole,
}

/// How many commit times the status report's percentiles are taken over.
pub(super) const COMMIT_TIMES_KEPT: usize = 512;

impl DiskLog {
    /// The device side of a log of `count` regions, opened, before its first resume.
    pub(super) fn new(flusher: Flusher, claim: Claim, count: RegionCount) -> DiskLog {
        let device = flusher.device();
        DiskLog {
            layout: Layout {
                count,
                block_size: device.block_size(),
                header_block: Header::fresh_block(count),
            },
            status_name: device.status_name(),
            _claim: claim,
            flusher,
            health: Health::Alive,
            stale: false,
            in_flight: None,
            queued: Vec::new(),
            commit_times: VecDeque::new(),
        }
    }
}

impl LogActor {
    /// RESUME of a disk log: load the image as `disk_resume` does and write it back whole,
    /// both on the log's I/O thread (they take time with the log's size).
    pub(super) fn resume_disk(&mut self, to: ReplyTo, ctx: &mut Context<Self>) {
        let Some(disk) = &self.disk else { return };
        // A reconnect's RESUME reads what the last daemon wrote for this very table,
        // whatever its sync mode: `sync` and `nosync` speak of a table's first resume.
        let restored = std::mem::take(&mut self.restored);
        let sync = if restored { SyncMode::Default } else { self.args.sync };
        let load = disk.flusher.load(disk.layout.count, sync);
        ctx.wait(load.into_actor(self).map(move |loaded, act, ctx| {
            let (uuid, luid) = (act.key.uuid.clone(), act.key.luid);
            let Some(disk) = act.disk.as_mut() else { return };
            // This resume decides the device's health afresh: a device that failed before and
            // reads and writes now is alive again.
            let mut health = Health::Alive;
            let loaded = loaded.unwrap_or_else(|error| {
                tracing::error!(%uuid, luid, %error, "log device unreadable; every region will be resynced");
                health = Health::Failed;
                format::load(&[], disk.layout.count, sync)
            });
            if loaded.incompatible {
                tracing::error!(%uuid, luid, "incompatible disk log version; every region will be resynced");
                health = Health::Failed;
            }
            disk.layout.header_block = loaded.header_block;
            if restored {
                act.region.resume_restored(&loaded.dirty);
            } else {
                act.region.resume_with(loaded.dirty);
                act.region.forget_recovering();
            }
            act.save_shadow();
            tracing::info!(%uuid, luid, dirty = act.region.dirty_count(), in_sync = act.region.sync_count(), "log resumed");
            let (Some(whole), Some(disk)) = (act.whole_image(), act.disk.as_ref()) else { return };
            ctx.wait(disk.flusher.write(whole).into_actor(act).map(move |written, act, _| {
                if let Some(disk) = act.disk.as_mut() {
                    disk.stale = written.is_err();
                    disk.health = health;
                }
                let reply = act.commit_result(written);
                act.respond(&to, reply);
            }));
        }));
    }

    /// The whole image as it should be now, for the I/O thread to render and write.
    fn whole_image(&self) -> Option<Writing> {
        let disk = self.disk.as_ref()?;
        let unclean = self.region.unclean().map(Clone::clone).to_vec();
        Some(Writing::Whole { layout: disk.layout.clone(), unclean })
    }

    /// Queues a waiter for the next commit, and starts one if none is in flight.
    pub(super) fn commit(&mut self, waiter: Waiter, ctx: &mut Context<Self>) {
        let Some(disk) = self.disk.as_mut() else {
            self.release(waiter, Ok(ReplyPayload::Empty));
            return self.stop_if_closing(ctx);
        };
        disk.queued.push(waiter);
        if disk.in_flight.is_none() {
            self.start_commit(ctx);
        }
    }

    fn start_commit(&mut self, ctx: &mut Context<Self>) {
        let Some(disk) = self.disk.as_mut() else { return };
        let (waiters, stale) = (std::mem::take(&mut disk.queued), disk.stale);
        let touched = self.region.take_touched();
        if touched.is_empty() && !stale {
            // Everything the log holds is durable already.
            for waiter in waiters {
                self.release(waiter, Ok(ReplyPayload::Empty));
            }
            return self.stop_if_closing(ctx);
        }
        let (writing, extent) = match (stale, self.whole_image(), &self.disk) {
            (true, Some(whole), _) => (whole, Extent::Whole),
            (_, _, Some(disk)) => {
                let blocks = disk.layout.render_touched(&touched, &self.region.unclean());
                (Writing::Blocks(blocks), Extent::Touched)
            }
            _ => return,
        };
        let Some(disk) = self.disk.as_mut() else { return };
        let started = Instant::now();
        disk.in_flight = Some(extent);
        let answerer = Answerer {
            sink: self.sink.clone(),
            metrics: self.metrics.clone(),
            key: self.key.clone(),
        };
        let (done, committed) = oneshot::channel();
        disk.flusher.write_then(writing, move |written| {
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
        let Some(disk) = self.disk.as_mut() else { return };
        let Some(extent) = disk.in_flight.take() else { return };
        if disk.commit_times.len() == COMMIT_TIMES_KEPT {
            disk.commit_times.pop_front();
        }
        disk.commit_times.push_back(took);
        match &written {
            // What the failed write left on the device is unknown, the blocks it wrote for
            // regions touched since included.
            Err(_) => disk.stale = true,
            Ok(()) if extent == Extent::Whole => {
                disk.stale = false;
                disk.health = Health::Alive;
            }
            Ok(()) => {}
        }
        let reply = self.commit_result(written);
        for waiter in waiting {
            self.release(waiter, reply.clone());
        }
        match self.disk.as_ref() {
            Some(disk) if !disk.queued.is_empty() => self.start_commit(ctx),
            _ => self.stop_if_closing(ctx),
        }
    }

    /// Records a device failure in the log's health and turns it into the reply.
    pub(super) fn commit_result(&mut self, result: Result<(), DeviceError>) -> Reply {
        let Err(error) = result else { return Ok(ReplyPayload::Empty) };
        if let Some(disk) = self.disk.as_mut() {
            disk.health = match error {
                DeviceError::Flush { .. } => Health::FlushFailed,
                _ => Health::Failed,
            };
        }
        tracing::error!(uuid = %self.key.uuid, luid = self.key.luid, %error, "log device failed");
        self.last_error = Some(error.to_string());
        // Whatever the cause, the kernel's disk log reports a failed log write as EIO.
        Err(Errno::EIO)
    }
}
