//! Clustered logs on a real corosync cluster: three nodes in network namespaces
//! (tests/cluster/cluster.sh), one dm-ulogd per node on `--corosync`, each driven by a
//! simulated kernel over its unix socket. The logs are the same uuids on every node, as a
//! mirror activated on shared storage is; a clustered-disk log is one file all nodes see.
//!
//! Needs root, iproute2 and corosync (scripts/setup installs them). The tests share the
//! namespaces' names, so they take turns.

#[path = "cluster/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dm_ulog_actors::sim::{Rng, SimLog};
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{RegionBatch, Request};
use harness::*;

#[tokio::test]
async fn a_region_stays_dirty_until_every_node_that_marked_it_clears_it() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
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
}

#[tokio::test]
async fn random_concurrent_writes_from_every_node_agree_with_a_cluster_wide_oracle() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::up();
    const REGIONS: u64 = 48;
    let device = log_file(cluster.dir.path(), "shared-log", REGIONS);
    let disk_args = format!("clustered-disk {} 8", device.display());
    let mut checks = 0;
    for (uuid, args) in [("core", "clustered-core 8 nosync".to_owned()), ("disk", disk_args)] {
        let logs = Arc::new(cluster.log_everywhere(uuid, &args, REGIONS).await);
        // Who holds a mark on which region, as the kernels were told; one lock per region
        // makes each region's history a sequence the oracle can judge.
        let held: Arc<Vec<tokio::sync::Mutex<BTreeSet<usize>>>> =
            Arc::new((0..REGIONS).map(|_| Default::default()).collect());
        let mut writers = Vec::new();
        for node in 0..3 {
            let (logs, held) = (logs.clone(), held.clone());
            writers.push(tokio::spawn(async move {
                let mut rng = Rng::new(node as u64 + 11);
                let mut checks = 0;
                for _ in 0..150 {
                    let region = rng.below(REGIONS);
                    let mut holders = held[region as usize].lock().await;
                    if holders.contains(&node) {
                        holders.remove(&node);
                        clear(&logs[node], &[region]).await;
                    } else {
                        mark(&logs[node], &[region]).await;
                        holders.insert(node);
                    }
                    let asker = &logs[rng.below(3) as usize];
                    let clean = is_clean(asker, region).await;
                    assert_eq!(clean, holders.is_empty(), "region {region}, holders {holders:?}");
                    checks += 1;
                }
                checks
            }));
        }
        for writer in writers {
            checks += writer.await.unwrap();
        }
        // Every node agrees on the sync count and the dirty set.
        let counts =
            [sync_count(&logs[0]).await, sync_count(&logs[1]).await, sync_count(&logs[2]).await];
        assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
        for region in 0..REGIONS {
            let expected = held[region as usize].lock().await.is_empty();
            for log in logs.iter() {
                assert_eq!(is_clean(log, region).await, expected, "region {region}");
            }
        }
    }
    // The shared disk log holds the dirty regions the oracle holds (the writer committed
    // them before any FLUSH was answered).
    let image = std::fs::read(&device).unwrap();
    assert_eq!(&image[..4], &0x4D69_5272u32.to_le_bytes(), "a MiRr header");
    eprintln!("oracle checks: {checks}");
    assert_eq!(checks, 2 * 3 * 150);
}

#[tokio::test]
async fn recovery_is_shared_out_and_every_node_reaches_full_sync() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
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
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
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
    let clean_on_disk = |region: u64| {
        let image = std::fs::read(&device).unwrap();
        image[1024 + (region / 8) as usize] & (1 << (region % 8)) != 0
    };
    logs[2].direct(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
    assert!(!clean_on_disk(30));
    assert!(clean_on_disk(3) && clean_on_disk(4) && clean_on_disk(20));
}

