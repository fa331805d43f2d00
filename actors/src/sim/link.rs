//! The kernel's transfer layer (dm-log-userspace-transfer.c), simulated: one global seq
//! counter, every request waited for, a timeout followed by a resend under a new seq,
//! an immediate resend on EAGAIN, and replies matched on seq (late ones dropped).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::net::UnixDatagram;
use tokio::sync::{mpsc, oneshot};

use crate::transport::ChannelClient;
use crate::wire::reply::decode_reply;
use crate::wire::{Request, RequestHeader, Uuid, MAX_REQUEST_FRAME};

/// What came back for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 0 or a negative errno, as the kernel reads it.
    pub error: i32,
    pub data: Vec<u8>,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Nobody listens: the kernel's send fails with -ESRCH.
    #[error("no daemon listening")]
    NoListener,
    #[error("link closed")]
    Closed,
}

enum Outbound {
    Unix { socket: Arc<UnixDatagram>, daemon: PathBuf },
    Channel(mpsc::UnboundedSender<Vec<u8>>),
}

/// Counters of what went over the link.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub requests: AtomicU64,
    pub resends: AtomicU64,
}

/// The simulated kernel's end of a transport.
pub struct KernelLink {
    outbound: Outbound,
    /// The kernel sends under `dm_ulog_lock`: requests leave in the order they were made,
    /// even when the socket's queue is full and a send has to wait.
    send_order: tokio::sync::Mutex<()>,
    pending: Arc<DashMap<u32, oneshot::Sender<Answer>>>,
    seq: AtomicU32,
    timeout: Duration,
    pub stats: LinkStats,
}

impl KernelLink {
    /// A link over a unix datagram socket bound at `own_path`, talking to `daemon`.
    pub fn unix(own_path: &Path, daemon: &Path, timeout: Duration) -> io::Result<Arc<KernelLink>> {
        let _ = std::fs::remove_file(own_path);
        let socket = Arc::new(UnixDatagram::bind(own_path)?);
        let link = Arc::new(KernelLink::new(
            Outbound::Unix { socket: socket.clone(), daemon: daemon.to_owned() },
            timeout,
        ));
        let pending = link.pending.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(len) = socket.recv(&mut buf).await {
                deliver(&pending, &buf[..len]);
            }
        });
        Ok(link)
    }

    /// A link over an in-process channel to an engine.
    pub fn channel(client: ChannelClient, timeout: Duration) -> Arc<KernelLink> {
        let (requests, mut replies) = client.split();
        let link = Arc::new(KernelLink::new(Outbound::Channel(requests), timeout));
        let pending = link.pending.clone();
        tokio::spawn(async move {
            while let Some(reply) = replies.recv().await {
                deliver(&pending, &reply);
            }
        });
        link
    }

    fn new(outbound: Outbound, timeout: Duration) -> KernelLink {
        KernelLink {
            outbound,
            send_order: tokio::sync::Mutex::new(()),
            pending: Arc::new(DashMap::new()),
            seq: AtomicU32::new(0),
            timeout,
            stats: LinkStats::default(),
        }
    }

    /// Sends `request` for the log `(uuid, luid)` and waits for its answer, resending as the
    /// kernel does on timeout and on EAGAIN.
    pub async fn call(
        &self,
        uuid: &Uuid,
        luid: u64,
        version: u32,
        request: &Request,
    ) -> Result<Answer, LinkError> {
        let mut frame = [0u8; MAX_REQUEST_FRAME + 64];
        loop {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let header = RequestHeader {
                version,
                ..RequestHeader::current(request, uuid.clone(), luid, seq)
            };
            let len = request.emit(&header, &mut frame);
            let (tx, rx) = oneshot::channel();
            self.pending.insert(seq, tx);
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = self.send(&frame[..len]).await {
                self.pending.remove(&seq);
                return Err(error);
            }
            match tokio::time::timeout(self.timeout, rx).await {
                Ok(Ok(answer)) if answer.error == -libc::EAGAIN => {}
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(_)) => return Err(LinkError::Closed),
                Err(_elapsed) => {
                    self.pending.remove(&seq);
                }
            }
            self.stats.resends.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn send(&self, frame: &[u8]) -> Result<(), LinkError> {
        let _in_order = self.send_order.lock().await;
        match &self.outbound {
            Outbound::Unix { socket, daemon } => match socket.send_to(frame, daemon).await {
                Ok(_) => Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    Err(LinkError::NoListener)
                }
                Err(_) => Err(LinkError::Closed),
            },
            Outbound::Channel(tx) => tx.send(frame.to_vec()).map_err(|_| LinkError::NoListener),
        }
    }
}

/// Hands a reply to the request waiting for its seq; a reply nobody waits for is dropped,
/// as the kernel drops it.
fn deliver(pending: &DashMap<u32, oneshot::Sender<Answer>>, datagram: &[u8]) {
    let Some(reply) = decode_reply(datagram) else { return };
    if let Some((_, tx)) = pending.remove(&reply.seq) {
        let _ = tx.send(Answer { error: reply.error, data: reply.data.to_vec() });
    }
}
