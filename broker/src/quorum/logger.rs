//! raft-rs logs through `slog`; this drain hands its lines to `tracing` (target `raft`), so they go
//! where the broker's own lines go and obey `RUST_LOG`. Its key-value pairs are dropped: raft-rs puts
//! what matters (terms, ids) in the message text too.

pub struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            // Elections and leader changes are logged by the quorum itself at info.
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            slog::Level::Debug => tracing::debug!(target: "raft", "{}", record.msg()),
            slog::Level::Trace => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}
