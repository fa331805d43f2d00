//! The engine's counters and its logs' state as Prometheus metrics, encoded by
//! prometheus-client in the format the scraper asks for.
//!
//! The request path keeps its lock-free counters (`dm_ulog_actors::metrics`); a scrape reads
//! them, and asks every log for its state, into a [`Scrape`], which is the collector that
//! prometheus-client encodes. Names follow Prometheus conventions: the `dm_ulogd_` prefix,
//! base units (`_seconds`, `_bytes`), `_total` on counters (the encoder adds it). Per-log
//! series are labelled by `uuid` and `luid`, since the live and the inactive table of one
//! mirror share a uuid.

use std::fmt;

use dm_ulog_actors::metrics::{HistogramSnapshot, RequestCounts};
use dm_ulog_actors::{LogStatus, Observer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::process_metrics::ProcessSample;

/// The log types a table can name, so that each has a `dm_ulogd_logs` series, 0 or not.
const LOG_TYPES: [&str; 4] = ["core", "disk", "clustered-core", "clustered-disk"];

/// A disk log's health letter and the state name the metrics give it.
const DEVICE_STATES: [(char, &str); 3] = [('A', "alive"), ('D', "failed"), ('F', "flush_failed")];

/// The labels of a series that has none.
const NO_LABELS: [(&str, &str); 0] = [];

/// The text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// Prometheus' own text format, version 0.0.4: what a client that names none gets.
    Prometheus,
    /// OpenMetrics 1.0.0, which Prometheus asks for first.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics if it names it, else Prometheus'.
    pub fn accepted(accept: Option<&str>) -> Format {
        let names_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|kind| {
                let kind = kind.split(';').next().unwrap_or("").trim();
                kind.eq_ignore_ascii_case("application/openmetrics-text")
            })
        });
        if names_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Everything one scrape reports, read at one moment.
#[derive(Debug)]
pub struct Scrape {
    requests: Vec<RequestCounts>,
    commits: HistogramSnapshot,
    unreadable_datagrams: u64,
    shadow_write_failures: u64,
    replies_unsent: u64,
    logs: Vec<LogStatus>,
    process: Option<ProcessSample>,
}

impl Scrape {
    /// Reads the engine's counters and the process's figures; `logs` are the logs' reports.
    pub fn take(observer: &Observer, logs: Vec<LogStatus>) -> Scrape {
        let metrics = observer.metrics();
        Scrape {
            requests: metrics.requests(),
            commits: metrics.commits(),
            unreadable_datagrams: metrics.unreadable_datagrams(),
            shadow_write_failures: metrics.shadow_write_failures(),
            replies_unsent: observer.replies_unsent(),
            logs,
            process: crate::process_metrics::sample(),
        }
    }

    /// The scrape's text in `format`.
    pub fn encode(self, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        let encoded = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry),
        };
        encoded.expect("writing to a String does not fail");
        text
    }
}

impl Collector for Scrape {
    fn encode(&self, mut out: DescriptorEncoder) -> fmt::Result {
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        gauge(
            &mut out,
            "dm_ulogd_build_info",
            "The running dm-ulogd's version; always 1.",
            [(version, 1)],
        )?;
        self.encode_requests(&mut out)?;
        let help = "Time to write a disk log's changed blocks and make them durable; FLUSH replies wait for it.";
        histograms(
            &mut out,
            "dm_ulogd_disk_commit_duration_seconds",
            help,
            [(NO_LABELS, &self.commits)],
        )?;
        let help = "Datagrams without a readable request header.";
        counter(&mut out, "dm_ulogd_unreadable_datagrams", help, self.unreadable_datagrams)?;
        let help = "Failed writes of a log's shadow in state_dir; the log writes it afresh at its next change.";
        counter(&mut out, "dm_ulogd_shadow_write_failures", help, self.shadow_write_failures)?;
        let help =
            "Replies the transport could not send at once (a peer not reading); the peer resends.";
        counter(&mut out, "dm_ulogd_replies_unsent", help, self.replies_unsent)?;

        let logs_of = |log_type| self.logs.iter().filter(|log| log.log_type == log_type).count();
        let by_type = LOG_TYPES.map(|log_type| ([("type", log_type)], logs_of(log_type) as u64));
        gauge(&mut out, "dm_ulogd_logs", "Logs served, by log type.", by_type)?;
        self.encode_logs(&mut out)?;
        self.encode_clusters(&mut out)?;
        if let Some(process) = &self.process {
            encode_process(&mut out, process)?;
        }
        Ok(())
    }
}

