//! `dm-ulogd status`: every log of the running daemon (or those named), with its sync
//! progress as `lvs` shows Cpy%Sync and its disk commit time, for a person (a table,
//! `--watch` to refresh, through a restart of the daemon) or a script (`--json`; with
//! `--watch`, one document per line).

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use dm_ulog_actors::LogStatus;

use crate::control;

pub fn run(path: &Path, uuids: &[String], json: bool, watch: bool) -> Result<(), String> {
    loop {
        let logs = match control::query(path) {
            Ok(logs) => logs,
            // A daemon that restarts is not gone: --watch waits for it.
            Err(error) if watch => {
                println!("waiting for the daemon: {error}");
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            Err(error) => return Err(error),
        };
        let logs: Vec<LogStatus> =
            logs.into_iter().filter(|log| uuids.is_empty() || uuids.contains(&log.uuid)).collect();
        if json && watch {
            // One document per line, for a consumer that reads line by line.
            println!("{}", serde_json::to_string(&logs).map_err(|e| e.to_string())?);
        } else if json {
            println!("{}", serde_json::to_string_pretty(&logs).map_err(|e| e.to_string())?);
        } else {
            if watch && std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H");
            }
            if let Some(info) = control::info(path) {
                println!("{}", header(&info));
            }
            print!("{}", table(&logs));
        }
        if !watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn table(logs: &[LogStatus]) -> String {
    // As wide as the longest uuid: LVM's are 68 characters.
    let width = logs.iter().map(|log| log.uuid.chars().count()).max().unwrap_or(0).max(4);
    let mut out = format!(
        "{:<width$} {:<14} {:>7} {:>9} {:<30} {:>7} {:>5} {:>17} {}\n",
        "UUID",
        "TYPE",
        "REGION",
        "REGIONS",
        "SYNC",
        "DIRTY",
        "RECOV",
        "COMMIT p50/p99",
        "DEVICE / LAST ERROR"
    );
    for log in logs {
        let percent =
            if log.regions == 0 { 100.0 } else { log.in_sync as f64 * 100.0 / log.regions as f64 };
        let filled = (percent / 5.0).floor() as usize;
        let bar = format!("[{}{}] {percent:6.2}%", "#".repeat(filled), ".".repeat(20 - filled));
        let flush = match (log.flush_p50_us, log.flush_p99_us) {
            (Some(p50), Some(p99)) => format!("{:.0}/{:.0} µs", p50, p99),
            _ => "-".into(),
        };
        let mut device = match (&log.device, log.health) {
            (Some(device), Some(health)) => format!("{device} {health}"),
            _ => String::new(),
        };
        if let Some(cluster) = &log.cluster {
            let role = match (cluster.holds_state, cluster.writer) {
                (false, _) => ", joining",
                (true, true) => ", writer",
                (true, false) => "",
            };
            device =
                format!("{device} [{} members{role}]", cluster.members).trim_start().to_owned();
        }
        let error = log.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        out.push_str(&format!(
            "{:<width$} {:<14} {:>7} {:>9} {:<30} {:>7} {:>5} {:>17} {device}{error}\n",
            log.uuid,
            log.log_type,
            sectors(log.region_size),
            log.regions,
            bar,
            log.dirty,
            log.recovering,
            flush
        ));
    }
    if logs.is_empty() {
        out.push_str("(no logs)\n");
    }
    out
}

/// `dm-ulogd 0.1.0 (pid 4242), up 3d 04h 12m, serving 32 logs[, 2 shadows waiting …]`.
fn header(info: &serde_json::Value) -> String {
    let uptime = info["uptime_s"].as_u64().unwrap_or(0);
    let (days, hours, minutes) = (uptime / 86_400, uptime / 3600 % 24, uptime / 60 % 60);
    let up = match days {
        0 => format!("{hours}h {minutes:02}m"),
        _ => format!("{days}d {hours:02}h {minutes:02}m"),
    };
    let waiting = match info["waiting_shadows"].as_u64().unwrap_or(0) {
        0 => String::new(),
        n => format!(", {n} shadows waiting for the kernel to reconnect their logs"),
    };
    format!(
        "dm-ulogd {} (pid {}), up {up}, serving {} logs{waiting}",
        info["version"].as_str().unwrap_or("?"),
        info["pid"].as_u64().unwrap_or(0),
        info["logs"].as_u64().unwrap_or(0)
    )
}

/// A region size for people: sectors as KiB or MiB.
fn sectors(sectors: u32) -> String {
    let kib = u64::from(sectors) / 2;
    if kib >= 1024 && kib % 1024 == 0 {
        format!("{}M", kib / 1024)
    } else {
        format!("{kib}K")
    }
}
