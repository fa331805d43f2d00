//! The socket actor: takes datagrams from the transport, decodes them, and routes each
//! request to its log's actor through the [`Registry`].
//!
//! It creates log actors on CTR (spreading them over the worker arbiters) and unroutes them on
//! DTR. Whatever arrives, it answers what can be answered and never stops for bad input: a
//! frame without a readable request header gets the zero-length EAGAIN ack (the kernel
//! resends), a bad payload gets `-EINVAL`, a request for an unknown log `-ESRCH` (which makes
//! the kernel replay CTR and RESUME after a daemon restart).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

#[cfg(feature = "cluster")]
use crate::cluster::ClusterLogActor;
use crate::cluster::Corosync;
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
    receiving: Option<SpawnHandle>,
    /// Told when this actor stops: the transport closed or the engine drained.
    stopped: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SocketActor {
    pub(crate) fn new(
        config: EngineConfig,
        state_dir: Option<Arc<StateDir>>,
        services: Services,
        registry: Arc<Registry>,
        incoming: Incoming,
        workers: Vec<ArbiterHandle>,
        stopped: tokio::sync::oneshot::Sender<()>,
    ) -> SocketActor {
        SocketActor {
            quorum: crate::cluster::connect(config.corosync),
            config,
            services,
            registry,
            state_dir,
            workers,
            next_worker: 0,
            incoming: Some(incoming),
            receiving: None,
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
        if let Some(incoming) = self.incoming.take() {
            self.receiving = Some(ctx.add_stream(incoming));
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
        tracing::error!("transport closed");
        ctx.stop();
    }
}

/// Stop taking requests, commit every disk log, stop every log actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

impl Handler<Drain> for SocketActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(receiving) = self.receiving.take() {
            ctx.cancel_future(receiving);
        }
        let stopping: Vec<_> = self.registry.drain().iter().map(LogHandle::shutdown).collect();
        Box::pin(async move {
            for stopped in stopping {
                stopped.await;
            }
        })
    }
}
