//! kill -9 of the daemon in the middle of a disk-log workload, at 20 random points, with a
//! restart each time. The simulated kernel reconnects as the real one does (timeout, resend,
//! -ESRCH, CTR with its NUL, RESUME), and the oracle checks at every reply that no region
//! with a durable mark is reported clean and that every region in sync at a kill is still in
//! sync after the reconnect (the daemon takes its sync state back from its shadow; the
//! kernel, which did not crash, asks for no resync work). Zero violations allowed.

mod common;

use std::time::Duration;

use common::{clean_on_disk, log_file, sim_log, Daemon};
use dm_ulog_actors::sim::{drive, Rng, SimLog};
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{RegionBatch, ReplyPayload, Request};

const LOGS: usize = 6;
const KILLS: usize = 20;
const REGIONS: u64 = 512;

#[tokio::test]
async fn kill_nine_at_twenty_points_loses_nothing_a_flush_promised() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    // Short resend timeouts keep the test quick; the protocol is the kernel's.
    let link = daemon.link("kernel", Duration::from_millis(500));
    let mut logs: Vec<SimLog> = (0..LOGS)
        .map(|i| {
            let path = log_file(dir.path(), &format!("log{i}"), REGIONS);
            let args = format!("disk {} 8", path.display());
            sim_log(&link, &format!("crash-{i}"), &args, REGIONS, i % 2 == 1)
                .with_reconnect_delay(Duration::from_millis(20))
        })
        .collect();
    for log in &mut logs {
        log.create().await.unwrap();
        // Resync the new mirror fully, so that what a kill leaves dirty stands out.
        while log.recover().await.unwrap().is_some() {}
    }
    let mut rng = Rng::new(0x5eed);
    let mut failed_direct_requests = 0;
    let mut kept_in_sync_checks = 0;
    for _ in 0..KILLS {
        // Every log runs its workload while the daemon is killed under it.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut log) in logs.drain(..).enumerate() {
            let mut rng = Rng::new(rng.next_u64());
            tasks.spawn(async move {
                // Suspend / resume are not retried by the kernel either: a daemon that dies
                // under them fails them, and the workload goes on.
                let result = drive(&mut log, &mut rng, 150).await;
                (i, log, result.is_err())
            });
        }
        tokio::time::sleep(Duration::from_millis(20 + rng.below(200))).await;
        daemon.kill();
        tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
        daemon.restart();
        let mut finished: Vec<(usize, SimLog, bool)> = Vec::new();
        while let Some(result) = tasks.join_next().await {
            finished.push(result.unwrap());
        }
        finished.sort_by_key(|(i, _, _)| *i);
        for (_, mut log, failed) in finished {
            failed_direct_requests += usize::from(failed);
            // Bring every log back and check each region the kill left dirty. The request
            // that finds the new daemon may fail (-ENOSPC: the kernel retries it with no room
            // for the answer), and the kernel then reads a sync count of 0.
            let _ = log.request(&Request::GetSyncCount).await;
            kept_in_sync_checks += log.oracle.in_sync_at_kill().len();
            log.audit().await.unwrap();
            logs.push(log);
        }
    }
    for log in &mut logs {
        log.remove().await.unwrap();
    }
    let violations: Vec<String> = logs.iter().flat_map(|l| l.oracle.violations.clone()).collect();
    let checks: u64 = logs.iter().map(|l| l.oracle.checks).sum();
    println!("{checks} checks, {kept_in_sync_checks} regions in sync at kills, {failed_direct_requests} suspend/resume cut by a kill");
    assert!(violations.is_empty(), "{violations:#?}");
    // The kills did land on logs the mirror relied on as in sync.
    assert!(kept_in_sync_checks > 0);
}

