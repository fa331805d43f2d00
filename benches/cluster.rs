//! Clustered logs on a real 3-node corosync cluster (tests/cluster/cluster.sh), against the
//! same daemons serving a log alone in its group, in the same run:
//!
//! Each mirror write is what dm-log-userspace sends without integrated_flush: MARK, FLUSH,
//! then (the data written) CLEAR, FLUSH.
//! - mirror-write latency: one at a time from node 1, with the log active on node 1 only,
//!   and on all three nodes;
//! - mirror writes per second: four writers per active node, each on its own regions of the
//!   one log;
//! - multicasts per mirror write: what the daemons report they sent (`dm-ulogd status`),
//!   divided by the writes. cmirrord sends seven (tests/kernel/cbench counts them).
//!
//! Needs root and corosync. Run: `cargo bench --bench cluster` (without `--bench`, a short
//! smoke run).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

#[path = "../tests/cluster/harness.rs"]
mod harness;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dm_ulog_actors::sim::SimLog;
use dm_ulog_actors::wire::{RegionBatch, Request};
use harness::{multicasts, Cluster};

const REGIONS: u64 = 4096;
const WRITERS_PER_NODE: u64 = 4;

fn main() {
    let (writes, seconds) = if support::measuring() { (1000, 5.0) } else { (20, 0.2) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let cluster = Cluster::up();
        let mut rows = Vec::new();
        for (name, nodes) in [("1 node", vec![1]), ("3 nodes", vec![1, 2, 3])] {
            let uuid = format!("bench-{}", nodes.len());
            let mut logs = Vec::new();
            for node in &nodes {
                let mut log = cluster.log(*node, &uuid, "clustered-core 8 nosync", REGIONS);
                log.create().await.unwrap();
                logs.push(Arc::new(log));
            }
            let latencies = write_latencies(&logs[0], writes).await;
            let sent = Arc::new(AtomicU64::new(0));
            let before = multicasts(&cluster, &nodes, &uuid);
            let started = Instant::now();
            let mut writers = Vec::new();
            for (i, log) in logs.iter().enumerate() {
                for w in 0..WRITERS_PER_NODE {
                    let first = (i as u64 * WRITERS_PER_NODE + w) * 64;
                    let (log, sent) = (log.clone(), sent.clone());
                    writers.push(tokio::spawn(async move {
                        write_loop(&log, first, seconds, &sent).await;
                    }));
                }
            }
            for writer in writers {
                writer.await.unwrap();
            }
            let per_second = sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
            let multicast = (multicasts(&cluster, &nodes, &uuid) - before) as f64
                / sent.load(Ordering::Relaxed) as f64;
            rows.push((name, support::median(&latencies), support::p99(&latencies), per_second, multicast));
        }
        println!("| log active on | mirror write, p50 µs | p99 µs | mirror writes/s (all nodes) | multicasts per mirror write |");
        println!("|---|---:|---:|---:|---:|");
        for (name, p50, p99, per_second, multicast) in &rows {
            println!("| {name} | {p50:.0} | {p99:.0} | {per_second:.0} | {multicast:.2} |");
        }
        let (one, three) = (&rows[0], &rows[1]);
        println!(
            "| ratio 3 nodes / 1 node | {:.2} | {:.2} | {:.2} | |",
            three.1 / one.1,
            three.2 / one.2,
            three.3 / one.3
        );
    });
}

/// One mirror write as the kernel logs it: MARK, FLUSH, CLEAR, FLUSH.
async fn mirror_write(log: &SimLog, region: u64) {
    let region = RegionBatch::from_regions(&[region % REGIONS]).unwrap();
    log.direct(&Request::MarkRegion(region)).await.unwrap();
    log.direct(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
    log.direct(&Request::ClearRegion(region)).await.unwrap();
    log.direct(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
}

/// Each of `count` mirror writes' time, one at a time, in µs.
async fn write_latencies(log: &SimLog, count: u64) -> Vec<f64> {
    let mut latencies = Vec::new();
    for i in 0..count {
        let started = Instant::now();
        mirror_write(log, i).await;
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

/// Mirror writes over 64 regions of its own, for `seconds`.
async fn write_loop(log: &SimLog, first: u64, seconds: f64, sent: &AtomicU64) {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut i = 0;
    while Instant::now() < until {
        mirror_write(log, first + i % 64).await;
        sent.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
}
