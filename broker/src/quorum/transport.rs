//! Moving Raft messages between voters over the controller port (format: `wire`).
//!
//! Outbound: one task per other voter dials it, handshakes, and writes the messages the Ready loop
//! queues for it. The queue is bounded; when it is full or the peer is unreachable, messages are
//! dropped — Raft tolerates lost messages (it retries by heartbeats and probes), and the loop is told
//! the peer is unreachable. After a failure the task waits (100 ms doubling to 1 s) and dials again.
//! The same task reads what comes back on that connection: nothing from a voter (voters answer on
//! their own connections), the leader's messages for a broker-only node (see `observers`).
//!
//! Inbound: the controller listener accepts at most two connections per other voter (an old one may
//! linger while its replacement arrives) and per broker-only node (`observers::MAX_OBSERVERS` of them);
//! each reads one handshake within `HANDSHAKE_TIMEOUT`, then Raft messages, checked to come from the
//! node that said hello and to be addressed to this node, into the Ready loop's bounded inbound queue
//! (dropped when it is full). A broker-only node's connection also carries this node's messages to it.

use super::observers::{self, Observers};
use super::wire::{self, Greeting};
use super::{fatal, raft_id_of};
use crate::config::QuorumVoter;
use crate::log_limit::LogLimiter;
use futures_channel::mpsc;
use raft::prelude::Message;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// Raft messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_LENGTH: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

const LOG_WINDOW: Duration = Duration::from_secs(10);
static REFUSED_PEERS: LogLimiter = LogLimiter::new(LOG_WINDOW, 3);
static UNREACHABLE_PEERS: LogLimiter = LogLimiter::new(LOG_WINDOW, 3);

/// This node's identity in the quorum, and what the other voters said theirs is.
pub struct Identity {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// From `meta.properties`, or set when the quorum commits the cluster id (formatting).
    pub cluster_id: RefCell<Option<String>>,
    pub voter_count: usize,
    /// Voters whose directory belongs to another cluster than this node's (node id → their id).
    others: RefCell<BTreeMap<i32, String>>,
}

impl Identity {
    pub fn new(
        node_id: i32,
        data_dir: PathBuf,
        cluster_id: Option<String>,
        voter_count: usize,
    ) -> Identity {
        Identity {
            node_id,
            data_dir,
            cluster_id: RefCell::new(cluster_id),
            voter_count,
            others: RefCell::default(),
        }
    }

    pub fn greeting(&self) -> Greeting {
        Greeting {
            node_id: self.node_id,
            cluster_id: self.cluster_id.borrow().clone(),
        }
    }

    /// Whether a peer with `theirs` may talk to this node: unformatted on either side, or the same.
    pub fn compatible(&self, theirs: &Option<String>) -> bool {
        match (&*self.cluster_id.borrow(), theirs) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => true,
        }
    }

    /// Records what voter `node_id` answered. When a majority of the voters belong to one other cluster,
    /// this node's directory is the one from elsewhere: the answer is the error to exit with, naming both
    /// ids.
    pub fn heard(&self, node_id: i32, theirs: &Option<String>) -> Result<(), String> {
        let mut others = self.others.borrow_mut();
        match theirs {
            Some(theirs) if !self.compatible(&Some(theirs.clone())) => {
                others.insert(node_id, theirs.clone());
            }
            _ => {
                others.remove(&node_id);
            }
        }
        let majority = self.voter_count / 2 + 1;
        let mut counts: HashMap<&str, Vec<i32>> = HashMap::new();
        for (node, id) in others.iter() {
            counts.entry(id.as_str()).or_default().push(*node);
        }
        match counts
            .into_iter()
            .find(|(_, nodes)| nodes.len() >= majority)
        {
            None => Ok(()),
            Some((theirs, nodes)) => Err(format!(
                "{} (voters {nodes:?} answered with it)",
                self.foreign_directory(theirs).unwrap_or_default()
            )),
        }
    }

    /// Why this directory cannot join a quorum whose cluster is `quorum` (`meta.properties`' own
    /// refusal), or `None` if it can (same cluster, or not formatted yet).
    pub fn foreign_directory(&self, quorum: &str) -> Option<String> {
        let ours = self.cluster_id.borrow().clone()?;
        let properties = crate::meta_properties::MetaProperties {
            cluster_id: ours,
            node_id: self.node_id,
        };
        properties
            .check_cluster_id(&self.data_dir, quorum)
            .err()
            .map(|error| error.to_string())
    }
}

/// How the Ready loop sends Raft messages: over the controller port ([`Transport`]), or through a
/// simulated network in tests.
pub trait RaftTransport {
    /// Sends (or drops) `messages`, each to its `to`.
    fn send(&self, messages: Vec<Message>);
    /// Peers that could not be sent to since the last call (the loop reports them unreachable).
    fn take_unreachable(&self) -> Vec<u64>;
    /// The broker-only nodes connected to this voter (Raft ids), which the quorum adds as learners.
    fn observers(&self) -> Vec<u64>;
}

