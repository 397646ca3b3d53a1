//! Counters kept as the node works, for `GET /metrics`: HTTP answers by status class, and
//! bundle applies with their durations. Lock-free; read when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the apply-time histogram's buckets.
pub(crate) const APPLY_BUCKETS: [f64; 11] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// HTTP answers by status class (1xx to 5xx).
#[derive(Debug, Default)]
pub(crate) struct HttpCounts([AtomicU64; 5]);

impl HttpCounts {
    /// Counts an HTTP answer.
    pub(crate) fn record(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Answers by class: 1xx first.
    pub(crate) fn by_class(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Bundle applies and how long each took.
#[derive(Debug, Default)]
pub(crate) struct ApplyTimes {
    /// Applies by bucket of [`APPLY_BUCKETS`] (not cumulative), the last one beyond.
    buckets: [AtomicU64; 12],
    /// Sum of apply times, in microseconds.
    micros: AtomicU64,
    /// Bundles applied (this run).
    count: AtomicU64,
}

impl ApplyTimes {
    /// Records one bundle applied in `took`.
    pub(crate) fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket =
            APPLY_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(APPLY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies per bucket (not cumulative; the last is beyond every bound).
    pub(crate) fn buckets(&self) -> [u64; 12] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// The sum of apply times, in seconds.
    pub(crate) fn seconds(&self) -> f64 {
        self.micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Bundles applied.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
