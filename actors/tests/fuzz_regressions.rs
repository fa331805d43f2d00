//! Inputs the fuzz targets in `fuzz/` found crashing, kept as plain tests so that they stay
//! fixed without a fuzzer. Each test names its target; the bytes are those of the crash.

use dm_ulog_actors::cluster::message::Snapshot;
use dm_ulog_actors::cluster::state::{Member, Op};
use dm_ulog_actors::wire::buffer::ConnectorBuffer;
use dm_ulog_actors::wire::reply::decode_reply;
use dm_ulog_actors::wire::{emit_ack, Errno, ReplyPayload, MAX_REPLY_FRAME};

/// Target `decode_reply` (and `decode_frame`): a zero-length ack whose `cn.ack` is
/// 0x80000000 overflowed the negation `-(ack as i32)`. The kernel computes
/// `pkg->error = -msg->ack` in u32 and stores it in an int, i.e. a wrapping negation:
/// 0x80000000 becomes `i32::MIN`.
#[test]
fn zero_length_ack_with_ack_0x80000000() {
    let mut buf = [0u8; MAX_REPLY_FRAME];
    let len = emit_ack(0x0102_0304, None, &mut buf);
    ConnectorBuffer::new_checked(&mut buf[..len]).unwrap().set_cn_ack(0x8000_0000);
    let seen = decode_reply(&buf[..len]).expect("an ack the kernel reads");
    assert_eq!((seen.seq, seen.error, seen.data), (0x0102_0304, i32::MIN, &[][..]));

    // The same datagram as the fuzzer found it, by hand: nlmsghdr, then cn_msg with
    // idx 7, val 1, seq 0, ack 0x80000000, len 0, flags 0.
    let mut datagram = vec![0u8; 16];
    for word in [7u32, 1, 0, 0x8000_0000] {
        datagram.extend_from_slice(&word.to_ne_bytes());
    }
    datagram.extend_from_slice(&[0; 4]);
    assert_eq!(decode_reply(&datagram).map(|r| r.error), Some(i32::MIN));

    // Every other ack still comes out as the negated errno.
    for errno in [0, 1, libc::EAGAIN, 0x7fff_ffff] {
        let len = emit_ack(9, (errno != 0).then_some(Errno(errno)), &mut buf);
        assert_eq!(decode_reply(&buf[..len]).unwrap().error, -errno);
    }
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// A snapshot (`Snapshot::decode`'s input: le32 region count, le64 applied, the out-of-sync
/// bitmap as le32 length + portable roaring bytes, then four empty le32-counted lists) whose
/// out-of-sync set is `{region}`.
fn snapshot_out_of_sync(region_count: u32, region: u32) -> Vec<u8> {
    let mut bytes = region_count.to_le_bytes().to_vec();
    bytes.extend_from_slice(&0u64.to_le_bytes());
    // Roaring's portable format: cookie 12346, 1 container; key, cardinality - 1; its offset;
    // its one value.
    let [hi, lo] = [(region >> 16) as u16, region as u16];
    let mut bitmap = vec![0x3a, 0x30, 0, 0, 1, 0, 0, 0];
    bitmap.extend_from_slice(&hi.to_le_bytes());
    bitmap.extend_from_slice(&[0, 0, 16, 0, 0, 0]);
    bitmap.extend_from_slice(&lo.to_le_bytes());
    bytes.extend_from_slice(&(bitmap.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&bitmap);
    bytes.extend_from_slice(&[0; 16]); // no marks, recovering, searches or holders
    bytes
}

/// Target `cluster_snapshot`: a snapshot whose out-of-sync set holds a region past its
/// region count (here region 0 of a 0-region log) decodes, and the state it installs
/// (cluster/replica.rs installs it as decoded) panics on GET_SYNC_COUNT: `region_count -
/// out_of_sync.len()` underflows (cluster/state.rs, `ClusterState::sync_count`). Fixed when
/// the decoder refuses such a snapshot, or the state it gives counts no more in sync
/// regions than it has.
#[test]
fn snapshot_with_more_out_of_sync_regions_than_regions() {
    // As the fuzzer found it: 128 regions, and a run container covering 0..=32513.
    let found = hex("80000000030000007fffffff0f0000003b3000000100007f0001000000017f0000000001\
                     000000640000003a300000000000000000000003000000f82e010101010101fe0800800101\
                     fd010101008000000500");
    for bytes in [found, snapshot_out_of_sync(0, 0)] {
        if let Ok(snapshot) = Snapshot::decode(&bytes) {
            let count = snapshot.state.region_count().0;
            assert!(snapshot.state.sync_count() <= count);
        }
    }
}

/// Target `cluster_snapshot`: a snapshot whose out-of-sync set holds region u32::MAX (past
/// the end of any log) decodes, and GET_RESYNC_WORK on the state it installs panics at
/// `region + 1` (cluster/state.rs, `ClusterState::resync_work`); in a release build it hands
/// the kernel a region past the end of the log to recover. Fixed when the decoder refuses
/// such a snapshot, or resync work stays inside the log.
#[test]
fn snapshot_with_an_out_of_sync_region_past_the_end() {
    // As the fuzzer found it: 128 regions, out of sync {0x7e7f0001, 0x7e7fdf00}.
    let found = hex("8000000003000000000000000f0000003b300000007f7e0100010000df007f000000000000\
                     00000000000000000000");
    let built = [(u32::MAX, u32::MAX), (8, 100)].map(|(n, r)| snapshot_out_of_sync(n, r));
    for bytes in [vec![found], built.to_vec()].concat() {
        if let Ok(mut snapshot) = Snapshot::decode(&bytes) {
            let count = snapshot.state.region_count().0;
            let work = snapshot.state.apply(Member { node: 1, pid: 1 }, &Op::GetResyncWork);
            if let Ok(ReplyPayload::ResyncWork(Some(region))) = work {
                assert!(region.0 < count, "resync work {region} in a log of {count} regions");
            }
        }
    }
}

/// Target `cluster_snapshot`: a snapshot whose position in the total order (`applied`) is
/// u64::MAX decodes, and the next op applied to its state overflowed `applied += 1`
/// (cluster/state.rs, `ClusterState::apply`).
#[test]
fn snapshot_at_the_last_position_of_the_total_order() {
    let found = hex("8000001affffffffffffffff0f0000003b30000000000000000b0000007f0001000000015b000064000000160000003a300000010000000009000000000300021004006400010000000000000002000000c80000000100000002000000c80000000100000002000000010000006400fe0002000000c8000000");
    let snapshot = Snapshot::decode(&found).expect("a snapshot");
    let mut state = snapshot.state;
    assert_eq!(state.applied(), u64::MAX);
    let member = Member { node: 1, pid: 1 };
    assert!(state.apply(member, &Op::GetResyncWork).is_ok());
    assert_eq!(state.applied(), 0, "the position wraps, as nothing can reach it");
}

/// Target `handover_manifest`: a manifest whose first record holds bytes past its log count
/// decoded, and encoded to other bytes (handover.rs, `Manifest::decode`): such a file is not
/// one a daemon wrote, and carries nothing.
#[test]
fn handover_manifest_with_bytes_after_the_log_count() {
    // As the fuzzer found it, without its flags byte, and with the checksum the target
    // recomputed (flag bit 0) in place.
    let found = hex("2f000000727cdd946db990f6444d554c484e443101000000280000002e08000000000003000000000000000034303936206469ff00006520003301");
    assert!(dm_ulog_actors::handover::Manifest::decode(&found).is_err());
}
