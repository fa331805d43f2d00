//! Clustered logs on a real corosync cluster: three nodes in network namespaces
//! (tests/cluster/cluster.sh), one dm-ulogd per node on `--corosync`, each driven by a
//! simulated kernel over its unix socket. The logs are the same uuids on every node, as a
//! mirror activated on shared storage is; a clustered-disk log is one file all nodes see.
//!
//! Needs root, iproute2 and corosync (scripts/setup installs them). The tests share the
//! namespaces' names, so they take turns (Cluster::up waits for the machine-wide lock).

mod common;
#[path = "cluster/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{clean_on_disk, log_file};
use dm_ulog_actors::sim::{KernelImage, Rng, SimLog};
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{RegionBatch, Request};
use harness::*;

#[tokio::test]
async fn a_region_stays_dirty_until_every_node_that_marked_it_clears_it() {
    let cluster = Cluster::up();
    let logs = cluster.log_everywhere("seed", "clustered-core 8 nosync", 64).await;
    let (one, two, three) = (&logs[0], &logs[1], &logs[2]);
    mark(one, &[5]).await;
    mark(two, &[5]).await;
    clear(one, &[5]).await;
    for log in &logs {
        assert!(!is_clean(log, 5).await, "host 2 still writes region 5");
    }
    clear(two, &[5]).await;
    for log in &logs {
        assert!(is_clean(log, 5).await);
    }
    // A node's clear of a region it never marked changes nothing for the others.
    mark(three, &[9]).await;
    clear(one, &[9]).await;
    assert!(!is_clean(two, 9).await);
    // Out of sync and unmarked is not clean, on every node, as on a single-host log.
    let out_of_sync = Request::SetRegionSync { region: RegionIndex(12), in_sync: false };
    two.direct(&out_of_sync).await.unwrap();
    for log in &logs {
        assert!(!in_sync(log, 12).await);
        assert!(!is_clean(log, 12).await, "region 12 is out of sync");
    }
}

