//! Disk logs on a real file with fdatasync, against the file system's own cost in the same run.
//!
//! - One log: the round trip of a FLUSH that commits one changed region, against a loop of
//!   `pwrite` of one 512-byte block + `fdatasync` on the same file system.
//! - 64 logs, each with one FLUSH in flight (dm-raid1 flushes a mirror from its one kmirrord
//!   worker, one at a time): aggregate commits per second, against 64 concurrent baseline loops.
//! - Bytes written per commit of one dirty region in a 1,000,000-region log (from the
//!   daemon's /proc/<pid>/io), beside the kernel's whole-bitmap rewrite.
//!
//! Run: `cargo bench --bench disk`. BENCH_DIR names the file system (default: target/).

mod support;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dm_ulog_actors::sim::load::LoadClient;
use dm_ulog_actors::store::format::image_size;
use dm_ulog_actors::units::{RegionCount, RegionIndex};
use dm_ulog_actors::wire::{RegionBatch, Request, Uuid};
use support::Server;

const LOGS: usize = 64;

fn main() {
    let (commits, seconds) = if support::measuring() { (2000, 3.0) } else { (20, 0.05) };
    let dir = support::scratch_dir();
    let socket = dir.path().join("daemon.sock");
    let daemon = Server::daemon(dir.path(), &socket);

    // One log, one FLUSH at a time.
    let mut client = LoadClient::new(&dir.path().join("c.sock"), &socket).unwrap();
    let (uuid, luid) = create_disk_log(&mut client, dir.path(), "single", 100_000);
    // Interleaved in rounds, so that both see the same state of the file system.
    let (mut flush_latencies, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        flush_latencies.extend(flush_loop(&mut client, &uuid, luid, commits / 20, None));
        baseline.extend(sync_loop(&dir.path().join("baseline"), commits / 20, None));
    }
    let (ours, theirs) = (median(&flush_latencies), median(&baseline));
    println!("| single-log FLUSH latency, p50 µs | {theirs:.1} (pwrite+fdatasync) | {ours:.1} (dm-ulogd FLUSH) | {:.2} | <= 1.2 |", ours / theirs);
    println!(
        "| single-log FLUSH latency, p99 µs | {:.1} | {:.1} | {:.2} | |",
        p99(&baseline),
        p99(&flush_latencies),
        p99(&flush_latencies) / p99(&baseline)
    );

    // 64 logs, each with one FLUSH in flight, for the same time as 64 baseline loops.
    let logs: Vec<_> = (0..LOGS)
        .map(|i| {
            let mut client =
                LoadClient::new(&dir.path().join(format!("c{i}.sock")), &socket).unwrap();
            let (uuid, luid) =
                create_disk_log(&mut client, dir.path(), &format!("many{i}"), 100_000);
            (client, uuid, luid)
        })
        .collect();
    let ours = in_threads(logs, seconds, |(mut client, uuid, luid), stop| {
        flush_loop(&mut client, &uuid, luid, usize::MAX, Some(stop)).len()
    });
    let files: Vec<PathBuf> = (0..LOGS).map(|i| dir.path().join(format!("baseline{i}"))).collect();
    let theirs =
        in_threads(files, seconds, |path, stop| sync_loop(&path, usize::MAX, Some(stop)).len());
    println!("| 64 logs, commits per second | {theirs:.0} (64 pwrite+fdatasync loops) | {ours:.0} (dm-ulogd) | {:.2} | >= 0.8 |", ours / theirs);

    // Bytes per commit of one region in a 1,000,000-region log.
    let (uuid, luid) = create_disk_log(&mut client, dir.path(), "million", 1_000_000);
    let before = daemon.bytes_written();
    let commits = flush_loop(&mut client, &uuid, luid, commits / 2, None).len();
    let per_commit = (daemon.bytes_written() - before) as f64 / commits as f64;
    let kernel = image_size(RegionCount(1_000_000), 512);
    // wchar counts write(2) too: tokio's 8-byte eventfd wake-up rides along with each commit.
    println!("| bytes written per one-region commit, 1,000,000 regions | {kernel} (kernel disk log, whole bitmap) | {per_commit:.0} (dm-ulogd, all writes of the process) | {:.4} | one 512-byte block |", per_commit / kernel as f64);
}

/// Alternates an integrated FLUSH that marks a region with a CLEAR and a FLUSH of it, so
/// every FLUSH commits exactly one changed block; returns each FLUSH's round trip in µs.
fn flush_loop(
    client: &mut LoadClient,
    uuid: &Uuid,
    luid: u64,
    count: usize,
    stop: Option<&AtomicBool>,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    let mut region = 0u64;
    while latencies.len() < count && !stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
        region = (region + 4099) % 100_000;
        let batch = RegionBatch::from_regions(&[region]).unwrap();
        let started = Instant::now();
        assert_eq!(client.call(uuid, luid, &Request::Flush(batch)).unwrap(), 0);
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(client.call(uuid, luid, &Request::ClearRegion(batch)).unwrap(), 0);
        let started = Instant::now();
        assert_eq!(client.call(uuid, luid, &Request::Flush(RegionBatch::EMPTY)).unwrap(), 0);
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

/// pwrite of one 512-byte block at the same places, then fdatasync: the file system's cost.
fn sync_loop(path: &Path, count: usize, stop: Option<&AtomicBool>) -> Vec<f64> {
    let file = File::create(path).unwrap();
    file.set_len(image_size(RegionCount(100_000), 512)).unwrap();
    file.sync_all().unwrap();
    let block = [0x5Au8; 512];
    let mut latencies = Vec::new();
    let mut region = 0u64;
    while latencies.len() < count && !stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
        region = (region + 4099) % 100_000;
        let offset = (1024 + region / 8) / 512 * 512;
        let started = Instant::now();
        file.write_all_at(&block, offset).unwrap();
        file.sync_data().unwrap();
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

/// Runs `work` on each item in its own thread for `seconds`; total operations per second.
fn in_threads<T: Send + 'static>(
    items: Vec<T>,
    seconds: f64,
    work: fn(T, &AtomicBool) -> usize,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = items
        .into_iter()
        .map(|item| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || done.fetch_add(work(item, &stop) as u64, Ordering::Relaxed))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn create_disk_log(client: &mut LoadClient, dir: &Path, name: &str, regions: u64) -> (Uuid, u64) {
    let path = dir.join(name);
    File::create(&path).unwrap().set_len(image_size(RegionCount(regions), 512)).unwrap();
    let uuid = Uuid::new(name).unwrap();
    let args = format!("{} disk {} 8 nosync", regions * 8, path.display());
    assert_eq!(client.call(&uuid, 1, &Request::Ctr { args, reconnect: false }).unwrap(), 0);
    assert_eq!(client.call(&uuid, 1, &Request::Resume).unwrap(), 0);
    // Warm the path once.
    assert_eq!(client.call(&uuid, 1, &Request::InSync(RegionIndex(0))).unwrap(), 0);
    (uuid, 1)
}

fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

fn p99(values: &[f64]) -> f64 {
    quantile(values, 0.99)
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
