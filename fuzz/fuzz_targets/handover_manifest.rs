//! Fuzzes the handover manifest's decoder, `handover::Manifest::decode`, which reads what a
//! previous daemon left in the state directory for the next. Input: a flags byte, then the
//! file. Flag bit 0 recomputes each record's FNV-1a checksum first, so that mutations reach
//! the field decoders instead of dying at the checksum. Decoding must not panic, and what it
//! returns must encode to the very bytes it was decoded from.
#![no_main]

use dm_ulog_actors::handover::Manifest;
use libfuzzer_sys::fuzz_target;

#[path = "../common/records.rs"]
mod records;

use records::fix_checksums;

fuzz_target!(|input: &[u8]| {
    let Some((flags, rest)) = input.split_first() else { return };
    let mut file = rest.to_vec();
    if flags & 1 != 0 {
        fix_checksums(&mut file);
    }
    let Ok(manifest) = Manifest::decode(&file) else { return };
    assert_eq!(manifest.encode(), file);
});
