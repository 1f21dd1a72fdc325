//! Three voters in one deterministic simulation (`shard::Simulation`: a manual clock, one thread), their
//! Raft messages carried by a simulated network that can cut a node off: the Ready loop, the log files
//! (real files in temporary directories), proposals and the controller duties, exercised through
//! elections, isolation and restarts in simulated seconds.

use super::image::Change;
use super::log_store::QuorumLog;
use super::node::{Node, NodeParts};
use super::records::MetadataRecord;
use super::transport::{Identity, RaftTransport};
use super::{raft_id_of, Quorum};
use crate::config::{BrokerConfig, Cli, QuorumVoter};
use futures_channel::mpsc;
use raft::prelude::Message;
use shard::Simulation;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

const IDS: [i32; 3] = [1, 2, 3];

/// Inboxes by Raft id, and the nodes cut off from everyone.
#[derive(Default)]
struct Network {
    inboxes: RefCell<BTreeMap<u64, mpsc::Sender<Message>>>,
    isolated: RefCell<BTreeSet<u64>>,
    /// Snapshot messages are lost (a connection that broke while one was in flight).
    losing_snapshots: Cell<bool>,
    /// Broker-only nodes, as connected to every voter.
    observers: RefCell<BTreeSet<u64>>,
}

struct SimulatedTransport {
    network: Rc<Network>,
    from: u64,
}

impl RaftTransport for SimulatedTransport {
    fn send(&self, messages: Vec<Message>) {
        let isolated = self.network.isolated.borrow();
        let mut inboxes = self.network.inboxes.borrow_mut();
        for message in messages {
            if isolated.contains(&self.from) || isolated.contains(&message.to) {
                continue;
            }
            if self.network.losing_snapshots.get()
                && message.get_msg_type() == raft::prelude::MessageType::MsgSnapshot
            {
                continue;
            }
            if let Some(inbox) = inboxes.get_mut(&message.to) {
                let _ = inbox.try_send(message);
            }
        }
    }

    fn take_unreachable(&self) -> Vec<u64> {
        Vec::new()
    }

    fn observers(&self) -> Vec<u64> {
        self.network.observers.borrow().iter().copied().collect()
    }
}

struct Voter {
    quorum: Rc<Quorum>,
    stopped: Rc<Cell<bool>>,
}

struct Cluster {
    simulation: Simulation,
    network: Rc<Network>,
    directories: BTreeMap<i32, tempfile::TempDir>,
    voters: BTreeMap<i32, Voter>,
    /// `metadata_snapshot_bytes` of the voters started from now on.
    snapshot_bytes: u64,
}

