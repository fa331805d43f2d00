//! 1,000 logs served at once by the real binary, each log's requests applied in the order
//! they were sent: a MARK sent just before an IS_CLEAN (without waiting for its reply) is
//! always seen by it, and so is a CLEAR.

mod common;

use std::time::Duration;

use common::{sim_log, Daemon};
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{RegionBatch, ReplyPayload, Request};

const LOGS: usize = 1000;

#[tokio::test]
async fn a_thousand_logs_keep_their_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(30));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..LOGS {
        let mut log = sim_log(&link, &format!("many-{i:04}"), "core 8 nosync", 64, false);
        tasks.spawn(async move {
            log.create().await.unwrap();
            let mut misordered = 0;
            for round in 0..8u64 {
                let region = (i as u64 * 7 + round * 13) % 64;
                let batch = RegionBatch::from_regions(&[region]).unwrap();
                let is_clean = Request::IsClean(RegionIndex(region));
                // Both requests are on the wire before either reply is read.
                let mark = Request::MarkRegion(batch);
                let (marked, seen) = tokio::join!(log.direct(&mark), log.direct(&is_clean));
                marked.unwrap();
                misordered += usize::from(seen != Ok(ReplyPayload::Flag(false)));
                let clear = Request::ClearRegion(batch);
                let (cleared, seen) = tokio::join!(log.direct(&clear), log.direct(&is_clean));
                cleared.unwrap();
                misordered += usize::from(seen != Ok(ReplyPayload::Flag(true)));
            }
            let (sync_count, _) = log.status().await.unwrap();
            log.remove().await.unwrap();
            (misordered, sync_count)
        });
    }
    let mut finished = 0;
    while let Some(result) = tasks.join_next().await {
        let (misordered, sync_count) = result.unwrap();
        assert_eq!(misordered, 0, "a log answered out of order");
        assert_eq!(sync_count, 64);
        finished += 1;
    }
    assert_eq!(finished, LOGS);
    // Every log was destroyed, and the daemon said so once per log.
    assert_eq!(daemon.output().matches("log destroyed").count(), LOGS);
}
