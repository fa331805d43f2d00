//! Requests: the kernel's datagram decoded into a [`RequestHeader`] and a typed [`Request`].
//!
//! Decoding happens in two steps so that every failure can still be answered: the frame step
//! ([`decode_frame`]) finds the request header, and only a frame without one goes unanswered
//! or gets the zero-length EAGAIN ack; the payload step ([`RequestFrame::request`]) has the
//! header's `seq` in hand, so its errors become error replies.

use std::fmt;

use super::buffer::{ConnectorBuffer, RequestBuffer, CONNECTOR_HEADER_LEN, REQUEST_HEADER_LEN};
use super::key::{LogKey, Uuid};
use super::{Errno, CN_IDX_DM, CN_VAL_DM_USERSPACE_LOG, MAX_FLUSH_GROUP_COUNT, NLMSG_DONE};
use crate::units::RegionIndex;

/// The 17 request types of `<linux/dm-log-userspace.h>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RequestType {
    Ctr = 1,
    Dtr = 2,
    Presuspend = 3,
    Postsuspend = 4,
    Resume = 5,
    GetRegionSize = 6,
    IsClean = 7,
    InSync = 8,
    Flush = 9,
    MarkRegion = 10,
    ClearRegion = 11,
    GetResyncWork = 12,
    SetRegionSync = 13,
    GetSyncCount = 14,
    StatusInfo = 15,
    StatusTable = 16,
    IsRemoteRecovering = 17,
}

impl RequestType {
    pub const ALL: [RequestType; 17] = [
        RequestType::Ctr,
        RequestType::Dtr,
        RequestType::Presuspend,
        RequestType::Postsuspend,
        RequestType::Resume,
        RequestType::GetRegionSize,
        RequestType::IsClean,
        RequestType::InSync,
        RequestType::Flush,
        RequestType::MarkRegion,
        RequestType::ClearRegion,
        RequestType::GetResyncWork,
        RequestType::SetRegionSync,
        RequestType::GetSyncCount,
        RequestType::StatusInfo,
        RequestType::StatusTable,
        RequestType::IsRemoteRecovering,
    ];

    /// The type of a raw `request_type` field: only its low 8 bits count (`DM_ULOG_REQUEST_MASK`).
    pub fn from_raw(raw: u32) -> Option<RequestType> {
        let low = raw & 0xFF;
        RequestType::ALL.into_iter().find(|t| *t as u32 == low)
    }

    /// The kernel's name for the type, without the `DM_ULOG_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            RequestType::Ctr => "CTR",
            RequestType::Dtr => "DTR",
            RequestType::Presuspend => "PRESUSPEND",
            RequestType::Postsuspend => "POSTSUSPEND",
            RequestType::Resume => "RESUME",
            RequestType::GetRegionSize => "GET_REGION_SIZE",
            RequestType::IsClean => "IS_CLEAN",
            RequestType::InSync => "IN_SYNC",
            RequestType::Flush => "FLUSH",
            RequestType::MarkRegion => "MARK_REGION",
            RequestType::ClearRegion => "CLEAR_REGION",
            RequestType::GetResyncWork => "GET_RESYNC_WORK",
            RequestType::SetRegionSync => "SET_REGION_SYNC",
            RequestType::GetSyncCount => "GET_SYNC_COUNT",
            RequestType::StatusInfo => "STATUS_INFO",
            RequestType::StatusTable => "STATUS_TABLE",
            RequestType::IsRemoteRecovering => "IS_REMOTE_RECOVERING",
        }
    }
}

impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fields of `struct dm_ulog_request` that a reply echoes or a handler needs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestHeader {
    pub luid: u64,
    pub uuid: Uuid,
    /// 0 for the header generation without a version field, else `DM_ULOG_REQUEST_VERSION`.
    pub version: u32,
    pub seq: u32,
    /// The raw field; [`RequestType::from_raw`] reads it.
    pub request_type: u32,
}

impl RequestHeader {
    /// The header a current kernel (`DM_ULOG_REQUEST_VERSION`) puts on `request` for the log
    /// `(uuid, luid)`.
    pub fn current(request: &Request, uuid: Uuid, luid: u64, seq: u32) -> RequestHeader {
        let version = super::DM_ULOG_REQUEST_VERSION;
        RequestHeader { luid, uuid, version, seq, request_type: request.kind() as u32 }
    }

    pub fn key(&self) -> LogKey {
        LogKey { uuid: self.uuid.clone(), luid: self.luid }
    }

    pub fn kind(&self) -> Option<RequestType> {
        RequestType::from_raw(self.request_type)
    }
}

