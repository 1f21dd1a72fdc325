"""Replication: followers fetch from their leaders with the Fetch API, the leader keeps the ISR (through
the metadata quorum) and the high watermark, and acks=all waits for every in-sync replica, with
min.insync.replicas checked. Real broker processes on loopback, driven by confluent-kafka.

Run them with
    .venv/bin/python -m pytest tests/integration/test_replication.py -v
The leader-kill test runs 3 rounds; `REPLICATION_ROUNDS=20` runs the issue's 20 (about 8 minutes on
2 cores: opt-in, results in BENCHMARKS.md).
"""

import os
import signal
import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic

from harness import ck_admin, ck_consume, ck_consumer, ck_producer, ck_produce_all
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


class WatchingConsumer:
    """A consumer reading the partition from the start for the whole test, following leaders as the
    client does; remembers every (offset, value) it was given."""

    def __init__(self, bootstrap: str, topic: str):
        self.seen: dict[int, bytes] = {}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.consumer = ck_consumer(bootstrap)
        self.consumer.assign([TopicPartition(topic, 0, 0)])
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            for m in self.consumer.consume(num_messages=1000, timeout=0.2):
                if m.error():
                    self.errors.append(str(m.error()))
                elif m.offset() in self.seen and self.seen[m.offset()] != m.value():
                    self.errors.append(f"offset {m.offset()} read as {self.seen[m.offset()]!r} "
                                       f"and later {m.value()!r}")
                else:
                    self.seen[m.offset()] = m.value()

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.consumer.close()


@pytest.mark.timeout(int(os.environ.get("REPLICATION_ROUNDS", "3")) * 60 + 120)
def test_replication_acks_all_survives_leader_kill9_and_the_restarted_broker_rejoins_the_isr(
        cluster_factory, topic):
    """RF 3, min.insync.replicas 2, an idempotent acks=all producer: after each kill -9 of the
    partition's leader another in-sync replica leads with every acknowledged record, in order, once
    each; the killed broker comes back, catches up and is in the ISR again before the next round. A
    consumer reading throughout never saw a record the final log does not hold at that offset."""
    rounds = int(os.environ.get("REPLICATION_ROUNDS", "3"))
    c = _three_brokers(cluster_factory)
    admin = ck_admin(c[1].bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                  config={"min.insync.replicas": "2"})],
                        request_timeout=20)[topic].result(30)
    _wait_isr(c, topic, 0, [1, 2, 3])
    watcher = WatchingConsumer(",".join(c[i].bootstrap for i in c.ids), topic)
    acknowledged = []
    try:
        for round_number in range(rounds):
            bootstrap = ",".join(c[i].bootstrap for i in c.live_ids())
            producer = ck_producer(bootstrap, enable_idempotence=True)
            values = [f"r{round_number}-{i}".encode() for i in range(200)]
            delivered = ck_produce_all(producer, topic, [(None, v) for v in values], partition=0)
            assert delivered.errors == [], delivered.errors[:3]
            acknowledged += values
            leader, _, _ = _wait_isr(c, topic, 0, [1, 2, 3])
            c.kill9(leader)
            new_leader, _, _ = _new_leader(c, topic, 0, leader)
            records = ck_consume(c[new_leader].bootstrap, [(topic, 0, 0)],
                                 expected=len(acknowledged))
            assert _values(records) == acknowledged, \
                f"round {round_number}: {len(records)} records read, {len(acknowledged)} acknowledged"
            offsets = [r[2] for r in records]
            assert offsets == list(range(len(offsets))), "offsets not contiguous"
            c[leader].start()
            # Back in the ISR once it caught up (the leader asks the controller).
            _wait_isr(c, topic, 0, [1, 2, 3], timeout=45)
        _poll(lambda: (len(watcher.seen) >= len(acknowledged), len(watcher.seen)), 30,
              "the watching consumer read everything", c.nodes)
    finally:
        watcher.close()
    assert watcher.errors == [], watcher.errors[:5]
    final = {r[2]: r[4] for r in ck_consume(c[c.live_ids()[0]].bootstrap, [(topic, 0, 0)],
                                             expected=len(acknowledged))}
    vanished = {o: v for o, v in watcher.seen.items() if final.get(o) != v}
    assert vanished == {}, f"read by a consumer, then gone: {list(vanished.items())[:5]}"


