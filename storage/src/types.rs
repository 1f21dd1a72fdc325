//! Newtypes for the numbers Kafka keeps apart: offsets, producer ids, epochs, sequences.

use std::fmt;

macro_rules! newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

newtype!(
    /// A record's position in a partition's log (i64, as on the wire).
    Offset(i64)
);
newtype!(
    /// Producer id handed out by InitProducerId; -1 means "no producer".
    ProducerId(i64)
);
newtype!(
    /// Producer epoch; bumps fence older producer instances. -1 means "none".
    ProducerEpoch(i16)
);
newtype!(
    /// Leader epoch of a partition (0 on a single node until replication arrives).
    LeaderEpoch(i32)
);
newtype!(
    /// Per-producer, per-partition record sequence number.
    Sequence(i32)
);

impl Offset {
    pub const NONE: Offset = Offset(-1);
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}
