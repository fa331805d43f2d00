//! A unix datagram socket carrying exactly the kernel's bytes, replies going back to each
//! sender's bound path. Mode 0600: only root (or the owner) can reach the daemon.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::batch::Batch;
use super::{Datagram, Incoming, Peer, ReplySink, SinkKind, Source, Transport};

/// How long a reply may wait for room in a peer's receive queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) type Socket = AsyncFd<std::os::unix::net::UnixDatagram>;

pub(super) fn bind(path: &Path) -> io::Result<Transport> {
    let socket = super::bind_private(path, |p| std::os::unix::net::UnixDatagram::bind(p))?;
    socket.set_nonblocking(true)?;
    // SAFETY: the socket owns its file descriptor until dropped, and the AsyncFd owns it.
    let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
    // Replies leave through a socket of their own, in blocking mode: an unbound unix datagram
    // socket never signals that a full peer queue has room again, so a non-blocking send
    // could only retry on a timer. A peer that stops reading for SEND_TIMEOUT loses the
    // reply, as a kernel would after its own timeout, and resends.
    let replies = std::os::unix::net::UnixDatagram::unbound()?;
    replies.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(Transport {
        incoming: Incoming::new(Source::Unix(socket, Batch::new(), LastSender::default())),
        replies: ReplySink(Arc::new(SinkKind::Unix(replies))),
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
        if let Err(error) = ready!(batch.poll_receive(socket, cx)) {
            tracing::error!(%error, "unix socket failed");
            return Poll::Ready(None);
        }
    }
}

pub(super) fn send(
    socket: &std::os::unix::net::UnixDatagram,
    path: &Path,
    frame: &[u8],
) -> io::Result<()> {
    socket.send_to(frame, path).map(drop)
}
