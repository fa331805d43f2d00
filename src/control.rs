//! The control socket: a root-only unix stream socket on which `dm-ulogd status` asks the
//! running daemon for a snapshot of its logs, and `dm-ulogd upgrade` asks it to execute its
//! binary again without the kernel noticing ([`crate::restart`]). One line in (`status`,
//! JSON out; `upgrade`, `handing over` out, then the connection closes with the exec, or
//! `failed: <why>` if the daemon serves on as it was; `info`, the daemon's version, pid,
//! uptime and log count as JSON), then close.
//!
//! Nothing a client does may take the socket away from the next one: at most
//! [`MAX_CLIENTS`] are connected at once (more are closed at once), a client has
//! [`ASK_TIMEOUT`] to ask and [`ANSWER_TIMEOUT`] to take its answer, at most
//! [`MAX_ANSWERING`] answers are held in memory at once, each written log by log rather than
//! built whole, and a failed accept (no descriptor left) is waited out, not the end of the
//! socket.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dm_ulog_actors::transport::bind_private;
use dm_ulog_actors::{LogStatus, Observer};

use crate::daemon::Observers;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// Clients connected at once; an idle one costs a descriptor until [`ASK_TIMEOUT`].
const MAX_CLIENTS: usize = 64;
/// Answers being written at once: each holds a snapshot of every log.
const MAX_ANSWERING: usize = 4;
/// How long a client may take to send its line.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take to read its whole answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait after a failed accept before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds the socket (mode 0600, in a directory created 0700 if missing).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    bind_private(path, |p| UnixListener::bind(p))
}

/// Answers requests for as long as the daemon runs.
/// An upgrade asked on the control socket; the daemon answers only if it failed (a
/// successful exec closes the connection).
pub type UpgradeAsked = tokio::sync::oneshot::Sender<String>;

/// Answers requests for as long as the daemon runs; upgrades go to `upgrades`.
pub async fn serve(
    listener: UnixListener,
    observers: Observers,
    upgrades: tokio::sync::mpsc::Sender<UpgradeAsked>,
) {
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    let answering = Arc::new(Semaphore::new(MAX_ANSWERING));
    let mut failing = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::error!(%error, "control socket: accept failed; retrying");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!("control socket: accepting again");
        }
        // Over the limit the connection is closed unanswered: the client sees it at once.
        let Ok(permit) = clients.clone().try_acquire_owned() else { continue };
        let (observer, answering) = (observers.borrow().clone(), answering.clone());
        let upgrades = upgrades.clone();
        actix::spawn(async move {
            let _permit = permit;
            let _ = answer(stream, &observer, &answering, &upgrades).await;
        });
    }
}

/// Reads the client's line and writes its answer.
async fn answer(
    stream: UnixStream,
    observer: &Observer,
    answering: &Semaphore,
    upgrades: &tokio::sync::mpsc::Sender<UpgradeAsked>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(64));
    match tokio::time::timeout(ASK_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(read) => read?,
        Err(_) => return Ok(()),
    };
    match line.trim() {
        "status" => {
            let answered = async {
                let _answering = answering.acquire().await.map_err(io::Error::other)?;
                write_status(&mut write, &observer.status().await).await
            };
            tokio::time::timeout(ANSWER_TIMEOUT, answered).await.unwrap_or(Ok(()))
        }
        "info" => {
            let info = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "uptime_s": started().elapsed().as_secs(),
                "logs": observer.status().await.len(),
                "waiting_shadows": observer.waiting_shadows(),
            });
            let info = info.to_string();
            tokio::time::timeout(ANSWER_TIMEOUT, write.write_all(info.as_bytes()))
                .await
                .unwrap_or(Ok(()))
        }
        "upgrade" => {
            let (asked, failed) = tokio::sync::oneshot::channel();
            if upgrades.try_send(asked).is_err() {
                return write.write_all(b"failed: an upgrade is under way already\n").await;
            }
            write.write_all(b"handing over\n").await?;
            // Answered only if the daemon serves on as it was; the exec closes this socket.
            if let Ok(why) = failed.await {
                write.write_all(format!("failed: {why}\n").as_bytes()).await?;
            }
            Ok(())
        }
        other => {
            let error = serde_json::json!({ "error": format!("unknown command {other:?}") });
            let error = error.to_string();
            let answered = write.write_all(error.as_bytes());
            tokio::time::timeout(ANSWER_TIMEOUT, answered).await.unwrap_or(Ok(()))
        }
    }
}

/// The logs as one JSON array, written one log at a time.
async fn write_status(write: &mut OwnedWriteHalf, logs: &[LogStatus]) -> io::Result<()> {
    let mut buffer = Vec::with_capacity(1024);
    buffer.push(b'[');
    for (i, log) in logs.iter().enumerate() {
        if i > 0 {
            buffer.push(b',');
        }
        serde_json::to_writer(&mut buffer, log).map_err(io::Error::other)?;
        write.write_all(&buffer).await?;
        buffer.clear();
    }
    buffer.push(b']');
    write.write_all(&buffer).await
}

/// When this process started serving (the first call, which the daemon makes at start); an
/// upgrade's exec starts it over, as the new binary's uptime.
pub fn started() -> std::time::Instant {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(std::time::Instant::now)
}

/// The daemon's version, pid, uptime and log count, as `info` answers them; `None` if it
/// does not answer.
pub fn info(path: &Path) -> Option<serde_json::Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    stream.write_all(b"info\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}

/// Asks the daemon listening at `path` to upgrade: it executes its binary again (a new
/// version installed in its place) and serves on, the kernel's socket and every log carried
/// over. Waits until the new instance answers `status`.
pub fn upgrade(path: &Path) -> Result<(), String> {
    let unreachable =
        |e: io::Error| format!("control socket {}: {e} (is dm-ulogd running?)", path.display());
    let before = query(path)?.len();
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(unreachable)?;
    stream.write_all(b"upgrade\n").map_err(unreachable)?;
    // The answer ends when the exec closes the socket, or with the reason it failed.
    let mut answer = String::new();
    stream.set_read_timeout(Some(UPGRADE_TIMEOUT)).map_err(unreachable)?;
    stream.read_to_string(&mut answer).map_err(unreachable)?;
    if let Some(why) = answer.lines().find_map(|l| l.strip_prefix("failed: ")) {
        return Err(format!("not upgraded: {why}"));
    }
    if !answer.starts_with("handing over") {
        return Err(format!("unexpected answer from the daemon: {answer:?}"));
    }
    let deadline = std::time::Instant::now() + UPGRADE_TIMEOUT;
    loop {
        match query(path) {
            Ok(logs) => {
                println!("upgraded: serving {} logs (before: {before})", logs.len());
                return Ok(());
            }
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => return Err(format!("the upgraded daemon does not answer: {error}")),
        }
    }
}

/// How long an upgrade may take before `dm-ulogd upgrade` gives up waiting on it.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks the daemon listening at `path` for the status of its logs.
pub fn query(path: &Path) -> Result<Vec<LogStatus>, String> {
    let unreachable =
        |e: io::Error| format!("control socket {}: {e} (is dm-ulogd running?)", path.display());
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(unreachable)?;
    stream.write_all(b"status\n").map_err(unreachable)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(unreachable)?;
    if answer.is_empty() {
        return Err(format!(
            "control socket {}: closed without an answer (more than {MAX_CLIENTS} clients at once?)",
            path.display()
        ));
    }
    serde_json::from_str(&answer)
        .map_err(|e| format!("unexpected answer from the daemon: {e}: {answer}"))
}
