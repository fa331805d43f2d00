//! The socket actor: takes datagrams from the transport, decodes them, and routes each
//! request to its log's actor through the [`Registry`].
//!
//! It creates log actors on CTR (spreading them over the worker arbiters) and unroutes them on
//! DTR. Whatever arrives, it answers what can be answered and never stops for bad input: a
//! frame without a readable request header gets the zero-length EAGAIN ack (the kernel
//! resends), a bad payload gets `-EINVAL`, a request for an unknown log `-ESRCH` (which makes
//! the kernel replay CTR and RESUME after a daemon restart).
//!
//! At its start it first takes back the logs a previous daemon handed over, with the CTR and
//! RESUME the kernel would have replayed ([`crate::handover`]); at a drain it stops reading,
//! routes every datagram it has read, and collects what each log hands the next daemon.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

#[cfg(feature = "cluster")]
use crate::cluster::ClusterLogActor;
use crate::cluster::Corosync;
use crate::handover::{CarriedLog, Phase};
use crate::log_actor::LogActor;
use crate::log_core::LogCore;
use crate::log_messages::{LogHandle, LogRequest};
use crate::region::LogArgs;
use crate::registry::Registry;
use crate::services::Services;
use crate::shadow::StateDir;
use crate::transport::{Datagram, Frame, Incoming, Peer};
use crate::wire::reply::reply_capacity;
use crate::wire::{Errno, Request, RequestHeader};
use crate::EngineConfig;

/// The room an `-ESRCH` keeps for a retried STATUS_INFO: more than any status line needs, and
/// far less than the status buffer the kernel offers.
const STATUS_ROOM: usize = 64;

