//! The log actor: one per log instance, spawned on CTR and stopped on DTR.
//!
//! It owns the log's [`RegionLog`] and applies the log's requests one at a time in arrival
//! order; logs never wait for each other. A disk log also owns a [`Flusher`] (its I/O
//! thread) and does group commit: a FLUSH (or POSTSUSPEND, or DTR) is answered once
//! everything received before it is durable, and all the FLUSHes that arrive while a write is
//! in flight are answered together by the next write. A durable commit's FLUSHes are answered
//! from the I/O thread; a failed one hands its waiters back to the actor.
//!
//! With a state directory it also keeps the log's [`Shadow`]: each change of the sync state
//! is journaled before the reply that makes the kernel rely on it, and a CTR by which the
//! kernel reconnects takes the shadow back.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use roaring::RoaringBitmap;
use tokio::sync::oneshot;

use crate::flusher::Flusher;
use crate::metrics::Metrics;
use crate::region::{LogArgs, LogKind, RegionLog};
use crate::registry::Registry;
use crate::reply_to::ReplyTo;
use crate::shadow::Shadow;
use crate::status::LogStatus;
use crate::store::format::{self, image_size};
use crate::store::{DeviceError, Layout, LogDevice};
use crate::transport::{Peer, ReplySink};
use crate::wire::{Errno, LogKey, Reply, ReplyPayload, Request, RequestHeader};

mod shadowing;

/// A decoded request for this log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LogRequest {
    pub header: RequestHeader,
    pub request: Request,
    pub peer: Peer,
    /// When the datagram was taken from the transport, for the latency metrics.
    pub received: Instant,
}

/// Commit what is pending, then stop; the sender is told when that is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown(pub oneshot::Sender<()>);

/// A newer CTR took this log's key: stop at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Someone waiting for a commit to be durable.
enum Waiter {
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
                to.send(&self.sink, &self.metrics, &self.key, &Ok(ReplyPayload::Empty));
            }
            Waiter::Shutdown(done) => drop(done.send(())),
        }
    }
}

/// What the I/O thread hands back when a commit is over: how long it took and, if it
/// failed, why and who still waits for an answer.
struct Committed {
    took: Duration,
    failed: Option<(DeviceError, Vec<Waiter>)>,
}

/// The health letter of a disk log's status line (dm-log.c: A, D, F).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Alive,
    /// A read or write of the log device failed.
    Failed,
    /// Making a write durable failed.
    FlushFailed,
}

impl Health {
    fn letter(self) -> char {
        match self {
            Health::Alive => 'A',
            Health::Failed => 'D',
            Health::FlushFailed => 'F',
        }
    }
}

/// A disk log's device side.
struct DiskLog {
    flusher: Flusher,
    layout: Layout,
    status_name: String,
    health: Health,
    /// The regions of the commit being written (its waiters went with it).
    in_flight: Option<RoaringBitmap>,
    /// Who waits for the next commit.
    queued: Vec<Waiter>,
    /// How long the last commits took, newest last, for the status report.
    commit_times: VecDeque<Duration>,
}

/// How many commit times the status report's percentiles are taken over.
const COMMIT_TIMES_KEPT: usize = 512;

