//! What the engine counts for operators: requests and error replies by request type, how
//! long each request took to answer, and how long disk commits took.
//!
//! Every request passes through here twice (received, answered), on whichever thread serves
//! its log, so the counters are plain atomics in fixed arrays indexed by request type and
//! errno: no lock, no allocation, no map lookup per request. Readers take a snapshot at
//! scrape time; what the logs hold (regions, dirty, sync) is not counted here but asked of
//! the log actors then (`Observer::status`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::wire::{Errno, RequestType};

/// Upper bounds of the latency histograms' buckets, in nanoseconds: from a request answered
/// from memory (tens of µs) to the kernel's own timeout (15 s), after which it resends.
const BOUNDS_NANOS: [u64; 20] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    15_000_000_000,
];

/// A slot per request type, and a last one for a type the protocol does not define.
const REQUEST_SLOTS: usize = RequestType::ALL.len() + 1;

/// A slot per Linux errno (1 to 133, EHWPOISON); slot 0 takes any value outside that range.
const ERRNO_SLOTS: usize = 134;

/// A latency histogram with fixed buckets.
pub(crate) struct Histogram {
    /// Observations per bucket, not cumulative; the last bucket is above every bound.
    buckets: [AtomicU64; BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A histogram as read at one moment, bucket by bucket as prometheus-client takes it (its
/// encoder makes the counts cumulative).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations above the previous bound and at or below this
    /// one)`, ascending; the last bound is infinity.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, count)| count).sum()
    }
}

impl Histogram {
    fn new() -> Histogram {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_nanos: zero() }
    }

    fn observe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|bound| *bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let bounds = BOUNDS_NANOS.iter().map(|nanos| *nanos as f64 / 1e9).chain([f64::INFINITY]);
        let buckets =
            bounds.zip(&self.buckets).map(|(bound, count)| (bound, count.load(Ordering::Relaxed)));
        HistogramSnapshot {
            buckets: buckets.collect(),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// The engine's counters; one per engine, shared by its actors.
pub struct Metrics {
    received: [AtomicU64; REQUEST_SLOTS],
    errors: [[AtomicU64; ERRNO_SLOTS]; REQUEST_SLOTS],
    durations: [Histogram; REQUEST_SLOTS],
    commits: Histogram,
    unreadable: AtomicU64,
    shadow_failures: AtomicU64,
}

/// One request type's counters, as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestCounts {
    /// The kernel's name of the type (`FLUSH`), or `UNKNOWN` for a type it does not define.
    pub request: &'static str,
    pub received: u64,
    /// Error replies by errno; only the errnos that occurred.
    pub errors: Vec<(Errno, u64)>,
    /// From the request's arrival to its reply's sending.
    /// Its count is of replies, so it trails `received` while requests are in flight.
    pub duration: HistogramSnapshot,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            received: std::array::from_fn(|_| zero()),
            errors: std::array::from_fn(|_| std::array::from_fn(|_| zero())),
            durations: std::array::from_fn(|_| Histogram::new()),
            commits: Histogram::new(),
            unreadable: zero(),
            shadow_failures: zero(),
        }
    }
}

impl Metrics {
    /// A request with a readable header arrived.
    pub(crate) fn received(&self, kind: Option<RequestType>) {
        self.received[request_slot(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// A request's reply is about to be sent, an error reply if `errno`; `since` is its
    /// arrival. Counted before the send, so that a client holding the reply finds it counted.
    pub(crate) fn answered(&self, kind: Option<RequestType>, errno: Option<Errno>, since: Instant) {
        let slot = request_slot(kind);
        self.durations[slot].observe(since.elapsed());
        if let Some(errno) = errno {
            self.errors[slot][errno_slot(errno)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A datagram arrived without a request header that could be read.
    pub(crate) fn unreadable(&self) {
        self.unreadable.fetch_add(1, Ordering::Relaxed);
    }

    /// Writing a log's shadow failed; the log writes it afresh at its next change.
    pub(crate) fn shadow_failed(&self) {
        self.shadow_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A disk log's commit became durable (or failed) after `took`.
    pub(crate) fn committed(&self, took: Duration) {
        self.commits.observe(took);
    }

    /// Every request type's counters, in the protocol's order, `UNKNOWN` last.
    pub fn requests(&self) -> Vec<RequestCounts> {
        let names = RequestType::ALL.iter().map(|kind| kind.name()).chain(["UNKNOWN"]);
        names
            .enumerate()
            .map(|(slot, request)| RequestCounts {
                request,
                received: self.received[slot].load(Ordering::Relaxed),
                errors: (0..ERRNO_SLOTS)
                    .map(|errno| (errno, self.errors[slot][errno].load(Ordering::Relaxed)))
                    .filter(|(_, count)| *count > 0)
                    .map(|(errno, count)| (Errno(errno as i32), count))
                    .collect(),
                duration: self.durations[slot].snapshot(),
            })
            .collect()
    }

    /// Commit times of every disk log: changed blocks written and made durable.
    pub fn commits(&self) -> HistogramSnapshot {
        self.commits.snapshot()
    }

    /// Datagrams that had no readable request header.
    pub fn unreadable_datagrams(&self) -> u64 {
        self.unreadable.load(Ordering::Relaxed)
    }

    /// Failed writes of a shadow (state_dir full, out of file descriptors, ...).
    pub fn shadow_write_failures(&self) -> u64 {
        self.shadow_failures.load(Ordering::Relaxed)
    }
}

fn zero() -> AtomicU64 {
    AtomicU64::new(0)
}

fn request_slot(kind: Option<RequestType>) -> usize {
    kind.map_or(REQUEST_SLOTS - 1, |kind| kind as usize - 1)
}

fn errno_slot(errno: Errno) -> usize {
    usize::try_from(errno.0).ok().filter(|slot| *slot < ERRNO_SLOTS).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_micros(10)); // on the first bound: in it
        histogram.observe(Duration::from_micros(11));
        histogram.observe(Duration::from_secs(20)); // past the last bound
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[0], (0.00001, 1));
        assert_eq!(snapshot.buckets[1], (0.000025, 1));
        assert_eq!(snapshot.buckets[BOUNDS_NANOS.len() - 1], (15.0, 0));
        assert_eq!(snapshot.buckets[BOUNDS_NANOS.len()], (f64::INFINITY, 1));
        assert_eq!(snapshot.count(), 3);
        assert!((snapshot.sum_seconds - 20.000021).abs() < 1e-9);
    }

    #[test]
    fn requests_and_errors_are_counted_by_type_and_errno() {
        let metrics = Metrics::default();
        let now = Instant::now();
        metrics.received(Some(RequestType::Flush));
        metrics.answered(Some(RequestType::Flush), Some(Errno::EIO), now);
        metrics.received(Some(RequestType::Ctr));
        metrics.answered(Some(RequestType::Ctr), None, now);
        metrics.received(None);
        metrics.answered(None, Some(Errno::EINVAL), now);
        metrics.answered(None, Some(Errno(-5)), now);
        let requests = metrics.requests();
        assert_eq!(requests.len(), 18);
        let find = |name: &str| requests.iter().find(|r| r.request == name).unwrap();
        assert_eq!(find("FLUSH").received, 1);
        assert_eq!(find("FLUSH").errors, vec![(Errno::EIO, 1)]);
        assert_eq!(find("FLUSH").duration.count(), 1);
        assert_eq!(find("CTR").errors, vec![]);
        assert_eq!(find("UNKNOWN").errors, vec![(Errno(0), 1), (Errno::EINVAL, 1)]);
        assert_eq!(find("DTR").received, 0);
    }
}
