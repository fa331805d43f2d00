//! Datagram in, datagram out: the kernel's netlink connector, a unix datagram socket that
//! carries the same bytes (for the simulator, tests and benches), or an in-process channel
//! (for programs that embed the engine).
//!
//! Every transport is split the same way: [`Incoming`], a stream of datagrams that the socket
//! actor consumes, each decoded straight from the receive buffer, and [`ReplySink`], a cheap
//! handle that any log actor uses to answer from its own thread without going back through
//! the socket actor.

mod batch;
mod channel;
mod netlink;
mod private_socket;
mod unix;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix::prelude::Stream;

pub use channel::{channel_pair, ChannelClient};
pub use netlink::missing_capabilities;
pub use private_socket::bind_private;

use crate::wire::{
    self, Errno, FrameError, Reply, Request, RequestError, RequestHeader, MAX_REPLY_FRAME,
};

/// The most a received datagram may hold: a connector message's largest payload and headers.
/// Larger ones arrive cut short and are refused as incomplete.
const RECEIVE_BUFFER: usize = wire::buffer::CONNECTOR_HEADER_LEN + wire::CONNECTOR_MAX_MSG_SIZE;

/// Where a datagram came from, and so where its reply goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// The kernel, netlink port 0.
    Kernel,
    /// A unix datagram socket bound to this path.
    Unix(Arc<Path>),
    /// The other end of an in-process channel.
    Channel,
    /// The engine itself: the CTR and RESUME it makes to take a handed-over log back, whose
    /// answers go nowhere.
    Engine,
}

/// One received datagram, decoded where it was received (in the receive batch's buffer),
/// so that taking a request costs no allocation of its bytes.
#[derive(Debug)]
pub struct Datagram {
    pub peer: Peer,
    /// When it was taken from the transport, for the latency metrics.
    pub received: Instant,
    /// Its request, or why it has no readable header.
    pub frame: Result<Frame, FrameError>,
}

/// A frame with a readable request header.
#[derive(Debug)]
pub struct Frame {
    pub header: RequestHeader,
    /// The request, or why its payload does not fit its type.
    pub request: Result<Request, RequestError>,
}

impl Datagram {
    fn decode(bytes: &[u8], peer: Peer) -> Datagram {
        let received = Instant::now();
        let frame = wire::decode_frame(bytes)
            .map(|frame| Frame { request: frame.request(), header: frame.header });
        Datagram { peer, received, frame }
    }
}

/// A transport, opened: the incoming stream and the reply handle.
pub struct Transport {
    pub incoming: Incoming,
    pub replies: ReplySink,
    /// The socket the kernel (or a client) sends to, duplicated, so that it can be handed to
    /// the next daemon ([`crate::handover`]); `None` for the in-process channel.
    pub socket: Option<OwnedFd>,
}

impl Transport {
    /// The kernel's netlink connector, group 7. Needs CAP_NET_ADMIN (to join the group) and
    /// CAP_SYS_ADMIN (the kernel drops replies from senders without it).
    pub fn netlink() -> io::Result<Transport> {
        netlink::open()
    }

    /// A unix datagram socket at `path`, mode 0600. A stale socket file there is replaced.
    pub fn unix(path: &Path) -> io::Result<Transport> {
        unix::bind(path)
    }

    /// The transport a previous daemon handed over: `socket` must be a netlink connector
    /// socket (its membership of the group stands) or a bound unix datagram socket, and is
    /// checked for being one before it is used.
    pub fn inherit(socket: OwnedFd) -> io::Result<Transport> {
        let option = |name| sockopt(&socket, name);
        let (domain, kind) = (option(libc::SO_DOMAIN)?, option(libc::SO_TYPE)?);
        let protocol = option(libc::SO_PROTOCOL)?;
        match (domain, kind) {
            (libc::AF_NETLINK, libc::SOCK_DGRAM)
                if protocol == netlink_sys::protocols::NETLINK_CONNECTOR as i32 =>
            {
                netlink::inherit(socket)
            }
            (libc::AF_UNIX, libc::SOCK_DGRAM) => unix::inherit(socket),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the inherited descriptor is no netlink connector or unix datagram socket \
                     (domain {domain}, type {kind}, protocol {protocol})"
                ),
            )),
        }
    }
}

/// An integer socket option of `socket`.
fn sockopt(socket: &OwnedFd, name: libc::c_int) -> io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes to `value`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// A duplicate of `socket` (close-on-exec), kept for a handover.
fn duplicate(socket: &impl AsFd) -> io::Result<OwnedFd> {
    socket.as_fd().try_clone_to_owned()
}

