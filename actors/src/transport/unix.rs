//! A unix datagram socket carrying exactly the kernel's bytes, replies going back to each
//! sender's bound path. Mode 0600: only root (or the owner) can reach the daemon.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::ReadBuf;
use tokio::net::UnixDatagram;

use super::{Datagram, Incoming, Peer, ReplySink, SinkKind, Source, Transport};

/// How long a reply may wait for room in a peer's receive queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn bind(path: &Path) -> io::Result<Transport> {
    let socket = super::bind_private(path, |p| UnixDatagram::bind(p))?;
    // Replies leave through a socket of their own, in blocking mode: an unbound unix datagram
    // socket never signals that a full peer queue has room again, so a non-blocking send
    // could only retry on a timer. A peer that stops reading for SEND_TIMEOUT loses the
    // reply, as a kernel would after its own timeout, and resends.
    let replies = std::os::unix::net::UnixDatagram::unbound()?;
    replies.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(Transport {
        incoming: Incoming::new(Source::Unix(Arc::new(socket))),
        replies: ReplySink(Arc::new(SinkKind::Unix(replies))),
    })
}

pub(super) fn poll_recv(
    socket: &UnixDatagram,
    cx: &mut Context<'_>,
    buffer: &mut [u8],
) -> Poll<Option<Datagram>> {
    loop {
        let mut read = ReadBuf::new(buffer);
        match ready!(socket.poll_recv_from(cx, &mut read)) {
            Ok(sender) => match sender.as_pathname() {
                Some(path) => {
                    let bytes = read.filled().to_vec();
                    return Poll::Ready(Some(Datagram { bytes, peer: Peer::Unix(path.into()) }));
                }
                None => {
                    tracing::warn!("datagram from an unbound unix socket dropped: no reply address")
                }
            },
            Err(error) => {
                tracing::error!(%error, "unix socket failed");
                return Poll::Ready(None);
            }
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
