//! Replies: a typed [`ReplyPayload`] (or an errno) written back as the kernel reads it.
//!
//! The kernel matches a full reply on `dm_ulog_request.seq` and refuses one whose
//! `data_size` exceeds the buffer it set aside for that request type (`-ENOSPC`), so the
//! capacity rule is enforced here, in the one place every reply passes through.

use super::buffer::{ConnectorBuffer, RequestBuffer, CONNECTOR_HEADER_LEN, REQUEST_HEADER_LEN};
use super::request::{Request, RequestHeader, RequestType};
use super::{Errno, CN_IDX_DM, CN_VAL_DM_USERSPACE_LOG, DM_NAME_LEN, NLMSG_DONE};
use crate::units::RegionIndex;

/// The largest reply payload this daemon sends (a device name, a status line).
pub const MAX_REPLY_PAYLOAD: usize = 256;
/// The largest reply datagram: a send buffer of this size always suffices.
pub const MAX_REPLY_FRAME: usize = CONNECTOR_HEADER_LEN + REQUEST_HEADER_LEN + MAX_REPLY_PAYLOAD;

/// What a successful request answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyPayload {
    /// No payload (most request types).
    Empty,
    /// A u64: GET_REGION_SIZE and GET_SYNC_COUNT.
    Count(u64),
    /// An s64 0 or 1: IS_CLEAN and IN_SYNC.
    Flag(bool),
    /// GET_RESYNC_WORK's `{s64 i; u64 r}`: the region to recover, if any.
    ResyncWork(Option<RegionIndex>),
    /// IS_REMOTE_RECOVERING's `{s64 is_recovering; u64 in_sync_hint}`.
    RemoteRecovering { recovering: bool, in_sync_hint: RegionIndex },
    /// The log device a CTR names back (protocol version 2 and later), sent with its NUL.
    /// Omitted where the kernel left no room for it: older kernels and the reconnect CTR.
    DeviceName(String),
    /// A STATUS_INFO or STATUS_TABLE line, sent with its NUL.
    Status(String),
}

impl ReplyPayload {
    /// Writes the payload into `out` and returns its length.
    fn emit(&self, out: &mut [u8]) -> usize {
        let mut put = |values: &[u64]| {
            for (chunk, value) in out.chunks_exact_mut(8).zip(values) {
                chunk.copy_from_slice(&value.to_ne_bytes());
            }
            values.len() * 8
        };
        match self {
            ReplyPayload::Empty => 0,
            ReplyPayload::Count(n) => put(&[*n]),
            ReplyPayload::Flag(b) => put(&[u64::from(*b)]),
            ReplyPayload::ResyncWork(work) => match work {
                Some(region) => put(&[1, region.0]),
                None => put(&[0, 0]),
            },
            ReplyPayload::RemoteRecovering { recovering, in_sync_hint } => {
                put(&[u64::from(*recovering), in_sync_hint.0])
            }
            ReplyPayload::DeviceName(text) | ReplyPayload::Status(text) => {
                let bytes = text.as_bytes();
                out[..bytes.len()].copy_from_slice(bytes);
                out[bytes.len()] = 0;
                bytes.len() + 1
            }
        }
    }

