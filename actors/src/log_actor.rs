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

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::flusher::Flusher;
use crate::log_messages::{Describe, LogRequest, Retire, Shutdown};
use crate::metrics::Metrics;
use crate::region::{LogArgs, LogKind, RegionLog};
use crate::registry::Registration;
use crate::reply_to::ReplyTo;
use crate::services::Services;
use crate::shadow::{Shadow, StateDir};
use crate::status::LogStatus;
use crate::store::{DeviceClaims, DeviceError, LogDevice};
use crate::transport::ReplySink;
use crate::wire::{Errno, LogKey, Reply, ReplyPayload, Request};

mod disk;
mod shadowing;

use disk::{DiskLog, Waiter};

/// One single-host log (`core` or `disk`): its state, its order and, for a disk log, its
/// device and group commit belong to this actor alone, so no lock stands between requests.
pub struct LogActor {
    key: LogKey,
    /// Dropped with the actor: the registry stops routing to it.
    _registration: Registration,
    args: LogArgs,
    /// The CTR string as the shadow names its owner, rendered once: the journal's hot path
    /// needs it whenever it compacts.
    ctr: String,
    region: RegionLog,
    disk: Option<DiskLog>,
    /// The log's state kept for the next daemon, if there is a state directory.
    shadow: Option<Shadow>,
    /// The last write of the shadow failed (said once, until one succeeds).
    shadow_failing: bool,
    /// A reconnect's CTR took the shadow back: the next RESUME keeps its sync state, and its
    /// recovering set (the kernel may be copying those regions right now).
    restored: bool,
    /// DTR or shutdown: stop once nothing is left to commit.
    closing: bool,
    /// The last refusal or failure, for the status report.
    last_error: Option<String>,
    sink: ReplySink,
    metrics: Arc<Metrics>,
    claims: Arc<DeviceClaims>,
}

impl LogActor {
    pub(crate) fn new(
        key: LogKey,
        args: LogArgs,
        registration: Registration,
        state_dir: Option<&Arc<StateDir>>,
        services: Services,
    ) -> LogActor {
        let Services { sink, metrics, claims, .. } = services;
        let mut region = RegionLog::new(&args);
        let shadow = state_dir.map(|dir| Shadow::new(dir.clone(), &key));
        region.report_changes(shadow.is_some());
        LogActor {
            key,
            _registration: registration,
            ctr: args.to_string(),
            args,
            region,
            disk: None,
            shadow,
            shadow_failing: false,
            restored: false,
            closing: false,
            last_error: None,
            sink,
            metrics,
            claims,
        }
    }

    fn respond(&mut self, to: &ReplyTo, reply: Reply) {
        self.respond_ok(to, reply);
    }

    /// Sends `reply`; false if what went out was a refusal.
    fn respond_ok(&mut self, to: &ReplyTo, reply: Reply) -> bool {
        let sent = to.send(&self.sink, &self.metrics, &self.key, &reply);
        sent.map_err(|error| self.last_error = Some(error)).is_ok()
    }

    fn release(&mut self, waiter: Waiter, reply: Reply) {
        match waiter {
            Waiter::Kernel(to) => self.respond(&to, reply),
            Waiter::Shutdown(done) => drop(done.send(())),
        }
    }

    /// CTR: a core log is ready at once; a disk log first opens its device. A CTR answered
    /// with an error leaves nothing behind: the kernel sends no DTR for it.
    fn construct(&mut self, to: ReplyTo, reconnect: bool, ctx: &mut Context<Self>) {
        self.take_back_shadow(reconnect);
        let LogKind::Disk { device } = &self.args.kind else {
            return self.constructed(&to, Ok(ReplyPayload::Empty), ctx);
        };
        let (name, count) = (device.clone(), self.args.region_count());
        let (claims, uuid) = (self.claims.clone(), self.key.uuid.clone());
        let open = tokio::task::spawn_blocking(move || {
            let (device, claim) = LogDevice::open_for_log(&name, count, &claims, &uuid)?;
            Ok((Flusher::start(Arc::new(device))?, claim))
        });
        ctx.wait(open.into_actor(self).map(move |opened, act, ctx| {
            let opened = opened.unwrap_or_else(|_| {
                Err(DeviceError::NotADevice { name: "(open task panicked)".into() })
            });
            match opened {
                Ok((flusher, claim)) => {
                    let name = flusher.device().name().to_owned();
                    act.disk = Some(DiskLog::new(flusher, claim, count));
                    // The kernel holds the named device as a dependency of the table.
                    act.constructed(&to, Ok(ReplyPayload::DeviceName(name)), ctx);
                }
                Err(error) => {
                    tracing::warn!(uuid = %act.key.uuid, luid = act.key.luid, %error, "log not created");
                    act.constructed(&to, Err(error.errno()), ctx);
                }
            }
        }));
    }

    /// Answers the CTR; a log whose CTR went out as a refusal stops, taking its device,
    /// thread and claim with it.
    fn constructed(&mut self, to: &ReplyTo, reply: Reply, ctx: &mut Context<Self>) {
        if self.respond_ok(to, reply) {
            tracing::info!(uuid = %self.key.uuid, luid = self.key.luid, args = %self.args, "log created");
        } else {
            ctx.stop();
        }
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
