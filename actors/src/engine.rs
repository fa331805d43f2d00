//! The engine as a host program sees it: start it on a transport inside an actix System,
//! ask it to drain or to hand over to the next daemon, and that is all.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;

use crate::handover::{CarriedLog, Manifest, SocketId};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::services::Services;
use crate::shadow::StateDir;
use crate::socket_actor::{Drain, Ping, SocketActor};
use crate::status::LogStatus;
use crate::transport::{ReplySink, Transport};

/// How the engine runs. The default serves every log on one thread: on small machines a
/// request's cost is mostly its two syscalls, and a hop to another thread costs more than
/// the work (README's benchmarks).
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Threads (actix arbiters) that log actors are spread over; 0 runs them on the thread
    /// that starts the engine, beside the socket actor. Each disk log does its I/O on a
    /// thread of its own either way.
    pub workers: usize,
    /// Serve `clustered-core` / `clustered-disk` as plain single-host logs.
    pub single_node_clustered: bool,
    /// Serve `clustered-core` / `clustered-disk` across hosts through the local corosync
    /// (CPG and quorum); takes precedence over `single_node_clustered`.
    pub corosync: bool,
    /// Where each log keeps its shadow ([`crate::shadow`]): a directory on a tmpfs, created
    /// if missing, and used only if it belongs to this process's user, no one else may write
    /// it and it is no symlink ([`StateDir`]). `None` (or a directory that fails the checks)
    /// keeps no shadows, and a restarted engine then starts each log from its own state.
    pub state_dir: Option<PathBuf>,
}

/// A running engine.
pub struct Engine {
    socket: Addr<SocketActor>,
    stopped: tokio::sync::oneshot::Receiver<()>,
    /// The parts the socket actor hands its logs, kept to observe them.
    services: Services,
    /// The socket actor's routing table, kept to observe and drain the logs.
    registry: Arc<Registry>,
    workers: Vec<Arbiter>,
    /// The transport's socket and the state directory, for a handover.
    socket_fd: Option<OwnedFd>,
    state_dir: Option<Arc<StateDir>>,
}

/// Why a handover did not happen; the engine drained all the same.
#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    #[error("no socket to hand over (an in-process transport)")]
    NoSocket,
    #[error("no usable state directory to keep the logs' state in")]
    NoStateDir,
    #[error("handover manifest not written: {0}")]
    Manifest(#[source] std::io::Error),
}

impl Engine {
    /// Starts serving `transport`. Must be called from within an actix System. If a previous
    /// engine handed this very socket over, the logs it carried are taken back first.
    pub fn start(config: EngineConfig, transport: Transport) -> Engine {
        let workers: Vec<Arbiter> = (0..config.workers).map(|_| Arbiter::new()).collect();
        let handles = workers.iter().map(|w| w.handle()).collect();
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel();
        let state_dir = config.state_dir.as_deref().and_then(open_state_dir);
        let carried = handed_over(state_dir.as_deref(), transport.socket.as_ref());
        let services = Services {
            sink: transport.replies,
            metrics: Arc::new(Metrics::default()),
            claims: Arc::default(),
        };
        let registry = Arc::new(Registry::default());
        let socket = SocketActor::new(
            config,
            state_dir.clone(),
            services.clone(),
            registry.clone(),
            transport.incoming,
            carried,
            handles,
            stopped_tx,
        )
        .start();
        let socket_fd = transport.socket;
        Engine { socket, stopped, services, registry, workers, socket_fd, state_dir }
    }

    /// A handle that reports on the logs, for a status endpoint; it outlives nothing.
    pub fn observer(&self) -> Observer {
        Observer {
            socket: self.socket.clone(),
            state_dir: self.state_dir.as_ref().map(|dir| dir.path().to_owned()),
            registry: self.registry.clone(),
            metrics: self.services.metrics.clone(),
            replies: self.services.sink.clone(),
        }
    }

    /// Resolves once the engine has started: the logs a previous engine handed over are
    /// registered by then, so that [`Engine::log_count`] counts them.
    pub async fn started(&self) {
        // An actor starts before it handles its first message.
        let _ = self.socket.send(Ping).await;
    }

    /// How many logs are being served.
    pub fn log_count(&self) -> usize {
        self.registry.len()
    }

    /// Resolves when the engine stops serving on its own: its transport closed.
    pub async fn closed(&mut self) {
        let _ = (&mut self.stopped).await;
    }

    /// Stops reading, answers everything read, commits every disk log and stops every log
    /// actor. What the kernel sends meanwhile stays queued on the socket, which closes when
    /// the engine is dropped.
    pub async fn drain(self) {
        self.drain_logs().await;
    }

