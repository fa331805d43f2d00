//! A 3-node corosync cluster in network namespaces (cluster.sh), one dm-ulogd per node on
//! `--corosync`, and a simulated kernel per node: what the cluster tests and the cluster
//! bench share. Needs root, iproute2 and corosync.
#![allow(dead_code)] // the tests and the bench each use a different part

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dm_ulog_actors::sim::{KernelLink, LogTable, SimLog};

use crate::common::{daemon_args, promtool_check_metrics, wait_bound};
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{RegionBatch, ReplyPayload, Request};
use dm_ulog_actors::LogStatus;

/// The namespaces have fixed names, so one cluster at a time on the machine: every test
/// and bench process takes this lock (flock) for as long as its cluster is up.
const MACHINE_LOCK: &str = "/tmp/dm-ulogd-cluster-namespaces.lock";

/// Where each node's metrics endpoint listens, inside its namespace.
const METRICS: &str = "127.0.0.1:9187";

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/cluster.sh");

/// The cluster, its daemons, and a simulated kernel per node.
pub struct Cluster {
    /// Held while the cluster is up; closing it releases the lock.
    _turn: std::fs::File,
    pub dir: tempfile::TempDir,
    daemons: BTreeMap<u32, Child>,
    pub links: BTreeMap<u32, Arc<KernelLink>>,
}

