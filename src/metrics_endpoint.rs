//! The metrics endpoint: a minimal HTTP/1.1 responder that answers `GET /metrics` with the
//! Prometheus text format (see `exposition`), and nothing else.
//!
//! It runs on a thread and runtime of its own, so a scrape never takes time from the
//! thread that answers the kernel: rendering thousands of logs costs milliseconds, and the
//! kernel waits for every reply. Clients are not trusted to behave: a request head must
//! arrive whole within [`READ_TIMEOUT`] and fit in [`MAX_HEAD`] bytes, a response must be
//! taken within [`WRITE_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once (more
//! wait in the listen backlog). Every response closes its connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dm_ulog_actors::Observer;

use crate::daemon::Observers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::exposition;

const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the logs may take to report. A log actor waiting on a hung log device answers
/// nothing meanwhile; the scrape then fails (503) rather than hold its connection forever.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Far more than a scraper's request head (a few hundred bytes).
const MAX_HEAD: usize = 8192;
const MAX_CONNECTIONS: usize = 8;

/// The version of the text format served, as its content type names it.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds the endpoint's socket, so that a failure shows at start-up.
pub fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves the endpoint on a thread of its own until the process exits.
pub fn spawn(listener: std::net::TcpListener, observer: Observers) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        runtime.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, observer).await,
                Err(error) => tracing::error!(%error, "metrics endpoint failed"),
            }
        })
    })?;
    Ok(())
}

async fn serve(listener: TcpListener, observer: Observers) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Running out of file descriptors passes; anything else may not.
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let observer = observer.borrow().clone();
        tokio::spawn(async move {
            answer(stream, &observer).await;
            drop(slot);
        });
    }
}

/// Reads one request head and writes one response.
async fn answer(mut stream: TcpStream, observer: &Observer) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Err(_) | Ok(Err(_)) => return,
        Ok(Ok(None)) => {
            response("431 Request Header Fields Too Large", "text/plain", "too large\n")
        }
        Ok(Ok(Some(head))) => match request_line(&head) {
            None => response("400 Bad Request", "text/plain", "bad request\n"),
            Some(("GET", "/metrics")) => scrape(observer).await,
            Some(("GET", _)) => response("404 Not Found", "text/plain", "try /metrics\n"),
            Some(_) => response("405 Method Not Allowed", "text/plain", "GET only\n"),
        },
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// The metrics, or 503 when the logs do not all report within [`STATUS_TIMEOUT`].
async fn scrape(observer: &Observer) -> String {
    match tokio::time::timeout(STATUS_TIMEOUT, observer.status()).await {
        Ok(logs) => response("200 OK", CONTENT_TYPE, &exposition::render(observer, &logs)),
        Err(_) => response("503 Service Unavailable", "text/plain", "logs late\n"),
    }
}

/// The request head, up to its blank line; `None` when it is larger than [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let blank_line = head.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = blank_line.or_else(|| head.windows(2).position(|w| w == b"\n\n")) {
            return Ok(Some(String::from_utf8_lossy(&head[..end]).into_owned()));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..read]);
    }
}

/// The method and the path (without a query) of `METHOD TARGET HTTP/1.x`.
fn request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut words = line.split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    let path = target.split('?').next()?;
    (words.next().is_none() && version.starts_with("HTTP/1.") && path.starts_with('/'))
        .then_some((method, path))
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    // A 405 must say what is allowed (RFC 9110).
    let allow = if status.starts_with("405") { "Allow: GET\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_read_strictly() {
        assert_eq!(request_line("GET /metrics HTTP/1.1\r\n\r\n"), Some(("GET", "/metrics")));
        assert_eq!(request_line("GET /metrics?x=1 HTTP/1.0\n\n"), Some(("GET", "/metrics")));
        assert_eq!(request_line("POST / HTTP/1.1\r\n\r\n"), Some(("POST", "/")));
        for bad in ["", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n"] {
            assert_eq!(request_line(bad), None, "{bad:?}");
        }
        assert_eq!(request_line("GET /metrics HTTP/1.1 extra\r\n\r\n"), None);
    }
}
