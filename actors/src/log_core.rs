//! [`LogCore`]: what every log actor is, whatever its kind, and its part of the log protocol.
//!
//! The single-host and the clustered log actor each embed one core: the log's key and
//! arguments, where its replies go and how they are counted, its last error, how its device
//! is opened, how a CTR's answer decides whether the log lives, and its status report. They
//! implement [`ServesLog`] for what differs, and [`serve_log!`] gives them the one handler
//! of [`LogMessage`] and the actor's lifecycle, so that each rule of serving a log stands
//! here once.

use std::future::Future;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::handover::CarriedLog;
use crate::log_messages::{LogMessage, LogRequest};
use crate::metrics::Metrics;
use crate::region::LogArgs;
use crate::registry::Registration;
use crate::reply_to::ReplyTo;
use crate::services::Services;
use crate::status::{ClusterStatus, LogStatus};
use crate::store::{Claim, Committer, DeviceClaims, DeviceError, Flusher, LogDevice};
use crate::transport::ReplySink;
use crate::wire::{Errno, LogKey, Reply, ReplyPayload, Request};

/// A log's identity, arguments and reply plumbing, the same for every kind of log actor.
pub(crate) struct LogCore {
    pub key: LogKey,
    pub args: LogArgs,
    /// Dropped with the actor: the registry stops routing to it.
    _registration: Registration,
    sink: ReplySink,
    metrics: Arc<Metrics>,
    claims: Arc<DeviceClaims>,
    /// The log device, once a disk log's CTR opened it.
    pub device: Option<Committer>,
    /// The last refusal or failure, for the status report.
    last_error: Option<String>,
    /// The log's start or stop is the engine's (a handover's take-back, a drain), which says
    /// one line for all its logs: this log's own lifecycle lines are debug, not info.
    pub quiet: bool,
}

/// A log's lifecycle line: info, or debug for a [`LogCore::quiet`] log.
macro_rules! lifecycle {
    ($quiet:expr, $($line:tt)+) => {
        if $quiet {
            ::tracing::debug!($($line)+)
        } else {
            ::tracing::info!($($line)+)
        }
    };
}
pub(crate) use lifecycle;

/// A log's region counts, as its actor knows them, for the status report.
pub(crate) struct Tally {
    pub in_sync: u64,
    pub dirty: u64,
    pub recovering: u64,
}

impl LogCore {
    pub(crate) fn new(
        key: LogKey,
        args: LogArgs,
        registration: Registration,
        services: Services,
    ) -> LogCore {
        let Services { sink, metrics, claims } = services;
        let device = None;
        LogCore {
            key,
            args,
            _registration: registration,
            sink,
            metrics,
            claims,
            device,
            last_error: None,
            quiet: false,
        }
    }

    pub(crate) fn sink(&self) -> &ReplySink {
        &self.sink
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn respond(&mut self, to: &ReplyTo, reply: Reply) {
        self.respond_ok(to, reply);
    }

    /// Sends `reply`; false if what went out was a refusal.
    pub(crate) fn respond_ok(&mut self, to: &ReplyTo, reply: Reply) -> bool {
        let sent = to.send(&self.sink, &self.metrics, &self.key, &reply);
        sent.map_err(|error| self.last_error = Some(error)).is_ok()
    }

    /// Opens the log device `name` on the blocking pool (an open may wait on a slow device),
    /// claims it for this log, starts its I/O thread and, still there, runs `read` on it.
    pub(crate) fn open_device<T: Send + 'static>(
        &self,
        name: &str,
        read: impl FnOnce(&LogDevice) -> Result<T, DeviceError> + Send + 'static,
    ) -> impl Future<Output = Result<(Flusher, Claim, T), DeviceError>> {
        let (name, count) = (name.to_owned(), self.args.region_count());
        let (claims, uuid) = (self.claims.clone(), self.key.uuid.clone());
        let open = tokio::task::spawn_blocking(move || {
            let (device, claim) = LogDevice::open_for_log(&name, count, &claims, &uuid)?;
            let found = read(&device)?;
            Ok((Flusher::start(Arc::new(device))?, claim, found))
        });
        async move {
            open.await.unwrap_or_else(|_| {
                Err(DeviceError::NotADevice { name: "(open task panicked)".into() })
            })
        }
    }

