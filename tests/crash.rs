//! kill -9 of the daemon in the middle of a disk-log workload, at 20 random points, with a
//! restart each time. The simulated kernel reconnects as the real one does (timeout, resend,
//! -ESRCH, CTR with its NUL, RESUME), and the oracle checks at every reply that no region
//! with a durable mark is reported clean and that every region dirty at a kill comes back
//! out of sync until recovered. Zero violations allowed.

mod common;

use std::time::Duration;

use common::{log_file, sim_log, Daemon};
use dm_ulog_actors::sim::{drive, Rng, SimLog};

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
    let mut resynced_checks = 0;
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
            let _ = log.request(&dm_ulog_actors::wire::Request::GetSyncCount).await;
            resynced_checks += log.oracle.must_resync().len();
            log.audit().await.unwrap();
            logs.push(log);
        }
    }
    for log in &mut logs {
        log.remove().await.unwrap();
    }
    let violations: Vec<String> = logs.iter().flat_map(|l| l.oracle.violations.clone()).collect();
    let checks: u64 = logs.iter().map(|l| l.oracle.checks).sum();
    println!("{checks} checks, {resynced_checks} regions left dirty by kills, {failed_direct_requests} suspend/resume cut by a kill");
    assert!(violations.is_empty(), "{violations:#?}");
    // The kills did land in the middle of work: regions were left to resync.
    assert!(resynced_checks > 0);
}