/// The datagrams arriving on a transport.
pub struct Incoming {
    source: Source,
    /// Set to stop receiving: the stream yields what it has received already, then ends.
    stopping: Arc<AtomicBool>,
}

enum Source {
    Netlink(Arc<netlink::Socket>, batch::Batch),
    Unix(unix::Socket, batch::Batch, unix::LastSender),
    Channel(tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>),
}

impl Incoming {
    fn new(source: Source) -> Incoming {
        Incoming { source, stopping: Arc::default() }
    }

    /// A switch that ends the stream once it has yielded every datagram it has taken from
    /// the socket, so that none is lost with it; what the socket still queues stays there.
    pub(crate) fn stop_switch(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }
}

impl Stream for Incoming {
    type Item = Datagram;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Datagram>> {
        let this = self.get_mut();
        let stopping = this.stopping.load(Ordering::Relaxed);
        match &mut this.source {
            Source::Netlink(socket, batch) => netlink::poll_recv(socket, batch, stopping, cx),
            Source::Unix(socket, batch, senders) => {
                unix::poll_recv(socket, batch, senders, stopping, cx)
            }
            Source::Channel(_) if stopping => Poll::Ready(None),
            Source::Channel(rx) => rx
                .poll_recv(cx)
                .map(|bytes| bytes.map(|bytes| Datagram::decode(&bytes, Peer::Channel))),
        }
    }
}

/// Sends replies. Cloned into every log actor; sending never blocks the caller: a reply
/// that cannot go (a peer that stopped reading) is dropped and counted, and the peer resends
/// the request after its timeout, as the kernel does.
#[derive(Clone)]
pub struct ReplySink(Arc<Sink>);

struct Sink {
    kind: SinkKind,
    unsent: Arc<AtomicU64>,
}

enum SinkKind {
    Netlink(Arc<netlink::Socket>),
    Unix(unix::Sender),
    Channel(tokio::sync::mpsc::UnboundedSender<Vec<u8>>),
}

impl ReplySink {
    fn new(kind: SinkKind, unsent: Arc<AtomicU64>) -> ReplySink {
        ReplySink(Arc::new(Sink { kind, unsent }))
    }

    /// Replies that could not be sent.
    pub fn unsent(&self) -> u64 {
        self.0.unsent.load(Ordering::Relaxed)
    }

    /// Answers a request: `capacity` is what the kernel accepts for it.
    pub fn reply(&self, peer: &Peer, header: &RequestHeader, capacity: usize, reply: &Reply) {
        let mut frame = [0u8; MAX_REPLY_FRAME];
        let len = wire::emit_reply(header, capacity, reply, &mut frame);
        self.send(peer, &frame[..len]);
    }

    /// An error reply that keeps `room` bytes of reply buffer for the kernel's retry.
    pub(crate) fn refuse_keeping_room(
        &self,
        peer: &Peer,
        header: &RequestHeader,
        errno: Errno,
        room: usize,
    ) {
        let mut frame = [0u8; MAX_REPLY_FRAME];
        let len = wire::emit_refusal(header, errno, room, &mut frame);
        self.send(peer, &frame[..len]);
    }

    /// The zero-length ack for a frame whose request could not be read.
    pub fn ack(&self, peer: &Peer, seq: u32, errno: Option<Errno>) {
        let mut frame = [0u8; MAX_REPLY_FRAME];
        let len = wire::emit_ack(seq, errno, &mut frame);
        self.send(peer, &frame[..len]);
    }

    fn send(&self, peer: &Peer, frame: &[u8]) {
        let result = match (&self.0.kind, peer) {
            (_, Peer::Engine) => Ok(()),
            (SinkKind::Netlink(socket), Peer::Kernel) => netlink::send(socket, frame),
            (SinkKind::Unix(sender), Peer::Unix(path)) => sender.send(path, frame),
            (SinkKind::Channel(tx), Peer::Channel) => {
                tx.send(frame.to_vec()).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
            }
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "peer of another transport")),
        };
        if let Err(error) = result {
            not_sent(&self.0.unsent, peer, &error);
        }
    }
}

/// Counts a reply that did not go. A peer that stopped reading loses every reply: said for
/// the first and then for every thousandth, counted always.
fn not_sent(unsent: &AtomicU64, peer: &Peer, error: &io::Error) {
    let unsent = unsent.fetch_add(1, Ordering::Relaxed) + 1;
    if error.kind() != io::ErrorKind::WouldBlock || unsent % 1000 == 1 {
        tracing::warn!(?peer, %error, unsent, "reply not sent; the peer will resend the request");
    }
}