pub struct LogActor {
    key: LogKey,
    generation: u64,
    args: LogArgs,
    /// The CTR string as the shadow names its owner, rendered once: the journal's hot path
    /// needs it whenever it compacts.
    ctr: String,
    region: RegionLog,
    disk: Option<DiskLog>,
    /// The log's state kept for the next daemon, if there is a state directory and writing
    /// it has not failed.
    shadow: Option<Shadow>,
    /// A reconnect's CTR took the shadow back: the next RESUME keeps its sync state, and its
    /// recovering set (the kernel may be copying those regions right now).
    restored: bool,
    /// DTR or shutdown: stop once nothing is left to commit.
    closing: bool,
    /// The last refusal or failure, for the status report.
    last_error: Option<String>,
    sink: ReplySink,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

impl LogActor {
    pub fn new(
        key: LogKey,
        args: LogArgs,
        generation: u64,
        state_dir: Option<&Path>,
        sink: ReplySink,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> LogActor {
        let mut region = RegionLog::new(&args);
        let shadow = state_dir.map(|dir| Shadow::new(dir, &key));
        region.report_changes(shadow.is_some());
        LogActor {
            key,
            generation,
            ctr: args.to_string(),
            args,
            region,
            disk: None,
            shadow,
            restored: false,
            closing: false,
            last_error: None,
            sink,
            registry,
            metrics,
        }
    }

    fn respond(&mut self, to: &ReplyTo, reply: Reply) {
        if let Some(error) = to.send(&self.sink, &self.metrics, &self.key, &reply) {
            self.last_error = Some(error);
        }
    }

    fn release(&mut self, waiter: Waiter, reply: Reply) {
        match waiter {
            Waiter::Kernel(to) => self.respond(&to, reply),
            Waiter::Shutdown(done) => drop(done.send(())),
        }
    }

    /// CTR: a core log is ready at once; a disk log first opens its device.
    fn construct(&mut self, to: ReplyTo, reconnect: bool, ctx: &mut Context<Self>) {
        self.take_back_shadow(reconnect);
        let LogKind::Disk { device } = &self.args.kind else {
            tracing::info!(uuid = %self.key.uuid, luid = self.key.luid, args = %self.args, "log created");
            return self.respond(&to, Ok(ReplyPayload::Empty));
        };
        let (name, count) = (device.clone(), self.args.region_count());
        let open = tokio::task::spawn_blocking(move || {
            let device = LogDevice::open(&name)?;
            device.check_size(image_size(count, device.block_size()))?;
            Flusher::start(Arc::new(device))
        });
        ctx.wait(open.into_actor(self).map(move |opened, act, ctx| {
            let opened = opened.unwrap_or_else(|_| {
                Err(DeviceError::NotADevice { name: "(open task panicked)".into() })
            });
            match opened {
                Ok(flusher) => {
                    let device = flusher.device();
                    let name = device.name().to_owned();
                    act.disk = Some(DiskLog {
                        layout: Layout {
                            count,
                            block_size: device.block_size(),
                            header_block: format::load(&[], count, act.args.sync).header_block,
                        },
                        status_name: device.status_name(),
                        flusher,
                        health: Health::Alive,
                        in_flight: None,
                        queued: Vec::new(),
                        commit_times: VecDeque::new(),
                    });
                    tracing::info!(uuid = %act.key.uuid, luid = act.key.luid, args = %act.args, "log created");
                    // The kernel holds the named device as a dependency of the table.
                    act.respond(&to, Ok(ReplyPayload::DeviceName(name)));
                }
                Err(error) => {
                    tracing::warn!(uuid = %act.key.uuid, luid = act.key.luid, %error, "log not created");
                    act.respond(&to, Err(error.errno()));
                    ctx.stop();
                }
            }
        }));
    }

    /// RESUME of a disk log: load the image as `disk_resume` does and write it back whole.
    fn resume_disk(&mut self, to: ReplyTo, ctx: &mut Context<Self>) {
        let Some(disk) = &self.disk else { return };
        let read = disk.flusher.read_image(image_size(disk.layout.count, disk.layout.block_size));
        ctx.wait(read.into_actor(self).map(move |read, act, ctx| {
            let uuid = act.key.uuid.clone();
            let Some(disk) = act.disk.as_mut() else { return };
            let image = match read {
                Ok(image) => image,
                Err(error) => {
                    tracing::error!(%uuid, luid = act.key.luid, %error, "log device unreadable; every region will be resynced");
                    disk.health = Health::Failed;
                    Vec::new()
                }
            };
            let loaded = format::load(&image, disk.layout.count, act.args.sync);
            if loaded.incompatible {
                tracing::error!(%uuid, luid = act.key.luid, "incompatible disk log version; every region will be resynced");
                disk.health = Health::Failed;
            }
            disk.layout.header_block = loaded.header_block;
            if std::mem::take(&mut act.restored) {
                act.region.resume_restored();
            } else {
                act.region.resume_with(loaded.dirty);
                act.region.forget_recovering();
            }
            act.save_shadow();
            let Some(disk) = act.disk.as_mut() else { return };
            tracing::info!(%uuid, luid = act.key.luid, dirty = act.region.dirty_count(), in_sync = act.region.sync_count(), "log resumed");
            let write = disk.flusher.write(disk.layout.render_all(&act.region.unclean()));
            ctx.wait(write.into_actor(act).map(move |written, act, _| {
                let reply = act.commit_result(written);
                act.respond(&to, reply);
            }));
        }));
    }

    /// Queues a waiter for the next commit, and starts one if none is in flight.
    fn commit(&mut self, waiter: Waiter, ctx: &mut Context<Self>) {
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
        let waiters = std::mem::take(&mut disk.queued);
        let touched = self.region.take_touched();
        if touched.is_empty() {
            // Nothing changed since the last durable commit.
            for waiter in waiters {
                self.release(waiter, Ok(ReplyPayload::Empty));
            }
            return self.stop_if_closing(ctx);
        }
        let commit = disk.layout.render_touched(&touched, &self.region.unclean());
        let started = Instant::now();
        disk.in_flight = Some(touched);
        let answerer = Answerer {
            sink: self.sink.clone(),
            metrics: self.metrics.clone(),
            key: self.key.clone(),
        };
        let (done, committed) = oneshot::channel();
        disk.flusher.write_then(commit, move |written| {
            let took = started.elapsed();
            // Counted first, so that whoever has a reply finds its commit counted.
            answerer.metrics.committed(took);
            let failed = match written {
                Ok(()) => {
                    waiters.into_iter().for_each(|waiter| answerer.durable(waiter));
                    None
                }
                Err(error) => Some((error, waiters)),
            };
            let _ = done.send(Committed { took, failed });
        });
        ctx.spawn(committed.into_actor(self).map(|committed, act, ctx| {
            // The I/O thread ends only with this actor's Flusher, so it always answers.
            if let Ok(committed) = committed {
                act.commit_done(committed, ctx);
            }
        }));
    }

    fn commit_done(&mut self, Committed { took, failed }: Committed, ctx: &mut Context<Self>) {
        let Some(disk) = self.disk.as_mut() else { return };
        let Some(touched) = disk.in_flight.take() else { return };
        if disk.commit_times.len() == COMMIT_TIMES_KEPT {
            disk.commit_times.pop_front();
        }
        disk.commit_times.push_back(took);
        if let Some((error, waiters)) = failed {
            self.region.restore_touched(touched);
            let reply = self.commit_result(Err(error));
            for waiter in waiters {
                self.release(waiter, reply.clone());
            }
        }
        match self.disk.as_ref() {
            Some(disk) if !disk.queued.is_empty() => self.start_commit(ctx),
            _ => self.stop_if_closing(ctx),
        }
    }

    /// Records a device failure in the log's health and turns it into the reply.
    fn commit_result(&mut self, result: Result<(), DeviceError>) -> Reply {
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

    fn stop_if_closing(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            ctx.stop();
        }
    }

    fn status_info(&self) -> String {
        let device = self.disk.as_ref().map(|d| (d.status_name.as_str(), d.health.letter()));
        self.args.status_info(device)
    }
}

impl LogActor {
    fn describe(&self) -> LogStatus {
        let (device, health, commit_times) = match &self.disk {
            Some(disk) => (
                Some(disk.status_name.clone()),
                Some(disk.health.letter()),
                Some(&disk.commit_times),
            ),
            None => (None, None, None),
        };
        let percentile = |q: f64| {
            let mut times: Vec<Duration> = commit_times?.iter().copied().collect();
            times.sort_unstable();
            let last = times.len().checked_sub(1)?;
            Some(times[(last as f64 * q).round() as usize].as_secs_f64() * 1e6)
        };
        LogStatus {
            uuid: self.key.uuid.to_string(),
            luid: self.key.luid,
            log_type: self.args.type_name().to_owned(),
            region_size: self.region.region_size().sectors(),
            regions: self.region.region_count().0,
            in_sync: self.region.sync_count(),
            dirty: self.region.dirty_count(),
            recovering: self.region.recovering_count(),
            device,
            health,
            flush_p50_us: percentile(0.5),
            flush_p99_us: percentile(0.99),
            last_error: self.last_error.clone(),
            cluster: None,
        }
    }
}

impl Actor for LogActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.registry.remove_generation(&self.key, self.generation);
        tracing::info!(uuid = %self.key.uuid, luid = self.key.luid, "log stopped");
    }
}

