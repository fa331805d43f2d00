//! Disk logs on a real file with fdatasync, against the file system's own cost in the same run.
//!
//! Each loop is one mirror write as dm-raid1 makes it: a FLUSH that marks a region (it waits
//! for its commit), a CLEAR, and a FLUSH after it (it owes nothing: answered at once, its
//! clear committed behind it, with the next loop's mark).
//! - One log: the round trip of each, against a loop of `pwrite` of one 512-byte block +
//!   `fdatasync` on the same file system.
//! - 64 logs, each with one FLUSH in flight (dm-raid1 flushes a mirror from its one kmirrord
//!   worker, one at a time): FLUSHes answered per second, against a threaded syncing echo (a
//!   responder thread per log doing the FLUSH's pwrite + fdatasync on its own file: the
//!   daemon's shape without its engine), and against 64 concurrent baseline loops.
//! - Bytes written per mirror write in a 1,000,000-region log (from the daemon's
//!   /proc/<pid>/io), beside the kernel's whole-bitmap rewrite at each FLUSH.
//!
//! Beside each of the first two, the same requests against the echo responder (which answers
//! at once and writes nothing) show what the transport alone costs on this machine, and the
//! single FLUSH also runs against a syncing echo, which writes and syncs a block before it
//! answers a FLUSH, on the thread that received it: what no daemon on this transport can beat.
//!
//! Run: `cargo bench --bench disk`. BENCH_DIR names the file system (default: target/).

#[path = "../tests/common/mod.rs"]
mod common;
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
use support::{median, p99, Server};

const LOGS: usize = 64;

