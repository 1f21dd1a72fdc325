"""Leadership and replica moves: preferred-leader election (ElectLeaders, driven by confluent-kafka),
automatic leader rebalancing by the active controller, and partition reassignment
(AlterPartitionReassignments / ListPartitionReassignments, driven by kafka-python's admin client).
After each, every acknowledged record is still there, in order, once. Real broker processes on
loopback.

Run them with
    .venv/bin/python -m pytest tests/integration/test_partition_moves.py -v
"""

import time

import pytest
from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition

from harness import ck_admin, ck_consume, ck_producer, ck_produce_all
from test_cluster import _poll, cluster_factory  # noqa: F401 -- the fixture
from test_cluster_topics import _three_brokers, _topic_view
from test_replication import _values, _wait_isr


def _create_on(c, topic, replicas, config=None):
    admin = ck_admin(c[1].bootstrap)  # kept until the result: its handle must outlive the future
    admin.create_topics(
        [NewTopic(topic, num_partitions=1, replica_assignment=[replicas], config=config or {})],
        request_timeout=20)[topic].result(30)
    return _wait_isr(c, topic, 0, replicas)


def _produce(c, topic, prefix, count):
    values = [f"{prefix}{i}".encode() for i in range(count)]
    bootstrap = ",".join(c[i].bootstrap for i in c.live_ids())
    delivered = ck_produce_all(ck_producer(bootstrap, enable_idempotence=True), topic,
                               [(None, v) for v in values], partition=0)
    assert delivered.errors == [], delivered.errors[:3]
    return values


def _led_by(c, topic, leader, timeout=30.0):
    def check():
        views = {i: _topic_view(c[i].bootstrap, topic)[0] for i in c.live_ids()}
        return all(v[0] == leader for v in views.values()), views
    return _poll(check, timeout, f"{topic} led by {leader} on every node", c.nodes, 0.5)


def _move_leadership_away_from_1(c, topic):
    """kill -9 of broker 1 (the preferred leader), then its restart: another broker leads and 1 is
    back in the ISR, following."""
    c.kill9(1)
    _poll(lambda: (_topic_view(c[2].bootstrap, topic)[0][0] in (2, 3), None), 30,
          "another broker leads", c.nodes, 0.5)
    c[1].start()
    leader, _, _ = _wait_isr(c, topic, 0, [1, 2, 3], timeout=45)
    return leader


@pytest.mark.timeout(240)
def test_preferred_leader_election_moves_leadership_back_and_keeps_every_record(
        cluster_factory, topic):
    """With automatic rebalancing off, leadership stays where a failure moved it; ElectLeaders
    (preferred) gives it back to the first replica, which then has every record. A second election
    is not needed (ELECTION_NOT_NEEDED)."""
    c = _three_brokers(cluster_factory, config={"auto_leader_rebalance_enable": False})
    _create_on(c, topic, [1, 2, 3], {"min.insync.replicas": "2"})
    first = _produce(c, topic, "a", 200)
    leader = _move_leadership_away_from_1(c, topic)
    assert leader != 1, "leadership went back without an election"
    second = _produce(c, topic, "b", 100)
    admin = ck_admin(",".join(c[i].bootstrap for i in c.ids))
    partition = TopicPartition(topic, 0)
    result = admin.elect_leaders(ElectionType.PREFERRED, [partition]).result(30)
    assert [error for error in result.values()] == [None], result
    _led_by(c, topic, 1)
    records = ck_consume(c[1].bootstrap, [(topic, 0, 0)], expected=300)
    assert _values(records) == first + second
    assert [r[2] for r in records] == list(range(300))
    again = admin.elect_leaders(ElectionType.PREFERRED, [partition]).result(30)
    assert [e.code() for e in again.values()] == [KafkaError.ELECTION_NOT_NEEDED], again


@pytest.mark.timeout(240)
def test_the_controller_moves_leadership_back_to_preferred_leaders_by_itself(
        cluster_factory, topic):
    """auto.leader.rebalance.enable (default true), checked every 2 s here: after a failure moved the
    leadership, the active controller gives it back to the preferred leader once it is in sync."""
    c = _three_brokers(cluster_factory, config={"leader_imbalance_check_interval_seconds": 2})
    _create_on(c, topic, [1, 2, 3])
    values = _produce(c, topic, "a", 100)
    c.kill9(1)
    _poll(lambda: (_topic_view(c[2].bootstrap, topic)[0][0] in (2, 3), None), 30,
          "another broker leads", c.nodes, 0.5)
    c[1].start()
    _led_by(c, topic, 1, timeout=60)
    assert any("moving leadership back to preferred leaders" in c[i].log_text() for i in c.ids)
    assert _values(ck_consume(c[1].bootstrap, [(topic, 0, 0)], expected=100)) == values


def _kp_admin(c):
    return KafkaAdminClient(bootstrap_servers=[c[i].bootstrap for i in c.live_ids()],
                            request_timeout_ms=30000)