/// The one reader of the transport: decoding and routing happen in one place and in arrival
/// order, so each log sees its requests in the order the kernel sent them, while the logs
/// themselves run on other threads.
pub(crate) struct SocketActor {
    config: EngineConfig,
    /// The node's quorum, when clustered logs are served through corosync.
    quorum: Option<Corosync>,
    /// What every log actor it starts is handed (the sink, the counters, the log-device
    /// claims).
    services: Services,
    registry: Arc<Registry>,
    /// Where single-host logs keep their shadows, once checked.
    state_dir: Option<Arc<StateDir>>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    incoming: Option<Incoming>,
    /// Ends the incoming stream once what it has read is routed.
    stop_receiving: Arc<AtomicBool>,
    /// Logs a previous daemon handed over, taken back when this actor starts.
    carried: Vec<CarriedLog>,
    /// A drain's requester, told what the logs carry once they have stopped.
    drained: Option<tokio::sync::oneshot::Sender<Vec<CarriedLog>>>,
    /// Told when this actor stops: the transport closed or the engine drained.
    stopped: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SocketActor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: EngineConfig,
        state_dir: Option<Arc<StateDir>>,
        services: Services,
        registry: Arc<Registry>,
        incoming: Incoming,
        carried: Vec<CarriedLog>,
        workers: Vec<ArbiterHandle>,
        stopped: tokio::sync::oneshot::Sender<()>,
    ) -> SocketActor {
        SocketActor {
            stop_receiving: incoming.stop_switch(),
            carried,
            drained: None,
            quorum: crate::cluster::connect(config.corosync),
            config,
            services,
            registry,
            state_dir,
            workers,
            next_worker: 0,
            incoming: Some(incoming),
            stopped: Some(stopped),
        }
    }

    fn dispatch(&mut self, Datagram { peer, received, frame }: Datagram) {
        let Frame { header, request } = match frame {
            Ok(frame) => frame,
            Err(error) => {
                self.services.metrics.unreadable();
                tracing::warn!(%error, "datagram without a readable request");
                if let Some(seq) = error.ack_seq() {
                    self.services.sink.ack(&peer, seq, Some(Errno::EAGAIN));
                }
                return;
            }
        };
        self.services.metrics.received(header.kind());
        let request = match request {
            Ok(request) => request,
            Err(error) => return self.refuse(&peer, &header, received, error.errno(), &error),
        };
        match request {
            Request::Ctr { ref args, .. } => match args.parse::<LogArgs>() {
                Ok(parsed) => self.create(LogRequest { header, request, peer, received }, parsed),
                Err(error) => self.refuse(&peer, &header, received, error.errno(), &error),
            },
            _ => {
                let key = header.key();
                let request = LogRequest { header, request, peer, received };
                let unrouted = match request.request {
                    // A DTR is the log's last request: it is routed no more.
                    Request::Dtr => self.registry.send_last(&key, request),
                    _ => self.registry.send(&key, request),
                };
                if let Err(unrouted) = unrouted {
                    let LogRequest { header, request, peer, received } = *unrouted;
                    self.unknown_log(&peer, &header, received, &request);
                }
            }
        }
    }

    /// Takes back the logs a previous daemon handed over: each gets the CTR (a reconnect's,
    /// if the kernel had resumed it) and, if it had been resumed, the RESUME that the kernel
    /// would have replayed, in that order and before anything the kernel sends now.
    fn take_over(&mut self, carried: Vec<CarriedLog>) {
        let mut taken = 0;
        for CarriedLog { key, ctr, phase } in carried {
            let args = match ctr.parse::<LogArgs>() {
                Ok(args) => args,
                Err(error) => {
                    tracing::warn!(uuid = %key.uuid, luid = key.luid, %error, "handed-over log not taken back: the kernel will replay its CTR");
                    continue;
                }
            };
            let ctr = Request::Ctr { args: ctr, reconnect: phase != Phase::Constructed };
            let made = |request: Request| {
                let header = RequestHeader::current(&request, key.uuid.clone(), key.luid, 0);
                LogRequest { header, request, peer: Peer::Engine, received: Instant::now() }
            };
            self.create(made(ctr), args);
            taken += 1;
            if phase == Phase::Resumed {
                // Just registered above, unless the CTR was refused (then the kernel's next
                // request finds no log, and it replays the CTR itself).
                let _ = self.registry.send(&key, made(Request::Resume));
            }
        }
        if taken > 0 {
            tracing::info!(logs = taken, "logs handed over by the previous daemon taken back");
        }
    }

    /// Stops every log, then tells the drain's requester what they carry.
    fn stop_logs(&mut self, ctx: &mut Context<Self>) {
        let stopping: Vec<_> = self.registry.drain().iter().map(LogHandle::shutdown).collect();
        let Some(drained) = self.drained.take() else { return };
        ctx.spawn(
            async move {
                let mut carried = Vec::new();
                for stopped in stopping {
                    carried.extend(stopped.await);
                }
                let _ = drained.send(carried);
            }
            .into_actor(self),
        );
    }

    /// CTR: a new log actor on the next worker; one already under this key is replaced.
    fn create(&mut self, ctr: LogRequest, args: LogArgs) {
        let quorum = self.quorum.clone().filter(|_| args.clustered);
        if args.clustered && quorum.is_none() && !self.config.single_node_clustered {
            let why = "clustered log types need a cluster: set corosync (or single_node_clustered to serve them on this host alone)";
            return self.refuse(&ctr.peer, &ctr.header, ctr.received, Errno::EINVAL, &why);
        }
        let key = ctr.header.key();
        let registration = Registry::register(&self.registry, key.clone());
        let generation = registration.generation();
        let core = LogCore::new(key.clone(), args, registration, self.services.clone());
        let worker = self.workers.get(self.next_worker % self.workers.len().max(1)).cloned();
        self.next_worker = self.next_worker.wrapping_add(1);
        let log = match quorum {
            #[cfg(feature = "cluster")]
            Some(quorum) => LogHandle::of(start_on(worker, ClusterLogActor::new(core, quorum))),
            #[cfg(not(feature = "cluster"))]
            Some(no_corosync) => match no_corosync {},
            None => {
                let actor = LogActor::new(core, self.state_dir.as_ref());
                LogHandle::of(start_on(worker, actor))
            }
        };
        if let Some(old) = self.registry.insert(key, log.clone(), generation) {
            old.retire();
        }
        log.request(ctr);
    }

    /// `-ESRCH`, which makes the kernel replay CTR and RESUME and retry the request.
    ///
    /// The kernel's reply handler (`fill_pkg`) stores every reply's size as the request's
    /// reply buffer size, and the retry reuses that buffer. An `-ESRCH` without payload would
    /// leave the retry no room for its answer: kernel 6.1 then logged "Insufficient space to
    /// receive package [8] (8 vs 0)", read the retried IN_SYNC as "not in sync" and wrote the
    /// region to one leg only, unmarked. So the refusal carries zeroes of the answer's size.
    fn unknown_log(
        &self,
        peer: &Peer,
        header: &RequestHeader,
        received: Instant,
        request: &Request,
    ) {
        tracing::warn!(
            uuid = %header.uuid, luid = header.luid, request = ?header.kind(),
            errno = %Errno::ESRCH, "no such log: the kernel will replay CTR and RESUME"
        );
        let room = reply_capacity(request, header.version).min(STATUS_ROOM);
        self.services.metrics.answered(header.kind(), Some(Errno::ESRCH), received);
        self.services.sink.refuse_keeping_room(peer, header, Errno::ESRCH, room);
    }

    fn refuse(
        &self,
        peer: &Peer,
        header: &RequestHeader,
        received: Instant,
        errno: Errno,
        why: &dyn std::fmt::Display,
    ) {
        tracing::warn!(
            uuid = %header.uuid, luid = header.luid, request = ?header.kind(), %errno, "{why}"
        );
        self.services.metrics.answered(header.kind(), Some(errno), received);
        // An error reply carries no payload, so no capacity applies.
        self.services.sink.reply(peer, header, 0, &Err(errno));
    }
}