@pytest.mark.timeout(240)
def test_replication_a_stalled_follower_leaves_the_isr_and_rejoins_after_it_resumes(
        cluster_factory, topic):
    """SIGSTOP of a follower for longer than replica.lag.time.max.ms (2 s here): acks=all keeps
    working with the two others (min.insync.replicas 2), the stalled one leaves the ISR and, once
    resumed, catches up and rejoins it; every acknowledged record is on every replica (each leads in
    turn at the end)."""
    c = _three_brokers(cluster_factory, config={"replica_lag_time_max_ms": 2000})
    admin = ck_admin(c[1].bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                  config={"min.insync.replicas": "2"})],
                        request_timeout=20)[topic].result(30)
    leader, _, _ = _wait_isr(c, topic, 0, [1, 2, 3])
    stalled = next(i for i in c.ids if i != leader)
    others = [i for i in c.ids if i != stalled]
    os.kill(c[stalled].proc.pid, signal.SIGSTOP)
    try:
        delivered = ck_produce_all(ck_producer(c[leader].bootstrap), topic,
                                   [(None, f"s{i}".encode()) for i in range(300)], partition=0)
        assert delivered.errors == [], delivered.errors[:3]
        _wait_isr(c, topic, 0, others, nodes=others)
    finally:
        os.kill(c[stalled].proc.pid, signal.SIGCONT)
    _wait_isr(c, topic, 0, [1, 2, 3], timeout=45)
    expected = [f"s{i}".encode() for i in range(300)]
    # Two kill -9s of the leader in a row (each restarted): three replicas lead in turn.
    for _ in range(2):
        current, _, _ = _wait_isr(c, topic, 0, [1, 2, 3], timeout=45)
        c.kill9(current)
        new_leader, _, _ = _new_leader(c, topic, 0, current)
        records = ck_consume(c[new_leader].bootstrap, [(topic, 0, 0)], expected=300)
        assert _values(records) == expected, f"node {new_leader} leads without every record"
        c[current].start()


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


@pytest.mark.timeout(240)
def test_replication_unclean_election_off_keeps_the_partition_offline_and_on_brings_it_back(
        cluster_factory, topic):
    """Voters 1..3 and broker-only node 4; the partition lives on 2 and 4, led by 2. With 4 down the
    ISR is 2 alone and takes more records; then 2 dies too. When 4 returns, out of sync, the partition
    stays offline while unclean.leader.election.enable is false; set to true, 4 leads at once with
    what it had (the records only 2 had are lost, and logged), and 2, back, follows it: it truncates
    its log to 4's and rejoins the ISR."""
    c = cluster_factory(4, broker_only=(4,))
    admin = ck_admin(c[1].bootstrap)
    _poll(lambda: (len(admin.list_topics(timeout=10).brokers) == 4, None), 30,
          "four brokers listed", c.nodes)
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[2, 4]])],
                        request_timeout=20)[topic].result(30)
    _wait_isr(c, topic, 0, [2, 4])
    first = [f"a{i}".encode() for i in range(30)]
    assert ck_produce_all(ck_producer(c[2].bootstrap), topic, [(None, v) for v in first],
                          partition=0).errors == []
    c.kill9(4)
    _wait_isr(c, topic, 0, [2], nodes=[1, 2, 3])
    lost = [f"lost{i}".encode() for i in range(20)]
    assert ck_produce_all(ck_producer(c[2].bootstrap), topic, [(None, v) for v in lost],
                          partition=0).errors == []
    c.kill9(2)
    c[4].start()
    # Exactly these: until the new controller fences broker 2, {1, 2, 3} are three brokers too.
    _poll(lambda: (sorted(admin.list_topics(timeout=10).brokers) == [1, 3, 4], None), 30,
          "brokers 1, 3 and 4 listed", c.nodes)
    time.sleep(3)
    assert _topic_view(c[1].bootstrap, topic)[0][0] == -1, "an out-of-sync replica was elected"
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic,
                              set_config={"unclean.leader.election.enable": "true"})
    admin.alter_configs([resource], request_timeout=20)[resource].result(30)
    leader, _, isr = _wait_isr(c, topic, 0, [4], nodes=[1, 3, 4])
    assert leader == 4
    assert any("unclean leader election" in c[i].log_text() for i in (1, 3, 4)), \
        "the election's loss is not logged"
    records = ck_consume(c[4].bootstrap, [(topic, 0, 0)], expected=len(first))
    assert _values(records) == first
    after = [f"b{i}".encode() for i in range(10)]
    assert ck_produce_all(ck_producer(c[4].bootstrap), topic, [(None, v) for v in after],
                          partition=0).errors == []
    # 2 returns: it follows 4, drops what 4 does not have, and rejoins the ISR.
    c[2].start()
    _wait_isr(c, topic, 0, [2, 4], timeout=45)
    c.kill9(4)
    _new_leader(c, topic, 0, 4)
    records = ck_consume(c[2].bootstrap, [(topic, 0, 0)], expected=len(first) + len(after))
    assert _values(records) == first + after