fn config(node_id: i32, data_dir: &std::path::Path) -> Arc<BrokerConfig> {
    let mut config = BrokerConfig::from_cli(Cli {
        data_dir: Some(data_dir.to_path_buf()),
        shards: Some(1),
        ..Cli::default()
    })
    .expect("valid configuration");
    config.node_id = node_id;
    config.quorum_voters = IDS
        .iter()
        .map(|&id| QuorumVoter {
            node_id: id,
            host: "127.0.0.1".into(),
            port: 19000 + id as u16,
        })
        .collect();
    config.advertise_port = 9000 + node_id as u16;
    config.broker_session_timeout = Duration::from_secs(3);
    config.broker_heartbeat_interval = Duration::from_millis(500);
    Arc::new(config)
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with_snapshots_every(20 << 20)
    }

    /// Three voters that compact their logs after `snapshot_bytes` of entries.
    fn start_with_snapshots_every(snapshot_bytes: u64) -> Cluster {
        let mut cluster = Cluster {
            snapshot_bytes,
            simulation: Simulation::new(),
            network: Rc::default(),
            directories: IDS
                .iter()
                .map(|&id| (id, tempfile::tempdir().unwrap()))
                .collect(),
            voters: BTreeMap::new(),
        };
        for id in IDS {
            cluster.start_voter(id);
        }
        cluster
    }

    /// Starts (or restarts) voter `id` on its directory.
    fn start_voter(&mut self, id: i32) {
        self.start_node(id, crate::config::ProcessRoles::COMBINED);
    }

    /// Starts (or restarts) broker-only node `id` (not one of `IDS`), connected to every voter.
    fn start_observer(&mut self, id: i32) {
        self.directories
            .entry(id)
            .or_insert_with(|| tempfile::tempdir().unwrap());
        self.network.observers.borrow_mut().insert(raft_id_of(id));
        let roles = crate::config::ProcessRoles {
            broker: true,
            controller: false,
        };
        self.start_node(id, roles);
    }

    fn start_node(&mut self, id: i32, roles: crate::config::ProcessRoles) {
        let directory = self.directories[&id].path();
        let mut config = config(id, directory);
        let settings = Arc::get_mut(&mut config).unwrap();
        settings.metadata_snapshot_bytes = self.snapshot_bytes;
        settings.process_roles = roles;
        let voters: Vec<u64> = IDS.iter().map(|&id| raft_id_of(id)).collect();
        let log = QuorumLog::open(directory, &voters).expect("opens");
        let cluster_id = crate::meta_properties::MetaProperties::load(directory)
            .unwrap()
            .map(|properties| properties.cluster_id);
        let identity = Rc::new(Identity::new(id, directory.into(), cluster_id, IDS.len()));
        let quorum = Rc::new(Quorum::default());
        let (inbox, inbound) = mpsc::channel(1024);
        self.network
            .inboxes
            .borrow_mut()
            .insert(raft_id_of(id), inbox);
        let node = Node::new(NodeParts {
            log,
            transport: Box::new(SimulatedTransport {
                network: self.network.clone(),
                from: raft_id_of(id),
            }),
            identity,
            quorum: quorum.clone(),
            config,
            candidate_cluster_id: format!("cluster-of-{id}"),
            migration: Default::default(),
        })
        .expect("raft node");
        let stopped = Rc::new(Cell::new(false));
        let flag = stopped.clone();
        self.simulation
            .spawn(async move { node.run(inbound, move || flag.get()).await });
        self.voters.insert(id, Voter { quorum, stopped });
    }

    /// Stops voter `id` as a crash would: cut off from everyone (so a leader's handover goes nowhere)
    /// until its loop has ended; what it fsynced stays.
    fn crash(&mut self, id: i32) {
        let raft_id = raft_id_of(id);
        self.network.isolated.borrow_mut().insert(raft_id);
        self.voters[&id].stopped.set(true);
        self.run_for(Duration::from_millis(2500));
        self.network.inboxes.borrow_mut().remove(&raft_id);
        self.network.isolated.borrow_mut().remove(&raft_id);
        self.voters.remove(&id);
    }

    fn run_for(&mut self, duration: Duration) {
        self.simulation.advance(duration);
    }

    fn leader_seen_by(&self, id: i32) -> Option<i32> {
        self.voters[&id].quorum.status.borrow().leader_id
    }

    fn term_of(&self, id: i32) -> u64 {
        self.voters[&id].quorum.status.borrow().term
    }

    /// The leader every running voter in `ids` agrees on, if they do.
    fn agreed_leader(&self, ids: &[i32]) -> Option<i32> {
        let views: BTreeSet<Option<i32>> = ids.iter().map(|&id| self.leader_seen_by(id)).collect();
        match views.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(leader)] => Some(*leader),
            _ => None,
        }
    }

    /// Voter `id` proposes `record` (run the simulation to get the answer).
    fn propose(
        &self,
        id: i32,
        record: MetadataRecord,
        timeout: Duration,
    ) -> shard::simulation::TaskHandle<Result<super::Applied, super::ProposalError>> {
        let quorum = self.voters[&id].quorum.clone();
        self.simulation
            .spawn(async move { quorum.propose(record, timeout).await })
    }

    /// Voter `id` proposes the producer-id block 0..1000 (run the simulation to get the answer).
    fn propose_block(
        &self,
        id: i32,
        timeout: Duration,
    ) -> shard::simulation::TaskHandle<Result<super::Applied, super::ProposalError>> {
        let block = MetadataRecord::ProducerIds {
            node_id: id,
            first_id: 0,
            count: 1000,
        };
        self.propose(id, block, timeout)
    }

    fn image(&self, id: i32) -> Rc<super::image::MetadataImage> {
        self.voters[&id].quorum.image.borrow().clone()
    }
}

