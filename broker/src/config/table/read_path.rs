//! The read path's rows of the settings table (`SETTINGS` lists them in order; they live here to
//! keep `table.rs` under the file-size bound): read-ahead for sequential readers of segment files,
//! applied to `storage::ReadAheadConfig` (see `storage::read_ahead`).

use super::{row, ConfigType, DefaultValue, Setting, Target, Validator, NON_NEGATIVE};

pub const READ_AHEAD_BYTES: Setting = Setting {
    config_type: ConfigType::Long,
    default: DefaultValue::Fixed("67108864"),
    validator: NON_NEGATIVE,
    target: Target::Broker(|config, value| {
        config.read_ahead.budget_bytes = value.as_int() as usize;
        Ok(())
    }),
    ..row(
        "read_ahead_bytes",
        None,
        "per shard: memory for reading ahead of consumers that read segments sequentially (0: no read-ahead); apart from the batch cache",
    )
};

pub const READ_AHEAD_CHUNK_BYTES: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("1048576"),
    validator: Validator::Range(4096, 64 << 20),
    target: Target::Broker(|config, value| {
        config.read_ahead.chunk_bytes = value.as_int() as usize;
        Ok(())
    }),
    ..row(
        "read_ahead_chunk_bytes",
        None,
        "size of one read-ahead disk read (rounded up to 4 KiB)",
    )
};

pub const READ_AHEAD_CHUNKS: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("4"),
    validator: Validator::Range(1, 64),
    target: Target::Broker(|config, value| {
        config.read_ahead.chunks_per_reader = value.as_int() as usize;
        Ok(())
    }),
    ..row(
        "read_ahead_chunks",
        None,
        "read-ahead disk reads kept in flight or ready ahead of one sequential reader (fewer when many readers share read_ahead_bytes)",
    )
};
