//! Every request type against the real binary over the unix transport: core and disk logs,
//! header versions 3 and 0, with and without integrated flush.

mod common;

use std::time::Duration;

use common::{clean_on_disk, log_file, sim_log, Daemon};
use dm_ulog_actors::sim::Failed;
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{RegionBatch, ReplyPayload, Request};

fn batch(regions: &[u64]) -> RegionBatch {
    RegionBatch::from_regions(regions).unwrap()
}

fn flag(b: bool) -> Result<ReplyPayload, Failed> {
    Ok(ReplyPayload::Flag(b))
}

const EMPTY: Result<ReplyPayload, Failed> = Ok(ReplyPayload::Empty);

#[tokio::test]
async fn core_log_answers_every_request_type_in_both_header_generations() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    for version in [3, 0] {
        let log =
            sim_log(&link, &format!("core-v{version}"), "core 8", 125, false).with_version(version);
        let r = |n| RegionIndex(n);
        assert_eq!(
            log.direct(&Request::Ctr { args: "1000 core 8".into(), reconnect: false }).await,
            EMPTY
        );
        assert_eq!(log.direct(&Request::GetRegionSize).await, Ok(ReplyPayload::Count(8)));
        assert_eq!(log.direct(&Request::GetSyncCount).await, Ok(ReplyPayload::Count(0)));
        assert_eq!(log.direct(&Request::Resume).await, EMPTY);
        assert_eq!(log.direct(&Request::InSync(r(0))).await, flag(false));
        // A region out of sync is never clean (tests/kernel/README.md, finding C), even
        // once its marks are cleared.
        assert_eq!(log.direct(&Request::IsClean(r(1))).await, flag(false));
        assert_eq!(log.direct(&Request::MarkRegion(batch(&[1, 2]))).await, EMPTY);
        assert_eq!(log.direct(&Request::Flush(RegionBatch::EMPTY)).await, EMPTY);
        assert_eq!(log.direct(&Request::ClearRegion(batch(&[1]))).await, EMPTY);
        assert_eq!(log.direct(&Request::IsClean(r(1))).await, flag(false));
        assert_eq!(
            log.direct(&Request::GetResyncWork).await,
            Ok(ReplyPayload::ResyncWork(Some(r(0))))
        );
        assert_eq!(
            log.direct(&Request::GetResyncWork).await,
            Ok(ReplyPayload::ResyncWork(Some(r(1))))
        );
        let sync = |region, in_sync| Request::SetRegionSync { region: r(region), in_sync };
        assert_eq!(log.direct(&sync(0, true)).await, EMPTY);
        assert_eq!(log.direct(&Request::IsClean(r(0))).await, flag(true));
        assert_eq!(log.direct(&Request::GetSyncCount).await, Ok(ReplyPayload::Count(1)));
        // Marked and in sync: not clean until cleared.
        assert_eq!(log.direct(&Request::MarkRegion(batch(&[0]))).await, EMPTY);
        assert_eq!(log.direct(&Request::IsClean(r(0))).await, flag(false));
        assert_eq!(log.direct(&Request::ClearRegion(batch(&[0]))).await, EMPTY);
        assert_eq!(log.direct(&Request::IsClean(r(0))).await, flag(true));
        assert_eq!(
            log.direct(&Request::IsRemoteRecovering(r(5))).await,
            Ok(ReplyPayload::RemoteRecovering { recovering: false, in_sync_hint: r(1) })
        );
        assert_eq!(
            log.direct(&Request::StatusInfo).await,
            Ok(ReplyPayload::Status("1 core".into()))
        );
        assert_eq!(
            log.direct(&Request::StatusTable).await,
            Ok(ReplyPayload::Status("core 1 8 ".into()))
        );
        assert_eq!(log.direct(&Request::Presuspend).await, EMPTY);
        assert_eq!(log.direct(&Request::Postsuspend).await, EMPTY);
        assert_eq!(log.direct(&Request::Resume).await, EMPTY);
        // RESUME restarts the resync search and forgets what was recovering (dm-raid1's
        // presuspend waits for every recovery to end): region 1 is handed out again.
        assert_eq!(
            log.direct(&Request::GetResyncWork).await,
            Ok(ReplyPayload::ResyncWork(Some(r(1))))
        );
        assert_eq!(log.direct(&Request::Dtr).await, EMPTY);
        assert_eq!(log.direct(&Request::GetSyncCount).await, Err(Failed(-libc::ESRCH)));
    }
}

