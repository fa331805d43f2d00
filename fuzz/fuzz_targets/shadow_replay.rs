//! Fuzzes the shadow loader, `shadow::format::replay`, which reads a file a crashed daemon
//! left behind (torn, or not ours at all). Input: le32 region count (mod 2^20), a flags byte,
//! then the file. Flag bit 0 recomputes each record's FNV-1a checksum first, so that
//! mutations reach the snapshot and change decoders instead of dying at the checksum.
//! Replay must not panic, every region it returns must lie below the region count, and a
//! snapshot of what it returns must replay to the same sets.
#![no_main]

use dm_ulog_actors::shadow::format::{replay, snapshot, Owner};
use dm_ulog_actors::wire::{LogKey, Uuid};
use libfuzzer_sys::fuzz_target;

#[path = "../common/records.rs"]
mod records;

use records::fix_checksums;

/// The owner the seeds were written for (fuzz/examples/make_seeds.rs).
const UUID: &str = "LVM-fuzz-shadow";
const LUID: u64 = 7;
const CTR: &str = "512 disk /dev/ram2 8";

fuzz_target!(|input: &[u8]| {
    let Some((head, rest)) = input.split_first_chunk::<5>() else { return };
    let region_count = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) % (1 << 20);
    let mut file = rest.to_vec();
    if head[4] & 1 != 0 {
        fix_checksums(&mut file);
    }
    let key = LogKey { uuid: Uuid::new(UUID).unwrap(), luid: LUID };
    let owner = Owner { key: &key, ctr: CTR };
    let Ok(replayed) = replay(&file, owner, region_count) else { return };
    let sets = &replayed.sets;
    for set in [&sets.out_of_sync, &sets.recovering, &sets.dirty] {
        assert!(set.max().is_none_or(|max| max < region_count));
    }
    let again = replay(&snapshot(owner, sets), owner, region_count).expect("own snapshot");
    assert!(!again.torn_tail);
    assert_eq!(&again.sets, sets);
});
