//! The kernel's side: a NETLINK_CONNECTOR socket in device-mapper's group 7.
//!
//! It binds with no groups and joins group 7 with NETLINK_ADD_MEMBERSHIP (binding with
//! `nl_groups = 7` would join groups 1 to 3 instead, since that field is a bit mask). Only
//! datagrams from port 0, the kernel, are taken; replies go unicast to port 0.

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use netlink_sys::{protocols::NETLINK_CONNECTOR, SocketAddr};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::batch::Batch;
use super::{Datagram, Incoming, Peer, ReplySink, SinkKind, Source, Transport};
use crate::wire::CN_IDX_DM;

pub(super) type Socket = AsyncFd<netlink_sys::Socket>;

pub(super) fn open() -> io::Result<Transport> {
    let mut socket = netlink_sys::Socket::new(NETLINK_CONNECTOR)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    socket.add_membership(CN_IDX_DM)?;
    serve(socket)
}

/// A socket a previous daemon opened and joined to the group, handed over.
pub(super) fn inherit(socket: OwnedFd) -> io::Result<Transport> {
    // SAFETY: `socket` is an owned netlink socket (checked by the caller), now the Socket's.
    serve(unsafe { netlink_sys::Socket::from_raw_fd(socket.into_raw_fd()) })
}

fn serve(socket: netlink_sys::Socket) -> io::Result<Transport> {
    socket.set_non_blocking(true)?;
    let kept = super::duplicate(&socket)?;
    // SAFETY: the Socket owns its file descriptor and returns the same one until dropped,
    // and the AsyncFd owns the Socket.
    let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
    let socket = Arc::new(socket);
    Ok(Transport {
        incoming: Incoming::new(Source::Netlink(socket.clone(), Batch::new())),
        replies: ReplySink::new(SinkKind::Netlink(socket), Default::default()),
        socket: Some(kept),
    })
}

/// The next datagram from the kernel; once `stopping`, only those already received.
pub(super) fn poll_recv(
    socket: &Socket,
    batch: &mut Batch,
    stopping: bool,
    cx: &mut Context<'_>,
) -> Poll<Option<Datagram>> {
    loop {
        while let Some(received) = batch.take() {
            // SAFETY: the kernel filled `sender` as a sockaddr_nl, which fits in its storage.
            let sender: &libc::sockaddr_nl =
                unsafe { &*std::ptr::from_ref(received.sender).cast() };
            if sender.nl_pid == 0 {
                return Poll::Ready(Some(Datagram::decode(received.bytes, Peer::Kernel)));
            }
            tracing::warn!(port = sender.nl_pid, "datagram not from the kernel dropped");
        }
        if stopping {
            return Poll::Ready(None);
        }
        match ready!(batch.poll_receive(socket, cx)) {
            Ok(()) => {}
            // ENOBUFS: the kernel dropped messages for us; it resends them after its timeout.
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                tracing::warn!(%error, "netlink receive failed")
            }
            Err(error) => {
                tracing::error!(%error, "netlink socket failed");
                return Poll::Ready(None);
            }
        }
    }
}

pub(super) fn send(socket: &Socket, frame: &[u8]) -> io::Result<()> {
    socket.get_ref().send_to(frame, &SocketAddr::new(0, 0), 0).map(drop)
}

/// The capabilities the netlink transport needs and this process lacks, by name.
pub fn missing_capabilities() -> Vec<&'static str> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("CapEff:"))?.to_owned();
            u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
        })
        .unwrap_or(0);
    [(CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")]
        .into_iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| name)
        .collect()
}