#[tokio::test]
async fn disk_log_commits_marks_before_answering_flush() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    for (version, integrated) in [(3, false), (3, true), (0, false)] {
        let path = log_file(dir.path(), &format!("log-{version}-{integrated}"), 125);
        let args = format!("disk {} 8", path.display());
        let mut log =
            sim_log(&link, &format!("disk-{version}-{integrated}"), &args, 125, integrated)
                .with_version(version);
        let device = log.create().await.unwrap();
        // Version 2+ kernels get the device back to hold it; older ones have no room for it.
        let expected = (version >= 2).then(|| path.display().to_string());
        assert_eq!(device, expected);
        // A new log device (no header) is all dirty and out of sync after RESUME.
        assert!(!clean_on_disk(&path, 3));
        // A recovery's FLUSH owes nothing: its clean bits are committed behind it, at the
        // latest with the next FLUSH that marks.
        for _ in 0..125 {
            log.recover().await.unwrap();
        }
        assert_eq!(log.status().await.unwrap(), (125, format!("3 disk {} A", path.display())));
        log.write(&[3, 64]).await.unwrap();
        assert!(
            !clean_on_disk(&path, 3) && !clean_on_disk(&path, 64),
            "marks durable at FLUSH reply"
        );
        let others = (0..125).filter(|region| ![3, 64].contains(region));
        assert!(others.clone().all(|region| clean_on_disk(&path, region)), "recoveries written");
        log.complete(&[3, 64]).await.unwrap();
        // The marks ride in the FLUSH: one request makes them durable, and the clears before.
        let flush = Request::Flush(batch(&[7, 8]));
        assert_eq!(log.request(&flush).await, EMPTY);
        assert!(!clean_on_disk(&path, 7) && !clean_on_disk(&path, 8));
        assert!(clean_on_disk(&path, 3) && clean_on_disk(&path, 64), "clears written");
        // The reconnect CTR (payload ends in NUL) gets no device name: the kernel gave it no room.
        let reconnect = Request::Ctr { args: log.table.ctr_string(), reconnect: true };
        assert_eq!(log.direct(&reconnect).await, EMPTY);
        log.direct(&Request::Resume).await.unwrap();
        if integrated {
            // The new instance takes the replaced one's state back from the shadow: the
            // marks are still dirty, and the regions still in sync, as the kernel believes.
            assert_eq!(log.direct(&Request::IsClean(RegionIndex(7))).await, flag(false));
            assert_eq!(log.direct(&Request::InSync(RegionIndex(7))).await, flag(true));
        }
        assert_eq!(log.direct(&Request::InSync(RegionIndex(3))).await, flag(true));
        log.remove().await.unwrap();
    }
}

#[tokio::test]
async fn clustered_types_serve_single_node_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &["--single-node-clustered"]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    let mut log = sim_log(&link, "cc", "clustered-core 8 nosync", 125, false);
    log.create().await.unwrap();
    assert_eq!(log.status().await.unwrap(), (125, "1 clustered-core".into()));
    assert_eq!(
        log.direct(&Request::StatusTable).await,
        Ok(ReplyPayload::Status("clustered-core 2 8 nosync ".into()))
    );
    let path = log_file(dir.path(), "cd", 125);
    let mut log = sim_log(&link, "cd", &format!("clustered-disk {} 8", path.display()), 125, false);
    assert_eq!(log.create().await.unwrap(), Some(path.display().to_string()));
    assert_eq!(log.status().await.unwrap().1, format!("3 clustered-disk {} A", path.display()));
}

/// `--corosync` on a host where corosync is not running (this test's namespace has none):
/// the daemon says so, constructs clustered logs, and holds their RESUME rather than
/// serving a state no other host agreed to.
#[tokio::test]
async fn clustered_logs_without_a_reachable_corosync_wait_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &["--corosync"]);
    let link = daemon.link("kernel", Duration::from_secs(30));
    let log = sim_log(&link, "cc", "clustered-core 8", 125, false);
    let ctr = Request::Ctr { args: log.table.ctr_string(), reconnect: false };
    assert_eq!(log.direct(&ctr).await, Ok(ReplyPayload::Empty));
    assert_eq!(log.direct(&Request::GetSyncCount).await, Ok(ReplyPayload::Count(0)));
    let resume = tokio::spawn(async move { log.direct(&Request::Resume).await });
    while !daemon.output().contains("quorum service unreachable (is corosync running?)") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!resume.is_finished(), "RESUME answered without a cluster");
    resume.abort();
}

#[tokio::test]
async fn clustered_types_are_refused_without_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    let log = sim_log(&link, "cc", "clustered-core 8", 125, false);
    let ctr = Request::Ctr { args: log.table.ctr_string(), reconnect: false };
    assert_eq!(log.direct(&ctr).await, Err(Failed(-libc::EINVAL)));
    assert!(daemon.output().contains("clustered log types need a cluster"));
}

/// The kernel retries a request answered -ESRCH in the same reply buffer, whose size its
/// reply handler has just set to the -ESRCH reply's size. Seen on kernel 6.1 with an empty
/// -ESRCH: the retried IN_SYNC failed with "Insufficient space to receive package [8] (8 vs
/// 0)", read as "not in sync", and the kernel wrote the region to one leg only. The refusal
/// now carries zeroes of the answer's size, and the retry gets its answer.
#[tokio::test]
async fn an_esrch_reply_keeps_room_for_the_retried_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    let mut log = sim_log(&link, "retried", "core 8 nosync", 125, false);
    log.create().await.unwrap();
    daemon.kill();
    daemon.restart();
    let in_sync = |r| Request::InSync(RegionIndex(r));
    // Straight to the daemon: -ESRCH, with 8 bytes of room kept (the simulated kernel checks
    // the size against the buffer as fill_pkg does, and stores it for the retry).
    assert_eq!(log.direct(&in_sync(5)).await, Err(Failed(-libc::ESRCH)));
    // Through the kernel's retry path: reconnect, then the right answer fits.
    daemon.kill();
    daemon.restart();
    assert_eq!(log.request(&in_sync(9)).await, flag(true));
    assert_eq!(log.request(&Request::GetSyncCount).await, Ok(ReplyPayload::Count(125)));
    daemon.kill();
    daemon.restart();
    let status = log.request(&Request::StatusInfo).await;
    assert_eq!(status, Ok(ReplyPayload::Status("1 core".into())));
}