impl Scrape {
    fn encode_requests(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let by_request = |counts: &RequestCounts| [("request", counts.request)];
        let help = "Requests received with a readable header, by request type.";
        let received = self.requests.iter().map(|counts| (by_request(counts), counts.received));
        counters(out, "dm_ulogd_requests", help, received)?;
        let help = "Requests answered with an error, by request type and errno.";
        let errors = self.requests.iter().flat_map(|counts| {
            counts.errors.iter().map(|(errno, count)| {
                let errno = errno.name().map_or_else(|| errno.0.to_string(), str::to_owned);
                (vec![("request", counts.request.to_owned()), ("errno", errno)], *count)
            })
        });
        counters(out, "dm_ulogd_request_errors", help, errors)?;
        let help = "Time from a request's arrival to its reply, by request type.";
        let durations = self.requests.iter().map(|counts| (by_request(counts), &counts.duration));
        histograms(out, "dm_ulogd_request_duration_seconds", help, durations)
    }

    /// The per-log gauges, one family at a time as the formats require.
    fn encode_logs(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        type Value = fn(&LogStatus) -> u64;
        let families: [(&str, &str, Value); 5] = [
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
        let help = "One series per log, always 1, labelled with its type and device.";
        let info = self.logs.iter().map(|log| {
            let mut labels = log_labels(log);
            labels.push(("type", log.log_type.clone()));
            labels.push(("device", log.device.clone().unwrap_or_default()));
            (labels, 1)
        });
        gauge(out, "dm_ulogd_log_info", help, info)?;
        for (name, help, value) in families {
            gauge(out, name, help, self.logs.iter().map(|log| (log_labels(log), value(log))))?;
        }
        let help =
            "A disk log's device state: 1 for the state it is in (alive, failed, flush_failed).";
        let states = self.logs.iter().flat_map(|log| {
            let states = log.health.map(|health| {
                DEVICE_STATES.map(|(letter, state)| {
                    let mut labels = log_labels(log);
                    labels.push(("state", state.to_owned()));
                    (labels, u64::from(health == letter))
                })
            });
            states.into_iter().flatten()
        });
        gauge(out, "dm_ulogd_log_device_state", help, states)
    }

    /// The clustered logs' groups, as this member sees them.
    fn encode_clusters(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let clustered: Vec<_> = (self.logs.iter())
            .filter_map(|log| Some((log_labels(log), log.cluster.as_ref()?)))
            .collect();
        let series = |value: fn(&dm_ulog_actors::ClusterStatus) -> u64| {
            clustered.iter().map(move |(labels, cluster)| (labels.clone(), value(cluster)))
        };
        let help =
            "Daemons in the clustered log's CPG group, this one included (0 while not joined).";
        gauge(out, "dm_ulogd_cluster_members", help, series(|c| u64::from(c.members)))?;
        let help =
            "Whether this member holds the clustered log's state: 1 once joined and transferred.";
        gauge(out, "dm_ulogd_cluster_holds_state", help, series(|c| u64::from(c.holds_state)))?;
        let help =
            "Requests of the clustered log waiting unanswered because this host has no quorum.";
        gauge(out, "dm_ulogd_cluster_requests_held_inquorate", help, series(|c| c.held_inquorate))?;
        let help = "Membership changes of the clustered log's group seen by this member.";
        counters(out, "dm_ulogd_cluster_view_changes", help, series(|c| c.view_changes))?;
        let help = "Messages this member multicast for the clustered log: ops, snapshots, durability notes.";
        counters(out, "dm_ulogd_cluster_multicasts", help, series(|c| c.multicasts))?;
        let help = "Bytes of the clustered log's state snapshots, sent to joining members or received while joining.";
        let transfers = clustered.iter().flat_map(|(labels, cluster)| {
            [("sent", cluster.transfer_sent_bytes), ("received", cluster.transfer_received_bytes)]
                .map(|(direction, bytes)| {
                    let mut labels = labels.clone();
                    labels.push(("direction", direction.to_owned()));
                    (labels, bytes)
                })
        });
        counters(out, "dm_ulogd_cluster_state_transfer_bytes", help, transfers)
    }
}

/// A log's identifying labels; more may be pushed after them.
fn log_labels(log: &LogStatus) -> Vec<(&'static str, String)> {
    vec![("uuid", log.uuid.clone()), ("luid", log.luid.to_string())]
}

/// The `process_*` families, as every exporter names them.
fn encode_process(out: &mut DescriptorEncoder, process: &ProcessSample) -> fmt::Result {
    let help = "User and system CPU time spent, in seconds.";
    counter(out, "process_cpu_seconds", help, process.cpu_seconds)?;
    let gauges: [(&str, &str, f64); 6] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            process.resident_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            process.virtual_bytes as f64,
        ),
        ("process_open_fds", "Open file descriptors.", process.open_fds as f64),
        ("process_max_fds", "The limit of open file descriptors.", process.max_fds as f64),
        ("process_threads", "Threads of the process.", process.threads as f64),
        (
            "process_start_time_seconds",
            "When the process started serving, in seconds since the epoch.",
            process.start_time_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        gauge(out, name, help, [(NO_LABELS, value)])?;
    }
    Ok(())
}

