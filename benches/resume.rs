//! RESUME of very large disk logs (2^30 and 2^32 - 1 regions: 128 and 512 MiB of image), and
//! what another log's requests wait meanwhile. The image is loaded and rendered on the big
//! log's own I/O thread, a stretch of 65,536 regions at a time, so the other log should see
//! no more delay than with nothing else going on: its IS_CLEAN p99 during the resume is set
//! against its p99 measured alone, in the same run.
//!
//! Run: `cargo bench --bench resume`. The log files are sparse files on /dev/shm (a header-
//! less image: every region to resync, the worst case for rendering), so the numbers are the
//! daemon's, not a disk's.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use dm_ulog_actors::sim::load::LoadClient;
use dm_ulog_actors::store::format::image_size;
use dm_ulog_actors::units::{RegionCount, RegionIndex};
use dm_ulog_actors::wire::{Request, Uuid};
use support::{p99, Server};

fn main() {
    support::serve_echo_if_asked();
    let sizes: &[u64] = if support::measuring() { &[1 << 30, u32::MAX as u64] } else { &[1 << 20] };
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir_in("/dev/shm").unwrap();
    let socket = dir.path().join("daemon.sock");
    let _daemon = Server::daemon(dir.path(), &socket);
    let mut other = LoadClient::new(&dir.path().join("other.sock"), &socket).unwrap();
    let small = Uuid::new("small-core").unwrap();
    let ctr = |args: String| Request::Ctr { args, reconnect: false };
    assert_eq!(other.call(&small, 1, &ctr("8000 core 8 nosync".into())).unwrap(), 0);
    assert_eq!(other.call(&small, 1, &Request::Resume).unwrap(), 0);
    let alone = is_clean_latencies(&mut other, &small, || false, 2000);

    for (i, &regions) in sizes.iter().enumerate() {
        let path = files.path().join(format!("big-{i}"));
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(image_size(RegionCount(regions), 512)).unwrap();
        let big = Uuid::new(&format!("big-{i}")).unwrap();
        let mut client =
            LoadClient::new(&dir.path().join(format!("big-{i}.sock")), &socket).unwrap();
        let args = format!("{} disk {} 8", regions * 8, path.display());
        assert_eq!(client.call(&big, 2, &ctr(args)).unwrap(), 0);
        let started = Instant::now();
        let resume = std::thread::spawn(move || {
            let error = client.call(&big, 2, &Request::Resume).unwrap();
            (error, started.elapsed())
        });
        let during = is_clean_latencies(&mut other, &small, || resume.is_finished(), usize::MAX);
        let (error, took) = resume.join().unwrap();
        assert_eq!(error, 0, "RESUME of {regions} regions");
        let mib = image_size(RegionCount(regions), 512) as f64 / (1 << 20) as f64;
        println!(
            "| RESUME of {regions} regions ({mib:.0} MiB image), s | | {:.2} | | {} |",
            took.as_secs_f64(),
            if regions == 1 << 30 { "<= 1 s" } else { "" }
        );
        println!(
            "| another log's IS_CLEAN p99 meanwhile, ms ({} requests) | {:.3} (alone) | {:.3} | {:.2} | <= 5 ms |",
            during.len(),
            p99(&alone),
            p99(&during),
            p99(&during) / p99(&alone)
        );
        std::fs::remove_file(&path).unwrap();
    }
}

/// IS_CLEAN round trips on `log`, in ms, until `done` says so (after at least one) or
/// `most` have been made.
fn is_clean_latencies(
    client: &mut LoadClient,
    log: &Uuid,
    done: impl Fn() -> bool,
    most: usize,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    while latencies.is_empty() || (!done() && latencies.len() < most) {
        let sent = Instant::now();
        assert_eq!(client.call(log, 1, &Request::IsClean(RegionIndex(3))).unwrap(), 0);
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_micros(200));
    }
    latencies
}
