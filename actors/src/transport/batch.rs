//! Receiving datagrams in batches: one `recvmmsg(2)` takes every datagram queued on a socket
//! (up to [`BATCH`]), where `recvfrom(2)` would take one per call and one more to learn that
//! the queue is empty.
//!
//! A batch shorter than [`BATCH`] emptied the queue, so the socket's readiness is cleared
//! then and there: the next datagram's arrival is a new edge that wakes the reader again
//! (tokio clears only if no readiness event came in meanwhile). At one request in flight that
//! saves the `EAGAIN` call that otherwise follows every datagram (README's Benchmarks).

use std::io;
use std::os::fd::AsRawFd;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;

use super::RECEIVE_BUFFER;

/// Datagrams taken per call: more than a unix socket queues by default
/// (net.unix.max_dgram_qlen is 10), and a handful of netlink bursts.
pub(super) const BATCH: usize = 16;

/// Room for [`BATCH`] datagrams and their senders' addresses, and which of them are not yet
/// taken.
pub(super) struct Batch {
    buffers: Box<[u8]>,
    lens: [usize; BATCH],
    senders: Box<[libc::sockaddr_storage; BATCH]>,
    sender_lens: [libc::socklen_t; BATCH],
    received: usize,
    taken: usize,
}

/// One datagram of a batch, borrowed until the next is taken.
pub(super) struct Received<'a> {
    pub bytes: &'a [u8],
    pub sender: &'a libc::sockaddr_storage,
    /// How many bytes of `sender` the kernel filled in.
    pub sender_len: usize,
}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch {
            buffers: vec![0u8; BATCH * RECEIVE_BUFFER].into_boxed_slice(),
            lens: [0; BATCH],
            // SAFETY: sockaddr_storage is plain integers, for which zero bytes are valid.
            senders: Box::new(unsafe { std::mem::zeroed() }),
            sender_lens: [0; BATCH],
            received: 0,
            taken: 0,
        }
    }

    /// The next datagram of the batch not yet taken.
    pub(super) fn take(&mut self) -> Option<Received<'_>> {
        let i = self.taken;
        if i == self.received {
            return None;
        }
        self.taken += 1;
        let start = i * RECEIVE_BUFFER;
        Some(Received {
            bytes: &self.buffers[start..start + self.lens[i]],
            sender: &self.senders[i],
            sender_len: self.sender_lens[i] as usize,
        })
    }

    /// Waits until `socket` is readable, then receives what it holds as the new batch.
    /// Call only when every datagram of the last batch was taken.
    pub(super) fn poll_receive<T: AsRawFd>(
        &mut self,
        socket: &AsyncFd<T>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(socket.poll_read_ready(cx))?;
            match self.receive(socket.get_ref().as_raw_fd()) {
                Ok(count) => {
                    if count < BATCH {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    /// One `recvmmsg` without waiting: how many datagrams arrived.
    fn receive(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        let buffers = self.buffers.as_mut_ptr();
        let senders = self.senders.as_mut_ptr();
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            // SAFETY: i < BATCH, and `buffers` holds BATCH buffers of RECEIVE_BUFFER bytes.
            iov_base: unsafe { buffers.add(i * RECEIVE_BUFFER) }.cast(),
            iov_len: RECEIVE_BUFFER,
        });
        let iovecs = iovecs.as_mut_ptr();
        let mut headers: [libc::mmsghdr; BATCH] = std::array::from_fn(|i| {
            // SAFETY: mmsghdr is plain integers and pointers, for which zero bytes are valid.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            // SAFETY: i < BATCH, the length of both arrays.
            header.msg_hdr.msg_name = unsafe { senders.add(i) }.cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: as above.
            header.msg_hdr.msg_iov = unsafe { iovecs.add(i) };
            header.msg_hdr.msg_iovlen = 1;
            header
        });
        // SAFETY: every header points at memory of the lengths it states, owned by `self`
        // or by this frame, and nothing else touches it during the call.
        let count = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let count = usize::try_from(count).map_err(|_| io::Error::last_os_error())?;
        for (i, header) in headers.iter().enumerate().take(count) {
            self.lens[i] = header.msg_len as usize;
            self.sender_lens[i] = header.msg_hdr.msg_namelen;
        }
        self.received = count;
        self.taken = 0;
        Ok(count)
    }
}
