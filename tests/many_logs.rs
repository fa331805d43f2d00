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

/// 10,000 disk logs under a limit of 16,384 descriptors: each needs its device open, and the
/// shadows must make do with what is left (a journal past the budget is opened per record).
#[tokio::test]
async fn ten_thousand_disk_logs_fit_under_16384_descriptors() {
    const DISK_LOGS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    // The log files on a tmpfs: this test is about descriptors, not fdatasync.
    let files = tempfile::tempdir_in("/dev/shm").unwrap();
    let daemon = Daemon::start_limited(dir.path(), &[], Some(16_384));
    let link = daemon.link("kernel", Duration::from_secs(60));
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = DISK_LOGS / 50;
    for task in 0..50 {
        let (link, files) = (link.clone(), files.path().to_owned());
        tasks.spawn(async move {
            for i in task * per_task..(task + 1) * per_task {
                let path = common::log_file(&files, &format!("log-{i:05}"), 16);
                let args = format!("disk {} 8 nosync", path.display());
                let mut log = sim_log(&link, &format!("disk-{i:05}"), &args, 16, false);
                log.create().await.unwrap();
                log.write(&[(i % 16) as u64]).await.unwrap();
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let open = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid())).unwrap().count();
    assert!((DISK_LOGS..16_384).contains(&open), "{open} descriptors open");
    let shadows = std::fs::read_dir(daemon.state_dir()).unwrap().count();
    assert!(shadows >= DISK_LOGS, "{shadows} files in state_dir: a shadow per log");
    let output = daemon.output();
    assert!(!output.contains("shadow not written") && !output.contains("not created"));
}
