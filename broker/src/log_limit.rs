//! Rate-limited logging for lines a client can trigger at will (malformed requests, refused or broken
//! connections): without a limit, 400k bad requests wrote 102 MB of log.
//!
//! A [`LogLimiter`] lets `burst` lines through per `window`; the lines it holds back are counted and the
//! count is reported with the next line let through (`suppressed = N`). One limiter per kind of line,
//! shared by every shard (a `static`); the lock is taken only on these error paths.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogLimiter {
    window: Duration,
    burst: u32,
    state: Mutex<LimiterState>,
}

struct LimiterState {
    window_start: Option<Instant>,
    logged_in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(window: Duration, burst: u32) -> LogLimiter {
        LogLimiter {
            window,
            burst,
            state: Mutex::new(LimiterState {
                window_start: None,
                logged_in_window: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(lines suppressed since the last one logged)` when this line may be logged, else `None`.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window_over = state
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if window_over {
            state.window_start = Some(now);
            state.logged_in_window = 0;
        }
        if state.logged_in_window < self.burst {
            state.logged_in_window += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

/// `tracing::warn!` through a [`LogLimiter`]: the line gets a `suppressed` field with the count of lines
/// held back before it.
#[macro_export]
macro_rules! warn_limited {
    ($limiter:expr, $($rest:tt)+) => {
        if let Some(suppressed) = $limiter.admit() {
            tracing::warn!(suppressed, $($rest)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_a_count_of_what_was_held_back() {
        let limiter = LogLimiter::new(Duration::from_secs(10), 2);
        let start = Instant::now();
        assert_eq!(limiter.admit_at(start), Some(0));
        assert_eq!(limiter.admit_at(start), Some(0));
        for _ in 0..1000 {
            assert_eq!(limiter.admit_at(start + Duration::from_secs(1)), None);
        }
        let next_window = start + Duration::from_secs(10);
        assert_eq!(limiter.admit_at(next_window), Some(1000));
        assert_eq!(limiter.admit_at(next_window), Some(0));
        assert_eq!(limiter.admit_at(next_window), None);
    }
}