@pytest.mark.timeout(300)
def test_a_reassignment_moves_the_replicas_keeps_every_record_and_frees_the_old_replica(
        cluster_factory, topic):
    """Voters 1..3 and broker-only node 4; the partition moves from 1, 2, 3 (led by 1) to 4, 2, 3:
    ListPartitionReassignments shows it under way, broker 4 catches up and joins the ISR, broker 1
    hands over its leadership and deletes its replica, and the new replicas hold every record.
    Cancelling with nothing under way is NO_REASSIGNMENT_IN_PROGRESS; a target naming an unknown
    broker is INVALID_REPLICA_ASSIGNMENT."""
    c = cluster_factory(4, broker_only=(4,), config={"auto_leader_rebalance_enable": False})
    admin = ck_admin(c[1].bootstrap)
    _poll(lambda: (len(admin.list_topics(timeout=10).brokers) == 4, None), 30,
          "four brokers listed", c.nodes)
    _create_on(c, topic, [1, 2, 3], {"min.insync.replicas": "2"})
    before = _produce(c, topic, "a", 2000)
    partition_dir = c[1].data_dir / f"{topic}-0"
    assert partition_dir.is_dir()
    kp = _kp_admin(c)
    tp = KpTopicPartition(topic, 0)
    try:
        assert kp.alter_partition_reassignments({tp: None}) == {
            tp: kp_error("NoReassignmentInProgressError")}
        assert kp.alter_partition_reassignments({tp: [1, 2, 9]}) == {
            tp: kp_error("InvalidReplicationAssignmentError")}
        assert kp.alter_partition_reassignments({tp: [4, 2, 3]}) == {tp: None}
        listed = kp.list_partition_reassignments()
        # Either still under way (as listed) or already complete (broker 4 caught up at once).
        if listed:
            assert listed[tp]["adding_replicas"] == [4], listed
            assert listed[tp]["removing_replicas"] == [1], listed
        leader, replicas, isr = _wait_isr(c, topic, 0, [2, 3, 4], timeout=60)
        assert replicas == [2, 3, 4] and leader == 4, (leader, replicas)
        _poll(lambda: (kp.list_partition_reassignments() == {}, None), 30,
              "no reassignment listed", c.nodes)
    finally:
        kp.close()
    _poll(lambda: (not partition_dir.exists(), None), 30, "broker 1's replica deleted", c.nodes)
    after = _produce(c, topic, "b", 100)
    for node in (4, 2):
        records = ck_consume(c[node].bootstrap, [(topic, 0, 0)], expected=2100)
        assert _values(records) == before + after, f"node {node}"
        assert [r[2] for r in records] == list(range(2100))
        if node == 4:
            c.kill9(4)
            _poll(lambda: (_topic_view(c[2].bootstrap, topic)[0][0] in (2, 3), None), 30,
                  "2 or 3 leads", c.nodes, 0.5)
            time.sleep(1)


def kp_error(name):
    import kafka.errors
    return getattr(kafka.errors, name)


@pytest.mark.timeout(300)
def test_a_throttled_reassignment_copies_at_most_the_follower_rate(cluster_factory, topic):
    """follower.replication.throttled.rate (a dynamic broker config, 100 kB/s here) with the topic's
    follower.replication.throttled.replicas naming the new replica: broker 4 copies the 500 kB log
    no faster than the rate allows (a second's burst, then 100 kB/s: at least 3 s), and the
    reassignment still completes with every record."""
    c = cluster_factory(4, broker_only=(4,), config={"auto_leader_rebalance_enable": False})
    admin = ck_admin(c[1].bootstrap)
    _poll(lambda: (len(admin.list_topics(timeout=10).brokers) == 4, None), 30,
          "four brokers listed", c.nodes)
    _create_on(c, topic, [1, 2, 3], {"follower.replication.throttled.replicas": "0:4"})
    payload = b"x" * 990
    values = [b"%05d" % i + payload for i in range(500)]
    delivered = ck_produce_all(ck_producer(c[1].bootstrap, compression_type="none"), topic,
                               [(None, v) for v in values], partition=0)
    assert delivered.errors == []
    rate = ConfigResource(ConfigResource.Type.BROKER, "4",
                          set_config={"follower.replication.throttled.rate": "100000"})
    all_brokers = ck_admin(",".join(c[i].bootstrap for i in c.ids))  # the resource goes to broker 4
    all_brokers.alter_configs([rate], request_timeout=20)[rate].result(30)
    kp = _kp_admin(c)
    tp = KpTopicPartition(topic, 0)
    try:
        started = time.monotonic()
        assert kp.alter_partition_reassignments({tp: [4, 2, 3]}) == {tp: None}
        _wait_isr(c, topic, 0, [2, 3, 4], timeout=90, nodes=[1, 2, 3, 4])
        elapsed = time.monotonic() - started
    finally:
        kp.close()
    assert elapsed >= 3.0, f"500 kB copied in {elapsed:.1f} s at 100 kB/s"
    records = ck_consume(c[4].bootstrap, [(topic, 0, 0)], expected=500)
    assert _values(records) == values
