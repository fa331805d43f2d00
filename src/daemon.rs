//! `dm-ulogd` (run): serve the configured transport in the foreground until SIGTERM (or any
//! other terminating signal), then stop taking requests, answer everything read, commit every
//! disk log, remove the sockets and exit 0. One daemon per state directory ([`InstanceLock`]).
//!
//! A restart need not be seen by the kernel ([`crate::restart`]): under systemd a stopping
//! daemon leaves its socket in the service's fd store and its logs in a handover manifest,
//! and `dm-ulogd upgrade` executes the binary again with both; a daemon that starts with a
//! socket passed to it serves that socket, and takes the logs handed over with it back.

use std::path::Path;

use dm_ulog_actors::transport::{missing_capabilities, Transport};
use dm_ulog_actors::{Engine, EngineConfig, Observer};

use crate::config::{MetricsListen, Overrides, Settings, TransportSpec};
use crate::control::UpgradeAsked;
use crate::instance_lock::{InstanceLock, NotLocked};
use crate::notify::{notify, NotifyState};
use crate::restart::{self, Invocation};
use crate::signals::{Asked, Signals};
use crate::telemetry::LevelHandle;
use crate::{control, metrics_endpoint};

/// The running engine's observer, for the control socket and the metrics endpoint: it
/// changes when the engine does (an upgrade whose exec failed starts a new one).
pub type Observers = tokio::sync::watch::Receiver<Observer>;

pub fn run(settings: Settings, overrides: &Overrides, level: LevelHandle) -> Result<(), String> {
    // Before anything can replace the binary: the path names it now.
    let invocation = Invocation::current().map_err(|e| format!("this binary's path: {e}"))?;
    actix::System::new().block_on(serve(settings, overrides, level, invocation))
}