#[test]
fn three_voters_elect_format_register_and_survive_a_leader_crash() {
    let mut cluster = Cluster::start();
    cluster.run_for(Duration::from_secs(5));
    let leader = cluster.agreed_leader(&IDS).expect("one leader after 5 s");
    let cluster_id = format!("cluster-of-{leader}");
    for id in IDS {
        let image = cluster.image(id);
        assert_eq!(
            image.cluster_id.as_deref(),
            Some(cluster_id.as_str()),
            "node {id}"
        );
        assert_eq!(
            image
                .live_brokers()
                .map(|broker| broker.node_id)
                .collect::<Vec<_>>(),
            IDS.to_vec(),
            "node {id}"
        );
        let properties =
            crate::meta_properties::MetaProperties::load(cluster.directories[&id].path())
                .unwrap()
                .expect("formatted");
        assert_eq!(
            (properties.cluster_id.as_str(), properties.node_id),
            (cluster_id.as_str(), id)
        );
    }

    let term = cluster.term_of(leader);
    cluster.crash(leader);
    let survivors: Vec<i32> = IDS.into_iter().filter(|&id| id != leader).collect();
    cluster.run_for(Duration::from_secs(1));
    let new_leader = cluster
        .agreed_leader(&survivors)
        .expect("a new leader within 3.5 s of the crash");
    assert!(survivors.contains(&new_leader) && cluster.term_of(new_leader) > term);
    // The new leader fences the dead broker once the session timeout (3 s) has passed.
    cluster.run_for(Duration::from_secs(3));
    let live: Vec<i32> = cluster
        .image(new_leader)
        .live_brokers()
        .map(|broker| broker.node_id)
        .collect();
    assert_eq!(live, survivors);

    // It restarts from its directory: same cluster id, registered again (a new epoch), unfenced.
    let epoch_before = cluster.image(new_leader).brokers[&leader].epoch;
    cluster.start_voter(leader);
    cluster.run_for(Duration::from_secs(3));
    for id in IDS {
        let image = cluster.image(id);
        assert_eq!(image.cluster_id.as_deref(), Some(cluster_id.as_str()));
        assert_eq!(
            image.live_brokers().count(),
            3,
            "node {id} sees all three live"
        );
        assert!(image.brokers[&leader].epoch > epoch_before);
    }
    assert_eq!(cluster.agreed_leader(&IDS), Some(new_leader));
}

#[test]
fn an_isolated_leader_steps_down_and_proposals_go_through_the_new_one() {
    let mut cluster = Cluster::start();
    cluster.run_for(Duration::from_secs(5));
    let leader = cluster.agreed_leader(&IDS).expect("one leader");
    let others: Vec<i32> = IDS.into_iter().filter(|&id| id != leader).collect();
    cluster
        .network
        .isolated
        .borrow_mut()
        .insert(raft_id_of(leader));
    cluster.run_for(Duration::from_secs(5));
    let new_leader = cluster
        .agreed_leader(&others)
        .expect("the majority elects another");
    assert_ne!(new_leader, leader);
    // check-quorum: the cut-off leader no longer believes it leads.
    assert_ne!(cluster.leader_seen_by(leader), Some(leader));

    // A follower's proposal reaches the leader and is answered once applied here.
    let follower = *others.iter().find(|&&id| id != new_leader).unwrap();
    let proposing = cluster.propose_block(follower, Duration::from_secs(5));
    cluster.run_for(Duration::from_secs(1));
    let applied = proposing
        .take_output()
        .expect("answered")
        .expect("committed");
    assert_eq!(applied.change, Change::ProducerIds);
    // The healed node catches up: every image agrees.
    cluster.network.isolated.borrow_mut().clear();
    cluster.run_for(Duration::from_secs(3));
    for id in IDS {
        assert_eq!(cluster.image(id).next_producer_id, 1000, "node {id}");
    }
    assert_eq!(cluster.agreed_leader(&IDS), Some(new_leader));
}

#[test]
fn a_proposal_without_a_majority_times_out() {
    let mut cluster = Cluster::start();
    cluster.run_for(Duration::from_secs(5));
    let leader = cluster.agreed_leader(&IDS).expect("one leader");
    for id in IDS.into_iter().filter(|&id| id != leader) {
        cluster.crash(id);
    }
    let proposing = cluster.propose_block(leader, Duration::from_secs(2));
    cluster.run_for(Duration::from_secs(3));
    assert_eq!(
        proposing.take_output().expect("answered"),
        Err(super::ProposalError::TimedOut)
    );
}