impl Handler<LogRequest> for LogActor {
    type Result = ();

    fn handle(&mut self, msg: LogRequest, ctx: &mut Context<Self>) {
        let LogRequest { header, request, peer, received } = msg;
        let to = ReplyTo::new(header, peer, &request, received);
        let is_disk = self.disk.is_some();
        match &request {
            Request::Ctr { reconnect, .. } => self.construct(to, *reconnect, ctx),
            Request::Dtr => {
                self.closing = true;
                self.drop_shadow();
                tracing::info!(uuid = %self.key.uuid, luid = self.key.luid, "log destroyed");
                self.commit(Waiter::Kernel(to), ctx);
            }
            Request::StatusInfo => self.respond(&to, Ok(ReplyPayload::Status(self.status_info()))),
            Request::StatusTable => {
                self.respond(&to, Ok(ReplyPayload::Status(self.args.status_table())))
            }
            Request::Resume if is_disk => self.resume_disk(to, ctx),
            Request::Flush(_) | Request::Postsuspend if is_disk => {
                let answer = self.region.answer(&request);
                self.journal();
                match answer {
                    Some(Ok(_)) => self.commit(Waiter::Kernel(to), ctx),
                    Some(Err(errno)) => self.respond(&to, Err(errno)),
                    None => self.respond(&to, Err(Errno::EINVAL)),
                }
            }
            Request::Resume => {
                let reply = self.region.answer(&request).unwrap_or(Err(Errno::EINVAL));
                if !std::mem::take(&mut self.restored) {
                    self.region.forget_recovering();
                }
                self.save_shadow();
                self.respond(&to, reply);
            }
            _ => {
                let reply = self.region.answer(&request).unwrap_or(Err(Errno::EINVAL));
                self.journal();
                self.respond(&to, reply);
            }
        }
    }
}

impl Handler<Shutdown> for LogActor {
    type Result = ();

    fn handle(&mut self, Shutdown(done): Shutdown, ctx: &mut Context<Self>) {
        self.closing = true;
        self.commit(Waiter::Shutdown(done), ctx);
    }
}

/// Report this log's state.
#[derive(Message)]
#[rtype(result = "LogStatus")]
pub struct Describe;

impl Handler<Describe> for LogActor {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.describe())
    }
}

impl Handler<Retire> for LogActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        tracing::info!(uuid = %self.key.uuid, luid = self.key.luid, "log replaced by a new CTR");
        ctx.stop();
    }
}