    /// The payload's size on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            ReplyPayload::Empty => 0,
            ReplyPayload::Count(_) | ReplyPayload::Flag(_) => 8,
            ReplyPayload::ResyncWork(_) | ReplyPayload::RemoteRecovering { .. } => 16,
            ReplyPayload::DeviceName(text) | ReplyPayload::Status(text) => text.len() + 1,
        }
    }

    /// Decodes a reply payload the way the kernel reads it for `kind` (used by the simulator).
    pub fn decode(kind: RequestType, data: &[u8]) -> Option<ReplyPayload> {
        let u64_at = |i: usize| -> Option<u64> {
            let bytes = data.get(i * 8..i * 8 + 8)?;
            Some(u64::from_ne_bytes(bytes.try_into().ok()?))
        };
        let text = || {
            let body = data.strip_suffix(&[0]).unwrap_or(data);
            String::from_utf8(body.to_vec()).ok()
        };
        let exact = |n: usize| (data.len() == n).then_some(());
        Some(match kind {
            RequestType::GetRegionSize | RequestType::GetSyncCount => {
                exact(8)?;
                ReplyPayload::Count(u64_at(0)?)
            }
            RequestType::IsClean | RequestType::InSync => {
                exact(8)?;
                ReplyPayload::Flag(u64_at(0)? != 0)
            }
            RequestType::GetResyncWork => {
                exact(16)?;
                let found = u64_at(0)? != 0;
                ReplyPayload::ResyncWork(found.then_some(RegionIndex(u64_at(1)?)))
            }
            RequestType::IsRemoteRecovering => {
                exact(16)?;
                ReplyPayload::RemoteRecovering {
                    recovering: u64_at(0)? != 0,
                    in_sync_hint: RegionIndex(u64_at(1)?),
                }
            }
            RequestType::Ctr if !data.is_empty() => ReplyPayload::DeviceName(text()?),
            RequestType::StatusInfo | RequestType::StatusTable => ReplyPayload::Status(text()?),
            _ => {
                exact(0)?;
                ReplyPayload::Empty
            }
        })
    }
}

/// What a request is answered with: a payload, or the errno that `error` carries negated.
pub type Reply = Result<ReplyPayload, Errno>;

/// The most reply payload the kernel accepts for `request` from a header of `version`.
pub fn reply_capacity(request: &Request, version: u32) -> usize {
    match request {
        // Version 0/1 kernels and the reconnect CTR pass no reply buffer at all.
        Request::Ctr { reconnect, .. } if *reconnect || version < 2 => 0,
        Request::Ctr { .. } => DM_NAME_LEN,
        Request::GetRegionSize
        | Request::GetSyncCount
        | Request::IsClean(_)
        | Request::InSync(_) => 8,
        Request::GetResyncWork | Request::IsRemoteRecovering(_) => 16,
        // The rest of the status buffer: at least this much in practice.
        Request::StatusInfo | Request::StatusTable => MAX_REPLY_PAYLOAD,
        _ => 0,
    }
}

/// The reply as it goes out for a request whose reply buffer holds `capacity` bytes. A
/// device name that the kernel has no room for is left out (a reconnect's CTR passes none);
/// any other payload over the capacity becomes `-ENOSPC`, as the kernel would make it.
pub(crate) fn fitted(reply: &Reply, capacity: usize) -> Result<&ReplyPayload, Errno> {
    match reply {
        Ok(ReplyPayload::DeviceName(_)) if capacity == 0 => Ok(&ReplyPayload::Empty),
        Ok(payload) if payload.wire_len() > capacity.min(MAX_REPLY_PAYLOAD) => Err(Errno::ENOSPC),
        Ok(payload) => Ok(payload),
        Err(errno) => Err(*errno),
    }
}

/// Writes the full reply to a request into `buf` (at least [`MAX_REPLY_FRAME`] bytes) and
/// returns the datagram's length; the reply is first fitted to `capacity`.
pub fn emit_reply(header: &RequestHeader, capacity: usize, reply: &Reply, buf: &mut [u8]) -> usize {
    let (error, payload) = match fitted(reply, capacity) {
        Ok(payload) => (0, payload),
        Err(errno) => (errno.negative(), &ReplyPayload::Empty),
    };
    let request_end = CONNECTOR_HEADER_LEN + REQUEST_HEADER_LEN;
    buf[..request_end].fill(0);
    let data_size = payload.emit(&mut buf[request_end..]);
    let total = request_end + data_size;
    write_connector_header(&mut buf[..total], header.seq, 0, REQUEST_HEADER_LEN + data_size);
    let mut rq = RequestBuffer::new_checked(&mut buf[CONNECTOR_HEADER_LEN..total])
        .expect("buffer holds the request header");
    rq.set_luid(header.luid);
    rq.set_uuid(header.uuid.field());
    rq.set_version(header.version);
    rq.set_error(error);
    rq.set_seq(header.seq);
    rq.set_request_type(header.request_type);
    rq.set_data_size(data_size as u32);
    total
}