/// The outbound side: a bounded queue per other voter.
pub struct Transport {
    peers: RefCell<HashMap<u64, mpsc::Sender<Message>>>,
    /// Broker-only nodes connected to this voter, and their queues.
    observers: Rc<Observers>,
    /// Peers whose queue refused a message since the Ready loop last asked (it reports them unreachable).
    unreachable: RefCell<Vec<u64>>,
}

impl Transport {
    /// Starts one dialing task per other voter; what comes back on those connections goes to
    /// `inbound`.
    pub fn start(
        identity: &Rc<Identity>,
        voters: &[QuorumVoter],
        observers: Rc<Observers>,
        inbound: &mpsc::Sender<Message>,
    ) -> Transport {
        let mut peers = HashMap::new();
        for voter in voters
            .iter()
            .filter(|voter| voter.node_id != identity.node_id)
        {
            let (sender, receiver) = mpsc::channel(PEER_QUEUE_LENGTH);
            peers.insert(raft_id_of(voter.node_id), sender);
            shard::task::spawn(dial(
                identity.clone(),
                voter.clone(),
                receiver,
                inbound.clone(),
            ));
        }
        Transport {
            peers: RefCell::new(peers),
            observers,
            unreachable: RefCell::default(),
        }
    }
}

impl RaftTransport for Transport {
    /// Queues `messages` for their peers (dropping what does not fit).
    fn send(&self, messages: Vec<Message>) {
        let mut peers = self.peers.borrow_mut();
        for message in messages {
            let to = message.to;
            let sent = match peers.get_mut(&to) {
                // Never a clone of the sender: each clone would add a slot past the bound.
                Some(queue) => queue.try_send(message).is_ok(),
                None => self.observers.send(message),
            };
            if !sent {
                self.unreachable.borrow_mut().push(to);
            }
        }
    }

    fn take_unreachable(&self) -> Vec<u64> {
        std::mem::take(&mut *self.unreachable.borrow_mut())
    }

    fn observers(&self) -> Vec<u64> {
        self.observers.connected()
    }
}

async fn dial(
    identity: Rc<Identity>,
    voter: QuorumVoter,
    mut queue: mpsc::Receiver<Message>,
    inbound: mpsc::Sender<Message>,
) {
    use futures_lite::StreamExt;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match connect(&identity, &voter).await {
            Ok(stream) => {
                backoff = FIRST_BACKOFF;
                tracing::info!(peer = voter.node_id, "quorum: connected to voter");
                let (reader, mut stream) = futures_lite::io::split(stream);
                // What the voter sends back (to a broker-only node); ends with the connection.
                let reading = wire::read_messages(
                    reader,
                    raft_id_of(voter.node_id),
                    raft_id_of(identity.node_id),
                    None,
                    false,
                    inbound.clone(),
                );
                let writing = async {
                    loop {
                        let next =
                            futures_lite::future::or(async { Some(queue.next().await) }, async {
                                shard::task::sleep(wire::KEEPALIVE_INTERVAL).await;
                                None
                            });
                        let bytes = match next.await {
                            Some(Some(message)) => wire::frame_of(&message),
                            Some(None) => return true,
                            None => wire::frame(wire::PING, &[]),
                        };
                        if let Err(error) = wire::write_all(&mut stream, &bytes).await {
                            crate::warn_limited!(UNREACHABLE_PEERS, peer = voter.node_id, %error, "quorum: lost the connection to a voter");
                            return false;
                        }
                    }
                };
                let reading = async {
                    if let Err(reason) = reading.await {
                        crate::warn_limited!(UNREACHABLE_PEERS, peer = voter.node_id, %reason, "quorum: lost the connection to a voter");
                    }
                    false
                };
                if futures_lite::future::or(writing, reading).await {
                    return;
                }
            }
            Err(error) => {
                crate::warn_limited!(UNREACHABLE_PEERS, peer = voter.node_id, host = %voter.host, port = voter.port, %error, "quorum: cannot reach voter");
            }
        }
        // What was queued while the peer was away is stale: Raft sends what is still needed again.
        while queue.try_recv().is_ok() {}
        shard::task::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(
    identity: &Identity,
    voter: &QuorumVoter,
) -> std::io::Result<shard::net::TcpStream> {
    let target = format!("{}:{}", voter.host, voter.port);
    let address: SocketAddr = shard::task::spawn_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&target)?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
    })
    .await?;
    let mut stream = shard::net::TcpStream::connect(address, CONNECT_TIMEOUT).await?;
    wire::write_all(&mut stream, &wire::encode_hello(&identity.greeting())).await?;
    let answer = shard::task::timeout(
        HANDSHAKE_TIMEOUT,
        wire::read_frame(&mut stream, wire::MAX_HELLO_BYTES),
    )
    .await
    .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "no handshake answer"))??;
    let invalid = |reason: String| std::io::Error::new(std::io::ErrorKind::InvalidData, reason);
    if answer.0 != wire::HELLO_ACK {
        return Err(invalid(format!("handshake answer of kind {}", answer.0)));
    }
    let (accepted, theirs) = wire::decode_hello_ack(&answer.1).map_err(invalid)?;
    if theirs.node_id != voter.node_id {
        return Err(invalid(format!("it says it is node {}", theirs.node_id)));
    }
    if let Err(message) = identity.heard(voter.node_id, &theirs.cluster_id) {
        fatal(&message);
    }
    if !accepted {
        return Err(invalid(format!(
            "it refused the handshake (its cluster: {})",
            theirs.cluster_id.as_deref().unwrap_or("not formatted")
        )));
    }
    Ok(stream)
}