#[test]
fn a_topic_proposed_by_a_follower_is_everyone_s_and_a_dead_leader_s_partitions_wait_for_it() {
    let mut cluster = Cluster::start();
    cluster.run_for(Duration::from_secs(5));
    let leader = cluster.agreed_leader(&IDS).expect("one leader");
    let follower = IDS.into_iter().find(|&id| id != leader).unwrap();
    let topic_id = uuid::Uuid::new_v4();
    let partition = |index: i32, replicas: Vec<i32>| MetadataRecord::Partition {
        topic_id,
        partition: index,
        isr: vec![replicas[0]],
        leader: replicas[0],
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
    };
    let batch = MetadataRecord::Batch(vec![
        MetadataRecord::Topic {
            topic_id,
            name: "orders".into(),
            configs: vec![],
        },
        partition(0, vec![leader, follower]),
        partition(1, vec![follower, leader]),
    ]);
    let created = cluster.propose(follower, batch, Duration::from_secs(5));
    cluster.run_for(Duration::from_secs(1));
    assert_eq!(
        created.take_output().unwrap().unwrap().change,
        Change::Topics
    );
    // The same name again, from the leader: refused the same way everywhere.
    let again = cluster.propose(
        leader,
        MetadataRecord::Topic {
            topic_id: uuid::Uuid::new_v4(),
            name: "orders".into(),
            configs: vec![],
        },
        Duration::from_secs(5),
    );
    cluster.run_for(Duration::from_secs(1));
    assert_eq!(
        again.take_output().unwrap().unwrap().change,
        Change::Refused
    );
    for id in IDS {
        assert_eq!(
            cluster.image(id).topics,
            cluster.image(leader).topics,
            "node {id}"
        );
    }

    // The leader dies: once fenced, the partition only it was in sync for has no leader (no unclean
    // election); the follower's stays led.
    cluster.crash(leader);
    cluster.run_for(Duration::from_secs(5));
    let survivors: Vec<i32> = IDS.into_iter().filter(|&id| id != leader).collect();
    for &id in &survivors {
        let partitions = &cluster.image(id).topics["orders"].partitions;
        assert_eq!(
            (partitions[0].leader, partitions[0].leader_epoch),
            (-1, 1),
            "node {id}"
        );
        assert_eq!(partitions[1].leader, follower, "node {id}");
    }
    // It comes back and registers: it leads its partition again, in a new epoch, on every node.
    cluster.start_voter(leader);
    cluster.run_for(Duration::from_secs(3));
    for id in IDS {
        let partitions = &cluster.image(id).topics["orders"].partitions;
        assert_eq!(
            (partitions[0].leader, partitions[0].leader_epoch),
            (leader, 2),
            "node {id}"
        );
    }
}

/// A topic of one partition led by `leader`, as one batch.
fn topic_batch(name: &str, leader: i32) -> MetadataRecord {
    let topic_id = uuid::Uuid::new_v4();
    MetadataRecord::Batch(vec![
        MetadataRecord::Topic {
            topic_id,
            name: name.into(),
            configs: vec![("retention.ms".into(), "60000".into())],
        },
        MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![leader],
            isr: vec![leader],
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        },
    ])
}

/// `count` topics `topic-0`.. of one partition, each proposed by (and led by) `leader` and committed.
fn create_topics(cluster: &mut Cluster, leader: i32, count: usize) {
    for index in 0..count {
        let created = cluster.propose(
            leader,
            topic_batch(&format!("topic-{index}"), leader),
            Duration::from_secs(5),
        );
        cluster.run_for(Duration::from_millis(50));
        let applied = created.take_output().expect("answered").expect("committed");
        assert_eq!(applied.change, Change::Topics);
    }
}

/// The index of the snapshot voter `id`'s log file starts with (0: none), read from its directory.
fn snapshot_index_on_disk(cluster: &Cluster, id: i32) -> u64 {
    let voters: Vec<u64> = IDS.iter().map(|&id| raft_id_of(id)).collect();
    let log = QuorumLog::open(cluster.directories[&id].path(), &voters).expect("opens");
    let index = log.storage().core().snapshot().get_metadata().index;
    index
}

