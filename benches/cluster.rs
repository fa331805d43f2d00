//! Clustered logs on a real 3-node corosync cluster (tests/cluster/cluster.sh), against the
//! same daemons serving a log alone in its group, in the same run:
//!
//! - FLUSH-with-marks latency: one FLUSH carrying one mark at a time (then its CLEAR), from
//!   node 1, with the log active on node 1 only, and on all three nodes;
//! - requests per second: four writers per active node, each looping FLUSH-with-mark and
//!   CLEAR on its own regions of the one log;
//! - multicasts per request: what the daemons report they sent (`dm-ulogd status`),
//!   divided by the requests their kernels sent. cmirrord sends two per request.
//!
//! Needs root and corosync. Run: `cargo bench --bench cluster` (without `--bench`, a short
//! smoke run).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

#[path = "../tests/cluster/harness.rs"]
mod harness;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dm_ulog_actors::sim::SimLog;
use dm_ulog_actors::wire::{RegionBatch, Request};
use dm_ulog_actors::LogStatus;
use harness::Cluster;

const REGIONS: u64 = 4096;
const WRITERS_PER_NODE: u64 = 4;

fn main() {
    let (flushes, seconds) = if support::measuring() { (2000, 5.0) } else { (20, 0.2) };
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
            let latencies = flush_latencies(&logs[0], flushes).await;
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
        println!("| log active on | FLUSH with a mark, p50 µs | p99 µs | requests/s (all nodes) | multicasts per request |");
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

/// Round trips of one FLUSH carrying one mark; each region is cleared again before the next.
/// Each FLUSH's round trip, in µs.
async fn flush_latencies(log: &SimLog, count: u64) -> Vec<f64> {
    let mut latencies = Vec::new();
    for i in 0..count {
        let region = RegionBatch::from_regions(&[i % REGIONS]).unwrap();
        let started = Instant::now();
        log.direct(&Request::Flush(region)).await.unwrap();
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        log.direct(&Request::ClearRegion(region)).await.unwrap();
    }
    latencies
}

/// FLUSH with a mark, then CLEAR, over 64 regions of its own, for `seconds`.
async fn write_loop(log: &SimLog, first: u64, seconds: f64, sent: &AtomicU64) {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut i = 0;
    while Instant::now() < until {
        let region = RegionBatch::from_regions(&[(first + i % 64) % REGIONS]).unwrap();
        log.direct(&Request::Flush(region)).await.unwrap();
        log.direct(&Request::ClearRegion(region)).await.unwrap();
        sent.fetch_add(2, Ordering::Relaxed);
        i += 1;
    }
}

/// What the daemons of `nodes` multicast for `uuid` so far, from `dm-ulogd status --json`.
fn multicasts(cluster: &Cluster, nodes: &[u32], uuid: &str) -> u64 {
    let mut total = 0;
    for node in nodes {
        let output = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
            .args(["status", "--json", "--control-socket"])
            .arg(cluster.path(&format!("n{node}.control")))
            .output()
            .unwrap();
        let logs: Vec<LogStatus> = serde_json::from_slice(&output.stdout).unwrap();
        total += logs
            .iter()
            .filter(|log| log.uuid == uuid)
            .filter_map(|log| log.cluster.as_ref())
            .map(|cluster| cluster.multicasts)
            .sum::<u64>();
    }
    total
}
