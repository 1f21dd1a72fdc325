//! The `broker` binary: parse the configuration, prepare the data directory, start one shard per core,
//! and shut down cleanly on SIGTERM / SIGINT (flush, snapshot, clean-shutdown marker).

use broker::config::{BrokerConfig, Cli};
use broker::metadata::ClusterMetadata;
use broker::server::{run_shard, QuorumStart, ShardStart};
use clap::Parser;
use shard::MeshBuilder;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request decoding reserves no memory for element counts a frame cannot hold (see `net::decode_guard`).
#[global_allocator]
static ALLOCATOR: net::GuardedAllocator = net::GuardedAllocator::new();

/// Present in the data directory only after a clean shutdown; removed at start-up.
const CLEAN_SHUTDOWN_MARKER: &str = ".clean_shutdown";
const LOCK_FILE: &str = ".lock";

fn main() -> ExitCode {
    // Fail-stop: a panic on any shard ends the whole process (after the usual report), so a broker is
    // never left half alive, its dead shard's listener taking connections nobody accepts. Acknowledged data
    // is on disk; the restart recovers as after kill -9.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("broker: a thread panicked; aborting the process");
        std::process::abort();
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("broker: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    if !net::decode_guard::installed() {
        return Err("built without the decode guard's allocator (net::GuardedAllocator)".into());
    }
    let config = BrokerConfig::from_cli(Cli::parse()).map_err(|error| error.to_string())?;
    let memlock = shard::raise_memlock_limit().map_err(|error| error.to_string())?;
    log_descriptor_budget(&config);
    std::fs::create_dir_all(&config.data_dir).map_err(|error| {
        format!(
            "cannot create data directory {}: {error}",
            config.data_dir.display()
        )
    })?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let quorum = open_quorum(&config)?;
    let mut metadata = load_metadata(&config)?;
    metadata.node_id = config.node_id;
    if !config.is_cluster_of_one() {
        // Leadership may have moved while this node was down: nothing is served as led here until the
        // quorum's image is published (a cluster of one leads everything, so its file is current).
        metadata.forget_leaders();
    }
    let marker = config.data_dir.join(CLEAN_SHUTDOWN_MARKER);
    let clean_start = marker.exists();
    if clean_start {
        std::fs::remove_file(&marker)
            .map_err(|error| format!("cannot remove {}: {error}", marker.display()))?;
        sync_dir(&config.data_dir);
    }
    tracing::info!(
        listen = %config.listen,
        advertise = %format!("{}:{}", config.advertise_host, config.advertise_port),
        data_dir = %config.data_dir.display(),
        shards = config.shards,
        node_id = config.node_id,
        topics = metadata.topics.len(),
        clean_start,
        memlock_bytes = memlock,
        "starting broker"
    );

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while shutting down exits at once (status 1).
        signal_hook::flag::register_conditional_shutdown(signal, 1, shutdown.clone())
            .and_then(|_| signal_hook::flag::register(signal, shutdown.clone()))
            .map_err(|error| format!("cannot install signal handler: {error}"))?;
    }
    if config.process_roles.broker {
        ensure_listen_address_free(&config)?;
    } else if !metadata.topics.is_empty() {
        return Err(format!(
            "process_roles: {} holds topics, and a controller-only node holds none; start it as \
             broker,controller, or give it a directory of its own",
            config.data_dir.display()
        ));
    }
    if let Some(address) = config.controller_listen {
        shard::net::ensure_address_free(address).map_err(|error| {
            format!("cannot listen for the quorum on {address}: {error} (another process listens there)")
        })?;
    }
    let config = Arc::new(config);
    let metadata = Arc::new(metadata);
    let mesh = MeshBuilder::new(config.shards)
        .map_err(|error| format!("cannot create the shard mesh: {error}"))?;
    let ready = Arc::new(AtomicUsize::new(0));
    let quorum = Arc::new(std::sync::Mutex::new(Some(quorum)));
    let body = {
        let (config, shutdown, ready) = (config.clone(), shutdown.clone(), ready.clone());
        move |id| {
            run_shard(
                id,
                ShardStart {
                    config: config.clone(),
                    metadata: metadata.clone(),
                    mesh: mesh.clone(),
                    clean_start,
                    shutdown: shutdown.clone(),
                    ready: ready.clone(),
                    quorum: quorum.clone(),
                },
            )
        }
    };
    let shards = shard::start_shards(config.shards, body).map_err(|error| error.to_string())?;
    supervise(&shards, &config, &ready, &shutdown)?;
    shards.join().map_err(|error| error.to_string())?;
    if ready.load(Ordering::SeqCst) < config.shards {
        return Err("not every shard started; see the errors above".into());
    }
    std::fs::write(&marker, b"")
        .map_err(|error| format!("cannot write {}: {error}", marker.display()))?;
    sync_dir(&config.data_dir);
    tracing::info!("clean shutdown complete");
    Ok(())
}

/// How often the main thread looks at the shards while they run.
const SUPERVISION_INTERVAL: Duration = Duration::from_millis(20);

