//! A unix datagram socket carrying exactly the kernel's bytes, replies going back to each
//! sender's bound path. Mode 0600: only root (or the owner) can reach the daemon.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::ReadBuf;
use tokio::net::UnixDatagram;

use super::{Datagram, Incoming, Peer, ReplySink, SinkKind, Source, Transport};

pub(super) fn bind(path: &Path) -> io::Result<Transport> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let socket = UnixDatagram::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let socket = Arc::new(socket);
    Ok(Transport {
        incoming: Incoming::new(Source::Unix(socket.clone())),
        replies: ReplySink(Arc::new(SinkKind::Unix(socket))),
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

pub(super) fn send(socket: &Arc<UnixDatagram>, path: &Arc<Path>, frame: &[u8]) -> io::Result<()> {
    match socket.try_send_to(frame, path) {
        Ok(_) => Ok(()),
        // The peer's queue is full: finish the send without holding up the caller.
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            let (socket, path, frame) = (socket.clone(), path.clone(), frame.to_vec());
            tokio::spawn(async move {
                if let Err(error) = socket.send_to(&frame, &path).await {
                    tracing::warn!(%error, "reply not sent");
                }
            });
            Ok(())
        }
        Err(error) => Err(error),
    }
}
