//! The transaction coordinator's rows of the settings table (`SETTINGS` lists them in order; they live
//! here to keep `table.rs` under the file-size bound): Kafka's `transaction.*` and
//! `transactional.id.*` broker settings, applied to [`crate::config::TransactionConfig`].

use super::{
    row, ConfigType, DefaultValue, Setting, Target, Validator, MAX_PARTITIONS_PER_TOPIC, POSITIVE,
};

pub const STATE_LOG_NUM_PARTITIONS: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("50"),
    validator: Validator::Range(1, MAX_PARTITIONS_PER_TOPIC as i64),
    target: Target::Broker(|config, value| {
        config.transactions.state_log_partitions = value.as_int() as i32;
        Ok(())
    }),
    ..row(
        "transaction_state_log_num_partitions",
        Some("transaction.state.log.num.partitions"),
        "partitions of __transaction_state (fixed once it exists)",
    )
};

pub const STATE_LOG_SEGMENT_BYTES: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("104857600"),
    validator: POSITIVE,
    target: Target::Broker(|config, value| {
        config.transactions.state_log_segment_bytes = value.as_int() as u64;
        Ok(())
    }),
    ..row(
        "transaction_state_log_segment_bytes",
        Some("transaction.state.log.segment.bytes"),
        "segment size of __transaction_state (kept small for fast compaction and loading)",
    )
};

pub const MAX_TIMEOUT_MS: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("900000"),
    validator: POSITIVE,
    target: Target::Broker(|config, value| {
        config.transactions.max_timeout_ms = value.as_int() as i32;
        Ok(())
    }),
    ..row("transaction_max_timeout_ms", Some("transaction.max.timeout.ms"), "longest transaction.timeout.ms a producer may ask for (INVALID_TRANSACTION_TIMEOUT above it)")
};

pub const ID_EXPIRATION_MS: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("604800000"),
    validator: POSITIVE,
    target: Target::Broker(|config, value| {
        config.transactions.id_expiration_ms = value.as_int();
        Ok(())
    }),
    ..row(
        "transactional_id_expiration_ms",
        Some("transactional.id.expiration.ms"),
        "a transactional id with no transaction for this long is removed",
    )
};

pub const ABORT_TIMED_OUT_INTERVAL_MS: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("10000"),
    validator: POSITIVE,
    target: Target::Broker(|config, value| {
        config.transactions.abort_timed_out_interval_ms = value.as_int() as u64;
        Ok(())
    }),
    ..row(
        "transaction_abort_timed_out_transaction_cleanup_interval_ms",
        Some("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
        "how often the transaction coordinator aborts transactions past their timeout",
    )
};

pub const REMOVE_EXPIRED_INTERVAL_MS: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("3600000"),
    validator: POSITIVE,
    target: Target::Broker(|config, value| {
        config.transactions.remove_expired_interval_ms = value.as_int() as u64;
        Ok(())
    }),
    ..row(
        "transaction_remove_expired_transaction_cleanup_interval_ms",
        Some("transaction.remove.expired.transaction.cleanup.interval.ms"),
        "how often the transaction coordinator removes expired transactional ids",
    )
};
