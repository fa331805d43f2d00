//! Fuzzes the request decoder, the reply decoder and the reply encoder on whatever a
//! decoded request asks for: none may panic or read past the datagram.
//!
//! Run with `scripts/fuzz decode_frame` (all targets: `scripts/fuzz`).
#![no_main]

use dm_ulog_actors::wire::reply::{decode_reply, reply_capacity};
use dm_ulog_actors::wire::{decode_frame, emit_reply, ReplyPayload, MAX_REPLY_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    let _ = decode_reply(datagram);
    let Ok(frame) = decode_frame(datagram) else { return };
    if let Ok(request) = frame.request() {
        let mut out = [0u8; MAX_REPLY_FRAME];
        let capacity = reply_capacity(&request, frame.header.version);
        let len = emit_reply(&frame.header, capacity, &Ok(ReplyPayload::Empty), &mut out);
        assert!(decode_reply(&out[..len]).is_some());
    }
});
