//! Broker-only nodes (`--process-roles broker`; KRaft calls them observers): brokers that follow the
//! metadata log without voting.
//!
//! A broker-only node dials every voter, as voters dial each other (`transport::dial`), and says hello
//! with its node id, which is not a voter's. The voter has no address to dial it back, so it keeps a
//! bounded queue per such connection and writes its Raft messages for that node on the same connection
//! (`serve`); the node's answers come back on it too. The quorum's leader, which every broker-only node
//! dials, proposes to add it to the configuration as a raft-rs *learner* (`node_learners`): a learner
//! is sent the log (entries, heartbeats, snapshots) like a voter, but never votes, never campaigns and
//! is not counted in any majority. It applies the committed log to its image like every node, and its
//! proposals (its registration, admin requests sent to it) go to the leader like a follower's.

use super::node_of;
use super::wire::{self, frame_of, read_messages};
use futures_channel::mpsc;
use raft::prelude::Message;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Most broker-only nodes connected to one voter at once.
pub const MAX_OBSERVERS: usize = 256;
/// Raft messages queued for one broker-only node before new ones are dropped.
const QUEUE_LENGTH: usize = 1024;

/// The broker-only nodes connected to this voter: by Raft id, the connection's number and its queue.
#[derive(Default)]
pub struct Observers {
    queues: RefCell<BTreeMap<u64, (u64, mpsc::Sender<Message>)>>,
    next_connection: Cell<u64>,
}

impl Observers {
    /// Whether node `id` may connect: it is connected already (a new connection replaces the old),
    /// or there is room for one more.
    pub fn has_room_for(&self, id: u64) -> bool {
        let queues = self.queues.borrow();
        queues.contains_key(&id) || queues.len() < MAX_OBSERVERS
    }

    /// The connected broker-only nodes (Raft ids), in order.
    pub fn connected(&self) -> Vec<u64> {
        self.queues.borrow().keys().copied().collect()
    }

    /// Queues `message` for its node; false if it is not connected or its queue is full.
    pub fn send(&self, message: Message) -> bool {
        match self.queues.borrow_mut().get_mut(&message.to) {
            Some((_, queue)) => queue.try_send(message).is_ok(),
            None => false,
        }
    }

    /// A new connection of node `id`: its number and its queue (replacing an older connection's,
    /// whose writer then ends).
    fn register(&self, id: u64) -> (u64, mpsc::Receiver<Message>) {
        let (sender, receiver) = mpsc::channel(QUEUE_LENGTH);
        let connection = self.next_connection.get();
        self.next_connection.set(connection + 1);
        self.queues.borrow_mut().insert(id, (connection, sender));
        (connection, receiver)
    }

    /// Connection `connection` of node `id` closed (nothing changes if a newer one replaced it).
    fn unregister(&self, id: u64, connection: u64) {
        let mut queues = self.queues.borrow_mut();
        if queues
            .get(&id)
            .is_some_and(|(current, _)| *current == connection)
        {
            queues.remove(&id);
        }
    }
}

/// Serves a broker-only node's connection after its handshake: its messages to this node (`from` →
/// `to`) go to `inbound`; this node's messages to it are written back. Ends when either side does.
pub async fn serve(
    observers: &Rc<Observers>,
    from: u64,
    to: u64,
    stream: shard::net::TcpStream,
    inbound: mpsc::Sender<Message>,
) -> Result<(), String> {
    use futures_lite::StreamExt;
    let (connection, mut queue) = observers.register(from);
    tracing::info!(node = node_of(from), "quorum: a broker-only node connected");
    let (reader, mut writer) = futures_lite::io::split(stream);
    let reading = read_messages(reader, from, to, Some(wire::IDLE_TIMEOUT), true, inbound);
    let writing = async {
        while let Some(message) = queue.next().await {
            wire::write_all(&mut writer, &frame_of(&message))
                .await
                .map_err(|error| error.to_string())?;
        }
        Err("replaced by a newer connection".to_string())
    };
    let result = futures_lite::future::or(reading, writing).await;
    observers.unregister(from, connection);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_to(to: u64) -> Message {
        Message {
            to,
            ..Message::default()
        }
    }

    #[test]
    fn a_newer_connection_replaces_the_older_and_the_count_is_bounded() {
        let observers = Observers::default();
        assert!(!observers.send(message_to(9)), "not connected");
        let (first, _old_queue) = observers.register(9);
        let (second, mut queue) = observers.register(9);
        assert!(observers.send(message_to(9)));
        assert!(queue.try_recv().is_ok(), "the newer connection's queue");
        observers.unregister(9, first);
        assert_eq!(
            observers.connected(),
            vec![9],
            "the older one's end leaves the newer"
        );
        observers.unregister(9, second);
        assert!(observers.connected().is_empty());
        for id in 0..MAX_OBSERVERS as u64 {
            assert!(observers.has_room_for(id));
            observers.register(id);
        }
        assert!(!observers.has_room_for(MAX_OBSERVERS as u64));
        assert!(observers.has_room_for(3), "a connected node may reconnect");
    }
}
