//! Codec cost per frame: decoding a kernel request and encoding its reply, for the request
//! types of the write path.

use criterion::{criterion_group, criterion_main, Criterion};
use dm_ulog_actors::sim::load::encode;
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::reply::reply_capacity;
use dm_ulog_actors::wire::{
    decode_frame, emit_reply, RegionBatch, ReplyPayload, Request, Uuid, MAX_REPLY_FRAME,
};

fn frame(request: &Request) -> Vec<u8> {
    let uuid = Uuid::new("LVM-vQ1r3kd9x0p2m4n5b6v7c8x9z0a1s2d3f4g5h6j7k8l9").unwrap();
    encode(&uuid, 0xffff_8a5a_dff7_e600, request)
}

fn codec(c: &mut Criterion) {
    let marks = RegionBatch::from_regions(&(0..32).collect::<Vec<u64>>()).unwrap();
    let cases = [
        ("in_sync", Request::InSync(RegionIndex(77)), ReplyPayload::Flag(true)),
        ("mark_32", Request::MarkRegion(marks), ReplyPayload::Empty),
        ("flush", Request::Flush(RegionBatch::EMPTY), ReplyPayload::Empty),
        ("get_sync_count", Request::GetSyncCount, ReplyPayload::Count(1_000_000)),
    ];
    let mut group = c.benchmark_group("decode+encode");
    for (name, request, payload) in cases {
        let bytes = frame(&request);
        let reply = Ok(payload);
        let mut out = [0u8; MAX_REPLY_FRAME];
        group.bench_function(name, |b| {
            b.iter(|| {
                let frame = decode_frame(std::hint::black_box(&bytes)).unwrap();
                let request = frame.request().unwrap();
                let capacity = reply_capacity(&request, frame.header.version);
                emit_reply(&frame.header, capacity, &reply, &mut out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
