//! The control socket: a root-only unix stream socket on which `dm-ulogd status` asks the
//! running daemon for a snapshot of its logs. One line in (`status`), JSON out, then close.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dm_ulog_actors::transport::bind_private;
use dm_ulog_actors::{LogStatus, Observer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// Binds the socket (mode 0600, in a directory created 0700 if missing).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    bind_private(path, |p| UnixListener::bind(p))
}

/// Answers requests until the listener fails.
pub async fn serve(listener: UnixListener, observer: Observer) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::error!(%error, "control socket failed");
                return;
            }
        };
        let observer = observer.clone();
        actix::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read.take(64));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let answer = match line.trim() {
                "status" => serde_json::to_string(&observer.status().await)
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
                other => format!("{{\"error\":\"unknown command {other:?}\"}}"),
            };
            let _ = write.write_all(answer.as_bytes()).await;
        });
    }
}

/// Asks the daemon listening at `path` for the status of its logs.
pub fn query(path: &Path) -> Result<Vec<LogStatus>, String> {
    let unreachable =
        |e: io::Error| format!("control socket {}: {e} (is dm-ulogd running?)", path.display());
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(unreachable)?;
    stream.write_all(b"status\n").map_err(unreachable)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(unreachable)?;
    serde_json::from_str(&answer)
        .map_err(|e| format!("unexpected answer from the daemon: {e}: {answer}"))
}
