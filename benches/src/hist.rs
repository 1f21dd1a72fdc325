//! Latency recording: HdrHistogram in microseconds, 3 significant digits, 1 µs .. 60 s.
//! Each thread records into its own `Recorder` (uncontended mutex); the 1 s collector swaps the
//! interval histogram out and merges it into the interval log and the run totals.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Mutex;

pub const MAX_US: u64 = 60_000_000;
pub const SIGFIG: u8 = 3;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, SIGFIG).expect("histogram bounds")
}

/// Records a latency in µs, clamped to the histogram's range (values above 60 s count as 60 s).
#[inline]
pub fn record(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, MAX_US));
}

pub struct Recorder {
    cur: Mutex<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            cur: Mutex::new(new_hist()),
        }
    }
}

impl Recorder {
    #[inline]
    pub fn record_us(&self, us: u64) {
        let mut g = self.cur.lock().unwrap();
        record(&mut g, us);
    }
    /// Adds this interval's values to `into` and resets.
    pub fn drain_into(&self, into: &mut Histogram<u64>) {
        let mut g = self.cur.lock().unwrap();
        if !g.is_empty() {
            let _ = into.add(&*g);
            g.reset();
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

pub const PCT_NAMES: [&str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            p9999_ms: ms(h.value_at_quantile(0.9999)),
            max_ms: ms(h.max()),
        }
    }
    pub fn values(&self) -> [f64; 6] {
        [
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.p9999_ms,
            self.max_ms,
        ]
    }
}
