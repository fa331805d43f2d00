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

/// The owner the seeds were written for (fuzz/examples/make_seeds.rs).
const UUID: &str = "LVM-fuzz-shadow";
const LUID: u64 = 7;
const CTR: &str = "512 disk /dev/ram2 8";

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Rewrites the checksum of every record whose length field fits in the file.
fn fix_checksums(file: &mut [u8]) {
    let mut at = 0;
    while let Some(len) = file.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let Some(payload) = file.get(at + 12..).and_then(|rest| rest.get(..len)) else { return };
        let sum = fnv1a(payload).to_le_bytes();
        file[at + 4..at + 12].copy_from_slice(&sum);
        at += 12 + len;
    }
}

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