/// Up to [`MAX_FLUSH_GROUP_COUNT`] regions, as one MARK, CLEAR or FLUSH carries them; inline,
/// so that decoding a batch allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RegionBatch {
    len: u8,
    regions: [u64; MAX_FLUSH_GROUP_COUNT],
}

impl RegionBatch {
    pub const EMPTY: RegionBatch = RegionBatch { len: 0, regions: [0; MAX_FLUSH_GROUP_COUNT] };

    /// A batch of the given regions; `None` past [`MAX_FLUSH_GROUP_COUNT`].
    pub fn from_regions(regions: &[u64]) -> Option<RegionBatch> {
        let mut batch = RegionBatch::EMPTY;
        for region in regions {
            batch.push(RegionIndex(*region)).then_some(())?;
        }
        Some(batch)
    }

    /// Adds a region; false when the batch is full.
    pub fn push(&mut self, region: RegionIndex) -> bool {
        let Some(slot) = self.regions.get_mut(usize::from(self.len)) else {
            return false;
        };
        *slot = region.0;
        self.len += 1;
        true
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = RegionIndex> + Clone + '_ {
        self.regions[..self.len()].iter().map(|r| RegionIndex(*r))
    }

    /// Decodes a payload of u64 regions; `None` if its size is not a multiple of 8 or it
    /// carries more than a batch holds.
    fn decode(payload: &[u8]) -> Option<RegionBatch> {
        if !payload.len().is_multiple_of(8) || payload.len() / 8 > MAX_FLUSH_GROUP_COUNT {
            return None;
        }
        let mut batch = RegionBatch::EMPTY;
        for chunk in payload.chunks_exact(8) {
            batch.push(RegionIndex(read_u64(chunk)));
        }
        Some(batch)
    }
}

impl fmt::Debug for RegionBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.regions[..self.len()]).finish()
    }
}

/// A request with its payload decoded.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Request {
    /// `args` is `"<target sectors> <log type> <log args...>"`; `reconnect` is set when the
    /// payload ended with a NUL, which only the kernel's reconnect CTR sends.
    Ctr {
        args: String,
        reconnect: bool,
    },
    Dtr,
    Presuspend,
    Postsuspend,
    Resume,
    GetRegionSize,
    IsClean(RegionIndex),
    InSync(RegionIndex),
    /// With `integrated_flush` the marks ride in the FLUSH; otherwise the batch is empty.
    Flush(RegionBatch),
    MarkRegion(RegionBatch),
    ClearRegion(RegionBatch),
    GetResyncWork,
    SetRegionSync {
        region: RegionIndex,
        in_sync: bool,
    },
    GetSyncCount,
    StatusInfo,
    StatusTable,
    IsRemoteRecovering(RegionIndex),
}

impl Request {
    pub fn kind(&self) -> RequestType {
        match self {
            Request::Ctr { .. } => RequestType::Ctr,
            Request::Dtr => RequestType::Dtr,
            Request::Presuspend => RequestType::Presuspend,
            Request::Postsuspend => RequestType::Postsuspend,
            Request::Resume => RequestType::Resume,
            Request::GetRegionSize => RequestType::GetRegionSize,
            Request::IsClean(_) => RequestType::IsClean,
            Request::InSync(_) => RequestType::InSync,
            Request::Flush(_) => RequestType::Flush,
            Request::MarkRegion(_) => RequestType::MarkRegion,
            Request::ClearRegion(_) => RequestType::ClearRegion,
            Request::GetResyncWork => RequestType::GetResyncWork,
            Request::SetRegionSync { .. } => RequestType::SetRegionSync,
            Request::GetSyncCount => RequestType::GetSyncCount,
            Request::StatusInfo => RequestType::StatusInfo,
            Request::StatusTable => RequestType::StatusTable,
            Request::IsRemoteRecovering(_) => RequestType::IsRemoteRecovering,
        }
    }

    /// This request as the kernel would send it under `header`: one datagram.
    pub fn to_datagram(&self, header: &RequestHeader) -> Vec<u8> {
        let mut buf = vec![0u8; super::MAX_REQUEST_FRAME];
        let len = self.emit(header, &mut buf);
        buf.truncate(len);
        buf
    }