/// Watches the running shards from the main thread until all have returned. Start-up must complete within
/// `startup_timeout` and a requested shutdown within `shutdown_timeout`; past either the process exits with
/// an error instead of hanging (what the shards already flushed stays flushed; the next start recovers the
/// rest, as after a crash).
fn supervise(
    shards: &shard::RunningShards,
    config: &BrokerConfig,
    ready: &AtomicUsize,
    shutdown: &AtomicBool,
) -> Result<(), String> {
    let started = Instant::now();
    let mut shutdown_requested: Option<Instant> = None;
    let mut announced_ready = false;
    while shards.finished() < shards.count() {
        std::thread::sleep(SUPERVISION_INTERVAL);
        let serving = ready.load(Ordering::SeqCst);
        let stopping = shutdown.load(Ordering::SeqCst);
        if !announced_ready {
            // The deadline is checked before readiness: a start is in time only if it was seen complete
            // before the deadline (with a tiny deadline the first look is already too late).
            if !stopping && started.elapsed() > config.startup_timeout {
                exit_now(&format!(
                    "start-up did not complete within {} ms ({serving} of {} shards serving); exiting \
                     (raise startup_timeout_ms if recovery of a large data directory needs longer)",
                    config.startup_timeout.as_millis(),
                    shards.count()
                ));
            }
            if serving == shards.count() {
                announced_ready = true;
                tracing::info!(
                    shards = serving,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    serves_clients = config.process_roles.broker,
                    "broker ready"
                );
            }
        }
        if stopping {
            let since = *shutdown_requested.get_or_insert_with(Instant::now);
            if since.elapsed() > config.shutdown_timeout {
                exit_now(&format!(
                    "shutdown did not complete within {} ms ({} of {} shards finished); exiting",
                    config.shutdown_timeout.as_millis(),
                    shards.finished(),
                    shards.count()
                ));
            }
        }
    }
    Ok(())
}

/// Exits the process at once with status 1, after logging why (shard threads are not waited for).
fn exit_now(message: &str) -> ! {
    tracing::error!("{message}");
    eprintln!("broker: {message}");
    std::process::exit(1)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and logs how descriptors are shared.
fn log_descriptor_budget(config: &BrokerConfig) {
    let (soft, hard) = broker::descriptor_budget::raise_open_files_limit();
    let budget = broker::descriptor_budget::DescriptorBudget::of(config);
    tracing::info!(
        soft,
        hard,
        reserved = budget.reserved,
        max_connections = config.effective_max_connections(),
        max_partitions = budget.partitions,
        segment_files_per_shard =
            broker::descriptor_budget::segment_files_per_shard(&budget, config.shards),
        "file-descriptor limit"
    );
    if budget.partitions == 0 {
        tracing::warn!(
            "max_connections leaves no descriptors for partitions: topic creation will be refused"
        );
    }
}

/// Checks the directory's identity (`meta.properties`: formatted for this node id) and opens the metadata
/// quorum's log: a voter's (combined or controller-only), or a broker-only node's, which follows the
/// voters' log as a learner.
fn open_quorum(config: &BrokerConfig) -> Result<QuorumStart, String> {
    if !config.process_roles.broker && config.is_cluster_of_one() {
        return Err(
            "process_roles: a controller-only node alone would be a cluster without brokers; name \
             the quorum's voters (controller_quorum_voters), some of them brokers"
                .into(),
        );
    }
    let properties = broker::meta_properties::MetaProperties::load(&config.data_dir)
        .map_err(|error| error.to_string())?;
    if let Some(properties) = &properties {
        properties
            .check_node_id(&config.data_dir, config.node_id)
            .map_err(|error| error.to_string())?;
    }
    let mut voters: Vec<u64> = config
        .voter_ids()
        .into_iter()
        .map(broker::quorum::raft_id_of)
        .collect();
    voters.sort_unstable();
    let log = broker::quorum::log_store::QuorumLog::open(&config.data_dir, &voters)
        .map_err(|error| error.to_string())?;
    Ok(QuorumStart {
        log,
        cluster_id: properties.map(|properties| properties.cluster_id),
    })
}

/// The cluster metadata, checked against the data directory (leftovers of deleted topics removed, data
/// the metadata cannot account for refused or moved aside) and fitted to this process's shards.
fn load_metadata(config: &BrokerConfig) -> Result<ClusterMetadata, String> {
    broker::data_dir::load_metadata(&config.data_dir, config.shards, config.recover_unknown_data)
        .map_err(|error| error.to_string())
}

/// Refuses to start on an address another process listens on (the shards' SO_REUSEPORT sockets would
/// otherwise join it and split its clients).
fn ensure_listen_address_free(config: &BrokerConfig) -> Result<(), String> {
    shard::net::ensure_address_free(config.listen).map_err(|error| {
        format!(
            "cannot listen on {}: {error} (another process, maybe another broker, listens there)",
            config.listen
        )
    })
}

/// Holds an exclusive lock on the data directory for the life of the process.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "data directory {} is in use by another broker",
            dir.display()
        ));
    }
    Ok(file)
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}