#[test]
fn logs_are_compacted_and_a_voter_behind_the_snapshot_catches_up_from_it() {
    let mut cluster = Cluster::start_with_snapshots_every(4096);
    cluster.run_for(Duration::from_secs(5));
    let leader = cluster.agreed_leader(&IDS).expect("one leader");
    let behind = IDS.into_iter().find(|&id| id != leader).unwrap();
    cluster.crash(behind);
    create_topics(&mut cluster, leader, 80);
    // The survivors compacted: their logs start with a snapshot, past everything the crashed one holds.
    let running: Vec<i32> = IDS.into_iter().filter(|&id| id != behind).collect();
    let behind_last = {
        let voters: Vec<u64> = IDS.iter().map(|&id| raft_id_of(id)).collect();
        let log = QuorumLog::open(cluster.directories[&behind].path(), &voters).unwrap();
        let last = log.storage().core().last_index();
        last
    };
    for &id in &running {
        let image = cluster.image(id);
        assert_eq!(image.topics.len(), 80, "node {id}");
        let index = snapshot_index_on_disk(&cluster, id);
        assert!(
            index > behind_last,
            "node {id}: snapshot at {index}, the crashed voter holds {behind_last}"
        );
    }

    // It returns: the leader cannot send it entries it dropped, so it sends the snapshot. The first
    // one is lost on the way; the leader sends it again once it was not taken in time (10 s).
    cluster.network.losing_snapshots.set(true);
    cluster.start_voter(behind);
    cluster.run_for(Duration::from_secs(3));
    assert!(
        cluster.image(behind).topics.is_empty(),
        "no snapshot arrived"
    );
    cluster.network.losing_snapshots.set(false);
    cluster.run_for(Duration::from_secs(12));
    assert_eq!(cluster.image(behind).topics, cluster.image(leader).topics);
    assert!(
        snapshot_index_on_disk(&cluster, behind) > behind_last,
        "installed"
    );
    // ...and follows the log after it.
    let later = cluster.propose(behind, topic_batch("after", leader), Duration::from_secs(5));
    cluster.run_for(Duration::from_secs(1));
    assert_eq!(later.take_output().unwrap().unwrap().change, Change::Topics);

    // Every voter restarts from its snapshot and the entries after it, to the same image.
    let before: Vec<_> = IDS
        .iter()
        .map(|&id| cluster.image(id).topics.clone())
        .collect();
    for id in IDS {
        cluster.crash(id);
    }
    for id in IDS {
        cluster.start_voter(id);
    }
    cluster.run_for(Duration::from_secs(5));
    for (position, id) in IDS.into_iter().enumerate() {
        let image = cluster.image(id);
        assert_eq!(image.topics, before[position], "node {id}");
        assert_eq!(image.topics.len(), 81, "node {id}");
        assert_eq!(image.live_brokers().count(), 3, "node {id}");
    }
    assert!(cluster.agreed_leader(&IDS).is_some());
}

#[test]
fn a_broker_only_node_follows_the_log_as_a_learner_without_voting() {
    let mut cluster = Cluster::start_with_snapshots_every(4096);
    cluster.run_for(Duration::from_secs(5));
    let leader = cluster.agreed_leader(&IDS).expect("one leader");
    // Enough topics that the log is compacted before the broker-only node first starts: it gets the
    // leader's snapshot.
    create_topics(&mut cluster, leader, 60);
    assert!(snapshot_index_on_disk(&cluster, leader) > 0);
    const OBSERVER: i32 = 4;
    cluster.start_observer(OBSERVER);
    cluster.run_for(Duration::from_secs(5));
    let image = cluster.image(OBSERVER);
    assert_eq!(
        image.topics,
        cluster.image(leader).topics,
        "the whole log reached it"
    );
    assert_eq!(image.cluster_id, cluster.image(leader).cluster_id);
    assert_eq!(
        cluster
            .image(leader)
            .live_brokers()
            .map(|broker| broker.node_id)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, OBSERVER],
        "it registered as a broker"
    );
    let status = cluster.voters[&OBSERVER].quorum.status.borrow().clone();
    assert_eq!(status.voters.len(), 3, "not a voter: {status:?}");
    assert_eq!(status.leader_id, Some(leader));

    // Its proposals go to the leader like a follower's.
    let from_observer = cluster.propose(
        OBSERVER,
        topic_batch("from-4", OBSERVER),
        Duration::from_secs(5),
    );
    cluster.run_for(Duration::from_secs(1));
    assert_eq!(
        from_observer.take_output().unwrap().unwrap().change,
        Change::Topics
    );

    // The voters stay a majority without it (two of three), and it never campaigns: with the leader
    // gone, a voter takes over and the learner follows the new one.
    cluster.crash(leader);
    cluster.run_for(Duration::from_secs(5));
    let survivors: Vec<i32> = IDS.into_iter().filter(|&id| id != leader).collect();
    let new_leader = cluster.agreed_leader(&survivors).expect("a voter leads");
    let after = cluster.propose(
        new_leader,
        topic_batch("after", new_leader),
        Duration::from_secs(5),
    );
    cluster.run_for(Duration::from_secs(2));
    assert_eq!(after.take_output().unwrap().unwrap().change, Change::Topics);
    assert!(cluster.image(OBSERVER).topics.contains_key("after"));
    assert_eq!(cluster.leader_seen_by(OBSERVER), Some(new_leader));

    // It stops: the leader fences it like any broker. It restarts from its own log and registers again.
    cluster.crash(OBSERVER);
    cluster.run_for(Duration::from_secs(4));
    assert!(cluster.image(new_leader).brokers[&OBSERVER].fenced);
    cluster.start_observer(OBSERVER);
    cluster.run_for(Duration::from_secs(3));
    assert!(!cluster.image(new_leader).brokers[&OBSERVER].fenced);
    assert_eq!(
        cluster.image(OBSERVER).topics,
        cluster.image(new_leader).topics
    );
}
