//! The control socket: a root-only unix stream socket on which `dm-ulogd status` asks the
//! running daemon for a snapshot of its logs. One line in (`status`), JSON out, then close.
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
pub async fn serve(listener: UnixListener, observer: Observer) {
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
        let (observer, answering) = (observer.clone(), answering.clone());
        actix::spawn(async move {
            let _permit = permit;
            let answered = answer(stream, &observer, &answering);
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, answered).await;
        });
    }
}

/// Reads the client's line and writes its answer.
async fn answer(stream: UnixStream, observer: &Observer, answering: &Semaphore) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(64));
    match tokio::time::timeout(ASK_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(read) => read?,
        Err(_) => return Ok(()),
    };
    match line.trim() {
        "status" => {
            let _answering = answering.acquire().await.map_err(io::Error::other)?;
            write_status(&mut write, &observer.status().await).await
        }
        other => {
            let error = serde_json::json!({ "error": format!("unknown command {other:?}") });
            write.write_all(error.to_string().as_bytes()).await
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
