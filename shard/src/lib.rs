//! The runtime: one pinned glommio executor per core, and everything that needs to know that.
//!
//! Layout:
//! - [`runtime`]: starting N shards (one `LocalExecutor` each, pinned, with its own io_uring ring), raising
//!   RLIMIT_MEMLOCK, and the [`ShardId`] newtype.
//! - [`mesh`]: bounded cross-shard channels and one-shot replies. The message type is the caller's (the
//!   broker's single `ShardMessage` enum); this module only moves it.
//! - [`doorbell`]: waking a shard from another thread without losing the wake-up (glommio's own
//!   cross-thread notification can lose it); every cross-shard wait goes through it.
//! - [`task`]: spawning detached tasks, sleeping, timeouts and the clocks — the runtime services other
//!   crates use, and the seam that lets them run on a [`simulation`] instead of glommio.
//! - [`simulation`]: a single-threaded executor with a manual clock for tests; while one exists on a
//!   thread, [`task`] goes to it.
//! - [`timing_wheel`]: a hierarchical timing wheel (Kafka's `TimingWheel`), pure: time is passed in.
//! - [`dma`]: the storage file layer on glommio: O_DIRECT `DmaFile`s for segment data, buffered io_uring
//!   files for small files.
//! - [`files`]: [`files::ShardFileSystem`], the file system a shard holds: glommio's ([`dma`]) in
//!   production, `std` files in tests.
//! - [`net`]: the `SO_REUSEPORT` listener each shard binds on the Kafka port, and its `TcpStream` (glommio's,
//!   with vectored writes as one `sendmsg`).
//!
//! No other crate of ours depends on glommio.
pub mod dma;
pub mod doorbell;
pub mod files;
pub mod mesh;
pub mod net;
pub mod runtime;
pub mod simulation;
pub mod task;
pub mod timing_wheel;

pub use mesh::{reply_channel, Canceled, Mesh, MeshBuilder, ReplyReceiver, ReplySender, SendError};
pub use runtime::{
    online_cores, raise_memlock_limit, start_shards, RunningShards, RuntimeError, ShardId,
};
pub use simulation::Simulation;