#[tokio::test]
async fn a_partition_without_quorum_changes_nothing_until_it_heals() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::up();
    let logs = cluster.log_everywhere("split", "clustered-core 8 nosync", 64).await;
    mark(&logs[2], &[7]).await;
    script(&["partition", "3"]);
    // The majority sees node 3 go (its mark becomes out of sync) and keeps serving.
    while in_sync(&logs[0], 7).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mark(&logs[0], &[8]).await;
    // Node 3 holds a MARK back until its partition has quorum again.
    let minority = tokio::spawn({
        let link = cluster.links[&3].clone();
        let log = SimLog::new(link, logs[2].table.clone(), 0x1003, 64);
        async move { mark(&log, &[9]).await }
    });
    while !cluster.output(3).contains("quorum lost") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!minority.is_finished(), "a partition without quorum changed the log");
    assert!(!is_clean(&logs[1], 8).await);
    assert!(is_clean(&logs[1], 9).await);
    script(&["heal", "3"]);
    minority.await.unwrap();
    // Healed: node 3 took the majority's state, then its mark.
    for log in &logs {
        assert!(!is_clean(log, 9).await);
        assert!(!in_sync(log, 7).await);
    }
    let counts =
        [sync_count(&logs[0]).await, sync_count(&logs[1]).await, sync_count(&logs[2]).await];
    assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
}

#[tokio::test]
async fn a_member_joining_a_16_mi_region_log_gets_all_of_its_state() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::up();
    const REGIONS: u64 = 16 << 20;
    let mut logs = Vec::new();
    for node in 1..=2 {
        let mut log = cluster.log(node, "big", "clustered-core 8", REGIONS);
        log.create().await.unwrap();
        logs.push(log);
    }
    // Scatter sync and marks over the whole range so the snapshot is megabytes.
    let mut rng = Rng::new(5);
    for _ in 0..400 {
        let region = RegionIndex(rng.below(REGIONS));
        logs[0].direct(&Request::SetRegionSync { region, in_sync: true }).await.unwrap();
    }
    for i in 0..64 {
        mark(&logs[i % 2], &[rng.below(REGIONS)]).await;
    }
    let expected = sync_count(&logs[0]).await;
    let mut joiner = cluster.log(3, "big", "clustered-core 8", REGIONS);
    joiner.create().await.unwrap();
    assert_eq!(sync_count(&joiner).await, expected);
    assert_eq!(sync_count(&logs[1]).await, expected);
    let marked = RegionIndex(REGIONS - 1);
    mark(&logs[1], &[marked.0]).await;
    assert!(!is_clean(&joiner, marked.0).await);
}

#[tokio::test]
async fn a_killed_corosync_takes_its_node_out_until_it_is_back() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::up();
    let dir = cluster.dir.path().display().to_string();
    let logs = cluster.log_everywhere("corosync", "clustered-core 8 nosync", 64).await;
    mark(&logs[2], &[7]).await;
    script(&["stop-corosync", &dir, "3"]);
    // The survivors see node 3 go down: its mark is out of sync, and they carry on.
    while in_sync(&logs[0], 7).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mark(&logs[1], &[8]).await;
    // Node 3's daemon lost its group with its corosync; its next request waits for both.
    let waiting = tokio::spawn({
        let log = SimLog::new(cluster.links[&3].clone(), logs[2].table.clone(), 0x1003, 64);
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
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::up();
    let mut log = cluster.log(1, "alone", "clustered-core 8", 64);
    log.create().await.unwrap();
    for region in 0..40 {
        log.direct(&Request::SetRegionSync { region: RegionIndex(region), in_sync: true })
            .await
            .unwrap();
    }
    mark(&log, &[50]).await;
    clear(&log, &[50]).await;
    log.direct(&Request::Presuspend).await.unwrap();
    log.direct(&Request::Postsuspend).await.unwrap();
    log.direct(&Request::Resume).await.unwrap();
    assert_eq!(sync_count(&log).await, 40, "a suspend is no reason to resync");
    assert!(is_clean(&log, 50).await);
}
