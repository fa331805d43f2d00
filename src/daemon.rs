//! `dm-ulogd` (run): serve the configured transport in the foreground until SIGTERM or
//! SIGINT, then stop taking requests, commit every disk log and exit 0.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use dm_ulog_actors::transport::{missing_capabilities, Transport};
use dm_ulog_actors::{Engine, EngineConfig};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{MetricsListen, Settings, TransportSpec};
use crate::notify::notify;
use crate::{control, metrics};

pub fn run(settings: Settings) -> Result<(), String> {
    actix::System::new().block_on(serve(settings))
}

async fn serve(settings: Settings) -> Result<(), String> {
    raise_open_file_limit();
    let transport = match &settings.transport {
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
            Transport::netlink().map_err(|e| format!("netlink connector socket: {e}"))?
        }
        TransportSpec::Unix(path) => {
            Transport::unix(path).map_err(|e| format!("unix socket {}: {e}", path.display()))?
        }
    };
    let config = EngineConfig {
        workers: settings.workers,
        single_node_clustered: settings.single_node_clustered,
        corosync: settings.corosync,
        state_dir: state_dir(&settings.state_dir),
    };
    let mut engine = Engine::start(config, transport);
    // Status is for operators: without its socket the daemon still serves the kernel.
    match control::bind(&settings.control_socket) {
        Ok(listener) => drop(actix::spawn(control::serve(listener, engine.observer()))),
        Err(error) => tracing::warn!(
            path = %settings.control_socket.display(), %error,
            "control socket unavailable: `dm-ulogd status` will not reach this daemon"
        ),
    }
    if let MetricsListen::On(address) = settings.metrics_listen {
        serve_metrics(address, engine.observer());
    }
    tracing::info!(
        transport = %settings.transport, workers = settings.workers,
        metrics = %settings.metrics_listen, state_dir = %settings.state_dir.display(), "serving"
    );
    notify("READY=1");

    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let closed = tokio::select! {
        _ = terminate.recv() => false,
        _ = interrupt.recv() => false,
        _ = engine.closed() => true,
    };
    tracing::info!(logs = engine.log_count(), "stopping: committing every disk log");
    notify("STOPPING=1");
    engine.drain().await;
    if closed {
        return Err("the transport closed".into());
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the metrics endpoint. Like the control socket, it is for operators, so failing to
/// start it is an error line, not an exit: a daemon that refused to start over a port taken
/// would leave every mirror waiting for its log, and systemd restarting it into the same
/// failure. Alerting on a missing scrape target catches the failure instead.
fn serve_metrics(address: std::net::SocketAddr, observer: dm_ulog_actors::Observer) {
    let started = metrics::bind(address).and_then(|listener| {
        let bound = listener.local_addr()?;
        metrics::spawn(listener, observer)?;
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

/// Every log keeps its shadow file open, and every disk log its device: a host with
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

/// The shadows' directory, made root-only if missing. Without it the daemon still serves,
/// but a crash of it would leave mirrors to the kernel's reconnect without their sync state.
fn state_dir(path: &Path) -> Option<PathBuf> {
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Ok(()) => Some(path.to_owned()),
        Err(error) => {
            tracing::warn!(
                path = %path.display(), %error,
                "state directory unavailable: after a crash, logs restart without their sync state"
            );
            None
        }
    }
}
