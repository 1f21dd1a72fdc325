//! Starting the shards.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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

/// A per-process resource limit the broker raises at start.
#[derive(Clone, Copy, Debug)]
pub enum ResourceLimit {
    /// RLIMIT_MEMLOCK: what io_uring rings may lock.
    LockedMemory,
    /// RLIMIT_NOFILE: open file descriptors.
    OpenFiles,
}

/// Raises the soft limit of `resource` to its hard limit where allowed; returns (soft, hard) as they are
/// afterwards, or `None` if the limit cannot be read.
pub fn raise_soft_limit(resource: ResourceLimit) -> Option<(u64, u64)> {
    let resource = match resource {
        ResourceLimit::LockedMemory => libc::RLIMIT_MEMLOCK,
        ResourceLimit::OpenFiles => libc::RLIMIT_NOFILE,
    };
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct.
    unsafe {
        if libc::getrlimit(resource, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(resource, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    Some((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft RLIMIT_MEMLOCK to the hard limit; errors clearly if that is still below what the
/// io_uring reactor needs. Returns the soft limit now in force.
pub fn raise_memlock_limit() -> Result<u64, RuntimeError> {
    let (soft, hard) = raise_soft_limit(ResourceLimit::LockedMemory).unwrap_or((0, 0));
    if soft < MIN_MEMLOCK_BYTES {
        return Err(RuntimeError::MemlockTooLow {
            have: soft,
            hard,
            need: MIN_MEMLOCK_BYTES,
        });
    }
    Ok(soft)
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

/// The executors of a running broker: the main thread supervises them (start-up deadline, shutdown grace)
/// instead of blocking in a join it cannot bound.
pub struct RunningShards {
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
    finished: Arc<AtomicUsize>,
}

impl RunningShards {
    /// How many shards' bodies have returned.
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// Waits for every executor thread to end (call once [`RunningShards::finished`] says they are done).
    pub fn join(self) -> Result<(), RuntimeError> {
        for (index, handle) in self.handles.into_iter().enumerate() {
            handle
                .join()
                .map_err(|_| RuntimeError::Panicked { shard: index })?;
        }
        Ok(())
    }
}

/// Starts `shards` executors, shard i pinned to the i-th online core (wrapping when there are more shards
/// than cores), each running `body(ShardId)`. Returns at once; see [`RunningShards`].
pub fn start_shards<G, F>(shards: usize, body: G) -> Result<RunningShards, RuntimeError>
where
    G: Fn(ShardId) -> F + Send + Clone + 'static,
    F: Future<Output = ()> + 'static,
{
    assert!(shards > 0, "at least one shard");
    let cores = online_cores();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(shards);
    for index in 0..shards {
        let body = body.clone();
        let core = cores[index % cores.len()];
        let done = finished.clone();
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(core))
            .name(&format!("shard-{index}"))
            .spawn(move || async move {
                body(ShardId(index)).await;
                done.fetch_add(1, Ordering::SeqCst);
            })
            .map_err(|error| RuntimeError::Spawn {
                shard: index,
                message: error.to_string(),
            })?;
        handles.push(handle);
    }
    Ok(RunningShards { handles, finished })
}
