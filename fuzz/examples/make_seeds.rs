//! Writes the seed corpus of every fuzz target into `fuzz/seeds/<target>/`: a few valid
//! inputs made by the crate's own encoders, so that fuzzing starts past the magic numbers,
//! lengths and checksums. Deterministic: run it again and the files come out the same.
//!
//! Run from `fuzz/`: `cargo run --example make_seeds`.

use std::collections::BTreeSet;
use std::path::Path;

use dm_ulog_actors::cluster::message::{Message, Snapshot};
use dm_ulog_actors::cluster::state::{ClusterState, Member, Op};
use dm_ulog_actors::handover::{CarriedLog, Manifest, Phase, SocketId};
use dm_ulog_actors::region::{Change, LogArgs, ShadowSets, SyncMode};
use dm_ulog_actors::shadow::format::{changes, snapshot, Owner};
use dm_ulog_actors::store::format::{load, Layout};
use dm_ulog_actors::units::{RegionCount, RegionIndex};
use dm_ulog_actors::wire::{emit_ack, emit_reply, Errno, RegionBatch, ReplyPayload, Request};
use dm_ulog_actors::wire::{LogKey, RequestHeader, Uuid, MAX_REPLY_FRAME, MAX_REQUEST_FRAME};
use roaring::RoaringBitmap;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn header(request: &Request, seq: u32) -> RequestHeader {
    let uuid = Uuid::new("LVM-fuzzseed0123456789").unwrap();
    RequestHeader { luid: 42, uuid, version: 3, seq, request_type: request.kind() as u32 }
}

fn requests() -> Vec<(&'static str, Request)> {
    let batch = RegionBatch::from_regions(&[0, 5, 6, 1000]).unwrap();
    vec![
        ("ctr", Request::Ctr { args: "2048 disk /dev/ram2 8 sync".into(), reconnect: false }),
        ("ctr-reconnect", Request::Ctr { args: "2048 core 8".into(), reconnect: true }),
        ("mark", Request::MarkRegion(batch)),
        ("flush", Request::Flush(batch)),
        ("is-clean", Request::IsClean(RegionIndex(17))),
        ("set-region-sync", Request::SetRegionSync { region: RegionIndex(3), in_sync: true }),
        ("status-table", Request::StatusTable),
    ]
}

fn wire() {
    let mut buf = [0u8; MAX_REQUEST_FRAME];
    for (seq, (name, request)) in requests().into_iter().enumerate() {
        let len = request.emit(&header(&request, seq as u32), &mut buf);
        write("decode_frame", name, &buf[..len]);
    }
    let mut out = [0u8; MAX_REPLY_FRAME];
    let replies = [
        ("count", Request::GetRegionSize, Ok(ReplyPayload::Count(8))),
        ("flag", Request::InSync(RegionIndex(1)), Ok(ReplyPayload::Flag(true))),
        ("resync-work", Request::GetResyncWork, Ok(ReplyPayload::ResyncWork(Some(RegionIndex(9))))),
        ("status", Request::StatusInfo, Ok(ReplyPayload::Status("3 disk 253:2 A".into()))),
        ("device-name", requests()[0].1.clone(), Ok(ReplyPayload::DeviceName("253:2".into()))),
        ("error", Request::Resume, Err(Errno::EIO)),
    ];
    for (name, request, reply) in replies {
        let len = emit_reply(&header(&request, 7), 256, &reply, &mut out);
        write("decode_reply", name, &out[..len]);
    }
    let len = emit_ack(11, Some(Errno::EAGAIN), &mut out);
    write("decode_reply", "ack-eagain", &out[..len]);
    let len = emit_ack(12, None, &mut out);
    write("decode_reply", "ack-ok", &out[..len]);
}

fn ctr() {
    let strings = [
        "32768 clustered-disk /dev/ram2 1024",
        "32768 core 1024 nosync",
        "1000 disk 253:2 8 sync",
        "4096 clustered-core 8 sync block_on_error",
    ];
    for (i, s) in strings.iter().enumerate() {
        write("ctr_args", &format!("ctr-{i}"), s.as_bytes());
    }
}