fn main() {
    support::serve_echo_if_asked();
    let (commits, seconds) = if support::measuring() { (2000, 3.0) } else { (20, 0.05) };
    let dir = support::scratch_dir();
    let socket = dir.path().join("daemon.sock");
    let daemon = Server::daemon(dir.path(), &socket);
    let echo_socket = dir.path().join("echo.sock");
    let _echo = Server::echo(&echo_socket);
    let syncing_socket = dir.path().join("syncing-echo.sock");
    let _syncing = Server::syncing_echo(&syncing_socket, &dir.path().join("syncing-echo"));

    // One log, one FLUSH at a time.
    let mut client = LoadClient::new(&dir.path().join("c.sock"), &socket).unwrap();
    let (uuid, luid) = create_disk_log(&mut client, dir.path(), "single", 100_000);
    // Interleaved in rounds, so that both see the same state of the file system.
    let mut echo_client = LoadClient::new(&dir.path().join("e.sock"), &echo_socket).unwrap();
    let mut syncing_client = LoadClient::new(&dir.path().join("s.sock"), &syncing_socket).unwrap();
    let (mut timings, mut baseline, mut echoed, mut synced) =
        (Timings::default(), Vec::new(), Timings::default(), Timings::default());
    for _ in 0..20 {
        timings.extend(flush_loop(&mut client, &uuid, luid, commits / 20, None));
        baseline.extend(sync_loop(&dir.path().join("baseline"), commits / 20, None));
        echoed.extend(flush_loop(&mut echo_client, &uuid, luid, commits / 20, None));
        synced.extend(flush_loop(&mut syncing_client, &uuid, luid, commits / 20, None));
    }
    let flush_latencies = &timings.flushes;
    let (ours, theirs) = (median(flush_latencies), median(&baseline));
    println!("| single-log FLUSH latency, p50 µs | {theirs:.1} (pwrite+fdatasync) | {ours:.1} (dm-ulogd FLUSH) | {:.2} | <= 1.2 |", ours / theirs);
    println!(
        "| single-log FLUSH latency, p99 µs | {:.1} | {:.1} | {:.2} | |",
        p99(&baseline),
        p99(flush_latencies),
        p99(flush_latencies) / p99(&baseline)
    );
    let floor = median(&synced.flushes);
    println!("| single-log FLUSH latency, p50 µs, against the syncing echo | {floor:.1} (syncing echo FLUSH) | {ours:.1} | {:.2} | |", ours / floor);
    let (after_clear, synced_after_clear) =
        (median(&timings.clearing_flushes), median(&synced.clearing_flushes));
    println!("| the FLUSH after the CLEAR, p50 µs | {synced_after_clear:.1} (syncing echo) | {after_clear:.1} (dm-ulogd: owes nothing, answered at once) | {:.2} | |", after_clear / synced_after_clear);
    let (clear, echo_clear) = (median(&timings.clears), median(&echoed.clears));
    let synced_clear = median(&synced.clears);
    println!("| the CLEAR between, a request without I/O, p50 µs | {echo_clear:.1} (echo), {synced_clear:.1} (syncing echo) | {clear:.1} (dm-ulogd) | {:.2} | |", clear / echo_clear);

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
        flush_loop(&mut client, &uuid, luid, usize::MAX, Some(stop)).flush_count()
    });
    let files: Vec<PathBuf> = (0..LOGS).map(|i| dir.path().join(format!("baseline{i}"))).collect();
    let theirs =
        in_threads(files, seconds, |path, stop| sync_loop(&path, usize::MAX, Some(stop)).len());
    let threaded_socket = dir.path().join("threaded-echo.sock");
    let threaded_dir = dir.path().join("threaded-echo");
    std::fs::create_dir(&threaded_dir).unwrap();
    let _threaded = Server::threaded_syncing_echo(&threaded_socket, &threaded_dir);
    let threaded = many_clients_rate(dir.path(), "t", &threaded_socket, (&uuid, luid), seconds);
    println!("| 64 logs, FLUSHes answered per second | {:.0} (threaded syncing echo: a thread per log, pwrite+fdatasync) | {:.0} (dm-ulogd) | {:.2} | >= 0.8 |", threaded.rate, ours.rate, ours.rate / threaded.rate);
    println!("| 64 logs, FLUSHes per second against loops without a transport | {:.0} (64 pwrite+fdatasync loops) | {:.0} (dm-ulogd) | {:.2} | |", theirs.rate, ours.rate, ours.rate / theirs.rate);
    println!("| 64 logs, the whole machine's CPU time per commit, µs | {:.1} ({:.2} of {} cores busy) | {:.1} ({:.2} busy) | {:.2} | |", theirs.cpu_us_per_op(), theirs.busy_cores, cores(), ours.cpu_us_per_op(), ours.busy_cores, ours.cpu_us_per_op() / theirs.cpu_us_per_op());
    let echoed = many_clients_rate(dir.path(), "e", &echo_socket, (&uuid, luid), seconds);
    println!("| 64 logs, the same requests against the echo responder (no I/O), per second | {:.0} (64 pwrite+fdatasync loops) | {:.0} (echo; machine CPU {:.1} µs per commit's requests) | {:.2} | |", theirs.rate, echoed.rate, echoed.cpu_us_per_op(), echoed.rate / theirs.rate);

    // Bytes per commit of one region in a 1,000,000-region log.
    let (uuid, luid) = create_disk_log(&mut client, dir.path(), "million", 1_000_000);
    let before = daemon.bytes_written();
    // A loop is one mirror write: a mark and its FLUSH, a clear and its FLUSH. The clear is
    // committed behind its FLUSH, with the next loop's mark; the last one after the delay.
    let loops = flush_loop(&mut client, &uuid, luid, commits / 2, None).flushes.len();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let per_write = (daemon.bytes_written() - before) as f64 / loops as f64;
    // The kernel's disk log writes its whole bitmap at each of the two FLUSHes.
    let kernel = 2 * image_size(RegionCount(1_000_000), 512);
    // wchar counts write(2) too: tokio's 8-byte eventfd wake-up rides along with each commit.
    println!("| bytes written per mirror write (a mark and a clear), 1,000,000 regions | {kernel} (kernel disk log, whole bitmap twice) | {per_write:.0} (dm-ulogd, all writes of the process) | {:.4} | two 512-byte blocks |", per_write / kernel as f64);
}

