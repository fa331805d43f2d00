//! `dm-ulogd` (run): serve the configured transport in the foreground until SIGTERM (or any
//! other terminating signal), then stop taking requests, commit every disk log, remove the
//! sockets and exit 0. One daemon per state directory ([`InstanceLock`]).

use std::path::Path;

use dm_ulog_actors::transport::{missing_capabilities, Transport};
use dm_ulog_actors::{Engine, EngineConfig, Observer};

use crate::config::{MetricsListen, Overrides, Settings, TransportSpec};
use crate::instance_lock::{InstanceLock, NotLocked};
use crate::notify::notify;
use crate::signals::{Asked, Signals};
use crate::telemetry::LevelHandle;
use crate::{control, metrics_endpoint};

pub fn run(settings: Settings, overrides: &Overrides, level: LevelHandle) -> Result<(), String> {
    actix::System::new().block_on(serve(settings, overrides, level))
}

async fn serve(
    settings: Settings,
    overrides: &Overrides,
    level: LevelHandle,
) -> Result<(), String> {
    raise_open_file_limit();
    // Before any socket is bound: a second daemon must not take the first one's sockets.
    let _lock = take_instance_lock(&settings.state_dir)?;
    let mut signals = Signals::install().map_err(|e| format!("signal handlers: {e}"))?;
    let transport = open_transport(&settings.transport)?;
    let config = EngineConfig {
        workers: settings.workers,
        single_node_clustered: settings.single_node_clustered,
        corosync: settings.corosync,
        state_dir: Some(settings.state_dir.clone()),
    };
    let mut engine = Engine::start(config, transport);
    let control_bound = serve_control(&settings.control_socket, &engine);
    if let MetricsListen::On(address) = settings.metrics_listen {
        serve_metrics(address, engine.observer());
    }
    tracing::info!(
        transport = %settings.transport, workers = settings.workers,
        metrics = %settings.metrics_listen, state_dir = %settings.state_dir.display(), "serving"
    );
    notify("READY=1");

    let closed = until_stopped(&mut signals, &mut engine, overrides, &level).await;
    tracing::info!(logs = engine.log_count(), "stopping: committing every disk log");
    notify("STOPPING=1");
    engine.drain().await;
    // The lock is still held, so the sockets are this daemon's own.
    if let TransportSpec::Unix(path) = &settings.transport {
        let _ = std::fs::remove_file(path);
    }
    if control_bound {
        let _ = std::fs::remove_file(&settings.control_socket);
    }
    if closed {
        return Err("the transport closed".into());
    }
    tracing::info!("stopped");
    Ok(())
}

/// The state directory's instance lock; `None` (said once) where it cannot be taken at all.
fn take_instance_lock(state_dir: &Path) -> Result<Option<InstanceLock>, String> {
    match InstanceLock::take(state_dir) {
        Ok(lock) => Ok(Some(lock)),
        Err(NotLocked::Held(pid)) => Err(format!(
            "another dm-ulogd (pid {pid}) is running on state_dir {}",
            state_dir.display()
        )),
        Err(NotLocked::Io(error)) => {
            tracing::warn!(
                state_dir = %state_dir.display(), %error,
                "instance lock unavailable: nothing keeps a second daemon off these sockets"
            );
            Ok(None)
        }
    }
}

fn open_transport(spec: &TransportSpec) -> Result<Transport, String> {
    match spec {
        TransportSpec::Netlink => {
            let missing = missing_capabilities();
            if !missing.is_empty() {
                return Err(format!(
                    "the netlink transport needs CAP_NET_ADMIN (to join the connector group) and \
                     CAP_SYS_ADMIN (the kernel drops replies without it); missing: {}. \
                     Run as root, or use --transport unix:PATH",
                    missing.join(", ")
                ));
            }
            Transport::netlink().map_err(|e| format!("netlink connector socket: {e}"))
        }
        TransportSpec::Unix(path) => {
            Transport::unix(path).map_err(|e| format!("unix socket {}: {e}", path.display()))
        }
    }
}

/// Serves `dm-ulogd status` at `path`; false if it cannot. Status is for operators: without
/// its socket the daemon still serves the kernel.
fn serve_control(path: &Path, engine: &Engine) -> bool {
    match control::bind(path) {
        Ok(listener) => {
            actix::spawn(control::serve(listener, engine.observer()));
            true
        }
        Err(error) => {
            tracing::warn!(
                path = %path.display(), %error,
                "control socket unavailable: `dm-ulogd status` will not reach this daemon"
            );
            false
        }
    }
}

/// Serves signals until one asks the daemon to stop (false) or the transport closes (true).
async fn until_stopped(
    signals: &mut Signals,
    engine: &mut Engine,
    overrides: &Overrides,
    level: &LevelHandle,
) -> bool {
    loop {
        let asked = tokio::select! {
            asked = signals.next() => asked,
            _ = engine.closed() => return true,
        };
        match asked {
            Asked::Stop(signal) => {
                tracing::info!(%signal, "stop requested");
                return false;
            }
            Asked::Reload => reload(overrides, level),
            Asked::Dump => dump(&engine.observer()).await,
        }
    }
}

/// SIGHUP: the configuration is read again; the log level applies at once, the rest at the
/// next start (sockets, workers and the state directory are in use).
fn reload(overrides: &Overrides, level: &LevelHandle) {
    let applied = Settings::load(overrides)
        .map_err(|e| e.to_string())
        .and_then(|settings| level.set(&settings.log_level).map(|()| settings.log_level));
    match applied {
        Ok(log_level) => tracing::info!(
            log_level,
            "configuration reloaded: the log level applies now, the rest at restart"
        ),
        Err(error) => tracing::error!(%error, "configuration not reloaded; nothing changed"),
    }
}

/// SIGUSR1: one line per log with its whole state.
async fn dump(observer: &Observer) {
    let logs = observer.status().await;
    tracing::info!(logs = logs.len(), "state of every log follows");
    for log in logs {
        let (device, health) = (log.device.as_deref().unwrap_or("-"), log.health.unwrap_or('-'));
        tracing::info!(
            uuid = %log.uuid, luid = log.luid, log_type = %log.log_type, regions = log.regions,
            region_size = log.region_size, in_sync = log.in_sync, dirty = log.dirty,
            recovering = log.recovering, %device, %health,
            cluster = log.cluster.map(|c| format!("{c:?}")), last_error = log.last_error,
            "log state"
        );
    }
}

/// Starts the metrics endpoint. Like the control socket, it is for operators, so failing to
/// start it is an error line, not an exit: a daemon that refused to start over a port taken
/// would leave every mirror waiting for its log, and systemd restarting it into the same
/// failure. Alerting on a missing scrape target catches the failure instead.
fn serve_metrics(address: std::net::SocketAddr, observer: dm_ulog_actors::Observer) {
    let started = metrics_endpoint::bind(address).and_then(|listener| {
        let bound = listener.local_addr()?;
        metrics_endpoint::spawn(listener, observer)?;
        Ok(bound)
    });
    match started {
        // The bound address, which differs from the configured one for port 0.
        Ok(bound) => tracing::info!(address = %bound, "metrics endpoint listening"),
        Err(error) => tracing::error!(
            %address, %error, "metrics endpoint unavailable: serving the kernel without it"
        ),
    }
}

/// Every disk log keeps its device open, and some shadows their journal: a host with
/// thousands of mirrors needs more descriptors than the usual soft limit of 1024. The soft
/// limit is raised to the hard one, as far as the host allows; a failure only means fewer.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit for this process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!(
                    "could not raise the open-file limit; thousands of logs may not fit"
                );
            }
        }
    }
}
