"""Replication: followers fetch from their leaders with the Fetch API, the leader keeps the ISR (through
the metadata quorum) and the high watermark, and acks=all waits for every in-sync replica, with
min.insync.replicas checked. Real broker processes on loopback, driven by confluent-kafka.

Run them with
    .venv/bin/python -m pytest tests/integration/test_replication.py -v
"""

import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

from harness import ck_admin, ck_consume, ck_producer, ck_produce_all
from test_cluster import _poll, cluster_factory  # noqa: F401 -- the fixture
from test_cluster_topics import _three_brokers, _topic_view


def _wait_isr(c, topic, partition, expected, timeout=30.0, nodes=None):
    """Waits until every listed live node describes the partition with ISR `expected` (sorted) and a
    leader; returns (leader, replicas, isr)."""
    nodes = nodes or c.live_ids()

    def check():
        views = {i: _topic_view(c[i].bootstrap, topic)[partition] for i in nodes}
        ok = all(v[2] == sorted(expected) and v[0] >= 0 for v in views.values())
        return ok, (views[nodes[0]] if ok else views)
    return _poll(check, timeout, f"{topic}/{partition} ISR {sorted(expected)}", c.nodes, 0.5)


def _new_leader(c, topic, partition, not_this, timeout=30.0):
    def check():
        views = {i: _topic_view(c[i].bootstrap, topic)[partition] for i in c.live_ids()}
        leaders = {v[0] for v in views.values()}
        ok = len(leaders) == 1 and -1 not in leaders and not_this not in leaders
        return ok, (views[c.live_ids()[0]] if ok else views)
    return _poll(check, timeout, f"{topic}/{partition} led by another than {not_this}", c.nodes, 0.5)


def _values(records):
    return [r[4] for r in records]


@pytest.mark.timeout(300)
def test_replication_acks_all_survives_leader_kill9_and_the_restarted_broker_rejoins_the_isr(
        cluster_factory, topic):
    """RF 3, min.insync.replicas 2, an idempotent acks=all producer: after each kill -9 of the
    partition's leader another in-sync replica leads with every acknowledged record, in order, once
    each; the killed broker comes back, catches up and is in the ISR again before the next round."""
    c = _three_brokers(cluster_factory)
    admin = ck_admin(c[1].bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                  config={"min.insync.replicas": "2"})],
                        request_timeout=20)[topic].result(30)
    _wait_isr(c, topic, 0, [1, 2, 3])
    acknowledged = []
    for round_number in range(3):
        bootstrap = ",".join(c[i].bootstrap for i in c.live_ids())
        producer = ck_producer(bootstrap, enable_idempotence=True)
        values = [f"r{round_number}-{i}".encode() for i in range(200)]
        delivered = ck_produce_all(producer, topic, [(None, v) for v in values], partition=0)
        assert delivered.errors == [], delivered.errors[:3]
        acknowledged += [v for v in values]
        leader, _, isr = _wait_isr(c, topic, 0, [1, 2, 3])
        c.kill9(leader)
        new_leader, _, _ = _new_leader(c, topic, 0, leader)
        records = ck_consume(c[new_leader].bootstrap, [(topic, 0, 0)], expected=len(acknowledged))
        assert _values(records) == acknowledged, \
            f"round {round_number}: {len(records)} records read, {len(acknowledged)} acknowledged"
        offsets = [r[2] for r in records]
        assert offsets == list(range(len(offsets))), "offsets not contiguous"
        c[leader].start()
        # Back in the ISR once it caught up (the leader asks the controller).
        _wait_isr(c, topic, 0, [1, 2, 3], timeout=45)


@pytest.mark.timeout(240)
def test_replication_acks_all_needs_min_insync_replicas_while_acks_1_still_works(
        cluster_factory, topic):
    """Voters 1..3 and broker-only node 4; the partition lives on 1, 2 and 4, led by 1. With 2 and 4
    killed the ISR shrinks to the leader alone (fenced brokers leave it; the quorum keeps its
    majority through 3), so acks=all gets NOT_ENOUGH_REPLICAS and acks=1 is still written."""
    c = cluster_factory(4, broker_only=(4,))
    admin = ck_admin(c[1].bootstrap)
    _poll(lambda: (len(admin.list_topics(timeout=10).brokers) == 4, None), 30,
          "four brokers listed", c.nodes)
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2, 4]],
                                  config={"min.insync.replicas": "2"})],
                        request_timeout=20)[topic].result(30)
    _wait_isr(c, topic, 0, [1, 2, 4])
    delivered = ck_produce_all(ck_producer(c[1].bootstrap), topic,
                               [(None, f"a{i}".encode()) for i in range(50)], partition=0)
    assert delivered.errors == []
    c.kill9(2)
    _wait_isr(c, topic, 0, [1, 4], nodes=[1, 3])
    # One follower left: min.insync.replicas 2 is still met.
    delivered = ck_produce_all(ck_producer(c[1].bootstrap), topic,
                               [(None, f"b{i}".encode()) for i in range(50)], partition=0)
    assert delivered.errors == []
    c.kill9(4)
    _wait_isr(c, topic, 0, [1], nodes=[1, 3])
    refused = ck_produce_all(ck_producer(c[1].bootstrap, message_timeout_ms=5000, retries=0),
                             topic, [(None, b"refused")], partition=0)
    assert [e[0].code() for e in refused.errors] == [KafkaError.NOT_ENOUGH_REPLICAS], refused.errors
    taken = ck_produce_all(ck_producer(c[1].bootstrap, acks=1), topic,
                           [(None, f"c{i}".encode()) for i in range(20)], partition=0)
    assert taken.errors == []
    records = ck_consume(c[3].bootstrap, [(topic, 0, 0)], expected=120)
    assert _values(records) == ([f"a{i}".encode() for i in range(50)]
                                + [f"b{i}".encode() for i in range(50)]
                                + [f"c{i}".encode() for i in range(20)])
    # The followers come back, catch up and rejoin the ISR.
    c[2].start()
    c[4].start()
    _wait_isr(c, topic, 0, [1, 2, 4], timeout=45)
    delivered = ck_produce_all(ck_producer(c[1].bootstrap), topic, [(None, b"after")], partition=0)
    assert delivered.errors == []
