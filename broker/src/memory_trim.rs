//! Returning freed memory to the operating system.
//!
//! The broker uses the system allocator (glibc malloc), which keeps freed chunks in its arenas: after a
//! client that held tens of MiB of responses leaves, the memory is free for the broker but still counts
//! in its RSS. Every [`TRIM_INTERVAL`], if connections have closed since the last look, one shard asks
//! malloc to give free pages back (`malloc_trim(0)`, which also releases whole free pages inside arenas).

use crate::connection_limits::ConnectionRegistry;
use std::sync::Arc;
use std::time::Duration;

pub const TRIM_INTERVAL: Duration = Duration::from_secs(5);

/// Runs for the life of the shard that calls it (one shard is enough: the allocator is per process).
pub async fn return_freed_memory(registry: Arc<ConnectionRegistry>) {
    let mut closed_seen = registry.closed_connections();
    loop {
        shard::task::sleep(TRIM_INTERVAL).await;
        let closed = registry.closed_connections();
        if closed != closed_seen {
            closed_seen = closed;
            trim();
        }
    }
}

/// Gives free allocator pages back to the operating system; true when some were.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
