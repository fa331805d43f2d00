//! The `process_*` metrics every Prometheus exporter serves, as client libraries name them:
//! CPU time, memory, descriptors, and the start time, read from `/proc/self` (which the
//! unit's ProcSubset=pid leaves readable) at each scrape.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The process's figures at one scrape.
#[derive(Debug)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
    pub threads: u64,
}

static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Notes when the process started serving; the daemon calls it first thing. (The kernel's
/// own start time would need /proc/stat's boot time, which ProcSubset=pid hides.)
pub fn mark_start() {
    STARTED.get_or_init(SystemTime::now);
}

/// Reads the figures; `None` where /proc cannot be read (the metrics are then left out).
pub fn sample() -> Option<ProcessSample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: the fields start after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3] here (pid and comm are before the ')').
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    // SAFETY: sysconf(3) takes a name only.
    let (ticks, page) =
        unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let started = STARTED.get().copied().unwrap_or_else(SystemTime::now);
    Some(ProcessSample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks.max(1) as f64,
        threads: field(20)?,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page.max(1) as u64,
        open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as u64,
        max_fds: dm_ulog_actors::open_files::soft_limit().ok()?,
        start_time_seconds: started.duration_since(UNIX_EPOCH).ok()?.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_are_this_process_s() {
        mark_start();
        let sample = sample().expect("/proc/self is readable");
        assert!(sample.resident_bytes > 0 && sample.virtual_bytes >= sample.resident_bytes);
        assert!(sample.open_fds >= 3 && sample.max_fds >= sample.open_fds);
        assert!(sample.threads >= 1);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(sample.start_time_seconds <= now && sample.start_time_seconds > now - 3600.0);
    }
}
