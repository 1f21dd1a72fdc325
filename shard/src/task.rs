//! Runtime services: spawning, sleeping, timeouts.

use std::future::Future;
use std::time::Duration;

/// Runs `future` on the current shard, detached: it lives until it completes.
pub fn spawn<F: Future<Output = ()> + 'static>(future: F) {
    glommio::spawn_local(future).detach();
}

pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// Sleeps until `deadline` (returns at once if it has passed).
pub async fn sleep_until(deadline: std::time::Instant) {
    let remaining = deadline.saturating_duration_since(std::time::Instant::now());
    if !remaining.is_zero() {
        glommio::timer::sleep(remaining).await;
    }
}

/// `Some(output)` if `future` finished within `duration`, else `None` (and `future` is dropped).
pub async fn timeout<T, F: Future<Output = T>>(duration: Duration, future: F) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(duration).await;
        None
    })
    .await
}

/// The monotonic clock (temporary; the seam branch replaces this).
pub fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Milliseconds since the Unix epoch (temporary; the seam branch replaces this).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