/// Starts `actor` on `worker`, or on the current arbiter.
fn start_on<A: Actor<Context = Context<A>> + Send>(
    worker: Option<ArbiterHandle>,
    actor: A,
) -> Addr<A> {
    match worker {
        Some(worker) => A::start_in_arbiter(&worker, |_| actor),
        None => actor.start(),
    }
}

impl Actor for SocketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let carried = std::mem::take(&mut self.carried);
        self.take_over(carried);
        if let Some(incoming) = self.incoming.take() {
            ctx.add_stream(incoming);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.send(());
        }
    }
}

impl StreamHandler<Datagram> for SocketActor {
    fn handle(&mut self, datagram: Datagram, _: &mut Context<Self>) {
        self.dispatch(datagram);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if self.drained.is_some() {
            // Everything read is routed: the logs answer it before they stop.
            return self.stop_logs(ctx);
        }
        tracing::error!("transport closed");
        ctx.stop();
    }
}

/// Stop reading, answer everything read, commit every disk log and stop every log actor;
/// the answer is what the logs carry to a next daemon.
#[derive(Message)]
#[rtype(result = "Vec<CarriedLog>")]
pub(crate) struct Drain;

impl Handler<Drain> for SocketActor {
    type Result = ResponseFuture<Vec<CarriedLog>>;

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (drained, carried) = tokio::sync::oneshot::channel();
        self.drained = Some(drained);
        if self.stop_receiving.swap(true, Ordering::Relaxed) {
            // The stream ended already (a second drain): the logs are stopped at once.
            self.stop_logs(ctx);
        }
        // Otherwise the stream yields what it holds and ends: `finished` stops the logs.
        Box::pin(async move { carried.await.unwrap_or_default() })
    }
}

/// Answers at once: the socket actor is not stuck (a liveness probe).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Ping;

impl Handler<Ping> for SocketActor {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}
