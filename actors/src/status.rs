//! What operators see of a log: a snapshot taken by its actor on request.

use serde::{Deserialize, Serialize};

/// One log, as `dm-ulogd status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogStatus {
    pub uuid: String,
    pub luid: u64,
    pub log_type: String,
    /// In sectors.
    pub region_size: u32,
    pub regions: u64,
    pub in_sync: u64,
    pub dirty: u64,
    pub recovering: u64,
    /// The log device's status name (`major:minor`, or the file's path); disk logs only.
    pub device: Option<String>,
    /// The disk log's health letter: A alive, D device failed, F flush failed.
    pub health: Option<char>,
    /// Commit times over the last 512 commits, in microseconds; disk logs only.
    pub flush_p50_us: Option<f64>,
    pub flush_p99_us: Option<f64>,
    pub last_error: Option<String>,
    /// Clustered logs only: the log's group as this member sees it.
    #[serde(default)]
    pub cluster: Option<ClusterStatus>,
}

/// A clustered log's group, as one member sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Daemons in the log's CPG group, this one included (0 while not joined).
    pub members: u32,
    /// Whether this member holds the log's state (it joined and got it).
    pub holds_state: bool,
    /// Whether this member writes the log device (clustered-disk).
    pub writer: bool,
    /// Messages this member has multicast for the log: ops, snapshots, durability notes.
    pub multicasts: u64,
    /// Views (membership changes) of the group this member has seen.
    #[serde(default)]
    pub view_changes: u64,
    /// Bytes of state snapshots this member sent to joining members.
    #[serde(default)]
    pub transfer_sent_bytes: u64,
    /// Bytes of state snapshots this member received while it lacked the state.
    #[serde(default)]
    pub transfer_received_bytes: u64,
    /// Requests waiting unanswered because this host has no quorum (0 while it has).
    #[serde(default)]
    pub held_inquorate: u64,
}
