//! A closed-loop load generator and the echo responder it is measured against.
//!
//! The generator keeps a fixed number of requests in flight over a unix datagram socket,
//! cycling through dm-raid1's write mix for a set of core logs, and records every request's
//! round-trip time. The echo responder answers every request at once with an empty payload
//! and keeps no state: the most that the transport allows, which dm-ulogd is compared with.
//!
//! Both sides use plain blocking sockets and pre-encoded frames, so the client costs the
//! same against either server.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::units::RegionIndex;
use crate::wire::buffer::{connector_field, request_field, CONNECTOR_HEADER_LEN};
use crate::wire::reply::decode_reply;
use crate::wire::{
    decode_frame, emit_reply, RegionBatch, ReplyPayload, Request, RequestHeader, Uuid,
    MAX_REPLY_FRAME, MAX_REQUEST_FRAME,
};

/// Serves the echo responder at `path` until the process ends.
pub fn echo(path: &Path) -> io::Result<()> {
    echo_with(path, |_| Ok(()))
}

/// The echo responder, with `before_reply` called on each request's header before its
/// answer goes out.
pub fn echo_with(
    path: &Path,
    mut before_reply: impl FnMut(&RequestHeader) -> io::Result<()>,
) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let socket = UnixDatagram::bind(path)?;
    let mut request = [0u8; MAX_REQUEST_FRAME * 2];
    let mut reply = [0u8; MAX_REPLY_FRAME];
    loop {
        let (len, peer) = socket.recv_from(&mut request)?;
        let Ok(frame) = decode_frame(&request[..len]) else { continue };
        before_reply(&frame.header)?;
        let reply_len = emit_reply(&frame.header, 0, &Ok(ReplyPayload::Empty), &mut reply);
        if let Some(peer) = peer.as_pathname() {
            socket.send_to(&reply[..reply_len], peer)?;
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub requests: u64,
    pub elapsed: Duration,
    /// Sorted round-trip times in nanoseconds.
    pub latencies: Vec<u32>,
    /// Replies carrying an error.
    pub errors: u64,
}

impl Measurement {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Adds `other`, measured on the same server, as if it were one longer run.
    pub fn absorb(&mut self, other: Measurement) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
    }

    /// The `q` quantile (0..=1) of the round-trip times, in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        let Some(last) = self.latencies.len().checked_sub(1) else { return 0.0 };
        let index = ((last as f64) * q).round() as usize;
        f64::from(self.latencies[index]) / 1000.0
    }
}

/// A client socket with the frames of a workload encoded in advance.
pub struct LoadClient {
    socket: UnixDatagram,
    server: std::path::PathBuf,
    seq: u32,
}

impl LoadClient {
    pub fn new(own_path: &Path, server: &Path) -> io::Result<LoadClient> {
        let _ = std::fs::remove_file(own_path);
        let socket = UnixDatagram::bind(own_path)?;
        // Sends never block (see run_mix); receives wait in `recv`.
        socket.set_nonblocking(true)?;
        Ok(LoadClient { socket, server: server.to_owned(), seq: 0 })
    }

