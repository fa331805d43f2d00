//! The engine's counters and its logs' state in the Prometheus text exposition format
//! (version 0.0.4), as the metrics endpoint serves them.
//!
//! Names follow Prometheus conventions: the `dm_ulogd_` prefix, base units (`_seconds`,
//! `_bytes`), `_total` on counters. Per-log series are labelled by `uuid` and `luid`, since
//! the live and the inactive table of one mirror share a uuid.

use std::fmt::Write;

use dm_ulog_actors::metrics::HistogramSnapshot;
use dm_ulog_actors::{LogStatus, Observer};

/// The log types a table can name, so that each has a `dm_ulogd_logs` series, 0 or not.
const LOG_TYPES: [&str; 4] = ["core", "disk", "clustered-core", "clustered-disk"];

/// A disk log's health letter and the state name the metrics give it.
const DEVICE_STATES: [(char, &str); 3] = [('A', "alive"), ('D', "failed"), ('F', "flush_failed")];

/// One scrape's worth of text.
pub fn render(observer: &Observer, logs: &[LogStatus]) -> String {
    let metrics = observer.metrics();
    let mut out = Exposition::default();
    out.family("dm_ulogd_build_info", "gauge", "The running dm-ulogd's version; always 1.");
    out.sample("dm_ulogd_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);

    let requests = metrics.requests();
    let name = "dm_ulogd_requests_total";
    out.family(name, "counter", "Requests received with a readable header, by request type.");
    for counts in &requests {
        out.sample(name, &[("request", counts.request)], counts.received);
    }
    let name = "dm_ulogd_request_errors_total";
    out.family(name, "counter", "Requests answered with an error, by request type and errno.");
    for counts in &requests {
        for (errno, count) in &counts.errors {
            let errno = errno.name().map_or_else(|| errno.0.to_string(), str::to_owned);
            out.sample(name, &[("request", counts.request), ("errno", &errno)], *count);
        }
    }
    let name = "dm_ulogd_request_duration_seconds";
    out.family(name, "histogram", "Time from a request's arrival to its reply, by request type.");
    for counts in &requests {
        out.histogram(name, &[("request", counts.request)], &counts.duration);
    }
    let name = "dm_ulogd_disk_commit_duration_seconds";
    out.family(
        name,
        "histogram",
        "Time to write a disk log's changed blocks and make them durable; FLUSH replies wait for it.",
    );
    out.histogram(name, &[], &metrics.commits());
    let name = "dm_ulogd_unreadable_datagrams_total";
    out.family(name, "counter", "Datagrams without a readable request header.");
    out.sample(name, &[], metrics.unreadable_datagrams());
    let name = "dm_ulogd_shadow_write_failures_total";
    out.family(
        name,
        "counter",
        "Failed writes of a log's shadow in state_dir; the log writes it afresh at its next change.",
    );
    out.sample(name, &[], metrics.shadow_write_failures());
    let name = "dm_ulogd_replies_unsent_total";
    out.family(
        name,
        "counter",
        "Replies the transport could not send at once (a peer not reading); the peer resends.",
    );
    out.sample(name, &[], observer.replies_unsent());

    let name = "dm_ulogd_logs";
    out.family(name, "gauge", "Logs served, by log type.");
    for log_type in LOG_TYPES {
        let count = logs.iter().filter(|log| log.log_type == log_type).count();
        out.sample(name, &[("type", log_type)], count as u64);
    }
    render_logs(&mut out, logs);
    if let Some(process) = crate::process_metrics::sample() {
        render_process(&mut out, &process);
    }
    out.text
}

/// The `process_*` families, as every exporter names them.
fn render_process(out: &mut Exposition, process: &crate::process_metrics::ProcessSample) {
    let families: [(&str, &str, &str, f64); 7] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            process.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            process.resident_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            process.virtual_bytes as f64,
        ),
        ("process_open_fds", "gauge", "Open file descriptors.", process.open_fds as f64),
        ("process_max_fds", "gauge", "The limit of open file descriptors.", process.max_fds as f64),
        ("process_threads", "gauge", "Threads of the process.", process.threads as f64),
        (
            "process_start_time_seconds",
            "gauge",
            "When the process started serving, in seconds since the epoch.",
            process.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
}

/// The per-log gauges, one family at a time as the format requires.
fn render_logs(out: &mut Exposition, logs: &[LogStatus]) {
    type Gauge = (&'static str, &'static str, fn(&LogStatus) -> u64);
    let gauges: [Gauge; 5] = [
        ("dm_ulogd_log_regions", "Regions of the log.", |log| log.regions),
        (
            "dm_ulogd_log_regions_in_sync",
            "Regions in sync on every mirror leg; resync is done when it equals dm_ulogd_log_regions.",
            |log| log.in_sync,
        ),
        (
            "dm_ulogd_log_regions_dirty",
            "Regions marked for writes in flight (or not yet cleared).",
            |log| log.dirty,
        ),
        ("dm_ulogd_log_regions_recovering", "Regions being resynced now.", |log| log.recovering),
        ("dm_ulogd_log_region_size_bytes", "Size of one region.", |log| {
            u64::from(log.region_size) * 512
        }),
    ];
    let luids: Vec<String> = logs.iter().map(|log| log.luid.to_string()).collect();
    let id = |i: usize| [("uuid", logs[i].uuid.as_str()), ("luid", luids[i].as_str())];
    let name = "dm_ulogd_log_info";
    out.family(name, "gauge", "One series per log, always 1, labelled with its type and device.");
    for (i, log) in logs.iter().enumerate() {
        let [uuid, luid] = id(i);
        let device = log.device.as_deref().unwrap_or("");
        out.sample(name, &[uuid, luid, ("type", &log.log_type), ("device", device)], 1);
    }
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        for (i, log) in logs.iter().enumerate() {
            out.sample(name, &id(i), value(log));
        }
    }
    let name = "dm_ulogd_log_device_state";
    out.family(
        name,
        "gauge",
        "A disk log's device state: 1 for the state it is in (alive, failed, flush_failed).",
    );
    for (i, log) in logs.iter().enumerate() {
        let Some(health) = log.health else { continue };
        let [uuid, luid] = id(i);
        for (letter, state) in DEVICE_STATES {
            out.sample(name, &[uuid, luid, ("state", state)], u64::from(health == letter));
        }
    }
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                let _ = write!(self.text, "{comma}{label}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &histogram.buckets {
            let le = if bound.is_infinite() { "+Inf".to_owned() } else { bound.to_string() };
            let labels: Vec<(&str, &str)> =
                labels.iter().copied().chain([("le", le.as_str())]).collect();
            self.sample(&bucket, &labels, count);
        }
        self.sample(&format!("{name}_sum"), labels, histogram.sum_seconds);
        self.sample(&format!("{name}_count"), labels, histogram.count());
    }
}

/// A label value as the format quotes it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("uuid", "a\"b\\c\nd")], 1);
        assert_eq!(out.text, "m{uuid=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