/// Writes an error reply that carries `room` zero bytes anyway (at most
/// [`MAX_REPLY_PAYLOAD`]), so that the kernel, which takes each reply's size as the size of
/// the request's reply buffer, keeps that much room for the request's retry.
pub(crate) fn emit_refusal(
    header: &RequestHeader,
    errno: Errno,
    room: usize,
    buf: &mut [u8],
) -> usize {
    let room = room.min(MAX_REPLY_PAYLOAD);
    let len = emit_reply(header, 0, &Err(errno), buf);
    let total = len + room;
    buf[len..total].fill(0);
    let mut cn = ConnectorBuffer::new_checked(&mut buf[..total]).expect("frame holds the headers");
    cn.set_nlmsg_len(total as u32);
    cn.set_cn_len((REQUEST_HEADER_LEN + room) as u16);
    let mut rq = RequestBuffer::new_checked(&mut buf[CONNECTOR_HEADER_LEN..total])
        .expect("frame holds the request header");
    rq.set_data_size(room as u32);
    total
}

/// Writes the zero-length ack (`cn.len` 0, `cn.seq` = seq, `cn.ack` = the positive errno, 0
/// for success) into `buf` and returns its length. The kernel resends on EAGAIN.
pub fn emit_ack(seq: u32, errno: Option<Errno>, buf: &mut [u8]) -> usize {
    let total = CONNECTOR_HEADER_LEN;
    buf[..total].fill(0);
    write_connector_header(&mut buf[..total], seq, errno.map_or(0, |e| e.0 as u32), 0);
    total
}

fn write_connector_header(frame: &mut [u8], seq: u32, ack: u32, cn_len: usize) {
    let total = frame.len();
    let mut cn = ConnectorBuffer::new_checked(frame).expect("frame holds the connector header");
    cn.set_nlmsg_len(total as u32);
    cn.set_nlmsg_type(NLMSG_DONE);
    cn.set_nlmsg_seq(seq);
    cn.set_cn_idx(CN_IDX_DM);
    cn.set_cn_val(CN_VAL_DM_USERSPACE_LOG);
    cn.set_cn_seq(seq);
    cn.set_cn_ack(ack);
    cn.set_cn_len(cn_len as u16);
}

/// A reply as the kernel's `cn_ulog_callback` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelReply<'a> {
    /// The seq the kernel matches: `dm_ulog_request.seq`, or `cn.seq` for a zero-length ack.
    pub seq: u32,
    /// `error` as the kernel takes it: negative errno or 0 (from a malformed ack, whatever
    /// its wrapping negation gives, as `decode_reply` documents).
    pub error: i32,
    pub data: &'a [u8],
}

/// The `error` the kernel takes from a zero-length ack: `pkg->error = -msg->ack`, a u32
/// negated and stored in an int, so a wrapping negation. Every ack has a result and none
/// panics: 0 gives 0, an errno `e` gives `-e`, and 0x80000000, whose negation wraps to
/// itself, gives `i32::MIN` (acks above it give positive values, as in the kernel).
fn ack_error(ack: u32) -> i32 {
    ack.wrapping_neg() as i32
}

/// Reads a reply datagram as the kernel does; `None` where the kernel would drop it. A
/// zero-length ack's `error` is `cn.ack` negated with wrapping, as the kernel's u32
/// arithmetic does it: 0x80000000 gives `i32::MIN`, and no ack panics.
pub fn decode_reply(datagram: &[u8]) -> Option<KernelReply<'_>> {
    let cn = ConnectorBuffer::new_checked(datagram)?;
    if (cn.cn_idx(), cn.cn_val()) != (CN_IDX_DM, CN_VAL_DM_USERSPACE_LOG) {
        return None;
    }
    if cn.cn_len() == 0 {
        return Some(KernelReply { seq: cn.cn_seq(), error: ack_error(cn.cn_ack()), data: &[] });
    }
    let data_end = CONNECTOR_HEADER_LEN + usize::from(cn.cn_len());
    let rq = RequestBuffer::new_checked(datagram.get(CONNECTOR_HEADER_LEN..data_end)?)?;
    let payload_start = CONNECTOR_HEADER_LEN + REQUEST_HEADER_LEN;
    let payload_end = payload_start.checked_add(usize::try_from(rq.data_size()).ok()?)?;
    let data = datagram.get(payload_start..payload_end)?;
    Some(KernelReply { seq: rq.seq(), error: rq.error(), data })
}
