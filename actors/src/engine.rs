//! The engine as a host program sees it: start it on a transport inside an actix System,
//! ask it to drain, and that is all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::services::Services;
use crate::shadow::StateDir;
use crate::socket_actor::{Drain, SocketActor};
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
}

impl Engine {
    /// Starts serving `transport`. Must be called from within an actix System.
    pub fn start(config: EngineConfig, transport: Transport) -> Engine {
        let workers: Vec<Arbiter> = (0..config.workers).map(|_| Arbiter::new()).collect();
        let handles = workers.iter().map(|w| w.handle()).collect();
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel();
        let state_dir = config.state_dir.as_deref().and_then(open_state_dir);
        let services = Services {
            sink: transport.replies,
            metrics: Arc::new(Metrics::default()),
            claims: Arc::default(),
        };
        let registry = Arc::new(Registry::default());
        let socket = SocketActor::new(
            config,
            state_dir,
            services.clone(),
            registry.clone(),
            transport.incoming,
            handles,
            stopped_tx,
        )
        .start();
        Engine { socket, stopped, services, registry, workers }
    }

    /// A handle that reports on the logs, for a status endpoint; it outlives nothing.
    pub fn observer(&self) -> Observer {
        Observer {
            registry: self.registry.clone(),
            metrics: self.services.metrics.clone(),
            replies: self.services.sink.clone(),
        }
    }

    /// How many logs are being served.
    pub fn log_count(&self) -> usize {
        self.registry.len()
    }

    /// Resolves when the engine stops serving on its own: its transport closed.
    pub async fn closed(&mut self) {
        let _ = (&mut self.stopped).await;
    }

    /// Stops taking requests, commits every disk log and stops every log actor.
    pub async fn drain(self) {
        if self.socket.send(Drain).await.is_err() {
            // The socket actor is gone already; its logs are drained directly.
            for log in self.registry.drain() {
                log.shutdown().await;
            }
        }
        for worker in &self.workers {
            worker.stop();
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
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) fills the rlimit it is given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if known {
        usize::try_from(limit.rlim_cur / 4).unwrap_or(usize::MAX)
    } else {
        256
    }
}

/// Reports on the logs of a running engine; cheap to clone.
#[derive(Clone)]
pub struct Observer {
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

    /// The engine's request, error and latency counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Replies the transport could not send (a peer that stopped reading): the peer resends.
    pub fn replies_unsent(&self) -> u64 {
        self.replies.unsent()
    }
}
