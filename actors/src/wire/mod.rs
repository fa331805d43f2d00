//! The dm-log-userspace wire format: bytes in, typed requests out; typed replies in, bytes out.
//!
//! A datagram between the kernel and the daemon is
//!
//! ```text
//!  0  nlmsghdr        16 bytes   (only nlmsg_len matters to the kernel)
//! 16  cn_msg          20 bytes   id {7, 1}, seq, ack, len = 160 + data_size
//! 36  dm_ulog_request 160 bytes  luid, uuid[129], version, error, seq, type, data_size
//! 196 payload         data_size bytes
//! ```
//!
//! all in host byte order and, from byte 36 on, not aligned. [`buffer`] names the field
//! ranges and reads them without copying; [`request`] and [`reply`] turn them into types.
//! Nothing here panics on any input: every read is bounds-checked first.

pub mod buffer;
mod errno;
mod key;
pub mod reply;
pub mod request;

pub use errno::Errno;
pub use key::{LogKey, Uuid};
pub(crate) use reply::emit_refusal;
pub use reply::{emit_ack, emit_reply, Reply, ReplyPayload, MAX_REPLY_FRAME};
pub use request::{
    decode_frame, FrameError, RegionBatch, Request, RequestError, RequestFrame, RequestHeader,
    RequestType,
};

/// Connector index of device-mapper (`CN_IDX_DM`), also its multicast group number.
pub const CN_IDX_DM: u32 = 0x7;
/// Connector value of the userspace log (`CN_VAL_DM_USERSPACE_LOG`).
pub const CN_VAL_DM_USERSPACE_LOG: u32 = 0x1;
/// `NLMSG_DONE`: the netlink message type the connector uses for every message.
pub const NLMSG_DONE: u16 = 3;
/// The request-header generation this daemon speaks natively (`DM_ULOG_REQUEST_VERSION`).
pub const DM_ULOG_REQUEST_VERSION: u32 = 3;
/// `DM_UUID_LEN`: the uuid field, NUL included.
pub const DM_UUID_LEN: usize = 129;
/// `DM_NAME_LEN`: the kernel's buffer for the device name a CTR may return.
pub const DM_NAME_LEN: usize = 128;
/// `MAX_FLUSH_GROUP_COUNT`: the most regions one MARK, CLEAR or FLUSH carries.
pub const MAX_FLUSH_GROUP_COUNT: usize = 32;
/// `CONNECTOR_MAX_MSG_SIZE`: the most payload a connector message may carry.
pub const CONNECTOR_MAX_MSG_SIZE: usize = 16384;
/// `DM_ULOG_PREALLOCED_SIZE`: the kernel's buffer for cn_msg + request + payload, so the most
/// a kernel request can carry is 512 - 20 - 160 = 332 bytes.
pub const DM_ULOG_PREALLOCED_SIZE: usize = 512;
/// The largest request datagram a kernel sends (what a receive buffer needs).
pub const MAX_REQUEST_FRAME: usize = buffer::NLMSGHDR_LEN + DM_ULOG_PREALLOCED_SIZE;
