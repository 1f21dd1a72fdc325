"""Fetch from follower (KIP-392): with `replica_selector = "rack-aware"` a partition's leader sends a
consumer whose `client.rack` names another rack to an in-sync follower in that rack
(`preferred_read_replica`), and the follower serves it up to its own high watermark. Three real
broker processes on loopback (racks rack-1, rack-2, rack-3: the harness gives node i `rack-<i>`),
driven by confluent-kafka (librdkafka).

What proves the follower served the records: librdkafka's statistics (`statistics.interval.ms`)
name, per partition, the `leader` and the `broker` it fetches from, and per broker the bytes
received (`rxbytes`): once on the follower, records produced later arrive through broker 2 only.

Run them with
    .venv/bin/python -m pytest tests/integration/test_fetch_from_follower.py -v
"""

import json
import threading
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from harness import ck_admin, ck_consumer, ck_producer, ck_produce_all
from test_cluster import _poll, cluster_factory  # noqa: F401 -- the fixture
from test_replication import _wait_isr

VALUE = b"x" * 1000


class StatsConsumer:
    """A consumer of partition 0 from offset 0 in `rack`, keeping librdkafka's latest statistics."""

    def __init__(self, bootstrap: str, topic: str, rack: str):
        self.topic = topic
        self.lock = threading.Lock()
        self.stats: dict = {}
        self.values: list[bytes] = []
        self.consumer = ck_consumer(bootstrap, **{
            "client.rack": rack,
            "statistics.interval.ms": 100,
            "stats_cb": self._on_stats,
        })
        self.consumer.assign([TopicPartition(topic, 0, 0)])

    def _on_stats(self, text: str):
        with self.lock:
            self.stats = json.loads(text)

    def consume_until(self, count: int, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while len(self.values) < count and time.monotonic() < deadline:
            for m in self.consumer.consume(num_messages=1000, timeout=0.2):
                assert not m.error(), m.error()
                self.values.append(m.value())
        assert len(self.values) == count, f"{len(self.values)} of {count} records"

    def poll_for(self, seconds: float):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for m in self.consumer.consume(num_messages=1000, timeout=0.1):
                assert not m.error(), m.error()
                self.values.append(m.value())

    def partition_view(self) -> tuple[int, int]:
        """(leader, broker fetched from) of partition 0, as the client's last statistics say."""
        with self.lock:
            p = self.stats.get("topics", {}).get(self.topic, {}).get("partitions", {}).get("0", {})
        return p.get("leader", -1), p.get("broker", -1)

    def rx_bytes(self) -> dict[int, int]:
        """Bytes received from each broker (by node id), per the last statistics."""
        with self.lock:
            brokers = self.stats.get("brokers", {}).values()
            return {b["nodeid"]: b["rxbytes"] for b in brokers if b.get("nodeid", -1) >= 0}

    def close(self):
        self.consumer.close()


def _cluster_with_topic(cluster_factory, topic, **kw):
    """Nodes 1..3 (racks rack-1..rack-3); the topic's one partition on 1, 2, 3, led by 1."""
    c = cluster_factory(3, **kw)
    admin = ck_admin(c[1].bootstrap)
    _poll(lambda: (len(admin.list_topics(timeout=10).brokers) == 3, None), 30,
          "three brokers listed", c.nodes)
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2, 3]])],
                        request_timeout=20)[topic].result(30)
    leader, _, _ = _wait_isr(c, topic, 0, [1, 2, 3])
    assert leader == 1
    return c


def _produce(c, topic, prefix: str, count: int) -> list[bytes]:
    values = [f"{prefix}{i}-".encode() + VALUE for i in range(count)]
    delivered = ck_produce_all(ck_producer(c[1].bootstrap), topic,
                               [(None, v) for v in values], partition=0)
    assert delivered.errors == []
    return values


@pytest.mark.timeout(180)
def test_a_consumer_in_a_followers_rack_reads_every_record_from_that_follower(
        cluster_factory, topic):
    c = _cluster_with_topic(cluster_factory, topic,
                            config={"replica_selector": "rack-aware"})
    first = _produce(c, topic, "a", 300)
    consumer = StatsConsumer(c[1].bootstrap, topic, "rack-2")
    try:
        consumer.consume_until(len(first))
        assert consumer.values == first
        _poll(lambda: (consumer.partition_view() == (1, 2), consumer.partition_view()), 20,
              "the client fetching partition 0 from follower 2 (leader 1)", c.nodes)
        # Tailing: records produced now reach the consumer through the follower alone (its long
        # poll wakes when the leader's answers move its high watermark).
        consumer.poll_for(1.0)
        before = consumer.rx_bytes()
        second = _produce(c, topic, "b", 300)
        consumer.consume_until(len(first) + len(second))
        assert consumer.values == first + second
        consumer.poll_for(0.5)
        after = consumer.rx_bytes()
        from_follower = after.get(2, 0) - before.get(2, 0)
        from_leader = after.get(1, 0) - before.get(1, 0)
        payload = len(second) * len(VALUE)
        assert from_follower >= payload, (before, after)
        assert from_leader < payload // 10, (before, after)
        assert consumer.partition_view() == (1, 2)
    finally:
        consumer.close()


@pytest.mark.timeout(180)
def test_with_the_default_selector_the_same_consumer_reads_from_the_leader(
        cluster_factory, topic):
    c = _cluster_with_topic(cluster_factory, topic)
    first = _produce(c, topic, "a", 300)
    consumer = StatsConsumer(c[1].bootstrap, topic, "rack-2")
    try:
        consumer.consume_until(len(first))
        assert consumer.values == first
        consumer.poll_for(1.0)
        assert consumer.partition_view() == (1, 1)
        before = consumer.rx_bytes()
        second = _produce(c, topic, "b", 300)
        consumer.consume_until(len(first) + len(second))
        consumer.poll_for(0.5)
        after = consumer.rx_bytes()
        assert after.get(1, 0) - before.get(1, 0) >= len(second) * len(VALUE), (before, after)
        assert after.get(2, 0) == before.get(2, 0), (before, after)
        assert consumer.partition_view() == (1, 1)
    finally:
        consumer.close()
