//! The Prometheus metrics endpoint of the real binary: scraped over TCP, parsed strictly as
//! the text exposition format, and held to the requests that were sent; off by default;
//! answering only `GET /metrics`; and never a reason for the daemon to stop serving.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::{http, log_file, promtool_check_metrics, read_response, Daemon, Raw};
use dm_ulog_actors::wire::{RegionBatch, Request};

/// Waits for the daemon's "serving" line (logged once start-up is over) and returns the
/// address its metrics endpoint said it listens on, if it said so.
fn started(daemon: &Daemon) -> Option<SocketAddr> {
    for _ in 0..1000 {
        let output = daemon.output();
        if output.contains("daemon: serving ") {
            let line = output.lines().find(|l| l.contains("metrics endpoint listening"))?;
            let address = line.split("address=").nth(1).expect("the line names the address");
            return Some(address.trim().parse().expect("an IP:PORT address"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("dm-ulogd did not finish starting: {}", daemon.output());
}

/// A daemon with its endpoint on a free port, and where that is.
fn serving() -> (tempfile::TempDir, Daemon, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let address = started(&daemon).expect("the endpoint listens");
    (dir, daemon, address)
}

fn scrape(address: SocketAddr) -> Exposition {
    let response = http(address, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(response.status, "HTTP/1.1 200 OK");
    let content_type = response.header("content-type");
    assert_eq!(content_type, Some("text/plain; version=0.0.4; charset=utf-8"));
    promtool_check_metrics(&response.body);
    Exposition::parse(&response.body)
}

/// A series' labels, sorted.
type Labels = Vec<(String, String)>;

/// One sample: its name, its labels, its value.
type Sample = (String, Labels, f64);

/// A scrape, parsed by the rules of the text format, strictly: every line is a HELP or a
/// TYPE comment or a sample of the family last typed; names and labels are well formed;
/// no series appears twice; counters end in `_total`; every histogram's buckets rise to
/// `+Inf`, and its `_count` is the `+Inf` bucket's.
struct Exposition {
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        assert!(text.ends_with('\n'), "the text ends with a line feed");
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helped = HashSet::new();
        let mut family: Option<(String, String)> = None;
        let mut samples = Vec::new();
        let mut seen = HashSet::new();
        for line in text.lines() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                let (name, text) = help.split_once(' ').expect("HELP name text");
                assert!(valid_name(name) && !text.is_empty(), "{line}");
                assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
            } else if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("TYPE name kind");
                assert!(valid_name(name), "{line}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(kind != "counter" || name.ends_with("_total"), "counter {name}");
                let first = types.insert(name.to_owned(), kind.to_owned()).is_none();
                assert!(first, "TYPE twice for {name}");
                family = Some((name.to_owned(), kind.to_owned()));
            } else {
                let (name, labels, value) = parse_sample(line);
                let (family, kind) = family.as_ref().expect("a TYPE before any sample");
                let suffix = name.strip_prefix(family.as_str()).unwrap_or("-");
                let allowed: &[&str] =
                    if kind == "histogram" { &["_bucket", "_sum", "_count"] } else { &[""] };
                assert!(allowed.contains(&suffix), "{name} outside its family {family}");
                assert!(seen.insert((name.clone(), labels.clone())), "{line} twice");
                samples.push((name, labels, value));
            }
        }
        for name in types.keys() {
            assert!(helped.contains(name), "{name} has no HELP");
        }
        let exposition = Exposition { samples };
        for (name, kind) in &types {
            if kind == "histogram" {
                exposition.check_histogram(name);
            }
        }
        exposition
    }

    fn check_histogram(&self, name: &str) {
        let bucket = format!("{name}_bucket");
        let mut series: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
        for (sample, labels, value) in &self.samples {
            if *sample == bucket {
                let le = labels.iter().find(|(label, _)| label == "le").expect("le label");
                let le = if le.1 == "+Inf" { f64::INFINITY } else { le.1.parse().unwrap() };
                let rest = labels.iter().filter(|(label, _)| label != "le").cloned().collect();
                series.entry(rest).or_default().push((le, *value));
            }
        }
        assert!(!series.is_empty(), "{name} has no buckets");
        for (labels, buckets) in series {
            let labels: Vec<(&str, &str)> =
                labels.iter().map(|(l, v)| (l.as_str(), v.as_str())).collect();
            for pair in buckets.windows(2) {
                assert!(pair[0].0 < pair[1].0, "{name} {labels:?}: le ascending");
                assert!(pair[0].1 <= pair[1].1, "{name} {labels:?}: cumulative counts");
            }
            let (le, infinite) = *buckets.last().unwrap();
            assert_eq!(le, f64::INFINITY, "{name} {labels:?}: the last bucket is +Inf");
            assert_eq!(self.get(&format!("{name}_count"), &labels), Some(infinite));
            assert!(self.get(&format!("{name}_sum"), &labels).is_some(), "{name}_sum");
        }
    }

    /// The value of the series with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Labels =
            labels.iter().map(|(l, v)| (l.to_string(), v.to_string())).collect();
        wanted.sort();
        self.samples.iter().find(|(n, l, _)| n == name && *l == wanted).map(|(_, _, v)| *v)
    }

    /// Every series of `name`, with their labels.
    fn all(&self, name: &str) -> Vec<(&[(String, String)], f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.as_slice(), *v))
            .collect()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{label="value",...} value`, without a timestamp.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "{line}");
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            let (label, after) = inner.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
            assert!(valid_name(label) && !label.starts_with("__"), "{line}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().unwrap_or_else(|| panic!("unterminated: {line}")) {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("escape {other:?} in {line}"),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            inner = &after[end + 1..];
            if let Some(next) = inner.strip_prefix(',') {
                inner = next;
            } else {
                rest = inner.strip_prefix('}').unwrap_or_else(|| panic!("{line}"));
                break;
            }
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().unwrap_or_else(|_| panic!("value in {line}")),
    };
    labels.sort();
    (name.to_owned(), labels, value)
}

#[tokio::test]
async fn a_scrape_counts_what_was_served() {
    let (dir, daemon, address) = serving();
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    let ctr = |args: &str| Request::Ctr { args: args.into(), reconnect: false };
    let batch = |regions: &[u64]| RegionBatch::from_regions(regions).unwrap();

    // A core log of 125 regions with three marked, and a disk log with one flushed mark.
    assert_eq!(raw.call("good", &ctr("1000 core 8")).await.error, 0);
    assert_eq!(raw.call("good", &Request::Resume).await.error, 0);
    assert_eq!(raw.call("good", &Request::MarkRegion(batch(&[1, 2, 3]))).await.error, 0);
    assert_eq!(raw.call("good", &Request::Flush(RegionBatch::EMPTY)).await.error, 0);
    let path = log_file(dir.path(), "disk.log", 125);
    assert_eq!(
        raw.call("disky", &ctr(&format!("1000 disk {} 8 nosync", path.display()))).await.error,
        0
    );
    assert_eq!(raw.call("disky", &Request::Resume).await.error, 0);
    assert_eq!(raw.call("disky", &Request::Flush(batch(&[9]))).await.error, 0);
    // Refusals: a region past the end, an unknown log, an unknown request type, and a
    // datagram with no request in it (followed by a GET_SYNC_COUNT probe for "good").
    assert_eq!(raw.call("good", &Request::MarkRegion(batch(&[3, 500]))).await.error, -libc::EINVAL);
    assert_eq!(raw.call("nobody", &Request::GetSyncCount).await.error, -libc::ESRCH);
    let (_, mut unknown) = raw.frame("good", &Request::GetSyncCount);
    unknown[36 + 152..36 + 156].copy_from_slice(&99u32.to_ne_bytes());
    raw.send(&unknown).await;
    assert_eq!(raw.recv().await.error, -libc::EINVAL);
    assert!(raw.unanswered(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).await);

    let scrape = scrape(address);
    let sent = [
        ("CTR", 2.0),
        ("RESUME", 2.0),
        ("MARK_REGION", 2.0),
        ("FLUSH", 2.0),
        ("GET_SYNC_COUNT", 2.0),
        ("UNKNOWN", 1.0),
    ];
    let requests = scrape.all("dm_ulogd_requests_total");
    assert_eq!(requests.len(), 18, "every request type has a series");
    for (labels, value) in requests {
        let request = labels[0].1.as_str();
        let expected = sent.iter().find(|(name, _)| *name == request).map_or(0.0, |(_, n)| *n);
        assert_eq!(value, expected, "requests of {request}");
        let count = scrape.get("dm_ulogd_request_duration_seconds_count", &[("request", request)]);
        assert_eq!(count, Some(expected), "replies to {request}");
    }
    let mut errors: Vec<(String, String, f64)> = scrape
        .all("dm_ulogd_request_errors_total")
        .into_iter()
        .map(|(labels, value)| (labels[1].1.clone(), labels[0].1.clone(), value))
        .collect();
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = [("GET_SYNC_COUNT", "ESRCH"), ("MARK_REGION", "EINVAL"), ("UNKNOWN", "EINVAL")];
    let expected: Vec<(String, String, f64)> =
        expected.iter().map(|(r, e)| (r.to_string(), e.to_string(), 1.0)).collect();
    assert_eq!(errors, expected, "(request, errno, count) of every error reply");
    assert_eq!(scrape.get("dm_ulogd_disk_commit_duration_seconds_count", &[]), Some(1.0));
    assert_eq!(scrape.get("dm_ulogd_unreadable_datagrams_total", &[]), Some(1.0));

    for (log_type, count) in [("core", 1.0), ("disk", 1.0), ("clustered-core", 0.0)] {
        assert_eq!(scrape.get("dm_ulogd_logs", &[("type", log_type)]), Some(count), "{log_type}");
    }
    let log = |uuid: &'static str| [("uuid", uuid), ("luid", "77")];
    for (name, good, disky) in [
        ("dm_ulogd_log_regions", 125.0, 125.0),
        ("dm_ulogd_log_regions_in_sync", 0.0, 125.0),
        ("dm_ulogd_log_regions_dirty", 3.0, 1.0),
        ("dm_ulogd_log_regions_recovering", 0.0, 0.0),
        ("dm_ulogd_log_region_size_bytes", 4096.0, 4096.0),
    ] {
        assert_eq!(scrape.get(name, &log("good")), Some(good), "{name} of good");
        assert_eq!(scrape.get(name, &log("disky")), Some(disky), "{name} of disky");
    }
    let device = path.display().to_string();
    let info = [("uuid", "disky"), ("luid", "77"), ("type", "disk"), ("device", &device)];
    assert_eq!(scrape.get("dm_ulogd_log_info", &info), Some(1.0));
    for (state, value) in [("alive", 1.0), ("failed", 0.0), ("flush_failed", 0.0)] {
        let labels = [("uuid", "disky"), ("luid", "77"), ("state", state)];
        assert_eq!(scrape.get("dm_ulogd_log_device_state", &labels), Some(value), "{state}");
    }
    assert_eq!(scrape.all("dm_ulogd_log_device_state").len(), 3, "a core log has no device");
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(scrape.get("dm_ulogd_build_info", &version), Some(1.0));
}

/// How many TCP sockets the process `pid` listens on, as /proc shows them.
fn listening_sockets(pid: u32) -> usize {
    let ours: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A is TCP_LISTEN; field 9 is the socket's inode.
            if fields[3] == "0A" && ours.contains(fields[9]) {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn the_endpoint_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    assert_eq!(started(&daemon), None, "{}", daemon.output());
    assert!(daemon.output().contains("metrics=off"));
    assert_eq!(listening_sockets(daemon.pid()), 0);
    // The same count finds the endpoint where there is one.
    let other = tempfile::tempdir().unwrap();
    let enabled = Daemon::start(other.path(), &["--metrics-listen", "0"]);
    let address = started(&enabled).expect("the endpoint listens");
    assert!(address.ip().is_loopback(), "a bare port listens on 127.0.0.1: {address}");
    assert_eq!(listening_sockets(enabled.pid()), 1);
}

#[test]
fn the_endpoint_answers_only_metrics_reads_and_refuses_what_is_not_http() {
    let (_dir, _daemon, address) = serving();
    let status = |request: &[u8]| http(address, request).status;
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
    assert_eq!(status(b"GET /metrics/x HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
    let post = http(address, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(status(b"\x16\x03\x01 hello\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b"X-Padding: 0123456789abcdef\r\n", 1000).flatten());
    huge.extend(b"\r\n");
    assert_eq!(status(&huge), "HTTP/1.1 431 Request Header Fields Too Large");
    let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
    for i in 0..40 {
        many.extend(format!("X-{i}: 1\r\n").bytes());
    }
    many.extend(b"\r\n");
    assert_eq!(status(&many), "HTTP/1.1 431 Request Header Fields Too Large");
    // And the endpoint still serves.
    let scrape = scrape(address);
    assert_eq!(scrape.get("dm_ulogd_requests_total", &[("request", "CTR")]), Some(0.0));
}

/// What HTTP clients rely on: one kept-alive connection carries request after request,
/// pipelined or not; HEAD gets the head a GET would, without the body; a proxy's
/// absolute-form target and a query string name the same resource.
#[test]
fn the_endpoint_serves_http_as_clients_expect() {
    let (_dir, _daemon, address) = serving();
    let stream = TcpStream::connect(address).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let absolute = format!("GET http://{address}/metrics?from=proxy HTTP/1.1\r\nHost: x\r\n\r\n");
    let requests: [(&[u8], bool); 4] = [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false),
        (b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true),
        (absolute.as_bytes(), false),
        (b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false),
    ];
    for (request, to_head) in requests {
        writer.write_all(request).unwrap();
        let response = read_response(&mut reader, to_head);
        assert_eq!(response.status[9..], *"200 OK", "{:?}", String::from_utf8_lossy(request));
        let length: usize = response.header("content-length").unwrap().parse().unwrap();
        assert!(length > 1000, "a whole scrape is announced");
        if !to_head {
            promtool_check_metrics(&response.body);
            Exposition::parse(&response.body);
        }
    }
    // Pipelined: three requests written at once, three responses in order.
    writer.write_all(&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2)).unwrap();
    writer.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader, false).status, "HTTP/1.1 200 OK");
    assert_eq!(read_response(&mut reader, false).status, "HTTP/1.1 200 OK");
    let last = read_response(&mut reader, false);
    assert_eq!(last.status, "HTTP/1.1 404 Not Found");
    assert_eq!(last.header("connection"), Some("close"));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the server closed as asked");
}

/// Connections that say nothing, say half a request, or ask and never read the answer take
/// nothing from a scraper: 140 of them (a scrape got nothing for 60 s behind 8 before).
#[test]
fn idle_and_stalled_connections_do_not_starve_a_scrape() {
    let (_dir, daemon, address) = serving();
    let mut held = Vec::new();
    for i in 0..140 {
        let mut stream = TcpStream::connect(address).unwrap();
        match i % 3 {
            0 => {}
            1 => stream.write_all(b"GET /metr").unwrap(),
            _ => stream.write_all(&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50)).unwrap(),
        }
        held.push(stream);
    }
    let scrape = scrape(address);
    assert_eq!(scrape.get("dm_ulogd_requests_total", &[("request", "CTR")]), Some(0.0));
    assert!(daemon.output().lines().all(|line| !line.contains("ERROR")), "{}", daemon.output());
}

/// OpenMetrics, which Prometheus asks for first, is served to whoever names it in Accept,
/// and the reference parser (Python's prometheus_client) reads it whole.
#[tokio::test]
async fn openmetrics_is_served_to_scrapers_that_ask_and_parses() {
    let (dir, daemon, address) = serving();
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    let ctr = Request::Ctr { args: "1000 core 8".into(), reconnect: false };
    assert_eq!(raw.call("open", &ctr).await.error, 0);
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n");
    let response = http(address, request.as_bytes());
    assert_eq!(response.status, "HTTP/1.1 200 OK");
    let content_type = response.header("content-type");
    assert_eq!(content_type, Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(response.body.ends_with("# EOF\n"));
    let parser = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(family.type, sample.name, sample.labels.get("request", ""), int(sample.value))
"#;
    let parsed = std::process::Command::new("/usr/bin/python3")
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(response.body.as_bytes());
    let printed = String::from_utf8_lossy(&parsed.stdout);
    assert!(parsed.status.success(), "{printed}");
    assert!(printed.lines().any(|l| l == "counter dm_ulogd_requests_total CTR 1"), "{printed}");
    assert!(printed.lines().any(|l| l == "gauge dm_ulogd_log_regions  125"), "{printed}");
}

#[tokio::test]
async fn an_address_in_use_is_one_error_line_and_the_daemon_serves_on() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &["--metrics-listen", &address]);
    assert_eq!(started(&daemon), None);
    let output = daemon.output();
    let errors: Vec<&str> = output.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{output}");
    assert!(errors[0].contains("metrics endpoint unavailable") && errors[0].contains(&address));
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    let ctr = Request::Ctr { args: "1000 core 8".into(), reconnect: false };
    assert_eq!(raw.call("served", &ctr).await.error, 0);
}

/// A scrape with a disk log served passes `promtool check metrics` and has the `process_*`
/// families exporters serve, and every metric that the
/// shipped Grafana dashboard and alert rules query is one the endpoint serves; the rules
/// pass `promtool check rules` and their unit tests (`promtool test rules`).
#[tokio::test]
async fn promtool_accepts_the_scrape_and_the_dashboards_metrics_exist() {
    let (dir, daemon, address) = serving();
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    let path = log_file(dir.path(), "disk.log", 125);
    let ctr = Request::Ctr { args: format!("1000 disk {} 8", path.display()), reconnect: false };
    assert_eq!(raw.call("dash", &ctr).await.error, 0);
    assert_eq!(raw.call("dash", &Request::Resume).await.error, 0);
    assert_eq!(
        raw.call("dash", &Request::Flush(RegionBatch::from_regions(&[3]).unwrap())).await.error,
        0
    );
    assert_eq!(raw.call("nobody", &Request::GetSyncCount).await.error, -libc::ESRCH);
    let body = http(address, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").body;

    promtool_check_metrics(&body);
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/dm-ulogd.rules.yml"))
        .output()
        .unwrap();
    assert!(promtool.status.success(), "{}", String::from_utf8_lossy(&promtool.stdout));
    // And the alerts fire on what should fire them, and only then.
    promtool = std::process::Command::new("promtool")
        .args(["test", "rules", "dm-ulogd.rules.test.yml"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/alerts"))
        .output()
        .unwrap();
    assert!(promtool.status.success(), "{}", String::from_utf8_lossy(&promtool.stdout));

    let served: HashSet<&str> =
        body.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(served.contains(process), "no {process} in:\n{body}");
    }
    for file in ["dist/dm-ulogd.dashboard.json", "dist/dm-ulogd.rules.yml"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        let queried = metric_names(&text);
        assert!(!queried.is_empty(), "{file} queries no dm_ulogd metric");
        for name in queried {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| served.contains(f)))
                .unwrap_or(&name);
            assert!(served.contains(family), "{file} queries {name}, which no scrape serves");
        }
    }
}

/// Every `dm_ulogd_…` identifier in `text`.
fn metric_names(text: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("dm_ulogd_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Runs a command with `input` on its standard input.
trait WithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl WithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self.stdout(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}