impl Cluster {
    pub fn up() -> Cluster {
        let turn = std::fs::File::create(MACHINE_LOCK).unwrap();
        // SAFETY: flock(2) on a file this function owns; it waits for the cluster before.
        assert_eq!(unsafe { libc::flock(turn.as_raw_fd(), libc::LOCK_EX) }, 0);
        let dir = tempfile::tempdir().unwrap();
        script(&["up", &dir.path().display().to_string()]);
        let mut cluster =
            Cluster { _turn: turn, dir, daemons: BTreeMap::new(), links: BTreeMap::new() };
        for node in 1..=3 {
            cluster.start(node);
        }
        cluster
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts node `node`'s daemon (again) inside its namespace, beside its corosync.
    pub fn start(&mut self, node: u32) {
        let socket = self.path(&format!("n{node}.sock"));
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("n{node}.log")))
            .unwrap();
        let config = self.path("empty.toml");
        std::fs::write(&config, "").unwrap();
        let (control, state_dir) =
            (self.path(&format!("n{node}.control")), self.path(&format!("n{node}.state")));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &format!("ulogd-n{node}"), env!("CARGO_BIN_EXE_dm-ulogd")])
            .args(daemon_args(&config, &socket, &control, Some(&state_dir)))
            .args(["--corosync", "--log-level", "debug"])
            // Each namespace has a loopback of its own: every node listens on the same port.
            .args(["--metrics-listen", METRICS])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dm-ulogd starts");
        wait_bound(&mut child, &[&socket, &control], &self.path(&format!("n{node}.log")));
        self.daemons.insert(node, child);
        let link = KernelLink::unix(
            &self.path(&format!("kernel{node}.sock")),
            &socket,
            Duration::from_secs(15),
        )
        .unwrap();
        self.links.insert(node, link);
    }

    /// kill -9 of node `node`'s daemon.
    pub fn kill(&mut self, node: u32) {
        if let Some(mut child) = self.daemons.remove(&node) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// The log `uuid` as node `node`'s kernel has it.
    pub fn log(&self, node: u32, uuid: &str, log_args: &str, regions: u64) -> SimLog {
        let table = LogTable {
            uuid: uuid.to_owned(),
            log_args: log_args.to_owned(),
            target_sectors: regions * 8,
            integrated_flush: true,
        };
        SimLog::new(self.links[&node].clone(), table, 0x1000 + u64::from(node), regions)
    }

    /// The same log on every node, constructed and resumed.
    pub async fn log_everywhere(&self, uuid: &str, log_args: &str, regions: u64) -> Vec<SimLog> {
        let mut logs = Vec::new();
        for node in 1..=3 {
            let mut log = self.log(node, uuid, log_args, regions);
            log.create().await.unwrap();
            logs.push(log);
        }
        logs
    }

    /// A scrape of node `node`'s metrics endpoint, from inside its namespace, which
    /// `promtool check metrics` passes.
    pub fn scrape(&self, node: u32) -> String {
        let fetch = format!(
            "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://{METRICS}/metrics').read().decode())"
        );
        let output = Command::new("ip")
            .args(["netns", "exec", &format!("ulogd-n{node}"), "/usr/bin/python3", "-c", &fetch])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        promtool_check_metrics(&text);
        text
    }

    pub fn output(&self, node: u32) -> String {
        std::fs::read_to_string(self.path(&format!("n{node}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in [1, 2, 3] {
            self.kill(node);
        }
        script(&["down", &self.dir.path().display().to_string()]);
        if std::thread::panicking() {
            for node in [1, 2, 3] {
                eprintln!("--- node {node} ---\n{}", self.output(node));
            }
        }
    }
}

pub fn script(args: &[&str]) {
    let status = Command::new(SCRIPT).args(args).status().expect("cluster.sh runs");
    assert!(status.success(), "cluster.sh {args:?}: {status}");
}

pub fn regions(list: &[u64]) -> RegionBatch {
    RegionBatch::from_regions(list).unwrap()
}

pub async fn is_clean(log: &SimLog, region: u64) -> bool {
    match log.direct(&Request::IsClean(RegionIndex(region))).await {
        Ok(ReplyPayload::Flag(clean)) => clean,
        other => panic!("IS_CLEAN: {other:?}"),
    }
}

pub async fn in_sync(log: &SimLog, region: u64) -> bool {
    match log.direct(&Request::InSync(RegionIndex(region))).await {
        Ok(ReplyPayload::Flag(in_sync)) => in_sync,
        other => panic!("IN_SYNC: {other:?}"),
    }
}

pub async fn sync_count(log: &SimLog) -> u64 {
    match log.direct(&Request::GetSyncCount).await {
        Ok(ReplyPayload::Count(n)) => n,
        other => panic!("GET_SYNC_COUNT: {other:?}"),
    }
}

/// MARK + FLUSH, as dm-raid1 does before writing (the marks ride in the FLUSH).
pub async fn mark(log: &SimLog, list: &[u64]) {
    log.direct(&Request::Flush(regions(list))).await.unwrap();
}

/// CLEAR and FLUSH, as a kernel completes writes; then an IS_CLEAN from the same node as the
/// test's barrier: that FLUSH owes nothing and is answered before the group has the clears,
/// but this node's IS_CLEAN comes back only after them, and anything any node sends next is
/// ordered behind it.
pub async fn clear(log: &SimLog, list: &[u64]) {
    log.direct(&Request::ClearRegion(regions(list))).await.unwrap();
    log.direct(&Request::Flush(RegionBatch::EMPTY)).await.unwrap();
    is_clean(log, list[0]).await;
}

/// Whether the shared log device comes to say `clean` of `region` within 10 s: a FLUSH that
/// owes nothing is answered before the writer commits its clears, right behind it.
pub async fn settles_on_disk(device: &std::path::Path, region: u64, clean: bool) -> bool {
    for _ in 0..1000 {
        if crate::common::clean_on_disk(device, region) == clean {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Recovers every region this node is handed, until none is left for it.
pub async fn resync(log: &SimLog) -> Vec<u64> {
    let mut recovered = Vec::new();
    loop {
        match log.direct(&Request::GetResyncWork).await {
            Ok(ReplyPayload::ResyncWork(Some(region))) => {
                log.direct(&Request::SetRegionSync { region, in_sync: true }).await.unwrap();
                recovered.push(region.0);
            }
            Ok(ReplyPayload::ResyncWork(None)) => return recovered,
            other => panic!("GET_RESYNC_WORK: {other:?}"),
        }
    }
}

/// The series of the family `name` for the log `uuid` in a scrape: each sample's labels
/// (as written) and value.
pub fn series(scrape: &str, name: &str, uuid: &str) -> Vec<(String, f64)> {
    let uuid = format!("uuid=\"{uuid}\"");
    scrape
        .lines()
        .filter_map(|line| {
            let (labels, value) = line.strip_prefix(name)?.strip_prefix('{')?.split_once("} ")?;
            labels.contains(&uuid).then(|| (labels.to_owned(), value.parse().unwrap()))
        })
        .collect()
}

/// The one series of the family `name` for the log `uuid`.
pub fn value(scrape: &str, name: &str, uuid: &str) -> f64 {
    match series(scrape, name, uuid).as_slice() {
        [(_, value)] => *value,
        other => panic!("{name} of {uuid}: {other:?} in\n{scrape}"),
    }
}

/// What the daemons of `nodes` multicast for `uuid` so far, from `dm-ulogd status --json`.
pub fn multicasts(cluster: &Cluster, nodes: &[u32], uuid: &str) -> u64 {
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
