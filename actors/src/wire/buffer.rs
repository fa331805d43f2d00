//! Zero-copy views of a datagram's three headers, with each field's byte range named.
//!
//! [`ConnectorBuffer`] covers `nlmsghdr` + `cn_msg`, [`RequestBuffer`] covers
//! `struct dm_ulog_request`. `new_checked` proves the header fits, after which the getters
//! and setters cannot go out of bounds. Fields are host-endian and read unaligned.

use std::ops::Range;

/// `sizeof(struct nlmsghdr)`.
pub const NLMSGHDR_LEN: usize = 16;
/// `sizeof(struct cn_msg)`.
pub const CN_MSG_LEN: usize = 20;
/// `sizeof(struct dm_ulog_request)` in every header generation that has a luid.
pub const REQUEST_HEADER_LEN: usize = 160;
/// Where `cn_msg.data`, and so the request, starts in a datagram.
pub const CONNECTOR_HEADER_LEN: usize = NLMSGHDR_LEN + CN_MSG_LEN;

/// Byte ranges of `nlmsghdr` and `cn_msg`, from the start of the datagram.
pub mod connector_field {
    use super::Range;
    pub const NLMSG_LEN: Range<usize> = 0..4;
    pub const NLMSG_TYPE: Range<usize> = 4..6;
    pub const NLMSG_FLAGS: Range<usize> = 6..8;
    pub const NLMSG_SEQ: Range<usize> = 8..12;
    pub const NLMSG_PID: Range<usize> = 12..16;
    pub const CN_IDX: Range<usize> = 16..20;
    pub const CN_VAL: Range<usize> = 20..24;
    pub const CN_SEQ: Range<usize> = 24..28;
    pub const CN_ACK: Range<usize> = 28..32;
    pub const CN_LEN: Range<usize> = 32..34;
    pub const CN_FLAGS: Range<usize> = 34..36;
}

/// Byte ranges of `struct dm_ulog_request`, from the start of the request.
///
/// Version 1 to 3 headers have `version` at 140; version 0 headers (luid, `padding[7]`) keep
/// every other field at the same offset and leave those bytes zero.
pub mod request_field {
    use super::Range;
    pub const LUID: Range<usize> = 0..8;
    pub const UUID: Range<usize> = 8..137;
    pub const PADDING: Range<usize> = 137..140;
    pub const VERSION: Range<usize> = 140..144;
    pub const ERROR: Range<usize> = 144..148;
    pub const SEQ: Range<usize> = 148..152;
    pub const REQUEST_TYPE: Range<usize> = 152..156;
    pub const DATA_SIZE: Range<usize> = 156..160;
}

/// A getter for a host-endian field; `new_checked` has proven the range is inside the buffer.
macro_rules! ne_get {
    ($get:ident, $ty:ty, $range:expr) => {
        pub fn $get(&self) -> $ty {
            let mut bytes = [0u8; std::mem::size_of::<$ty>()];
            bytes.copy_from_slice(&self.buffer.as_ref()[$range]);
            <$ty>::from_ne_bytes(bytes)
        }
    };
}

/// The setter that goes with [`ne_get`].
macro_rules! ne_set {
    ($set:ident, $ty:ty, $range:expr) => {
        pub fn $set(&mut self, value: $ty) {
            self.buffer.as_mut()[$range].copy_from_slice(&value.to_ne_bytes());
        }
    };
}

/// The netlink and connector headers at the front of a datagram.
pub struct ConnectorBuffer<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ConnectorBuffer<T> {
    /// Wraps `buffer` once it is long enough to hold both headers.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= CONNECTOR_HEADER_LEN).then_some(ConnectorBuffer { buffer })
    }
}

#[rustfmt::skip]
impl<T: AsRef<[u8]>> ConnectorBuffer<T> {
    ne_get!(nlmsg_len, u32, connector_field::NLMSG_LEN);
    ne_get!(nlmsg_type, u16, connector_field::NLMSG_TYPE);
    ne_get!(nlmsg_flags, u16, connector_field::NLMSG_FLAGS);
    ne_get!(nlmsg_seq, u32, connector_field::NLMSG_SEQ);
    ne_get!(nlmsg_pid, u32, connector_field::NLMSG_PID);
    ne_get!(cn_idx, u32, connector_field::CN_IDX);
    ne_get!(cn_val, u32, connector_field::CN_VAL);
    ne_get!(cn_seq, u32, connector_field::CN_SEQ);
    ne_get!(cn_ack, u32, connector_field::CN_ACK);
    ne_get!(cn_len, u16, connector_field::CN_LEN);
    ne_get!(cn_flags, u16, connector_field::CN_FLAGS);
}

#[rustfmt::skip]
impl<T: AsRef<[u8]> + AsMut<[u8]>> ConnectorBuffer<T> {
    ne_set!(set_nlmsg_len, u32, connector_field::NLMSG_LEN);
    ne_set!(set_nlmsg_type, u16, connector_field::NLMSG_TYPE);
    ne_set!(set_nlmsg_flags, u16, connector_field::NLMSG_FLAGS);
    ne_set!(set_nlmsg_seq, u32, connector_field::NLMSG_SEQ);
    ne_set!(set_nlmsg_pid, u32, connector_field::NLMSG_PID);
    ne_set!(set_cn_idx, u32, connector_field::CN_IDX);
    ne_set!(set_cn_val, u32, connector_field::CN_VAL);
    ne_set!(set_cn_seq, u32, connector_field::CN_SEQ);
    ne_set!(set_cn_ack, u32, connector_field::CN_ACK);
    ne_set!(set_cn_len, u16, connector_field::CN_LEN);
    ne_set!(set_cn_flags, u16, connector_field::CN_FLAGS);
}

/// `struct dm_ulog_request` and its payload.
pub struct RequestBuffer<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RequestBuffer<T> {
    /// Wraps `buffer` once it is long enough to hold the request header.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= REQUEST_HEADER_LEN).then_some(RequestBuffer { buffer })
    }

    pub fn uuid(&self) -> &[u8] {
        &self.buffer.as_ref()[request_field::UUID]
    }
}

#[rustfmt::skip]
impl<T: AsRef<[u8]>> RequestBuffer<T> {
    ne_get!(luid, u64, request_field::LUID);
    ne_get!(version, u32, request_field::VERSION);
    ne_get!(error, i32, request_field::ERROR);
    ne_get!(seq, u32, request_field::SEQ);
    ne_get!(request_type, u32, request_field::REQUEST_TYPE);
    ne_get!(data_size, u32, request_field::DATA_SIZE);
}

#[rustfmt::skip]
impl<T: AsRef<[u8]> + AsMut<[u8]>> RequestBuffer<T> {
    ne_set!(set_luid, u64, request_field::LUID);
    ne_set!(set_version, u32, request_field::VERSION);
    ne_set!(set_error, i32, request_field::ERROR);
    ne_set!(set_seq, u32, request_field::SEQ);
    ne_set!(set_request_type, u32, request_field::REQUEST_TYPE);
    ne_set!(set_data_size, u32, request_field::DATA_SIZE);

    pub fn set_uuid(&mut self, uuid: &[u8; 129]) {
        self.buffer.as_mut()[request_field::UUID].copy_from_slice(uuid);
    }

}