/// A gauge family: one series per `(labels, value)`.
fn gauge<L: EncodeLabelSet, V: EncodeGaugeValue>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// A counter family; `name` is without the `_total` the encoder adds.
fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family.encode_family(&labels)?.encode_counter::<NoLabelSet, V, u64>(&value, None)?;
    }
    Ok(())
}

/// A counter without labels.
fn counter(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> fmt::Result {
    counters(out, name, help, [(NO_LABELS, value)])
}

/// A histogram family.
fn histograms<'h, L: EncodeLabelSet>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, &'h HistogramSnapshot)>,
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, histogram) in series {
        family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            histogram.sum_seconds,
            histogram.count(),
            &histogram.buckets,
            None,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_served_to_whoever_names_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::accepted(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::accepted(Some("text/plain, Application/OpenMetrics-Text")),
            Format::OpenMetrics
        );
        for other in [None, Some("*/*"), Some("text/plain;version=0.0.4"), Some("")] {
            assert_eq!(Format::accepted(other), Format::Prometheus, "{other:?}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut log = sample_log();
        log.uuid = "a\"b\\c\nd".into();
        let scrape = Scrape {
            requests: Vec::new(),
            commits: HistogramSnapshot { buckets: vec![(f64::INFINITY, 0)], sum_seconds: 0.0 },
            unreadable_datagrams: 0,
            shadow_write_failures: 0,
            replies_unsent: 0,
            logs: vec![log],
            process: None,
        };
        let text = scrape.encode(Format::Prometheus);
        assert!(
            text.contains("dm_ulogd_log_regions{uuid=\"a\\\"b\\\\c\\nd\",luid=\"7\"} 8\n"),
            "{text}"
        );
    }

    fn sample_log() -> LogStatus {
        LogStatus {
            uuid: String::new(),
            luid: 7,
            log_type: "core".into(),
            region_size: 8,
            regions: 8,
            in_sync: 0,
            dirty: 0,
            recovering: 0,
            device: None,
            health: None,
            flush_p50_us: None,
            flush_p99_us: None,
            last_error: None,
            cluster: None,
        }
    }
}
