//! Fuzzes the decoder of group messages, `cluster::message::Message::decode`: what another
//! member multicasts over CPG (another version, a bug, a corrupt packet). It must not panic,
//! and a decoded message must encode to bytes that decode to the same message.
#![no_main]

use dm_ulog_actors::cluster::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(message) = Message::decode(bytes) else { return };
    assert_eq!(Message::decode(&message.encode()), Ok(message));
});
