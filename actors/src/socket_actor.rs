//! The socket actor: takes datagrams from the transport, decodes them, and routes each
//! request to its log's actor through the [`Registry`].
//!
//! It creates log actors on CTR (spreading them over the worker arbiters) and unroutes them on
//! DTR. Whatever arrives, it answers what can be answered and never stops for bad input: a
//! frame without a readable request header gets the zero-length EAGAIN ack (the kernel
//! resends), a bad payload gets `-EINVAL`, a request for an unknown log `-ESRCH` (which makes
//! the kernel replay CTR and RESUME after a daemon restart).

use std::sync::Arc;

use actix::prelude::*;

use crate::log_actor::{LogActor, LogRequest, Retire, Shutdown};
use crate::region::LogArgs;
use crate::registry::Registry;
use crate::transport::{Datagram, Incoming, Peer, ReplySink};
use crate::wire::reply::reply_capacity;
use crate::wire::{decode_frame, Errno, LogKey, Request, RequestHeader};
use crate::EngineConfig;

pub struct SocketActor {
    config: EngineConfig,
    registry: Arc<Registry>,
    sink: ReplySink,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    incoming: Option<Incoming>,
    receiving: Option<SpawnHandle>,
    roomless: Roomless,
    /// Told when this actor stops: the transport closed or the engine drained.
    stopped: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SocketActor {
    pub fn new(
        config: EngineConfig,
        registry: Arc<Registry>,
        incoming: Incoming,
        sink: ReplySink,
        workers: Vec<ArbiterHandle>,
        stopped: tokio::sync::oneshot::Sender<()>,
    ) -> SocketActor {
        SocketActor {
            config,
            registry,
            sink,
            workers,
            next_worker: 0,
            incoming: Some(incoming),
            receiving: None,
            roomless: Roomless::default(),
            stopped: Some(stopped),
        }
    }

    fn dispatch(&mut self, datagram: Datagram) {
        let Datagram { bytes, peer } = datagram;
        let frame = match decode_frame(&bytes) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(%error, "datagram without a readable request");
                if let Some(seq) = error.ack_seq() {
                    self.sink.ack(&peer, seq, Some(Errno::EAGAIN));
                }
                return;
            }
        };
        let request = match frame.request() {
            Ok(request) => request,
            Err(error) => return self.refuse(&peer, &frame.header, error.errno(), &error),
        };
        let header = frame.header;
        match request {
            Request::Ctr { ref args, .. } => match args.parse::<LogArgs>() {
                Ok(parsed) => self.create(header, request, parsed, peer),
                Err(error) => self.refuse(&peer, &header, error.errno(), &error),
            },
            _ => {
                let key = header.key();
                let routed = match request {
                    Request::Dtr => {
                        self.roomless.remove(&key);
                        self.registry.remove(&key)
                    }
                    _ => self.registry.get(&key),
                };
                match routed {
                    Some(addr) => {
                        let no_room = self.roomless.take(&key, &request);
                        addr.do_send(LogRequest { header, request, peer, no_room })
                    }
                    None => {
                        self.roomless.remember(&key, &request, header.version);
                        self.refuse(&peer, &header, Errno::ESRCH, &"no such log")
                    }
                }
            }
        }
    }

    /// CTR: a new log actor on the next worker; one already under this key is replaced.
    fn create(&mut self, header: RequestHeader, request: Request, args: LogArgs, peer: Peer) {
        if args.clustered && !self.config.single_node_clustered {
            let why = "clustered log types need a cluster; set single_node_clustered to serve them on one host";
            return self.refuse(&peer, &header, Errno::EINVAL, &why);
        }
        let key = header.key();
        let generation = self.registry.next_generation();
        let actor =
            LogActor::new(key.clone(), args, generation, self.sink.clone(), self.registry.clone());
        let addr = match self.workers.get(self.next_worker % self.workers.len().max(1)) {
            Some(worker) => LogActor::start_in_arbiter(worker, |_| actor),
            None => actor.start(),
        };
        self.next_worker = self.next_worker.wrapping_add(1);
        if let Some(old) = self.registry.insert(key, addr.clone(), generation) {
            old.do_send(Retire);
        }
        addr.do_send(LogRequest { header, request, peer, no_room: false });
    }

    fn refuse(
        &self,
        peer: &Peer,
        header: &RequestHeader,
        errno: Errno,
        why: &dyn std::fmt::Display,
    ) {
        tracing::warn!(
            uuid = %header.uuid, luid = header.luid, request = ?header.kind(), %errno, "{why}"
        );
        // An error reply carries no payload, so no capacity applies.
        self.sink.reply(peer, header, 0, &Err(errno));
    }
}

/// Requests that were answered `-ESRCH` and that the kernel will retry with no room for a
/// reply.
///
/// The kernel's reply handler (`fill_pkg`) writes the size of every reply it gets back into
/// the request's reply buffer size, so an `-ESRCH` answer leaves it at 0; after reconnecting
/// (CTR and RESUME) `userspace_do_request` retries the same request with that size. Any
/// payload then fails with "Insufficient space to receive package" and the kernel takes the
/// request as failed: an IN_SYNC as "not in sync", so it writes that region to one leg only.
/// The log actor must know, to answer the retry as the kernel will read it.
#[derive(Default)]
struct Roomless {
    by_log: std::collections::HashMap<LogKey, Vec<Request>>,
}

impl Roomless {
    /// Bounds on what is remembered: a kernel retries each request once, from one thread each.
    const PER_LOG: usize = 64;
    const LOGS: usize = 4096;

    fn remember(&mut self, key: &LogKey, request: &Request, version: u32) {
        if reply_capacity(request, version) == 0 {
            return;
        }
        if self.by_log.len() >= Self::LOGS && !self.by_log.contains_key(key) {
            return;
        }
        let requests = self.by_log.entry(key.clone()).or_default();
        if requests.len() < Self::PER_LOG {
            requests.push(request.clone());
        }
    }

    /// Whether `request` is the retry of one answered `-ESRCH` (and forgets it).
    fn take(&mut self, key: &LogKey, request: &Request) -> bool {
        // The common case, on every request: nothing to remember.
        if self.by_log.is_empty() {
            return false;
        }
        let Some(requests) = self.by_log.get_mut(key) else { return false };
        let Some(at) = requests.iter().position(|r| r == request) else { return false };
        requests.swap_remove(at);
        if requests.is_empty() {
            self.by_log.remove(key);
        }
        true
    }

    fn remove(&mut self, key: &LogKey) {
        self.by_log.remove(key);
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
pub struct Drain;

impl Handler<Drain> for SocketActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(receiving) = self.receiving.take() {
            ctx.cancel_future(receiving);
        }
        let done: Vec<_> = self
            .registry
            .drain()
            .into_iter()
            .map(|addr| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                addr.do_send(Shutdown(tx));
                rx
            })
            .collect();
        Box::pin(async move {
            for rx in done {
                // An actor that stopped without answering has nothing left to commit.
                let _ = rx.await;
            }
        })
    }
}