    /// Writes this request as the kernel would send it (a whole datagram) into `buf`, and
    /// returns its length. `buf` must hold [`super::MAX_REQUEST_FRAME`] bytes.
    pub fn emit(&self, header: &RequestHeader, buf: &mut [u8]) -> usize {
        let payload_len = self.emit_payload(&mut buf[CONNECTOR_HEADER_LEN + REQUEST_HEADER_LEN..]);
        let cn_len = REQUEST_HEADER_LEN + payload_len;
        let total = CONNECTOR_HEADER_LEN + cn_len;
        buf[..CONNECTOR_HEADER_LEN + REQUEST_HEADER_LEN].fill(0);
        let mut cn =
            ConnectorBuffer::new_checked(&mut buf[..total]).expect("buffer holds the headers");
        cn.set_nlmsg_len(total as u32);
        cn.set_nlmsg_type(NLMSG_DONE);
        cn.set_nlmsg_seq(header.seq);
        cn.set_cn_idx(CN_IDX_DM);
        cn.set_cn_val(CN_VAL_DM_USERSPACE_LOG);
        cn.set_cn_seq(header.seq);
        cn.set_cn_len(cn_len as u16);
        let mut rq = RequestBuffer::new_checked(&mut buf[CONNECTOR_HEADER_LEN..total])
            .expect("buffer holds the request header");
        rq.set_luid(header.luid);
        rq.set_uuid(header.uuid.field());
        rq.set_version(header.version);
        rq.set_seq(header.seq);
        rq.set_request_type(self.kind() as u32);
        rq.set_data_size(payload_len as u32);
        total
    }

    fn emit_payload(&self, out: &mut [u8]) -> usize {
        let mut put_u64s = |values: &mut dyn Iterator<Item = u64>| {
            let mut len = 0;
            for value in values {
                out[len..len + 8].copy_from_slice(&value.to_ne_bytes());
                len += 8;
            }
            len
        };
        match self {
            Request::Ctr { args, reconnect } => {
                let bytes = args.as_bytes();
                out[..bytes.len()].copy_from_slice(bytes);
                if *reconnect {
                    out[bytes.len()] = 0;
                }
                bytes.len() + usize::from(*reconnect)
            }
            Request::IsClean(r) | Request::InSync(r) | Request::IsRemoteRecovering(r) => {
                put_u64s(&mut std::iter::once(r.0))
            }
            Request::Flush(batch) | Request::MarkRegion(batch) | Request::ClearRegion(batch) => {
                put_u64s(&mut batch.iter().map(|r| r.0))
            }
            Request::SetRegionSync { region, in_sync } => {
                put_u64s(&mut [region.0, u64::from(*in_sync)].into_iter())
            }
            Request::Dtr
            | Request::Presuspend
            | Request::Postsuspend
            | Request::Resume
            | Request::GetRegionSize
            | Request::GetResyncWork
            | Request::GetSyncCount
            | Request::StatusInfo
            | Request::StatusTable => 0,
        }
    }
}

/// A datagram that holds no request header: nothing can be answered in full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("datagram of {0} bytes is shorter than the netlink and connector headers")]
    Short(usize),
    #[error("connector id {idx}:{val} is not device-mapper's userspace log")]
    ForeignId { idx: u32, val: u32 },
    #[error(
        "connector message {cn_seq} is incomplete: cn.len {cn_len}, {available} bytes present"
    )]
    Incomplete { cn_seq: u32, cn_len: u16, available: usize },
}

impl FrameError {
    /// The `cn_msg.seq` to answer with a zero-length EAGAIN ack, which makes the kernel send
    /// the request again; `None` when the frame was not ours to answer.
    pub fn ack_seq(&self) -> Option<u32> {
        match self {
            FrameError::Incomplete { cn_seq, .. } => Some(*cn_seq),
            FrameError::Short(_) | FrameError::ForeignId { .. } => None,
        }
    }
}

/// A payload that does not fit its request type: answered with `-EINVAL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown request type {0:#x}")]
    UnknownType(u32),
    #[error("data_size {data_size} disagrees with the {present} payload bytes cn.len gives")]
    DataSizeMismatch { data_size: u32, present: usize },
    #[error("{kind} takes {expected}, not {len} bytes")]
    PayloadSize { kind: RequestType, len: usize, expected: &'static str },
    #[error("CTR arguments are not NUL-free UTF-8 text")]
    CtrNotText,
}

impl RequestError {
    pub fn errno(&self) -> Errno {
        Errno::EINVAL
    }
}

/// A datagram whose request header is in hand; the payload is decoded on demand.
#[derive(Debug)]
pub struct RequestFrame<'a> {
    pub header: RequestHeader,
    /// `data_size` as the kernel set it.
    data_size: u32,
    /// The payload as far as `cn_msg.len` reaches.
    payload: &'a [u8],
}