/// 64 clients (sockets `<prefix><i>.sock` in `dir`) looping mirror writes on one log at a
/// responder's `socket` for `seconds`: how many FLUSHes it answered, and at what CPU cost.
fn many_clients_rate(
    dir: &Path,
    prefix: &str,
    socket: &Path,
    (uuid, luid): (&Uuid, u64),
    seconds: f64,
) -> Throughput {
    let clients: Vec<_> = (0..LOGS)
        .map(|i| {
            let client = LoadClient::new(&dir.join(format!("{prefix}{i}.sock")), socket).unwrap();
            (client, uuid.clone(), luid)
        })
        .collect();
    in_threads(clients, seconds, |(mut client, uuid, luid), stop| {
        flush_loop(&mut client, &uuid, luid, usize::MAX, Some(stop)).flush_count()
    })
}

/// The round trips of a [`flush_loop`], in µs.
#[derive(Default)]
struct Timings {
    /// The FLUSHes that mark a region: each waits for its commit.
    flushes: Vec<f64>,
    /// The CLEARs between them: requests that do no I/O.
    clears: Vec<f64>,
    /// The FLUSHes after the CLEARs: they owe nothing, so they are answered at once and
    /// their clears committed behind them (with the next marking FLUSH, in this loop).
    clearing_flushes: Vec<f64>,
}

impl Timings {
    fn extend(&mut self, more: Timings) {
        self.flushes.extend(more.flushes);
        self.clears.extend(more.clears);
        self.clearing_flushes.extend(more.clearing_flushes);
    }

    /// Every FLUSH answered.
    fn flush_count(&self) -> usize {
        self.flushes.len() + self.clearing_flushes.len()
    }
}

/// Alternates an integrated FLUSH that marks a region with a CLEAR and a FLUSH of it, as a
/// mirror write does.
fn flush_loop(
    client: &mut LoadClient,
    uuid: &Uuid,
    luid: u64,
    count: usize,
    stop: Option<&AtomicBool>,
) -> Timings {
    let mut timings = Timings::default();
    let mut region = 0u64;
    let mut timed = |list: &mut Vec<f64>, request: &Request| {
        let started = Instant::now();
        assert_eq!(client.call(uuid, luid, request).unwrap(), 0);
        list.push(started.elapsed().as_secs_f64() * 1e6);
    };
    while timings.flushes.len() < count && !stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
        region = (region + 4099) % 100_000;
        let batch = RegionBatch::from_regions(&[region]).unwrap();
        timed(&mut timings.flushes, &Request::Flush(batch));
        timed(&mut timings.clears, &Request::ClearRegion(batch));
        timed(&mut timings.clearing_flushes, &Request::Flush(RegionBatch::EMPTY));
    }
    timings
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

/// What [`in_threads`] measured.
struct Throughput {
    /// Operations per second.
    rate: f64,
    /// How many of the machine's cores were busy meanwhile, on average (/proc/stat).
    busy_cores: f64,
}

impl Throughput {
    fn cpu_us_per_op(&self) -> f64 {
        self.busy_cores * 1e6 / self.rate
    }
}

/// Runs `work` on each item in its own thread for `seconds`.
fn in_threads<T: Send + 'static>(
    items: Vec<T>,
    seconds: f64,
    work: fn(T, &AtomicBool) -> usize,
) -> Throughput {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let (started, cpu_before) = (Instant::now(), cpu_jiffies());
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
    let (busy, total) = cpu_jiffies();
    let busy_share = (busy - cpu_before.0) as f64 / (total - cpu_before.1).max(1) as f64;
    Throughput {
        rate: done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        busy_cores: busy_share * cores() as f64,
    }
}

/// The machine's busy and total CPU time so far, in clock ticks, all cores together.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let times: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    let total: u64 = times.iter().take(8).sum();
    (total - times[3] - times[4], total)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
