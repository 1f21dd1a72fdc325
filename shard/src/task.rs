//! Runtime services: spawning, sleeping, timeouts and the clocks — the seam between the broker and its
//! runtime.
//!
//! Broker code spawns, sleeps, times out and reads the time only through this module (never
//! `glommio::*`, `Instant::now()` or `SystemTime::now()` directly). In production each function goes straight
//! to glommio or `std`; the only added cost is one thread-local check (is a simulation installed on this
//! thread?). When a [`crate::simulation::Simulation`] is installed on the calling thread, they go to it
//! instead: tasks run on its executor and time is its manual clock, so handlers, partitions and group
//! coordinators run in ordinary `cargo test` unit tests, deterministically, without glommio.
//!
//! Where a function decides is stated on each: `spawn`, `now` and `wall_clock_ms` at the call; the
//! `async` ones at their first poll (where they are awaited).

use crate::simulation::{self, Sleep};
use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `future` on the current shard (or simulation), detached: it lives until it completes.
pub fn spawn<F: Future<Output = ()> + 'static>(future: F) {
    match simulation::current() {
        None => {
            glommio::spawn_local(future).detach();
        }
        Some(simulation) => simulation.spawn(Box::pin(future)),
    }
}

/// Runs `work` on a thread of the runtime's blocking pool (glommio's `spawn_blocking`), so the shard's
/// thread never waits in a system call that may block (fsync of a small file, name resolution). Under a
/// simulation it runs inline, at the first poll.
pub async fn spawn_blocking<R, F>(work: F) -> R
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    match simulation::current() {
        None => glommio::executor().spawn_blocking(work).await,
        Some(_) => work(),
    }
}

/// Completes after `duration`.
pub async fn sleep(duration: Duration) {
    match simulation::current() {
        None => {
            glommio::timer::sleep(duration).await;
        }
        Some(simulation) => {
            let deadline = simulation.now() + duration;
            Sleep::until(simulation, deadline).await;
        }
    }
}

/// Sleeps until `deadline` (returns at once if it has passed).
pub async fn sleep_until(deadline: Instant) {
    match simulation::current() {
        None => {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !remaining.is_zero() {
                glommio::timer::sleep(remaining).await;
            }
        }
        Some(simulation) => Sleep::until(simulation, deadline).await,
    }
}

/// `Some(output)` if `future` finished within `duration`, else `None` (and `future` is dropped). When both
/// are ready at the same poll, the future wins.
pub async fn timeout<T, F: Future<Output = T>>(duration: Duration, future: F) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        sleep(duration).await;
        None
    })
    .await
}

/// The monotonic clock: `Instant::now()`, or the simulation's clock.
#[inline]
pub fn now() -> Instant {
    simulation::with_current(|simulation| simulation.now()).unwrap_or_else(Instant::now)
}

/// The wall clock in milliseconds since the Unix epoch (0 if the system clock is before it), or the
/// simulation's wall clock.
#[inline]
pub fn wall_clock_ms() -> i64 {
    simulation::with_current(|simulation| simulation.wall_clock_ms())
        .unwrap_or_else(system_wall_clock_ms)
}

fn system_wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
