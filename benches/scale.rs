//! Many logs: the daemon's resident memory holding 10,000 logs of 1,000,000 regions each (all
//! in sync, then with 1% of each log's regions dirty), and the time to construct and resume
//! them against the same number of round trips to an echo responder on the same socket kind.
//!
//! Run: `cargo bench --bench scale` (BENCH_LOGS sets the number of logs, 10,000 by default).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::Instant;

use dm_ulog_actors::sim::Rng;
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{RegionBatch, Request};
use support::EchoAndDaemon;

const REGIONS: u64 = 1_000_000;

fn main() {
    support::serve_echo_if_asked();
    let default_logs = if support::measuring() { 10_000 } else { 20 };
    let logs: usize =
        std::env::var("BENCH_LOGS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_logs);
    let dir = tempfile::tempdir().unwrap();
    let EchoAndDaemon { echo, daemon, mut echo_client, daemon_client: mut client } =
        EchoAndDaemon::start(dir.path());

    let idle = daemon.rss_kib();
    let started = Instant::now();
    echo_client.create_core_logs("e", logs, REGIONS).unwrap();
    let echo_time = started.elapsed();
    let started = Instant::now();
    let created = client.create_core_logs("d", logs, REGIONS).unwrap();
    let create_time = started.elapsed();
    let in_sync = (daemon.rss_kib() - idle) as f64 / logs as f64;
    println!("| construct + resume {logs} logs, s | {:.2} (echo, same requests) | {:.2} (dm-ulogd) | {:.2} |", echo_time.as_secs_f64(), create_time.as_secs_f64(), create_time.as_secs_f64() / echo_time.as_secs_f64());
    println!("| resident memory per in-sync log of {REGIONS} regions, KiB | 256 (two plain bitmaps) | {in_sync:.1} (dm-ulogd) | {:.0}x less | <= 16 KiB |", 256.0 / in_sync);

    // 1% of every log's regions dirty, at random places.
    let dirty_per_log = (REGIONS / 100) as usize;
    let mut rng = Rng::new(7);
    let marks = created.iter().flat_map(|(uuid, luid)| {
        let mut regions: Vec<u64> = (0..dirty_per_log).map(|_| rng.below(REGIONS)).collect();
        regions.sort_unstable();
        regions.dedup();
        let batches: Vec<RegionBatch> =
            regions.chunks(32).map(|c| RegionBatch::from_regions(c).unwrap()).collect();
        batches.into_iter().map(move |b| (uuid.clone(), *luid, Request::MarkRegion(b)))
    });
    let marked = client.send_all(marks, 32).unwrap();
    assert_eq!(marked.errors, 0);
    let probe =
        client.call(&created[0].0, created[0].1, &Request::IsClean(RegionIndex(0))).unwrap();
    assert_eq!(probe, 0);
    let dirty = (daemon.rss_kib() - idle) as f64 / logs as f64;
    println!("| resident memory per log with 1% of regions dirty, KiB | 256 (two plain bitmaps) | {dirty:.1} (dm-ulogd) | {:.0}x less | |", 256.0 / dirty);
    println!(
        "| marks sent for the 1% ({} requests of up to 32 regions) | | {:.0} requests/s | | |",
        marked.requests,
        marked.per_second()
    );
    drop((echo, daemon));
}