async fn serve(
    settings: Settings,
    overrides: &Overrides,
    level: LevelHandle,
    invocation: Invocation,
) -> Result<(), String> {
    control::started();
    crate::process_metrics::mark_start();
    raise_open_file_limit();
    if settings.lock_memory {
        lock_memory();
    }
    // Before any socket is bound: a second daemon must not take the first one's sockets.
    let _lock = take_instance_lock(&settings.state_dir)?;
    let mut signals = Signals::install().map_err(|e| format!("signal handlers: {e}"))?;
    let mut transport = match restart::inherited_socket()? {
        Some(socket) => {
            let transport =
                Transport::inherit(socket).map_err(|e| format!("passed socket: {e}"))?;
            tracing::info!("serving the socket the previous daemon passed on");
            transport
        }
        None => open_transport(&settings.transport)?,
    };
    let config = EngineConfig {
        workers: settings.workers,
        single_node_clustered: settings.single_node_clustered,
        corosync: settings.corosync,
        state_dir: Some(settings.state_dir.clone()),
    };
    let mut engine = Engine::start(config.clone(), transport);
    let (observers, observed) = tokio::sync::watch::channel(engine.observer());
    let observed_for_watchdog = observed.clone();
    let (upgrade_tx, mut upgrades) = tokio::sync::mpsc::channel(1);
    let control_bound = serve_control(&settings.control_socket, observed.clone(), upgrade_tx);
    if let MetricsListen::On(address) = settings.metrics_listen {
        serve_metrics(address, observed);
    }
    tracing::info!(
        transport = %settings.transport, workers = settings.workers,
        metrics = %settings.metrics_listen, state_dir = %settings.state_dir.display(), "serving"
    );
    engine.started().await;
    let serving = format!("serving {} logs", engine.log_count());
    notify(&[NotifyState::Ready, NotifyState::Status(&serving)]);
    serve_watchdog(observed_for_watchdog);

    let stopped = loop {
        match until_stopped(&mut signals, &mut engine, &mut upgrades, overrides, &level).await {
            Stopped::Upgrade(asked) => {
                if let Err(why) = invocation.check() {
                    tracing::error!(%why, "upgrade refused: serving on as before");
                    let _ = asked.send(why);
                    continue;
                }
                tracing::info!(logs = engine.log_count(), "upgrade requested: handing over");
                let why = match upgrade(engine, &invocation).await {
                    Upgraded::ServingOn(socket) => {
                        transport = Transport::inherit(socket)
                            .map_err(|e| format!("the socket kept for the upgrade: {e}"))?;
                        "the exec failed"
                    }
                    Upgraded::NewSocket(why) => {
                        transport = open_transport(&settings.transport)?;
                        why
                    }
                };
                engine = Engine::start(config.clone(), transport);
                observers.send_replace(engine.observer());
                let _ = asked.send(format!("{why}; serving on with the running binary"));
            }
            other => break other,
        }
    };
    tracing::info!(logs = engine.log_count(), "stopping: committing every disk log");
    notify(&[NotifyState::Stopping]);
    // Under systemd the socket and the logs go to the next instance, if a restart follows
    // (a stop that is no restart flushes the fd store, and the kernel replays each CTR).
    let handed = match std::env::var_os("NOTIFY_SOCKET") {
        Some(_) => hand_over_to_systemd(engine).await,
        None => {
            engine.drain().await;
            false
        }
    };
    if handed {
        // The next instance starts when this process is gone, and the kernel's requests wait
        // for it: what is left (threads to join, memory to free) is not worth that wait.
        tracing::info!("stopped: handed over");
        std::process::exit(0);
    }
    // The lock is still held, so the sockets are this daemon's own.
    if let TransportSpec::Unix(path) = &settings.transport {
        let _ = std::fs::remove_file(path);
    }
    if control_bound {
        let _ = std::fs::remove_file(&settings.control_socket);
    }
    if matches!(stopped, Stopped::Closed) {
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

/// What ended serving.
enum Stopped {
    /// A terminating signal.
    Signal,
    /// The transport closed.
    Closed,
    /// `dm-ulogd upgrade`.
    Upgrade(UpgradeAsked),
}

/// How an upgrade ended, if it returned at all (a successful exec does not).
enum Upgraded {
    /// The exec failed: the socket and the manifest are there to take back.
    ServingOn(std::os::fd::OwnedFd),
    /// Nothing was handed over (why): the daemon serves on with a new socket, and the kernel
    /// replays each log's CTR as after a crash.
    NewSocket(&'static str),
}

/// Hands the engine over and executes the binary again; returns only if that failed.
async fn upgrade(engine: Engine, invocation: &Invocation) -> Upgraded {
    let socket = match engine.hand_over().await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::error!(%error, "upgrade: nothing handed over; serving on a new socket");
            return Upgraded::NewSocket("nothing could be handed over");
        }
    };
    let error = invocation.exec(&socket);
    tracing::error!(%error, "upgrade: exec failed; taking the handover back");
    Upgraded::ServingOn(socket)
}

/// systemd's watchdog (the unit's `WatchdogSec=`): `WATCHDOG=1` every half period, sent only
/// when the socket actor and every log actor have answered within it, so that a daemon
/// stuck behind a hung device or a busy loop is restarted rather than reported alive; with
/// it, `STATUS=` a one-line summary of the logs, which `systemctl status` shows.
fn serve_watchdog(observers: Observers) {
    let Some(period) = sd_notify::watchdog_enabled().filter(|p| !p.is_zero()) else { return };
    actix::spawn(async move {
        let mut withheld = false;
        loop {
            tokio::time::sleep(period / 2).await;
            let observer = observers.borrow().clone();
            if !observer.responsive(period / 2).await {
                if !std::mem::replace(&mut withheld, true) {
                    tracing::error!(
                        period_ms = period.as_millis() as u64,
                        "the engine did not answer within half the watchdog period: no WATCHDOG=1 until it does"
                    );
                }
                continue;
            }
            if std::mem::take(&mut withheld) {
                tracing::info!("the engine answers again: watchdog pings resume");
            }
            let summary = summary(&observer.status().await);
            notify(&[NotifyState::Watchdog, NotifyState::Status(&summary)]);
        }
    });
}

/// `serving 32 logs: 30 in sync, 2 resyncing, 0 log devices failed`.
fn summary(logs: &[dm_ulog_actors::LogStatus]) -> String {
    let in_sync = logs.iter().filter(|log| log.in_sync == log.regions).count();
    let failed = logs.iter().filter(|log| matches!(log.health, Some('D' | 'F'))).count();
    format!(
        "serving {} logs: {in_sync} in sync, {} resyncing, {failed} log devices failed",
        logs.len(),
        logs.len() - in_sync
    )
}

/// Stores the socket in systemd's fd store after the engine hands over; true if it did.
async fn hand_over_to_systemd(engine: Engine) -> bool {
    match engine.hand_over().await {
        Ok(socket) if restart::store_with_systemd(&socket) => {
            tracing::info!("socket stored with systemd for the next instance");
            true
        }
        Ok(_) => false,
        Err(error) => {
            tracing::warn!(%error, "no handover: the next daemon's kernel replays each CTR");
            false
        }
    }
}

/// Serves `dm-ulogd status` at `path`; false if it cannot. Status is for operators: without
/// its socket the daemon still serves the kernel.
fn serve_control(
    path: &Path,
    observers: Observers,
    upgrades: tokio::sync::mpsc::Sender<UpgradeAsked>,
) -> bool {
    match control::bind(path) {
        Ok(listener) => {
            actix::spawn(control::serve(listener, observers, upgrades));
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

/// Serves signals and upgrades until one asks the daemon to stop or upgrade, or the
/// transport closes.
async fn until_stopped(
    signals: &mut Signals,
    engine: &mut Engine,
    upgrades: &mut tokio::sync::mpsc::Receiver<UpgradeAsked>,
    overrides: &Overrides,
    level: &LevelHandle,
) -> Stopped {
    loop {
        let asked = tokio::select! {
            asked = signals.next() => asked,
            Some(asked) = upgrades.recv() => return Stopped::Upgrade(asked),
            _ = engine.closed() => return Stopped::Closed,
        };
        match asked {
            Asked::Stop(signal) => {
                tracing::info!(%signal, "stop requested");
                return Stopped::Signal;
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
fn serve_metrics(address: std::net::SocketAddr, observer: Observers) {
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

/// mlockall(2), each page locked as it is first touched (MCL_ONFAULT): a thread's stack or a
/// log's bitmap costs RAM as it is used, not as it is mapped. A failure (no CAP_IPC_LOCK and
/// a small RLIMIT_MEMLOCK) is said and served through.
fn lock_memory() {
    // SAFETY: mlockall(2) takes flags only.
    let locked =
        unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if locked == 0 {
        tracing::info!("memory locked: the daemon will not be swapped out");
    } else {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "memory not locked (LimitMEMLOCK=infinity or CAP_IPC_LOCK would allow it)");
    }
}

/// Every disk log keeps its device open, and some shadows their journal: a host with
/// thousands of mirrors needs more descriptors than the usual soft limit of 1024. The soft
/// limit is raised to the hard one, as far as the host allows; a failure only means fewer.
fn raise_open_file_limit() {
    if let Err(error) = dm_ulog_actors::open_files::raise_to_hard_limit() {
        tracing::warn!(%error, "could not raise the open-file limit; thousands of logs may not fit");
    }
}
