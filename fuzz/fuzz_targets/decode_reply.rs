//! Fuzzes the reply decoder, `wire::reply::decode_reply`: the kernel's reading of what the
//! daemon sends, which the simulator and the tests rely on. It must not panic on any
//! datagram, its data must lie inside the datagram, and what it decodes must survive being
//! written again: an ack through `emit_ack`, a successful full reply whose payload reads for
//! its request type through `emit_reply`.
#![no_main]

use dm_ulog_actors::wire::buffer::{ConnectorBuffer, RequestBuffer, CONNECTOR_HEADER_LEN};
use dm_ulog_actors::wire::reply::{decode_reply, MAX_REPLY_PAYLOAD};
use dm_ulog_actors::wire::{emit_ack, emit_reply, Errno, ReplyPayload, RequestHeader};
use dm_ulog_actors::wire::{RequestType, Uuid, MAX_REPLY_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    let Some(reply) = decode_reply(datagram) else { return };
    let inside = datagram.as_ptr_range();
    assert!(reply.data.is_empty() || inside.contains(&reply.data.as_ptr()));
    assert!(reply.data.len() <= datagram.len());
    let mut out = [0u8; MAX_REPLY_FRAME];
    if ConnectorBuffer::new_checked(datagram).expect("decoded").cn_len() == 0 {
        // A zero-length ack: emit_ack writes the ack that negates back to `error`.
        let errno = (reply.error != 0).then_some(Errno(reply.error.wrapping_neg()));
        let len = emit_ack(reply.seq, errno, &mut out);
        assert_eq!(decode_reply(&out[..len]), Some(reply));
        return;
    }
    let request = RequestBuffer::new_checked(&datagram[CONNECTOR_HEADER_LEN..]).expect("decoded");
    let Some(kind) = RequestType::from_raw(request.request_type()) else { return };
    let Some(payload) = ReplyPayload::decode(kind, reply.data) else { return };
    if reply.error != 0 || payload.wire_len() > MAX_REPLY_PAYLOAD {
        return;
    }
    let header = RequestHeader {
        luid: request.luid(),
        uuid: Uuid::new("").expect("the empty uuid"),
        version: request.version(),
        seq: reply.seq,
        request_type: request.request_type(),
    };
    let len = emit_reply(&header, MAX_REPLY_PAYLOAD, &Ok(payload.clone()), &mut out);
    let again = decode_reply(&out[..len]).expect("an emitted reply decodes");
    assert_eq!((again.seq, again.error), (reply.seq, 0));
    assert_eq!(ReplyPayload::decode(kind, again.data), Some(payload));
});
