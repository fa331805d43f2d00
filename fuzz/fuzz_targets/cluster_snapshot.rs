//! Fuzzes the decoder of state snapshots, `cluster::message::Snapshot::decode`: the state a
//! joining member installs from the chunks another member sent. It must not panic, and a
//! decoded snapshot cut into chunks again (of a size taken from the input) must reassemble
//! to bytes that decode to the same snapshot. The replica installs the state as decoded and
//! answers its kernel from it at once, so the state's answers must hold too: no panic, a
//! sync count within the region count, resync work inside the log.
#![no_main]

use dm_ulog_actors::cluster::message::Snapshot;
use dm_ulog_actors::cluster::state::{Member, Op};
use dm_ulog_actors::wire::ReplyPayload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(snapshot) = Snapshot::decode(bytes) else { return };
    let chunk_size = 1 + bytes.len() % 61;
    let chunks = Snapshot::chunks(&snapshot.state, &snapshot.holders, 5, chunk_size);
    let mut joined = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!((chunk.view, chunk.index, chunk.total), (5, i as u32, chunks.len() as u32));
        assert!(!chunk.bytes.is_empty() && chunk.bytes.len() <= chunk_size);
        joined.extend_from_slice(&chunk.bytes);
    }
    assert_eq!(Snapshot::decode(&joined).as_ref(), Ok(&snapshot));

    let mut state = snapshot.state;
    let count = state.region_count().0;
    assert!(state.sync_count() <= count);
    let member = snapshot.holders.first().copied().unwrap_or(Member { node: 1, pid: 1 });
    for _ in 0..3 {
        if let Ok(ReplyPayload::ResyncWork(Some(region))) = state.apply(member, &Op::GetResyncWork)
        {
            assert!(region.0 < count, "resync work {region} in a log of {count} regions");
        }
    }
});