/// Accepts the other voters' and the broker-only nodes' connections on `listener` and queues their
/// messages into `inbound`.
pub async fn listen(
    identity: Rc<Identity>,
    voters: Vec<QuorumVoter>,
    observers: Rc<Observers>,
    listener: shard::net::Listener,
    inbound: mpsc::Sender<Message>,
) {
    let open = Rc::new(Cell::new(0usize));
    let max_open = 2 * (voters.len().saturating_sub(1) + observers::MAX_OBSERVERS);
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                crate::warn_limited!(REFUSED_PEERS, %error, "quorum: accept failed");
                shard::task::sleep(FIRST_BACKOFF).await;
                continue;
            }
        };
        if open.get() >= max_open {
            crate::warn_limited!(REFUSED_PEERS, peer = ?stream.peer_addr().ok(), "quorum: too many controller connections; closing");
            continue;
        }
        open.set(open.get() + 1);
        let (identity, voters, observers, inbound, open) = (
            identity.clone(),
            voters.clone(),
            observers.clone(),
            inbound.clone(),
            open.clone(),
        );
        shard::task::spawn(async move {
            let peer = stream.peer_addr().ok();
            if let Err(reason) = receive(&identity, &voters, &observers, stream, inbound).await {
                crate::warn_limited!(REFUSED_PEERS, ?peer, %reason, "quorum: controller connection closed");
            }
            open.set(open.get() - 1);
        });
    }
}

async fn receive(
    identity: &Identity,
    voters: &[QuorumVoter],
    observers: &Rc<Observers>,
    mut stream: shard::net::TcpStream,
    inbound: mpsc::Sender<Message>,
) -> Result<(), String> {
    let (kind, payload) = shard::task::timeout(
        HANDSHAKE_TIMEOUT,
        wire::read_frame(&mut stream, wire::MAX_HELLO_BYTES),
    )
    .await
    .ok_or("no handshake in time")?
    .map_err(|error| error.to_string())?;
    if kind != wire::HELLO {
        return Err(format!("first frame of kind {kind}, not a handshake"));
    }
    let theirs = wire::decode_hello(&payload)?;
    let is_voter = voters.iter().any(|voter| voter.node_id == theirs.node_id);
    let refusal = if theirs.node_id == identity.node_id {
        Some(format!("it claims this node's own id {}", theirs.node_id))
    } else if theirs.node_id < 0 {
        Some(format!("node id {}", theirs.node_id))
    } else if !is_voter && !observers.has_room_for(raft_id_of(theirs.node_id)) {
        Some(format!(
            "node {} is not a voter, and {} broker-only nodes are connected already",
            theirs.node_id,
            observers::MAX_OBSERVERS
        ))
    } else if !identity.compatible(&theirs.cluster_id) {
        Some(format!(
            "node {} belongs to cluster {}, not {}",
            theirs.node_id,
            theirs.cluster_id.as_deref().unwrap_or("?"),
            identity.cluster_id.borrow().as_deref().unwrap_or("?")
        ))
    } else {
        None
    };
    let answer = wire::encode_hello_ack(refusal.is_none(), &identity.greeting());
    wire::write_all(&mut stream, &answer)
        .await
        .map_err(|error| error.to_string())?;
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    let from = raft_id_of(theirs.node_id);
    let to = raft_id_of(identity.node_id);
    if is_voter {
        wire::read_messages(stream, from, to, Some(wire::IDLE_TIMEOUT), false, inbound).await
    } else {
        observers::serve(observers, from, to, stream, inbound).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_refused_only_when_a_majority_names_another_cluster() {
        let ours = Identity::new(3, "/data/3".into(), Some("ours".into()), 3);
        let other = Some("theirs".to_string());
        assert!(
            ours.heard(1, &other).is_ok(),
            "one voter of three is no majority"
        );
        assert!(
            ours.heard(1, &None).is_ok(),
            "an unformatted voter forgets the mismatch"
        );
        assert!(ours.heard(1, &other).is_ok());
        let error = ours.heard(2, &other).expect_err("two of three");
        assert!(
            error.contains("ours") && error.contains("theirs") && error.contains("/data/3"),
            "{error}"
        );

        let unformatted = Identity::new(3, "/data/3".into(), None, 3);
        assert!(unformatted.heard(1, &other).is_ok() && unformatted.heard(2, &other).is_ok());
        assert!(unformatted.compatible(&other));
        assert!(
            !ours.compatible(&other)
                && ours.compatible(&Some("ours".into()))
                && ours.compatible(&None)
        );
    }
}