    /// Waits for the next datagram (20 s at most: a server that went away is an error).
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.socket.recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fd = libc::pollfd {
                        fd: self.socket.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the duration of the call.
                    let ready = unsafe { libc::poll(&mut fd, 1, 20_000) };
                    if ready == 0 {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in 20 s"));
                    }
                }
                other => return other,
            }
        }
    }

    /// Sends one request and waits for its reply: the reply's error.
    pub fn call(&mut self, uuid: &Uuid, luid: u64, request: &Request) -> io::Result<i32> {
        let mut frame = encode(uuid, luid, request);
        self.seq = self.seq.wrapping_add(1);
        set_seq(&mut frame, self.seq);
        self.send_blocking(&frame)?;
        let mut buf = [0u8; MAX_REPLY_FRAME * 2];
        loop {
            let len = self.recv(&mut buf)?;
            match decode_reply(&buf[..len]) {
                Some(reply) if reply.seq == self.seq => return Ok(reply.error),
                _ => continue,
            }
        }
    }

    fn send_blocking(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            match self.socket.send_to(frame, &self.server) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                other => return other.map(drop),
            }
        }
    }

    /// Creates `count` core logs of `regions` regions, all in sync (CTR, then RESUME).
    pub fn create_core_logs(
        &mut self,
        prefix: &str,
        count: usize,
        regions: u64,
    ) -> io::Result<Vec<(Uuid, u64)>> {
        let mut logs = Vec::with_capacity(count);
        for i in 0..count {
            let uuid = Uuid::new(&format!("{prefix}-{i:06}")).expect("short uuid");
            let luid = 0x10_0000 + i as u64;
            let args = format!("{} core 8 nosync", regions * 8);
            self.call(&uuid, luid, &Request::Ctr { args, reconnect: false })?;
            self.call(&uuid, luid, &Request::Resume)?;
            logs.push((uuid, luid));
        }
        Ok(logs)
    }

    /// Keeps `in_flight` requests of dm-raid1's write mix outstanding for `duration`,
    /// spread over `logs`.
    pub fn run_mix(
        &mut self,
        logs: &[(Uuid, u64)],
        in_flight: usize,
        duration: Duration,
    ) -> io::Result<Measurement> {
        let frames: Vec<Vec<u8>> = logs
            .iter()
            .enumerate()
            .flat_map(|(i, (uuid, luid))| {
                write_mix(i as u64).into_iter().map(move |r| encode(uuid, *luid, &r))
            })
            .collect();
        let deadline = Instant::now() + duration;
        let mut cycle = frames.iter().cycle();
        self.pump(in_flight, || cycle.next().filter(|_| Instant::now() < deadline).cloned())
    }

    /// Sends every request of `requests` (for `(uuid, luid)` pairs), `in_flight` at a time.
    pub fn send_all(
        &mut self,
        requests: impl IntoIterator<Item = (Uuid, u64, Request)>,
        in_flight: usize,
    ) -> io::Result<Measurement> {
        let mut requests = requests.into_iter();
        self.pump(in_flight, || requests.next().map(|(uuid, luid, r)| encode(&uuid, luid, &r)))
    }

    /// The closed loop: keeps `in_flight` frames from `next` outstanding until it runs dry.
    ///
    /// Slot k sends seqs base + k, base + k + W, base + k + 2W, ...: a reply's seq names its
    /// slot. A unix datagram queue holds only a few datagrams (net.unix.max_dgram_qlen), so
    /// sends never block: a slot whose send would block waits in `ready` while replies are
    /// read, or client and server would each wait for the other.
    fn pump(
        &mut self,
        in_flight: usize,
        mut next: impl FnMut() -> Option<Vec<u8>>,
    ) -> io::Result<Measurement> {
        let width = in_flight as u32;
        let base = self.seq.wrapping_add(1);
        let mut rounds = vec![0u32; in_flight];
        let mut sent_at = vec![Instant::now(); in_flight];
        let mut ready: VecDeque<usize> = (0..in_flight).collect();
        let mut pending: Option<Vec<u8>> = None;
        let mut outstanding = 0usize;
        let mut latencies = Vec::with_capacity(1 << 16);
        let mut errors = 0;
        let mut buf = [0u8; MAX_REPLY_FRAME * 2];
        let started = Instant::now();
        loop {
            while let Some(&slot) = ready.front() {
                let Some(mut frame) = pending.take().or_else(&mut next) else { break };
                let seq =
                    base.wrapping_add(slot as u32).wrapping_add(rounds[slot].wrapping_mul(width));
                set_seq(&mut frame, seq);
                sent_at[slot] = Instant::now();
                match self.socket.send_to(&frame, &self.server) {
                    Ok(_) => {
                        ready.pop_front();
                        outstanding += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        pending = Some(frame);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if outstanding == 0 {
                break;
            }
            let len = self.recv(&mut buf)?;
            let Some(reply) = decode_reply(&buf[..len]) else { continue };
            let slot = (reply.seq.wrapping_sub(base) % width) as usize;
            latencies.push(sent_at[slot].elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
            errors += u64::from(reply.error != 0);
            rounds[slot] = rounds[slot].wrapping_add(1);
            outstanding -= 1;
            ready.push_back(slot);
        }
        let elapsed = started.elapsed();
        let last_round = rounds.iter().copied().max().unwrap_or(0);
        self.seq = base.wrapping_add(last_round.wrapping_add(1).wrapping_mul(width));
        latencies.sort_unstable();
        Ok(Measurement { requests: latencies.len() as u64, elapsed, latencies, errors })
    }
}

/// One pass of dm-raid1's requests for a write to a region and its completion, with the
/// periodic status calls: IN_SYNC, MARK, FLUSH, CLEAR, FLUSH, GET_SYNC_COUNT, STATUS_INFO.
fn write_mix(log: u64) -> Vec<Request> {
    let region = RegionIndex(log % 1000);
    let batch = RegionBatch::from_regions(&[region.0]).expect("one region");
    vec![
        Request::InSync(region),
        Request::MarkRegion(batch),
        Request::Flush(RegionBatch::EMPTY),
        Request::InSync(RegionIndex(region.0 + 1)),
        Request::Flush(RegionBatch::from_regions(&[region.0 + 1]).expect("one region")),
        Request::ClearRegion(batch),
        Request::Flush(RegionBatch::EMPTY),
        Request::ClearRegion(RegionBatch::from_regions(&[region.0 + 1]).expect("one region")),
        Request::Flush(RegionBatch::EMPTY),
        Request::GetSyncCount,
        Request::StatusInfo,
    ]
}

/// The datagram of `request` for the log `(uuid, luid)`, as a current kernel sends it
/// (seq 0: callers set their own).
pub fn encode(uuid: &Uuid, luid: u64, request: &Request) -> Vec<u8> {
    request.to_datagram(&RequestHeader::current(request, uuid.clone(), luid, 0))
}

/// Puts `seq` in the three places a request carries it.
fn set_seq(frame: &mut [u8], seq: u32) {
    let bytes = seq.to_ne_bytes();
    for field in [connector_field::NLMSG_SEQ, connector_field::CN_SEQ] {
        frame[field].copy_from_slice(&bytes);
    }
    let request_seq = request_field::SEQ;
    frame[CONNECTOR_HEADER_LEN + request_seq.start..CONNECTOR_HEADER_LEN + request_seq.end]
        .copy_from_slice(&bytes);
}
