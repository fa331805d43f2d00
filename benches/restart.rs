//! The longest mirror write across a restart of the daemon, natively: the real binary on the
//! unix transport, 32 logs (core, disk on a file, clustered-core served single-node, disk with
//! integrated_flush), each driven by a simulated kernel that behaves as dm-raid1's: one write
//! at a time per mirror, each on a new region (IN_SYNC, MARK, FLUSH; then CLEAR, FLUSH), a
//! 15 s timeout and resend, and a 2 s wait before it replays CTR after -ESRCH.
//!
//! Three stretches of the same run, each the writes in progress at any time during it: none
//! (no restart, the baseline), `dm-ulogd upgrade` (the handover by exec), and a plain restart
//! (SIGTERM, then a new daemon on a new socket: what every restart was before handovers).
//! Printed with the ratio of each to the baseline. The real kernel's figures are case 14 of
//! tests/kernel (README's Restarts and upgrades).
//!
//! Run: `cargo bench --bench restart`.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{log_file, sim_log, Daemon};
use dm_ulog_actors::sim::SimLog;

const LOGS: usize = 32;
const REGIONS: u64 = 64;

/// Each write: when it started and how long it took, per log.
type Records = Arc<Mutex<Vec<(Instant, Duration)>>>;

fn main() {
    support::serve_echo_if_asked();
    let measuring = support::measuring();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(run(measuring));
}

async fn run(measuring: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &["--single-node-clustered"]);
    // The kernel's: a 15 s timeout before a resend, 2 s before each reconnect attempt.
    let link = daemon.link("kernel", Duration::from_secs(15));
    let mut logs = Vec::new();
    for i in 0..LOGS {
        let disk = || log_file(dir.path(), &format!("log{i}.img"), REGIONS).display().to_string();
        let (args, integrated_flush) = match i % 4 {
            0 => ("core 8 nosync".to_owned(), false),
            1 => (format!("disk {} 8 nosync", disk()), false),
            2 => ("clustered-core 8 nosync".to_owned(), false),
            _ => (format!("disk {} 8 nosync", disk()), true),
        };
        let mut log = sim_log(&link, &format!("restart-{i}"), &args, REGIONS, integrated_flush)
            .with_reconnect_delay(Duration::from_secs(2));
        log.create().await.unwrap();
        logs.push(log);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let records: Vec<Records> = (0..LOGS).map(|_| Records::default()).collect();
    let mut writers = tokio::task::JoinSet::new();
    for (log, records) in logs.into_iter().zip(&records) {
        writers.spawn(write_until(log, stop.clone(), records.clone()));
    }
    let settle = Duration::from_millis(if measuring { 2000 } else { 200 });
    let window = |since: Instant| (since, Instant::now());
    tokio::time::sleep(settle).await;
    let from = Instant::now();
    tokio::time::sleep(settle).await;
    let none = window(from);

    let from = Instant::now();
    let control = daemon.control_socket();
    let upgraded = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
            .args(["upgrade", "--control-socket"])
            .arg(control)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(upgraded.status.success(), "{}", String::from_utf8_lossy(&upgraded.stderr));
    tokio::time::sleep(settle).await;
    let upgrade = window(from);

    let mut phases = vec![("no restart", none), ("dm-ulogd upgrade", upgrade)];
    if measuring {
        // Out of the smoke run: the kernel's 2 s wait before each reconnect is the point.
        // After a pause, so that no write in progress at the end of the last stretch is.
        tokio::time::sleep(settle).await;
        let from = Instant::now();
        assert!(daemon.terminate().success());
        daemon.restart();
        tokio::time::sleep(Duration::from_secs(20)).await;
        phases.push(("plain restart (SIGTERM, start)", window(from)));
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let baseline = longest(&records, none).0;
    println!("longest mirror write (IN_SYNC, MARK, FLUSH, CLEAR, FLUSH), {LOGS} logs, each writing one region at a time");
    println!("{:<32} {:>12} {:>14} {:>10}", "", "longest ms", "median of the", "longest /");
    println!("{:<32} {:>12} {:>14} {:>10}", "", "", "logs' longest", "baseline");
    for (name, window) in phases {
        let (max, median) = longest(&records, window);
        let ratio = max.as_secs_f64() / baseline.as_secs_f64();
        println!("{name:<32} {:>12.1} {:>14.1} {ratio:>10.1}", ms(max), ms(median));
    }
}

/// Writes one region after another until told to stop, recording each write.
async fn write_until(mut log: SimLog, stop: Arc<AtomicBool>, records: Records) {
    let mut region = 0;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        log.write(&[region]).await.unwrap();
        log.complete(&[region]).await.unwrap();
        records.lock().unwrap().push((start, start.elapsed()));
        region = (region + 1) % REGIONS;
    }
    assert!(log.oracle.violations.is_empty(), "{:#?}", log.oracle.violations);
}

/// The longest write in progress during `window`, over all logs, and the median of each
/// log's longest.
fn longest(records: &[Records], (from, to): (Instant, Instant)) -> (Duration, Duration) {
    let mut per_log: Vec<Duration> = records
        .iter()
        .map(|log| {
            let log = log.lock().unwrap();
            let overlapping =
                log.iter().filter(|(start, took)| *start <= to && *start + *took >= from);
            overlapping.map(|(_, took)| *took).max().unwrap_or_default()
        })
        .collect();
    per_log.sort();
    (per_log.last().copied().unwrap_or_default(), per_log[per_log.len() / 2])
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
