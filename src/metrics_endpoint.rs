//! The metrics endpoint: hyper's HTTP/1.1 server, answering `GET /metrics` (and `HEAD`)
//! with the engine's metrics (see `exposition`) in the format the scraper asks for.
//!
//! It runs on a thread and runtime of its own, so a scrape never takes time from the
//! thread that answers the kernel: rendering thousands of logs costs milliseconds, and the
//! kernel waits for every reply. Clients are not trusted to behave: hyper closes a
//! connection whose request head does not arrive whole within [`HEAD_TIMEOUT`] (which an
//! idle keep-alive connection runs out too) and answers 431 to a head larger than
//! [`MAX_HEAD`] bytes or [`MAX_HEADERS`] headers; a response not taken within
//! [`WRITE_TIMEOUT`] closes its connection. Up to [`MAX_CONNECTIONS`] are open at once (more
//! wait in the listen backlog): far more than scrapers open, so idle ones starve no scrape.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

use crate::daemon::Observers;
use crate::exposition::{Format, Scrape};

/// How long a request head may take, counted from the end of the previous response on a
/// kept-alive connection: longer than the common scrape intervals (15 s, 30 s), so that
/// Prometheus keeps its connection between scrapes.
const HEAD_TIMEOUT: Duration = Duration::from_secs(35);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the logs may take to report. A log actor waiting on a hung log device answers
/// nothing meanwhile; the scrape then fails (503) rather than hold its connection forever.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Far more than a scraper's request head (a few hundred bytes); hyper's least.
const MAX_HEAD: usize = 8192;
const MAX_HEADERS: usize = 32;
const MAX_CONNECTIONS: usize = 512;
/// Scrapes asking the logs at once: each asks every log actor, so a burst of scrapers must
/// not queue thousands of status requests in front of the kernel's.
const MAX_SCRAPES: usize = 4;

/// Binds the endpoint's socket, so that a failure shows at start-up.
pub fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves the endpoint on a thread of its own until the process exits.
pub fn spawn(listener: std::net::TcpListener, observers: Observers) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        runtime.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, observers).await,
                Err(error) => tracing::error!(%error, "metrics endpoint failed"),
            }
        })
    })?;
    Ok(())
}

async fn serve(listener: TcpListener, observers: Observers) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let endpoint = Endpoint { observers, scrapes: Arc::new(Semaphore::new(MAX_SCRAPES)) };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    loop {
        let Ok(slot) = connections.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Running out of file descriptors passes; anything else may not.
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let endpoint = endpoint.clone();
        let service = service_fn(move |request| {
            let endpoint = endpoint.clone();
            async move { Ok::<_, Infallible>(endpoint.answer(request).await) }
        });
        let connection = http.serve_connection(TokioIo::new(Box::pin(stream)), service);
        tokio::spawn(async move {
            // A client gone, timed out or speaking no HTTP ends its connection; nothing else.
            let _ = connection.await;
            drop(slot);
        });
    }
}

#[derive(Clone)]
struct Endpoint {
    observers: Observers,
    scrapes: Arc<Semaphore>,
}

impl Endpoint {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let reads = matches!(*request.method(), Method::GET | Method::HEAD);
        match (reads, request.uri().path()) {
            (true, "/metrics") => {
                let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
                self.scrape(Format::accepted(accept)).await
            }
            (true, _) => plain(StatusCode::NOT_FOUND, "try /metrics\n"),
            (false, _) => {
                let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
                response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                response
            }
        }
    }

    /// The metrics, or 503 when the logs do not all report within [`STATUS_TIMEOUT`].
    async fn scrape(&self, format: Format) -> Response<Full<Bytes>> {
        let observer = self.observers.borrow().clone();
        let report = async {
            let _turn = self.scrapes.acquire().await;
            observer.status().await
        };
        let Ok(logs) = tokio::time::timeout(STATUS_TIMEOUT, report).await else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "logs late\n");
        };
        let text = Scrape::take(&observer, logs).encode(format);
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        response
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