/// Finds the request header in a datagram. Never panics and never reads past `datagram`.
pub fn decode_frame(datagram: &[u8]) -> Result<RequestFrame<'_>, FrameError> {
    let cn = ConnectorBuffer::new_checked(datagram).ok_or(FrameError::Short(datagram.len()))?;
    if (cn.cn_idx(), cn.cn_val()) != (CN_IDX_DM, CN_VAL_DM_USERSPACE_LOG) {
        return Err(FrameError::ForeignId { idx: cn.cn_idx(), val: cn.cn_val() });
    }
    let incomplete = || FrameError::Incomplete {
        cn_seq: cn.cn_seq(),
        cn_len: cn.cn_len(),
        available: datagram.len() - CONNECTOR_HEADER_LEN,
    };
    let data_end = CONNECTOR_HEADER_LEN + usize::from(cn.cn_len());
    let data = datagram.get(CONNECTOR_HEADER_LEN..data_end).ok_or_else(incomplete)?;
    let rq = RequestBuffer::new_checked(data).ok_or_else(incomplete)?;
    Ok(RequestFrame {
        header: RequestHeader {
            luid: rq.luid(),
            uuid: Uuid::from_field(rq.uuid()),
            version: rq.version(),
            seq: rq.seq(),
            request_type: rq.request_type(),
        },
        data_size: rq.data_size(),
        payload: &data[REQUEST_HEADER_LEN..],
    })
}

impl RequestFrame<'_> {
    /// Decodes the payload for the header's request type.
    pub fn request(&self) -> Result<Request, RequestError> {
        let kind = self.header.kind().ok_or(RequestError::UnknownType(self.header.request_type))?;
        let payload = self.payload;
        if self.data_size as usize != payload.len() {
            return Err(RequestError::DataSizeMismatch {
                data_size: self.data_size,
                present: payload.len(),
            });
        }
        let size_error =
            |expected| RequestError::PayloadSize { kind, len: payload.len(), expected };
        let region = || match payload.len() {
            8 => Ok(RegionIndex(read_u64(payload))),
            _ => Err(size_error("one u64 region")),
        };
        let batch = |allow_empty: bool| match RegionBatch::decode(payload) {
            Some(batch) if allow_empty || !batch.is_empty() => Ok(batch),
            _ => Err(size_error("1 to 32 u64 regions")),
        };
        let empty = |request: Request| match payload.len() {
            0 => Ok(request),
            _ => Err(size_error("no payload")),
        };
        match kind {
            RequestType::Ctr => {
                let (text, reconnect) = match payload.split_last() {
                    Some((0, text)) => (text, true),
                    _ => (payload, false),
                };
                let args = std::str::from_utf8(text)
                    .ok()
                    .filter(|t| !t.contains('\0'))
                    .ok_or(RequestError::CtrNotText)?;
                Ok(Request::Ctr { args: args.to_owned(), reconnect })
            }
            // The header documents an argv payload for DTR that kernels never send; any is fine.
            RequestType::Dtr => Ok(Request::Dtr),
            RequestType::Presuspend => empty(Request::Presuspend),
            RequestType::Postsuspend => empty(Request::Postsuspend),
            RequestType::Resume => empty(Request::Resume),
            RequestType::GetRegionSize => empty(Request::GetRegionSize),
            RequestType::IsClean => region().map(Request::IsClean),
            RequestType::InSync => region().map(Request::InSync),
            RequestType::Flush => batch(true).map(Request::Flush),
            RequestType::MarkRegion => batch(false).map(Request::MarkRegion),
            RequestType::ClearRegion => batch(false).map(Request::ClearRegion),
            RequestType::GetResyncWork => empty(Request::GetResyncWork),
            RequestType::SetRegionSync => match payload.len() {
                16 => Ok(Request::SetRegionSync {
                    region: RegionIndex(read_u64(&payload[..8])),
                    in_sync: read_u64(&payload[8..]) != 0,
                }),
                _ => Err(size_error("{u64 region, s64 in_sync}")),
            },
            RequestType::GetSyncCount => empty(Request::GetSyncCount),
            RequestType::StatusInfo => empty(Request::StatusInfo),
            RequestType::StatusTable => empty(Request::StatusTable),
            RequestType::IsRemoteRecovering => region().map(Request::IsRemoteRecovering),
        }
    }
}

/// Reads a host-endian u64 from the first 8 bytes of `bytes` (callers check the length).
fn read_u64(bytes: &[u8]) -> u64 {
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[..8]);
    u64::from_ne_bytes(value)
}

#[cfg(test)]
mod tests {
    use super::Uuid;

    #[test]
    fn a_uuid_is_shown_with_its_control_characters_escaped() {
        let forged = Uuid::new("LVM-x\nERROR forged \u{1b}[2J").unwrap();
        assert_eq!(forged.to_string(), "LVM-x\\nERROR forged \\u{1b}[2J");
        assert_eq!(forged.as_bytes(), "LVM-x\nERROR forged \u{1b}[2J".as_bytes());
        assert_eq!(Uuid::new("LVM-abc-123").unwrap().to_string(), "LVM-abc-123");
    }
}
