//! Starting the shards.

use std::future::Future;

/// Index of a shard (0..N). Shard 0 also runs the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub usize);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "RLIMIT_MEMLOCK is {have} bytes (hard limit {hard}); io_uring needs at least {need} bytes. Raise it \
         (e.g. `ulimit -l unlimited`, LimitMEMLOCK=infinity in the systemd unit, or memlock in \
         /etc/security/limits.conf)"
    )]
    MemlockTooLow { have: u64, hard: u64, need: u64 },
    #[error("could not start shard {shard}: {message}")]
    Spawn { shard: usize, message: String },
    #[error("shard {shard} panicked")]
    Panicked { shard: usize },
}

/// What glommio refuses to start below (see glommio's reactor).
pub const MIN_MEMLOCK_BYTES: u64 = 512 * 1024;

/// Raises the soft RLIMIT_MEMLOCK to the hard limit; errors clearly if that is still below what the
/// io_uring reactor needs. Returns the soft limit now in force.
pub fn raise_memlock_limit() -> Result<u64, RuntimeError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit);
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    if limit.rlim_cur < MIN_MEMLOCK_BYTES {
        return Err(RuntimeError::MemlockTooLow {
            have: limit.rlim_cur,
            hard: limit.rlim_max,
            need: MIN_MEMLOCK_BYTES,
        });
    }
    Ok(limit.rlim_cur)
}

/// The CPUs this process may run on, in order.
pub fn online_cores() -> Vec<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => ids.into_iter().map(|id| id.id).collect(),
        _ => (0..std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1))
            .collect(),
    }
}

/// Starts `shards` executors, shard i pinned to the i-th online core (wrapping when there are more shards
/// than cores), each running `body(ShardId)`. Blocks until all of them return.
pub fn start_shards<G, F>(shards: usize, body: G) -> Result<(), RuntimeError>
where
    G: Fn(ShardId) -> F + Send + Clone + 'static,
    F: Future<Output = ()> + 'static,
{
    assert!(shards > 0, "at least one shard");
    let cores = online_cores();
    let mut handles = Vec::with_capacity(shards);
    for index in 0..shards {
        let body = body.clone();
        let core = cores[index % cores.len()];
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(core))
            .name(&format!("shard-{index}"))
            .spawn(move || body(ShardId(index)))
            .map_err(|error| RuntimeError::Spawn {
                shard: index,
                message: error.to_string(),
            })?;
        handles.push(handle);
    }
    for (index, handle) in handles.into_iter().enumerate() {
        handle
            .join()
            .map_err(|_| RuntimeError::Panicked { shard: index })?;
    }
    Ok(())
}
