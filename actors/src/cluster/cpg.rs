//! CPG, corosync's closed process groups, as one log's group sees it: join, multicast, leave,
//! and a stream of what CPG delivers (views and messages, in the agreed order).
//!
//! rust-corosync calls back through plain `fn` pointers, so each connection (one per group)
//! carries its group's channel as the CPG context, and the callbacks find it there: no table
//! shared by the process, so engines in one process keep their groups apart. The callbacks
//! run inside `dispatch`, which the event stream calls on the log actor's own thread whenever
//! the CPG fd is readable; the events then come out of the stream in the order CPG delivered
//! them.

use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix::prelude::Stream;
use rust_corosync::{cpg, CsError, DispatchFlags, NodeId};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::state::Member;

/// What CPG delivered to a group.
#[derive(Debug)]
pub(crate) enum GroupEvent {
    /// The group's membership changed: `members` now, `joined` new, `left` gone.
    View {
        members: Vec<Member>,
        left: Vec<Member>,
        joined: Vec<Member>,
    },
    Delivered {
        from: Member,
        bytes: Vec<u8>,
    },
    /// The local corosync is gone (or refused us): the group is gone with it.
    Lost(CsError),
}

/// The outcome of a multicast.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sent {
    Queued,
    /// CPG's flow control: try again once something was dispatched.
    TryAgain,
}

/// A joined group.
pub(super) struct CpgGroup {
    /// A clone: the connection closes when the event stream, which owns it, is dropped.
    handle: cpg::Handle,
    name: String,
    me: Member,
}

impl CpgGroup {
    /// Connects to the local corosync and joins `name`; the stream yields the group's events.
    pub(super) fn join(name: &str) -> Result<(CpgGroup, GroupEvents), CsError> {
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(on_deliver),
            confchg_fn: Some(on_confchg),
            totem_confchg_fn: None,
        });
        let (tx, rx) = unbounded_channel();
        let route = Route(Box::into_raw(Box::new(tx)));
        // rust-corosync 3.2's initialize hands corosync the address of its own argument, not
        // the value, as the context: the route is set afterwards, before any dispatch.
        let handle = cpg::initialize(&model, 0)?;
        cpg::context_set(&handle, route.0 as u64)?;
        let node = u32::from(cpg::local_get(&handle)?);
        let fd = cpg::fd_get(&handle)?;
        // SAFETY: the fd is open as long as the handle is; the stream owns both and drops the
        // AsyncFd (deregistering the fd) before the handle (which closes it).
        let fd = unsafe { AsyncFd::register_with_interest(BorrowedRawFd(fd), Interest::READABLE) }
            .map_err(|_| CsError::CsErrLibrary)?;
        let me = Member { node, pid: std::process::id() };
        let group = CpgGroup { handle: handle.clone(), name: name.to_owned(), me };
        let events = GroupEvents { fd, handle, rx, lost: false, _route: route };
        cpg::join(&group.handle, name)?;
        Ok((group, events))
    }

    pub(super) fn me(&self) -> Member {
        self.me
    }

    /// Multicasts `bytes` in agreed order to every member, this one included.
    pub(super) fn send(&self, bytes: &[u8]) -> Result<Sent, CsError> {
        match cpg::mcast_joined(&self.handle, cpg::Guarantee::TypeAgreed, bytes) {
            Ok(()) => Ok(Sent::Queued),
            Err(CsError::CsErrTryAgain) => Ok(Sent::TryAgain),
            Err(error) => Err(error),
        }
    }
}

impl Drop for CpgGroup {
    /// Leaves the group; dropping the event stream then disconnects from corosync.
    fn drop(&mut self) {
        let _ = cpg::leave(&self.handle, &self.name);
    }
}

/// The group's events, dispatched on the thread that polls this stream.
pub(super) struct GroupEvents {
    /// Declared before `handle`, so it is dropped (and deregistered) before the fd closes.
    fd: AsyncFd<BorrowedRawFd>,
    /// The connection: dropping it disconnects from corosync.
    handle: cpg::Handle,
    rx: UnboundedReceiver<GroupEvent>,
    lost: bool,
    /// Declared after `handle`: freed only once the connection, and so any dispatch, is gone.
    _route: Route,
}

/// The group's channel, owned here and lent to corosync as the connection's context, where
/// the callbacks find it.
struct Route(*mut UnboundedSender<GroupEvent>);

impl Drop for Route {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Box::into_raw in `join` and is freed only here; the
        // callbacks that read it run inside `dispatch`, which no finalized connection runs.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

impl Stream for GroupEvents {
    type Item = GroupEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GroupEvent>> {
        let this = self.get_mut();
        loop {
            if let Poll::Ready(Some(event)) = this.rx.poll_recv(cx) {
                return Poll::Ready(Some(event));
            }
            if this.lost {
                return Poll::Ready(None);
            }
            let mut guard = match this.fd.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(_)) => {
                    this.lost = true;
                    return Poll::Ready(Some(GroupEvent::Lost(CsError::CsErrLibrary)));
                }
            };
            guard.clear_ready();
            if let Err(error) = cpg::dispatch(&this.handle, DispatchFlags::All) {
                if error != CsError::CsErrTryAgain {
                    this.lost = true;
                    return Poll::Ready(Some(GroupEvent::Lost(error)));
                }
            }
        }
    }
}

/// corosync's fd, which corosync closes: registered for readiness, never owned.
struct BorrowedRawFd(RawFd);

impl AsRawFd for BorrowedRawFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn member(nodeid: NodeId, pid: u32) -> Member {
    Member { node: u32::from(nodeid), pid }
}

/// Hands an event to the channel of the connection that `dispatch` called back for.
fn route(handle: &cpg::Handle, event: GroupEvent) {
    let Ok(context) = cpg::context_get(handle) else { return };
    // SAFETY: the context is the connection's Route, set at initialize; it outlives every
    // dispatch of that connection (see `GroupEvents::_route`).
    let sender = unsafe { &*(context as *const UnboundedSender<GroupEvent>) };
    let _ = sender.send(event);
}

fn on_deliver(handle: &cpg::Handle, _: String, nodeid: NodeId, pid: u32, msg: &[u8], _: usize) {
    route(handle, GroupEvent::Delivered { from: member(nodeid, pid), bytes: msg.to_vec() });
}

fn on_confchg(
    handle: &cpg::Handle,
    _: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    joined: Vec<cpg::Address>,
) {
    let list = |l: Vec<cpg::Address>| l.into_iter().map(|a| member(a.nodeid, a.pid)).collect();
    let (members, left, joined) = (list(members), list(left), list(joined));
    route(handle, GroupEvent::View { members, left, joined });
}
