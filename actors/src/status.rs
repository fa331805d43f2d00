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
}