fn shadow() {
    const CTR: &str = "512 disk /dev/ram2 8"; // shadow_replay.rs's owner
    let key = LogKey { uuid: Uuid::new("LVM-fuzz-shadow").unwrap(), luid: 7 };
    let owner = Owner { key: &key, ctr: CTR };
    let sets = ShadowSets {
        out_of_sync: RoaringBitmap::from_iter([1, 2, 40]),
        recovering: RoaringBitmap::from_iter([2]),
        dirty: RoaringBitmap::from_iter([5, 6]),
    };
    let journal = changes(&[
        Change::InSync(1),
        Change::OutOfSync(9),
        Change::Recovering(9),
        Change::Marked(vec![10, 11, 12]),
        Change::Cleared(vec![11]),
    ]);
    // le32 region count, then the flags byte (bit 0: recompute checksums), then the file.
    let with =
        |count: u32, flags: u8, file: &[u8]| [&count.to_le_bytes()[..], &[flags], file].concat();
    let snap = snapshot(owner, &sets);
    write("shadow_replay", "snapshot", &with(64, 0, &snap));
    write("shadow_replay", "snapshot-journal", &with(64, 1, &[&snap[..], &journal].concat()));
    let torn = [&snap[..], &journal[..journal.len() - 3]].concat();
    write("shadow_replay", "torn-tail", &with(64, 0, &torn));
    write("shadow_replay", "empty-sets", &with(8, 1, &snapshot(owner, &ShadowSets::default())));
}

fn handover() {
    let log = |uuid: &str, luid, ctr: &str, phase| CarriedLog {
        key: LogKey { uuid: Uuid::new(uuid).unwrap(), luid },
        ctr: ctr.to_owned(),
        phase,
    };
    let manifest = Manifest {
        socket: SocketId { dev: 8, ino: 4242 },
        logs: vec![
            log("LVM-fuzz-handover", 1, "2048 core 8", Phase::Resumed),
            log("KT14-1", 2, "4096 disk /dev/ram72 128", Phase::Reconnected),
            log("KT15-c0", 3, "4096 core 128 nosync", Phase::Constructed),
        ],
    };
    // The flags byte (bit 0: recompute checksums), then the file.
    write("handover_manifest", "three-logs", &[&[0u8][..], &manifest.encode()].concat());
    let empty = Manifest { socket: SocketId { dev: 0, ino: 1 }, logs: vec![] };
    write("handover_manifest", "no-logs", &[&[1u8][..], &empty.encode()].concat());
}

fn disk() {
    let count = RegionCount(300);
    let loaded = load(&[], count, SyncMode::Default);
    let layout = Layout { count, block_size: 512, header_block: loaded.header_block };
    let dirty = RoaringBitmap::from_iter([0, 7, 8, 299]);
    let image = &layout.render_all(&[&dirty]).runs[0].1;
    // le32 region count (its top byte unused), sync mode (0 default, 1 sync, 2 nosync),
    // block size 512 << n, le16 where the bitmap is cut in two, the image.
    let with = |count: u32, sync: u8, shift: u8, cut: u16, image: &[u8]| {
        [&count.to_le_bytes()[..], &[sync, shift], &cut.to_le_bytes(), image].concat()
    };
    write("disk_image", "image-300", &with(300, 0, 0, 20, image));
    write("disk_image", "image-grown", &with(70_000, 0, 1, 0, image));
    write("disk_image", "image-cut-nosync", &with(300, 2, 0, 7, &image[..1040]));
    write("disk_image", "header-only", &with(300, 0, 3, 0, &image[..16]));
}

fn cluster() {
    let ops = [
        Op::Mark(vec![1, 2, 3]),
        Op::Clear(vec![2]),
        Op::Flush(vec![]),
        Op::GetResyncWork,
        Op::SetRegionSync { region: 4, in_sync: true },
        Op::IsRemoteRecovering(5),
    ];
    for (i, op) in ops.iter().enumerate() {
        write("cluster_message", &format!("op-{i}"), &Message::Op(op.clone()).encode());
    }
    write("cluster_message", "durable", &Message::Durable(99).encode());
    let args: LogArgs = "1024 clustered-core 8".parse().unwrap();
    let mut state = ClusterState::new(&args, args.initial_out_of_sync());
    let (a, b) = (Member { node: 1, pid: 100 }, Member { node: 2, pid: 200 });
    state.apply(a, &Op::Mark(vec![3, 4, 100])).unwrap();
    state.apply(b, &Op::Resume).unwrap();
    state.apply(b, &Op::GetResyncWork).unwrap();
    let holders: BTreeSet<Member> = [a, b].into();
    let chunks = Snapshot::chunks(&state, &holders, 3, 1 << 20);
    let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.clone()).collect();
    write("cluster_snapshot", "two-members", &bytes);
    let empty = ClusterState::new(&args, RoaringBitmap::new());
    let chunks = Snapshot::chunks(&empty, &BTreeSet::new(), 1, 1 << 20);
    write("cluster_snapshot", "empty", &chunks[0].bytes);
    write("cluster_message", "snapshot-chunk", &Message::Snapshot(chunks[0].clone()).encode());
}

fn main() {
    let _ = std::fs::remove_dir_all(Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    wire();
    ctr();
    shadow();
    handover();
    disk();
    cluster();
}
