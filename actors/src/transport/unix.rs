//! A unix datagram socket carrying exactly the kernel's bytes, replies going back to each
//! sender's bound path. Mode 0600: only root (or the owner) can reach the daemon.
//!
//! A unix peer's queue holds only `net.unix.max_dgram_qlen` datagrams (10 by default), so a
//! burst of replies can find it full. No sender ever waits for room: that would stall every
//! log served on its thread behind one slow peer. A reply that finds the queue full goes to
//! the [`Sender`]'s retry thread, which tries again every [`RETRY`] for up to [`GRACE`]
//! (an unbound socket is never told when a peer's queue has room), then drops and counts it:
//! a peer that stopped reading resends, as the kernel does after its timeout. At most
//! [`MAX_WAITING`] replies wait; more are dropped, and counted, at once.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::batch::Batch;
use super::{not_sent, Datagram, Incoming, Peer, ReplySink, SinkKind, Source, Transport};

/// How often replies waiting for room in a peer's queue are tried again.
const RETRY: Duration = Duration::from_millis(1);
/// How long a reply may wait for room before it is dropped: less than the kernel's 15 s,
/// after which the peer has resent and a late reply is of no use.
const GRACE: Duration = Duration::from_secs(10);
/// How many replies may wait at once (about 200 bytes each).
const MAX_WAITING: usize = 4096;

pub(super) type Socket = AsyncFd<std::os::unix::net::UnixDatagram>;

pub(super) fn bind(path: &Path) -> io::Result<Transport> {
    serve(super::bind_private(path, |p| std::os::unix::net::UnixDatagram::bind(p))?)
}

/// A bound socket a previous daemon handed over.
pub(super) fn inherit(socket: OwnedFd) -> io::Result<Transport> {
    serve(UnixDatagram::from(socket))
}

fn serve(socket: UnixDatagram) -> io::Result<Transport> {
    socket.set_nonblocking(true)?;
    let kept = super::duplicate(&socket)?;
    // SAFETY: the socket owns its file descriptor until dropped, and the AsyncFd owns it.
    let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
    let unsent = Arc::new(AtomicU64::new(0));
    let sender = Sender::start(unsent.clone())?;
    Ok(Transport {
        incoming: Incoming::new(Source::Unix(socket, Batch::new(), LastSender::default())),
        replies: ReplySink::new(SinkKind::Unix(sender), unsent),
        socket: Some(kept),
    })
}

/// The path of the last sender, kept so that datagrams from the same client (the usual
/// case) share one `Arc` instead of allocating a path each.
#[derive(Default)]
pub(super) struct LastSender(Option<Arc<Path>>);

impl LastSender {
    /// The bound path a datagram came from; `None` for an unbound or abstract socket.
    fn path(&mut self, sender: &libc::sockaddr_storage, len: usize) -> Option<Arc<Path>> {
        // SAFETY: the kernel filled `sender` as a sockaddr_un, which fits in its storage.
        let sender: &libc::sockaddr_un = unsafe { &*std::ptr::from_ref(sender).cast() };
        let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let path = &sender.sun_path[..len.saturating_sub(offset).min(sender.sun_path.len())];
        // SAFETY: c_char and u8 have the same size and alignment.
        let path: &[u8] = unsafe { &*(std::ptr::from_ref(path) as *const [u8]) };
        let path = &path[..path.iter().position(|b| *b == 0).unwrap_or(path.len())];
        if path.is_empty() {
            return None;
        }
        let path = Path::new(std::ffi::OsStr::from_bytes(path));
        match &self.0 {
            Some(last) if **last == *path => Some(last.clone()),
            _ => Some(self.0.insert(Arc::from(path)).clone()),
        }
    }
}

pub(super) fn poll_recv(
    socket: &Socket,
    batch: &mut Batch,
    senders: &mut LastSender,
    stopping: bool,
    cx: &mut Context<'_>,
) -> Poll<Option<Datagram>> {
    loop {
        while let Some(received) = batch.take() {
            match senders.path(received.sender, received.sender_len) {
                Some(path) => {
                    return Poll::Ready(Some(Datagram::decode(received.bytes, Peer::Unix(path))))
                }
                None => {
                    tracing::warn!("datagram from an unbound unix socket dropped: no reply address")
                }
            }
        }
        if stopping {
            return Poll::Ready(None);
        }
        if let Err(error) = ready!(batch.poll_receive(socket, cx)) {
            tracing::error!(%error, "unix socket failed");
            return Poll::Ready(None);
        }
    }
}

/// The replies' socket, which never waits, and the way to its retry thread.
pub(super) struct Sender {
    socket: Arc<UnixDatagram>,
    retries: mpsc::Sender<Waiting>,
}

/// A reply that found its peer's queue full.
struct Waiting {
    path: Arc<Path>,
    frame: Vec<u8>,
    since: Instant,
}

impl Sender {
    fn start(unsent: Arc<AtomicU64>) -> io::Result<Sender> {
        let socket = Arc::new(UnixDatagram::unbound()?);
        socket.set_nonblocking(true)?;
        let (retries, queue) = mpsc::channel();
        let retrying = socket.clone();
        std::thread::Builder::new()
            .name("dm-ulogd-retry".into())
            .spawn(move || retry(&retrying, &queue, &unsent))?;
        Ok(Sender { socket, retries })
    }

    pub(super) fn send(&self, path: &Arc<Path>, frame: &[u8]) -> io::Result<()> {
        match self.socket.send_to(frame, path) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let waiting =
                    Waiting { path: path.clone(), frame: frame.to_vec(), since: Instant::now() };
                self.retries.send(waiting).map_err(|_| error)
            }
            sent => sent.map(drop),
        }
    }
}

/// The retry thread: tries every waiting reply again each [`RETRY`] until it goes, fails,
/// or has waited [`GRACE`]; ends with the last [`Sender`].
fn retry(socket: &UnixDatagram, queue: &mpsc::Receiver<Waiting>, unsent: &AtomicU64) {
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    loop {
        let next = if waiting.is_empty() {
            queue.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            queue.recv_timeout(RETRY)
        };
        match next {
            Ok(reply) => waiting.push_back(reply),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if waiting.is_empty() => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(RETRY),
        }
        waiting.extend(queue.try_iter());
        while waiting.len() > MAX_WAITING {
            let dropped = waiting.pop_front().expect("more than none");
            let full = io::Error::from(io::ErrorKind::WouldBlock);
            not_sent(unsent, &Peer::Unix(dropped.path), &full);
        }
        waiting.retain(|reply| match socket.send_to(&reply.frame, &reply.path) {
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && reply.since.elapsed() < GRACE => {
                true
            }
            Err(error) => {
                not_sent(unsent, &Peer::Unix(reply.path.clone()), &error);
                false
            }
        });
    }
}
