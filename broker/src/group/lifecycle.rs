//! The group coordinator hears about its internal topic's partitions as a partition lifecycle listener:
//! a `__consumer_offsets` partition led here gets a coordinator (which replays it), one unloaded or
//! deleted loses it.

use super::OFFSETS_TOPIC;
use crate::partition::manager::PartitionListener;
use crate::partition::Partition;
use crate::shard_state::ShardState;
use std::rc::{Rc, Weak};

pub struct CoordinatorListener {
    pub state: Weak<ShardState>,
}

impl PartitionListener for CoordinatorListener {
    fn became_leader(&self, partition: &Rc<Partition>) {
        if partition.topic != OFFSETS_TOPIC {
            return;
        }
        if let Some(state) = self.state.upgrade() {
            state.groups.partition_opened(&state, partition.clone());
        }
    }

    fn unloaded(&self, partition: &Partition) {
        self.deleted(partition);
    }

    fn deleted(&self, partition: &Partition) {
        if partition.topic != OFFSETS_TOPIC {
            return;
        }
        if let Some(state) = self.state.upgrade() {
            state.groups.partition_closed(partition.index);
        }
    }
}