#[tokio::test]
async fn a_mirror_write_waits_for_one_multicast_and_sends_one() {
    let cluster = Cluster::up();
    const WRITES: u64 = 20;
    let logs = cluster.log_everywhere("batch", "clustered-core 8 nosync", 64).await;
    let before = multicasts(&cluster, &[1], "batch");
    for region in 0..WRITES {
        // As dm-log-userspace sends them without integrated_flush: the FLUSH takes in the
        // MARK held before it, and the other nodes see the mark once the FLUSH is answered.
        logs[0].direct(&Request::MarkRegion(regions(&[region]))).await.unwrap();
        logs[0].direct(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
        assert!(!is_clean(&logs[1], region).await, "region {region}: node 1 writes it");
        // CLEAR, held for the next write's multicast, and a FLUSH that owes nothing:
        // answered at once, with nothing sent.
        logs[0].direct(&Request::ClearRegion(regions(&[region]))).await.unwrap();
        logs[0].direct(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
    }
    // Node 1's IS_CLEAN takes the last CLEAR along and comes back behind it; every node then
    // has them all. Each write's CLEAR went with the next one's MARK and FLUSH.
    assert!(is_clean(&logs[0], WRITES - 1).await);
    assert_eq!(multicasts(&cluster, &[1], "batch") - before, WRITES + 1);
    for log in &logs {
        for region in 0..WRITES {
            assert!(is_clean(log, region).await, "region {region}");
        }
    }
}

/// Who holds a mark on which region, as the kernels were told, with one lock per region so
/// that each region's history is a sequence the oracle can judge.
struct Oracle {
    holders: Vec<tokio::sync::Mutex<BTreeSet<usize>>>,
    /// The node whose daemon was killed, once it was: its marks may or may not be gone.
    dead: std::sync::Mutex<Option<usize>>,
    /// The region each node's request in flight was for.
    in_flight: std::sync::Mutex<[Option<u64>; 3]>,
}

impl Oracle {
    fn new(regions: u64) -> Arc<Oracle> {
        Arc::new(Oracle {
            holders: (0..regions).map(|_| Default::default()).collect(),
            dead: std::sync::Mutex::new(None),
            in_flight: std::sync::Mutex::new([None; 3]),
        })
    }

    /// Whether IS_CLEAN may answer `clean` for `region` with these holders.
    fn allows(&self, region: u64, holders: &BTreeSet<usize>, clean: bool) -> bool {
        let dead = *self.dead.lock().unwrap();
        let living = holders.iter().filter(|n| Some(**n) != dead).count();
        let dead_touched = dead.is_some_and(|d| {
            holders.contains(&d) || self.in_flight.lock().unwrap()[d] == Some(region)
        });
        match (living, dead_touched) {
            (0, false) => clean,
            (0, true) => true,
            _ => !clean,
        }
    }

    /// `steps` random marks and clears by `node`, each followed by an IS_CLEAN from a random
    /// node that the oracle judges; returns the number of checks.
    async fn steps(&self, logs: &[SimLog], node: usize, steps: u64, regions: u64) -> u64 {
        let mut rng = Rng::new(node as u64 + 11);
        for _ in 0..steps {
            let region = rng.below(regions);
            let mut holders = self.holders[region as usize].lock().await;
            self.in_flight.lock().unwrap()[node] = Some(region);
            if holders.contains(&node) {
                holders.remove(&node);
                clear(&logs[node], &[region]).await;
            } else {
                mark(&logs[node], &[region]).await;
                holders.insert(node);
            }
            self.in_flight.lock().unwrap()[node] = None;
            let asker = loop {
                let asker = rng.below(3) as usize;
                if Some(asker) != *self.dead.lock().unwrap() {
                    break asker;
                }
            };
            let clean = is_clean(&logs[asker], region).await;
            assert!(
                self.allows(region, &holders, clean),
                "region {region}: clean {clean}, holders {holders:?}"
            );
        }
        steps
    }
}

#[tokio::test]
async fn random_concurrent_writes_from_every_node_agree_with_a_cluster_wide_oracle() {
    let cluster = Cluster::up();
    const REGIONS: u64 = 48;
    let device = log_file(cluster.dir.path(), "shared-log", REGIONS);
    let disk_args = format!("clustered-disk {} 8 nosync", device.display());
    let mut checks = 0;
    for (uuid, args) in [("core", "clustered-core 8 nosync".to_owned()), ("disk", disk_args)] {
        let logs = Arc::new(cluster.log_everywhere(uuid, &args, REGIONS).await);
        let oracle = Oracle::new(REGIONS);
        let mut writers = Vec::new();
        for node in 0..3 {
            let (logs, oracle) = (logs.clone(), oracle.clone());
            writers
                .push(tokio::spawn(async move { oracle.steps(&logs, node, 150, REGIONS).await }));
        }
        for writer in writers {
            checks += writer.await.unwrap();
        }
        // Every node agrees on the sync count, the status line and the dirty set.
        let counts =
            [sync_count(&logs[0]).await, sync_count(&logs[1]).await, sync_count(&logs[2]).await];
        assert!(counts.iter().all(|c| *c == REGIONS), "{counts:?}");
        let mut statuses = Vec::new();
        for log in logs.iter() {
            statuses.push(log.direct(&Request::StatusInfo).await.unwrap());
        }
        assert!(statuses.windows(2).all(|w| w[0] == w[1]), "{statuses:?}");
        for region in 0..REGIONS {
            let expected = oracle.holders[region as usize].lock().await.is_empty();
            for log in logs.iter() {
                assert_eq!(is_clean(log, region).await, expected, "region {region}");
            }
            // The shared device says the same: marks before any FLUSH's answer, clears behind.
            if uuid == "disk" {
                assert!(
                    settles_on_disk(&device, region, expected).await,
                    "region {region} on disk"
                );
            }
        }
    }
    eprintln!("oracle checks: {checks}");
    assert_eq!(checks, 2 * 3 * 150);
}

#[tokio::test]
async fn the_disk_writer_killed_during_writes_from_every_node_loses_no_mark() {
    let mut cluster = Cluster::up();
    const REGIONS: u64 = 48;
    let device = log_file(cluster.dir.path(), "shared-log", REGIONS + 1);
    let args = format!("clustered-disk {} 8 nosync", device.display());
    let logs = Arc::new(cluster.log_everywhere("midway", &args, REGIONS + 1).await);
    // A mark of the writer's that outlives it, to see the survivors notice its death.
    mark(&logs[0], &[REGIONS]).await;
    let oracle = Oracle::new(REGIONS);
    let writer = tokio::spawn({
        let (logs, oracle) = (logs.clone(), oracle.clone());
        async move { oracle.steps(&logs, 0, 10_000, REGIONS).await }
    });
    let survivors: Vec<_> = (1..3)
        .map(|node| {
            let (logs, oracle) = (logs.clone(), oracle.clone());
            tokio::spawn(async move { oracle.steps(&logs, node, 200, REGIONS).await })
        })
        .collect();
    // Kill the writer while every node is writing.
    while oracle.holders.iter().filter(|h| h.try_lock().is_ok_and(|h| !h.is_empty())).count() < 8 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    *oracle.dead.lock().unwrap() = Some(0);
    cluster.kill(1);
    writer.abort();
    for survivor in survivors {
        assert_eq!(survivor.await.unwrap(), 200);
    }
    while in_sync(&logs[1], REGIONS).await {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every region the dead writer had marked is out of sync on both survivors; they resync
    // it, and the new writer's device shows exactly the survivors' marks.
    let mut expected_out = BTreeSet::from([REGIONS]);
    for region in 0..REGIONS {
        if oracle.holders[region as usize].lock().await.contains(&0) {
            expected_out.insert(region);
        }
    }
    for log in &logs[1..] {
        for region in &expected_out {
            assert!(!in_sync(log, *region).await, "region {region}");
        }
    }
    // The survivors finish their writes; then nothing stands in recovery's way.
    for region in 0..REGIONS {
        let mut holders = oracle.holders[region as usize].lock().await;
        for node in [1, 2] {
            if holders.remove(&node) {
                clear(&logs[node], &[region]).await;
            }
        }
    }
    let mut recovered = resync(&logs[1]).await;
    recovered.extend(resync(&logs[2]).await);
    assert!(expected_out.iter().all(|r| recovered.contains(r)), "{expected_out:?} {recovered:?}");
    for log in &logs[1..] {
        assert_eq!(sync_count(log).await, REGIONS + 1);
    }
    logs[1].direct(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
    for region in 0..=REGIONS {
        assert!(settles_on_disk(&device, region, true).await, "region {region} on disk");
    }
}

#[tokio::test]
async fn recovery_is_shared_out_and_every_node_reaches_full_sync() {
    let cluster = Cluster::up();
    const REGIONS: u64 = 90;
    let logs = Arc::new(cluster.log_everywhere("resync", "clustered-core 8", REGIONS).await);
    let mut recoverers = Vec::new();
    for node in 0..3 {
        let logs = logs.clone();
        recoverers.push(tokio::spawn(async move { resync(&logs[node]).await }));
    }
    let mut all = Vec::new();
    for recoverer in recoverers {
        all.extend(recoverer.await.unwrap());
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a region was recovered twice at once");
    for log in logs.iter() {
        assert_eq!(sync_count(log).await, REGIONS);
    }
}

#[tokio::test]
async fn the_disk_writer_killed_mid_workload_leaves_its_marks_to_be_resynced() {
    let mut cluster = Cluster::up();
    const REGIONS: u64 = 64;
    let device = log_file(cluster.dir.path(), "shared-log", REGIONS);
    let args = format!("clustered-disk {} 8 nosync", device.display());
    let logs = cluster.log_everywhere("failover", &args, REGIONS).await;
    // Node 1 (the lowest node id: the writer) and node 2 write; node 1's regions stay marked.
    mark(&logs[0], &[3, 4]).await;
    mark(&logs[1], &[4, 20]).await;
    cluster.kill(1);
    let killed = Instant::now();
    // The survivors carry on: a FLUSH is answered once the new writer (node 2) has written
    // the whole image, with node 1's marks now out of sync.
    mark(&logs[2], &[30]).await;
    let failover = killed.elapsed();
    eprintln!("failover: first FLUSH answered {failover:?} after the writer's kill -9");
    for log in &logs[1..] {
        assert!(!in_sync(log, 3).await, "node 1's write to 3 may have reached one leg");
        assert!(!is_clean(log, 3).await, "out of sync, though no living node marked it");
        assert!(!in_sync(log, 4).await);
        assert!(in_sync(log, 20).await, "node 2 is alive: its marks are not resynced");
        assert!(!is_clean(log, 20).await);
    }
    // Node 3 may not recover 4 while node 2 writes it; once node 2 is done, it may.
    assert_eq!(resync(&logs[2]).await, vec![3]);
    clear(&logs[1], &[4, 20]).await;
    assert_eq!(resync(&logs[2]).await, vec![4]);
    for log in &logs[1..] {
        assert_eq!(sync_count(log).await, REGIONS);
    }
    // On the device: node 3's mark is dirty; the regions recovered and cleared are clean.
    logs[2].direct(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
    assert!(!clean_on_disk(&device, 30));
    for region in [3, 4, 20] {
        assert!(settles_on_disk(&device, region, true).await, "region {region} on disk");
    }
}

#[tokio::test]
async fn a_partition_without_quorum_changes_nothing_until_it_heals() {
    let cluster = Cluster::up();
    let logs = cluster.log_everywhere("split", "clustered-core 8 nosync", 64).await;
    mark(&logs[2], &[7]).await;
    script(&["partition", "3"]);
    // The majority sees node 3 go (its mark becomes out of sync) and keeps serving.
    while in_sync(&logs[0], 7).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mark(&logs[0], &[8]).await;
    // Node 3 answers a plain MARK ahead of the group, as dm-raid1 writes nothing until the
    // FLUSH after it; it holds that FLUSH back until its partition has quorum again.
    let log = cluster.log(3, "split", "clustered-core 8 nosync", 64);
    log.direct(&Request::MarkRegion(regions(&[10]))).await.unwrap();
    let minority = tokio::spawn(async move { mark(&log, &[9]).await });
    while !cluster.output(3).contains("quorum lost") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!minority.is_finished(), "a partition without quorum changed the log");
    // What an operator's alert sees: the FLUSH held on node 3, nothing held on the others.
    let held = "dm_ulogd_cluster_requests_held_inquorate";
    while value(&cluster.scrape(3), held, "split") != 1.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!minority.is_finished());
    assert_eq!(value(&cluster.scrape(1), held, "split"), 0.0);
    assert!(!is_clean(&logs[1], 8).await);
    assert!(is_clean(&logs[1], 9).await && is_clean(&logs[1], 10).await);
    script(&["heal", "3"]);
    minority.await.unwrap();
    assert_eq!(value(&cluster.scrape(3), held, "split"), 0.0);
    // Healed: node 3 took the majority's state, then its marks, in the order it sent them.
    for log in &logs {
        assert!(!is_clean(log, 9).await && !is_clean(log, 10).await);
        assert!(!in_sync(log, 7).await);
    }
    let counts =
        [sync_count(&logs[0]).await, sync_count(&logs[1]).await, sync_count(&logs[2]).await];
    assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
}

#[tokio::test]
async fn a_member_joining_a_16_mi_region_log_gets_all_of_its_state() {
    let cluster = Cluster::up();
    const REGIONS: u64 = 16 << 20;
    // A shared log device whose clean bits are random: the first member starts the state
    // from it, so the state (about 2 MiB as roaring bitmaps) must travel in many chunks.
    let device = log_file(cluster.dir.path(), "big-log", REGIONS);
    let mut rng = Rng::new(5);
    let clean: Vec<bool> = (0..REGIONS).map(|_| rng.next_u64() & 1 == 1).collect();
    let image = KernelImage::default().render(REGIONS, |region| clean[region as usize]);
    std::fs::write(&device, &image).unwrap();
    let args = format!("clustered-disk {} 8", device.display());
    let mut logs = Vec::new();
    for node in 1..=2 {
        let mut log = cluster.log(node, "big", &args, REGIONS);
        log.create().await.unwrap();
        logs.push(log);
    }
    for i in 0..64 {
        mark(&logs[i % 2], &[rng.below(REGIONS)]).await;
    }
    let expected = sync_count(&logs[0]).await;
    assert!(expected > REGIONS / 3 && expected < REGIONS * 2 / 3, "{expected}");
    let mut joiner = cluster.log(3, "big", &args, REGIONS);
    joiner.create().await.unwrap();
    assert_eq!(sync_count(&joiner).await, expected);
    for _ in 0..200 {
        let region = rng.below(REGIONS);
        assert_eq!(in_sync(&joiner, region).await, in_sync(&logs[0], region).await);
    }
    let marked = REGIONS - 1;
    mark(&logs[1], &[marked]).await;
    assert!(!is_clean(&joiner, marked).await);
    // It came from node 1, the lowest member holding the state, in several chunks.
    let output = cluster.output(1);
    let sent = output.lines().rev().find(|l| l.contains("state snapshot sent")).unwrap();
    let chunks: u32 = sent.split("chunks=").nth(1).unwrap().parse().unwrap();
    eprintln!("the joiner's state came in {chunks} chunks");
    assert!(chunks > 2, "{sent}");
    // The metrics (scrapes promtool passes) tell the same: the bytes node 1 sent, and node 3
    // received, at least the 16 Mi regions' state; each member saw the views of the joins.
    let transfer = "dm_ulogd_cluster_state_transfer_bytes_total";
    let bytes = |scrape: &str, direction: &str| {
        let direction = format!("direction=\"{direction}\"");
        let sent =
            series(scrape, transfer, "big").into_iter().find(|(l, _)| l.contains(&direction));
        sent.expect("a series per direction").1
    };
    let (first, joined) = (cluster.scrape(1), cluster.scrape(3));
    let state = (REGIONS / 8) as f64 / 4.0;
    let (sent, received) = (bytes(&first, "sent"), bytes(&joined, "received"));
    eprintln!("state transfer: node 1 sent {sent} bytes, node 3 received {received}");
    assert!(sent > state && received > state);
    assert_eq!(bytes(&first, "received"), 0.0, "node 1 started the state");
    assert_eq!(bytes(&joined, "sent"), 0.0);
    for scrape in [&first, &joined] {
        assert_eq!(value(scrape, "dm_ulogd_cluster_members", "big"), 3.0);
        assert_eq!(value(scrape, "dm_ulogd_cluster_holds_state", "big"), 1.0);
        assert!(value(scrape, "dm_ulogd_cluster_view_changes_total", "big") >= 1.0);
        assert!(value(scrape, "dm_ulogd_cluster_multicasts_total", "big") >= 1.0);
    }
    assert!(value(&first, "dm_ulogd_cluster_view_changes_total", "big") >= 3.0, "3 joins");
}

#[tokio::test]
async fn a_killed_corosync_takes_its_node_out_until_it_is_back() {
    let cluster = Cluster::up();
    let dir = cluster.dir.path().display().to_string();
    let logs = cluster.log_everywhere("corosync", "clustered-core 8 nosync", 64).await;
    mark(&logs[2], &[7]).await;
    script(&["stop-corosync", &dir, "3"]);
    let killed = Instant::now();
    // The survivors see node 3 go down: its mark is out of sync, and they carry on.
    while in_sync(&logs[0], 7).await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mark(&logs[1], &[8]).await;
    eprintln!(
        "failover: a survivor's FLUSH answered {:?} after node 3's corosync died",
        killed.elapsed()
    );
    // Node 3's daemon lost its group with its corosync; its next request waits for both.
    let waiting = tokio::spawn({
        let log = cluster.log(3, "corosync", "clustered-core 8 nosync", 64);
        async move { mark(&log, &[9]).await }
    });
    while !cluster.output(3).contains("lost corosync") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!waiting.is_finished());
    script(&["start-corosync", &dir, "3"]);
    waiting.await.unwrap();
    for log in &logs {
        assert!(!is_clean(log, 8).await && !is_clean(log, 9).await);
        assert!(!in_sync(log, 7).await);
    }
    // Node 3 came back as a new member holding the group's state: it helps resync 7.
    assert_eq!(resync(&logs[2]).await, vec![7]);
    for log in &logs {
        assert_eq!(sync_count(log).await, 64);
    }
}

#[tokio::test]
async fn a_lone_member_keeps_its_state_across_suspend_and_resume() {
    let cluster = Cluster::up();
    let mut log = cluster.log(1, "alone", "clustered-core 8", 64);
    log.create().await.unwrap();
    for region in 0..40 {
        log.direct(&Request::SetRegionSync { region: RegionIndex(region), in_sync: true })
            .await
            .unwrap();
    }
    mark(&log, &[5, 50]).await;
    clear(&log, &[5, 50]).await;
    log.direct(&Request::Presuspend).await.unwrap();
    log.direct(&Request::Postsuspend).await.unwrap();
    // Out of the group, the member answers from what it knew when it left.
    assert_eq!(sync_count(&log).await, 40, "a suspended log keeps its count");
    log.direct(&Request::Resume).await.unwrap();
    assert_eq!(sync_count(&log).await, 40, "a suspend is no reason to resync");
    assert!(is_clean(&log, 5).await);
    assert!(!is_clean(&log, 50).await, "cleared, but never in sync");
}
