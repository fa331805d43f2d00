//! `dm-ulogd status`: every log of the running daemon, with its sync progress as `lvs`
//! shows Cpy%Sync, for a person (a table, `--watch` to refresh) or a script (`--json`).

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use dm_ulog_actors::LogStatus;

use crate::control;

pub fn run(path: &Path, json: bool, watch: bool) -> Result<(), String> {
    loop {
        let logs = control::query(path)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&logs).map_err(|e| e.to_string())?);
        } else {
            if watch && std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H");
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
    let mut out = format!(
        "{:<36} {:<14} {:>7} {:>9} {:<30} {:>7} {:>5} {:>15} {}\n",
        "UUID",
        "TYPE",
        "REGION",
        "REGIONS",
        "SYNC",
        "DIRTY",
        "RECOV",
        "FLUSH p50/p99",
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
            "{:<36} {:<14} {:>7} {:>9} {:<30} {:>7} {:>5} {:>15} {device}{error}\n",
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

/// A region size for people: sectors as KiB or MiB.
fn sectors(sectors: u32) -> String {
    let kib = u64::from(sectors) / 2;
    if kib >= 1024 && kib % 1024 == 0 {
        format!("{}M", kib / 1024)
    } else {
        format!("{kib}K")
    }
}