/// What the kernel relies on survives a kill -9: the restarted daemon, asked again through
/// CTR (with its NUL) and RESUME, reports the sync counts it reported before, and keeps the
/// marks it had answered, on disk or not yet. Without the shadow the same reconnect would
/// start a core log all out of sync, which the real kernel never resyncs (finding B).
#[tokio::test]
async fn kill_nine_keeps_the_sync_state_and_the_marks_the_kernel_relies_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_millis(500));
    let reconnecting = |log: SimLog| log.with_reconnect_delay(Duration::from_millis(20));
    let mut core = reconnecting(sim_log(&link, "shadow-core", "core 8", 64, false));
    let path = log_file(dir.path(), "disk-log", 64);
    let disk_args = format!("disk {} 8", path.display());
    let mut disk = reconnecting(sim_log(&link, "shadow-disk", &disk_args, 64, false));
    core.create().await.unwrap();
    disk.create().await.unwrap();
    for _ in 0..40 {
        core.recover().await.unwrap();
    }
    while disk.recover().await.unwrap().is_some() {}
    // Region 40 is being recovered at the kill.
    assert_eq!(resync_work(&mut core).await, Some(40));
    // Region 5 marked and flushed; region 9 marked, its FLUSH cut off by the kill.
    disk.write(&[5]).await.unwrap();
    let nine = RegionBatch::from_regions(&[9]).unwrap();
    disk.request(&Request::MarkRegion(nine)).await.unwrap();
    assert!(clean_on_disk(&path, 9));

    daemon.kill();
    daemon.restart();
    assert_eq!(sync_count(&mut core).await, 40);
    assert_eq!(sync_count(&mut disk).await, 64);
    for region in [5, 9] {
        let clean = disk.request(&Request::IsClean(RegionIndex(region))).await.unwrap();
        assert_eq!(clean, ReplyPayload::Flag(false), "region {region}");
        // The reconnect's RESUME wrote the whole image: the cut-off mark is on disk now.
        assert!(!clean_on_disk(&path, region), "region {region}");
    }

    // The kernel may still be copying region 40: it is not handed out again until a real
    // resume, before which dm-raid1 waits for every recovery to end.
    assert_eq!(resync_work(&mut core).await, Some(41));
    core.suspend_resume().await.unwrap();
    assert_eq!(resync_work(&mut core).await, Some(40));

    // The same kill without the shadows: the state is the logs' own again.
    daemon.kill();
    for entry in std::fs::read_dir(daemon.state_dir()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    daemon.restart();
    assert_eq!(sync_count(&mut core).await, 0);
    assert!(daemon.output().contains("reconnect without a shadow"));

    // DTR removes a log's shadow; what stays is the daemon's lock.
    core.remove().await.unwrap();
    disk.remove().await.unwrap();
    let left: Vec<_> = std::fs::read_dir(daemon.state_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["dm-ulogd.lock"]);
}

/// A recovery cut by a kill between SET_REGION_SYNC and its FLUSH: the old daemon answered
/// the region in sync, but its clean bit never reached the device. The new daemon keeps the
/// region in sync (the kernel counted it recovered and will not resync it before a real
/// resume) and dirty (dirty on the device stays dirty), so the next real resume, which reads
/// the device again, resyncs it: one region's copy, never a region lost.
#[tokio::test]
async fn a_recovery_cut_by_a_kill_is_in_sync_until_the_next_real_resume_resyncs_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_millis(500));
    let path = log_file(dir.path(), "disk-log", 16);
    let args = format!("disk {} 8", path.display());
    let mut log = sim_log(&link, "cut-recovery", &args, 16, false)
        .with_reconnect_delay(Duration::from_millis(20));
    log.create().await.unwrap();
    assert_eq!(resync_work(&mut log).await, Some(0));
    let zero = RegionBatch::from_regions(&[0]).unwrap();
    log.request(&Request::ClearRegion(zero)).await.unwrap();
    let in_sync = Request::SetRegionSync { region: RegionIndex(0), in_sync: true };
    log.request(&in_sync).await.unwrap();
    assert!(!clean_on_disk(&path, 0));

    daemon.kill();
    daemon.restart();
    log.request(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
    assert!(flag(&mut log, Request::InSync(RegionIndex(0))).await);
    assert!(!flag(&mut log, Request::IsClean(RegionIndex(0))).await);
    assert!(!clean_on_disk(&path, 0));
    assert_eq!(sync_count(&mut log).await, 1);

    log.suspend_resume().await.unwrap();
    assert!(!flag(&mut log, Request::InSync(RegionIndex(0))).await);
    assert_eq!(resync_work(&mut log).await, Some(0));
    log.remove().await.unwrap();
}

async fn flag(log: &mut SimLog, request: Request) -> bool {
    match log.request(&request).await.unwrap() {
        ReplyPayload::Flag(flag) => flag,
        other => panic!("{request:?} answered {other:?}"),
    }
}

async fn sync_count(log: &mut SimLog) -> u64 {
    match log.request(&Request::GetSyncCount).await.unwrap() {
        ReplyPayload::Count(count) => count,
        other => panic!("GET_SYNC_COUNT answered {other:?}"),
    }
}

async fn resync_work(log: &mut SimLog) -> Option<u64> {
    match log.request(&Request::GetResyncWork).await.unwrap() {
        ReplyPayload::ResyncWork(region) => region.map(|r| r.0),
        other => panic!("GET_RESYNC_WORK answered {other:?}"),
    }
}