    /// Answers the CTR. A CTR answered with an error (the log's, or one its reply became on
    /// its way out) leaves nothing behind, for the kernel sends no DTR for it: the actor
    /// stops, taking its device, thread and claim with it.
    pub(crate) fn constructed<A>(&mut self, to: &ReplyTo, reply: Reply, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>>,
    {
        if self.respond_ok(to, reply) {
            lifecycle!(self.quiet, uuid = %self.key.uuid, luid = self.key.luid, args = %self.args, "log created");
        } else {
            ctx.stop();
        }
    }

    /// A CTR whose device could not be opened.
    pub(crate) fn not_constructed<A>(
        &mut self,
        to: &ReplyTo,
        error: &DeviceError,
        ctx: &mut Context<A>,
    ) where
        A: Actor<Context = Context<A>>,
    {
        tracing::warn!(uuid = %self.key.uuid, luid = self.key.luid, %error, "log not created");
        self.constructed(to, Err(error.errno()), ctx);
    }

    /// Keeps `error` for the status report.
    pub(crate) fn note_error(&mut self, error: String) {
        self.last_error = Some(error);
    }

    /// A failed read or write of the log device: traced, kept for the status report, and
    /// turned into the reply the kernel's disk log gives whatever the cause, EIO.
    pub(crate) fn device_failed(&mut self, error: &DeviceError) -> Errno {
        tracing::error!(uuid = %self.key.uuid, luid = self.key.luid, %error, "log device failed");
        self.last_error = Some(error.to_string());
        Errno::EIO
    }

    fn status_info(&self) -> String {
        let device = self.device.as_ref().map(|d| (d.status_name(), d.health().letter()));
        self.args.status_info(device)
    }

    fn status(&self, tally: Tally, cluster: Option<ClusterStatus>) -> LogStatus {
        let device = self.device.as_ref();
        LogStatus {
            uuid: self.key.uuid.to_string(),
            luid: self.key.luid,
            log_type: self.args.type_name().to_owned(),
            region_size: self.args.region_size.sectors(),
            regions: self.args.region_count().0,
            in_sync: tally.in_sync,
            dirty: tally.dirty,
            recovering: tally.recovering,
            device: device.map(|d| d.status_name().to_owned()),
            health: device.map(|d| d.health().letter()),
            flush_p50_us: device.and_then(|d| d.commit_time_us(0.5)),
            flush_p99_us: device.and_then(|d| d.commit_time_us(0.99)),
            last_error: self.last_error.clone(),
            cluster,
        }
    }
}

/// What a log actor adds to the [`LogCore`] it embeds: how it serves its kernel's requests.
pub(crate) trait ServesLog:
    Actor<Context = Context<Self>> + AsRef<LogCore> + AsMut<LogCore>
{
    fn tally(&self) -> Tally;
    fn cluster_status(&self) -> Option<ClusterStatus> {
        None
    }
    /// One of its kernel's requests, in arrival order (the status requests are the core's).
    fn request(&mut self, request: Request, to: ReplyTo, ctx: &mut Context<Self>);
    /// Commit what is pending and stop, then say so on `done`, with what the next daemon
    /// needs to take the log back (`None` if it cannot).
    fn shutdown(&mut self, done: oneshot::Sender<Option<CarriedLog>>, ctx: &mut Context<Self>);
}

/// The one handler of [`LogMessage`], for every kind of log actor.
pub(crate) fn dispatch<A: ServesLog>(actor: &mut A, message: LogMessage, ctx: &mut Context<A>) {
    match message {
        LogMessage::Request(LogRequest { header, request, peer, received }) => {
            let to = ReplyTo::new(header, peer, &request, received);
            let line = match request {
                Request::StatusInfo => actor.as_ref().status_info(),
                Request::StatusTable => actor.as_ref().args.status_table(),
                request => return actor.request(request, to, ctx),
            };
            actor.as_mut().respond(&to, Ok(ReplyPayload::Status(line)));
        }
        LogMessage::Shutdown(done) => actor.shutdown(done, ctx),
        LogMessage::Describe(reply) => {
            let status = actor.as_ref().status(actor.tally(), actor.cluster_status());
            drop(reply.send(status));
        }
        LogMessage::Retire => {
            let key = &actor.as_ref().key;
            tracing::info!(uuid = %key.uuid, luid = key.luid, "log replaced by a new CTR");
            ctx.stop();
        }
    }
}

/// Makes `$actor`, a [`ServesLog`] whose [`LogCore`] is its field `$core`, an actix actor
/// that takes [`LogMessage`]s.
macro_rules! serve_log {
    ($actor:ty, $core:ident) => {
        impl AsRef<$crate::log_core::LogCore> for $actor {
            fn as_ref(&self) -> &$crate::log_core::LogCore {
                &self.$core
            }
        }

        impl AsMut<$crate::log_core::LogCore> for $actor {
            fn as_mut(&mut self) -> &mut $crate::log_core::LogCore {
                &mut self.$core
            }
        }

        impl ::actix::Actor for $actor {
            type Context = ::actix::Context<Self>;

            fn stopped(&mut self, _: &mut Self::Context) {
                let key = &self.$core.key;
                $crate::log_core::lifecycle!(self.$core.quiet, uuid = %key.uuid, luid = key.luid, "log stopped");
            }
        }

        impl ::actix::Handler<$crate::log_messages::LogMessage> for $actor {
            type Result = ();

            fn handle(
                &mut self,
                message: $crate::log_messages::LogMessage,
                ctx: &mut Self::Context,
            ) {
                $crate::log_core::dispatch(self, message, ctx);
            }
        }
    };
}
pub(crate) use serve_log;