    /// Drains as [`Engine::drain`] does, then leaves the next daemon what it needs to serve
    /// on without the kernel noticing ([`crate::handover`]): the manifest in the state
    /// directory, and the socket, returned, to be passed on by descriptor.
    pub async fn hand_over(mut self) -> Result<OwnedFd, HandOverError> {
        let socket = self.socket_fd.take();
        let state_dir = self.state_dir.clone();
        let carried = self.drain_logs().await;
        let socket = socket.ok_or(HandOverError::NoSocket)?;
        let state_dir = state_dir.ok_or(HandOverError::NoStateDir)?;
        let id = SocketId::of(socket.as_fd()).map_err(HandOverError::Manifest)?;
        let manifest = Manifest { socket: id, logs: carried };
        state_dir.write_handover(&manifest).map_err(HandOverError::Manifest)?;
        tracing::info!(logs = manifest.logs.len(), "handover manifest written");
        Ok(socket)
    }

    async fn drain_logs(&self) -> Vec<CarriedLog> {
        let carried = match self.socket.send(Drain).await {
            Ok(carried) => carried,
            Err(_) => {
                // The socket actor is gone already; its logs are drained directly.
                let mut carried = Vec::new();
                for log in self.registry.drain() {
                    carried.extend(log.shutdown().await);
                }
                carried
            }
        };
        for worker in &self.workers {
            worker.stop();
        }
        carried
    }
}

/// The logs a previous engine handed over with `socket`, from the manifest in `state_dir`;
/// a manifest for another socket (one that closed with a stopped service) is dropped.
fn handed_over(state_dir: Option<&StateDir>, socket: Option<&OwnedFd>) -> Vec<CarriedLog> {
    let Some(state_dir) = state_dir else { return Vec::new() };
    let manifest = match state_dir.take_handover() {
        Ok(Some(Ok(manifest))) => manifest,
        Ok(None) => return Vec::new(),
        Ok(Some(Err(error))) => {
            tracing::warn!(%error, "handover ignored: the kernel will replay each log's CTR");
            return Vec::new();
        }
        Err(error) => {
            tracing::warn!(%error, "handover manifest unreadable: the kernel will replay each log's CTR");
            return Vec::new();
        }
    };
    let id = socket.map(|s| SocketId::of(s.as_fd()));
    match id {
        Some(Ok(id)) if id == manifest.socket => manifest.logs,
        _ => {
            tracing::info!(
                logs = manifest.logs.len(),
                "a handover manifest for another socket (closed since) dropped: the kernel replays each log's CTR"
            );
            Vec::new()
        }
    }
}

/// The checked state directory, or why there is none (said once, here).
fn open_state_dir(path: &Path) -> Option<Arc<StateDir>> {
    match StateDir::open(path, journal_budget()) {
        Ok(dir) => Some(Arc::new(dir)),
        Err(error) => {
            tracing::warn!(
                %error,
                "serving without shadows: after a daemon crash, logs start from their own state"
            );
            None
        }
    }
}

/// How many shadow journals stay open: a quarter of the descriptors this process may have,
/// leaving the rest to log devices (one each), sockets and the rest.
fn journal_budget() -> usize {
    crate::open_files::soft_limit()
        .map_or(256, |limit| usize::try_from(limit / 4).unwrap_or(usize::MAX))
}

/// Reports on the logs of a running engine; cheap to clone.
#[derive(Clone)]
pub struct Observer {
    socket: Addr<SocketActor>,
    state_dir: Option<PathBuf>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    replies: ReplySink,
}

impl Observer {
    /// A snapshot of every log, ordered by uuid then luid.
    pub async fn status(&self) -> Vec<LogStatus> {
        let mut logs = Vec::new();
        for log in self.registry.all() {
            // A log that stops meanwhile is simply not reported.
            if let Some(status) = log.describe().await {
                logs.push(status);
            }
        }
        logs.sort_by(|a, b| (&a.uuid, a.luid).cmp(&(&b.uuid, b.luid)));
        logs
    }

    /// Whether the socket actor and every log actor answer within `within`: each handles
    /// its messages in turn, so one that answers a probe is not stuck behind anything (a hung
    /// log device, a busy loop). For a watchdog: a stuck engine must not be reported alive.
    pub async fn responsive(&self, within: std::time::Duration) -> bool {
        let probes = async {
            if self.socket.send(Ping).await.is_err() {
                return false;
            }
            // A log that stops meanwhile answers nothing, and is not stuck: it is gone.
            for log in self.registry.all() {
                let _ = log.describe().await;
            }
            true
        };
        tokio::time::timeout(within, probes).await.unwrap_or(false)
    }

    /// How many shadows in the state directory belong to no log served: logs whose kernel
    /// has not reconnected since the last daemon stopped.
    pub fn waiting_shadows(&self) -> usize {
        let Some(dir) = &self.state_dir else { return 0 };
        crate::shadow::waiting(dir, &self.registry.keys())
    }

    /// The engine's request, error and latency counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Replies the transport could not send (a peer that stopped reading): the peer resends.
    pub fn replies_unsent(&self) -> u64 {
        self.replies.unsent()
    }
}
