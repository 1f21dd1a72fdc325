"""Consumer groups: the group coordinator and committed offsets, driven by real clients.

confluent-kafka and kafka-python consumers in groups (assignors, joins, leaves, session expiry,
static membership), commits and their durability across SIGTERM / kill -9, the admin APIs for
groups in both clients, and raw-frame checks of the coordinator's error codes.

Brokers run with `group_initial_rebalance_delay_ms = 100` (the `group_broker` fixture) so joins are
quick; `test_join_with_default_initial_rebalance_delay` checks the default (3 s) works.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                             KafkaException, TopicPartition)

from harness import (_die_with_parent, ck_admin, ck_producer, ck_produce_all, create_topic, frame,
                     read_response, request_header_v1, wait_for_topic)

FAST = {"group_initial_rebalance_delay_ms": 100}
SESSION_TIMEOUT_MS = 6000


@pytest.fixture
def group_broker(broker_factory):
    return broker_factory(shards=1, config=FAST)


@pytest.fixture
def group(topic) -> str:
    return f"grp-{topic}"


# --------------------------------------------------------------------- confluent-kafka members

def group_conf(bootstrap: str, group: str, **overrides) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "group.id": group,
        "client.id": "itest-groups",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 20000,      # also the rebalance timeout librdkafka sends
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "reconnect.backoff.max.ms": 1000,   # quick reconnects after a broker restart
    }
    conf.update(overrides)
    return conf


class Member:
    """A confluent-kafka consumer in a group, with what it received and its rebalance callbacks.
    Single-threaded: call poll() often (librdkafka heartbeats in its own thread)."""

    def __init__(self, bootstrap, group, topic=None, name="member", **overrides):
        from confluent_kafka import Consumer
        self.name = name
        self.errors = []    # KafkaError from error_cb, message errors and poll exceptions
        self.msgs = []      # (partition, offset, key, value)
        self.assigns = self.revokes = 0
        self.closed = False
        self.c = Consumer(group_conf(bootstrap, group, error_cb=self.errors.append, **overrides))
        if topic is not None:
            self.subscribe(topic)

    def subscribe(self, topic):
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, _consumer, _partitions):
        self.assigns += 1

    def _on_revoke(self, _consumer, _partitions):
        self.revokes += 1

    def poll(self, timeout=0.05):
        try:
            batch = self.c.consume(num_messages=1000, timeout=timeout)
        except KafkaException as e:
            self.errors.append(e.args[0])
            return
        for m in batch:
            if m.error():
                self.errors.append(m.error())
            else:
                self.msgs.append((m.partition(), m.offset(), m.key(), m.value()))

    def partitions(self) -> set:
        try:
            return {tp.partition for tp in self.c.assignment()}
        except (KafkaException, RuntimeError):
            return set()

    def close(self):
        if not self.closed:
            self.closed = True
            self.c.close()


@pytest.fixture
def members():
    """members(bootstrap, group, topic=None, name=..., **conf) -> Member; all closed at teardown
    (before the broker fixture stops the broker)."""
    made = []

    def make(*args, **kw):
        m = Member(*args, **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        try:
            m.close()
        except Exception:
            pass


def describe_assignments(ms) -> str:
    return ", ".join(f"{m.name}={sorted(m.partitions())}" for m in ms)


def wait_for(pred, ms, timeout, what) -> float:
    """Poll every member until pred() holds; returns the seconds it took."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout}s: {what}; "
                                 f"assignments {describe_assignments(ms)}; "
                                 f"errors {[str(e) for m in ms for e in m.errors][-5:]}")
        for m in ms:
            m.poll(0.05)
    return time.monotonic() - start


def poll_for(ms, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for m in ms:
            m.poll(0.05)


def split(ms, n) -> bool:
    """Every member owns something, nobody shares a partition, and all n partitions are owned."""
    parts = [m.partitions() for m in ms]
    return (all(parts) and sum(len(p) for p in parts) == n
            and set().union(*parts) == set(range(n)))


def consume_until(ms, total, timeout=30.0, settle=1.0):
    """Poll until the members together received `total` messages, then `settle` more seconds."""
    wait_for(lambda: sum(len(m.msgs) for m in ms) >= total, ms, timeout,
             f"{total} messages (have {[len(m.msgs) for m in ms]})")
    poll_for(ms, settle)


def produce_to_partitions(bootstrap, topic, per_partition: dict, tag=b"m"):
    """per_partition = {partition: count}; returns the values produced, per partition."""
    p = ck_producer(bootstrap)
    out = {}
    for part, n in per_partition.items():
        values = [b"%s-%d-%d" % (tag, part, i) for i in range(n)]
        dl = ck_produce_all(p, topic, [(None, v) for v in values], partition=part)
        assert not dl.errors, dl.errors[:3]
        out[part] = values
    return out


# ------------------------------------------------------------------------ admin helpers

def list_groups(admin, **kw) -> dict:
    res = admin.list_consumer_groups(request_timeout=15, **kw).result(30)
    assert not res.errors, res.errors
    return {g.group_id: g for g in res.valid}


def describe_group(admin, group):
    return admin.describe_consumer_groups([group], request_timeout=15)[group].result(30)


def group_offsets(admin, group) -> dict:
    """{(topic, partition): (offset, metadata)} of the committed offsets (none: {})."""
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                            request_timeout=15)[group].result(30)
    out = {}
    for tp in res.topic_partitions:
        assert tp.error is None, tp
        if tp.offset >= 0:
            out[(tp.topic, tp.partition)] = (tp.offset, tp.metadata or "")
    return out


def wait_group_state(admin, group, state, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        d = describe_group(admin, group)
        if d.state == state:
            return d
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} is {d.state}, not {state}, after {timeout}s")
        time.sleep(0.2)


def err_code(fut, timeout=30):
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout)
    return ei.value.args[0].code()


def restart(broker, how):
    if how == "sigterm":
        assert broker.stop() == 0
    else:
        broker.kill9()
    broker.start()


# ============================================================ 1. assignment strategies

@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_two_members_split_partitions_and_consume_exactly_once(group_broker, topic, group,
                                                               members, strategy):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=4)
    conf = {"partition.assignment.strategy": strategy}
    a = members(b.bootstrap, group, topic, name="a", **conf)
    wait_for(lambda: a.partitions() == {0, 1, 2, 3}, [a], 20, "a alone owns all partitions")
    bm = members(b.bootstrap, group, topic, name="b", **conf)
    wait_for(lambda: split([a, bm], 4), [a, bm], 30, "a and b split the 4 partitions")
    poll_for([a, bm], 1.0)
    assert split([a, bm], 4), describe_assignments([a, bm])
    pa, pb = a.partitions(), bm.partitions()
    assert len(pa) == len(pb) == 2, describe_assignments([a, bm])
    if strategy == "range":
        assert {frozenset(pa), frozenset(pb)} == {frozenset({0, 1}), frozenset({2, 3})}
    elif strategy == "roundrobin":
        assert {frozenset(pa), frozenset(pb)} == {frozenset({0, 2}), frozenset({1, 3})}
    callbacks = (a.assigns, a.revokes, bm.assigns, bm.revokes)

    items = [(b"key-%d" % i, b"value-%d" % i) for i in range(2000)]
    dl = ck_produce_all(ck_producer(b.bootstrap), topic, items)
    assert not dl.errors
    assert len({p for (_t, p, _o, _k, _v) in dl.ok}) == 4, "keys did not spread over 4 partitions"
    consume_until([a, bm], 2000)

    assert (a.assigns, a.revokes, bm.assigns, bm.revokes) == callbacks, "rebalanced while consuming"
    got = a.msgs + bm.msgs
    assert len({(p, o) for (p, o, _k, _v) in got}) == len(got), "a message was delivered twice"
    assert sorted(v for (_p, _o, _k, v) in got) == sorted(v for (_k, v) in items)
    assert {p for (p, *_r) in a.msgs} <= pa and {p for (p, *_r) in bm.msgs} <= pb
    assert a.msgs and bm.msgs


# ============================================================ 2. kafka-python group members

class KpMember(threading.Thread):
    """A kafka-python KafkaConsumer in a group, run in its own thread. Set `commit_request` to make
    it commit its consumed positions (result in `committed`), `stop` to close it."""

    def __init__(self, bootstrap, group, topic, assignor):
        super().__init__(daemon=True)
        self.kw = dict(bootstrap_servers=bootstrap, group_id=group,
                       partition_assignment_strategy=[assignor], session_timeout_ms=6000,
                       heartbeat_interval_ms=500, max_poll_interval_ms=20000,
                       enable_auto_commit=False, auto_offset_reset="earliest",
                       request_timeout_ms=30000)
        self.topic = topic
        self.records = []        # (partition, offset, value)
        self.assignment = set()
        self.commit_request = threading.Event()
        self.committed = None    # {partition: committed offset} once committed
        self.stop = threading.Event()
        self.error = None

    def run(self):
        from kafka import KafkaConsumer
        try:
            c = KafkaConsumer(**self.kw)
            try:
                c.subscribe([self.topic])
                while not self.stop.is_set():
                    for recs in c.poll(timeout_ms=100).values():
                        self.records.extend((r.partition, r.offset, r.value) for r in recs)
                    self.assignment = {tp.partition for tp in c.assignment()}
                    if self.commit_request.is_set() and self.committed is None:
                        c.commit()
                        self.committed = {tp.partition: c.committed(tp) for tp in c.assignment()}
            finally:
                c.close()
        except Exception as e:  # reported by finish()
            self.error = e

    def finish(self):
        self.stop.set()
        self.join(30)
        assert not self.is_alive(), "kafka-python consumer did not close"
        if self.error is not None:
            raise self.error


def _wait_threads(pred, timeout, what, threads):
    deadline = time.monotonic() + timeout
    while not pred():
        for t in threads:
            if t.error is not None:
                raise t.error
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}; "
                                 f"assignments {[sorted(t.assignment) for t in threads]}")
        time.sleep(0.05)


@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_kafka_python_group_consumes_commits_and_resumes(group_broker, topic, group, assignor):
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    cls = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[assignor]
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=4)

    pair = [KpMember(b.bootstrap, group, topic, cls) for _ in range(2)]
    try:
        for t in pair:
            t.start()
        _wait_threads(lambda: all(t.assignment for t in pair)
                      and sorted(p for t in pair for p in t.assignment) == [0, 1, 2, 3],
                      30, "two kafka-python members split 4 partitions", pair)
        time.sleep(1.0)
        sets = {frozenset(t.assignment) for t in pair}
        expected = ({frozenset({0, 1}), frozenset({2, 3})} if assignor == "range"
                    else {frozenset({0, 2}), frozenset({1, 3})})
        assert sets == expected, sets

        produced = produce_to_partitions(b.bootstrap, topic, {p: 100 for p in range(4)}, b"old")
        _wait_threads(lambda: sum(len(t.records) for t in pair) >= 400, 30, "400 records", pair)
        time.sleep(1.0)
        got = [r for t in pair for r in t.records]
        assert len(got) == 400 and len({(p, o) for (p, o, _v) in got}) == 400
        assert sorted(v for (_p, _o, v) in got) == sorted(v for vs in produced.values() for v in vs)
        for t in pair:
            assert {p for (p, _o, _v) in t.records} <= t.assignment

        for t in pair:
            t.commit_request.set()
        _wait_threads(lambda: all(t.committed is not None for t in pair), 20, "commits", pair)
        for t in pair:
            assert t.committed == {p: 100 for p in t.assignment}, t.committed
    finally:
        for t in pair:
            t.finish()

    # A later member of the same group starts at the committed positions: nothing old, then new.
    late = KpMember(b.bootstrap, group, topic, cls)
    late.start()
    try:
        _wait_threads(lambda: late.assignment == {0, 1, 2, 3}, 30, "late member assigned", [late])
        time.sleep(2.0)
        assert late.records == [], f"re-delivered committed records: {late.records[:5]}"
        new = produce_to_partitions(b.bootstrap, topic, {p: 10 for p in range(4)}, b"new")
        _wait_threads(lambda: len(late.records) >= 40, 30, "40 new records", [late])
        time.sleep(0.5)
        assert sorted(v for (_p, _o, v) in late.records) == sorted(v for vs in new.values() for v in vs)
        assert all(o >= 100 for (_p, o, _v) in late.records)
    finally:
        late.finish()


# ============================================================ 3. joining and leaving

def test_member_join_and_leave_group_rebalances_quickly(group_broker, topic, group, members):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=4)
    conf = {"partition.assignment.strategy": "range"}
    a = members(b.bootstrap, group, topic, name="a", **conf)
    wait_for(lambda: a.partitions() == {0, 1, 2, 3}, [a], 20, "a alone owns all partitions")
    bm = members(b.bootstrap, group, topic, name="b", **conf)
    wait_for(lambda: split([a, bm], 4), [a, bm], 30, "b joins and the partitions are split")
    assert len(a.partitions()) == 2

    bm.close()  # a dynamic member sends LeaveGroup
    took = wait_for(lambda: a.partitions() == {0, 1, 2, 3}, [a], 20, "a owns everything again")
    assert took < 4.0, (f"a got the partitions back {took:.1f}s after b left: LeaveGroup was not "
                        f"acted on (looks like a session timeout of {SESSION_TIMEOUT_MS} ms)")
    d = describe_group(ck_admin(b.bootstrap), group)
    assert d.state == ConsumerGroupState.STABLE and len(d.members) == 1, d


# ============================================================ 4. session timeout

_CHILD_CONSUMER = r"""
import sys
from confluent_kafka import Consumer
bootstrap, topic, group = sys.argv[1:4]
c = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "group.id": group,
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
              "max.poll.interval.ms": 20000, "partition.assignment.strategy": "range",
              "enable.auto.commit": False, "auto.offset.reset": "earliest"})
c.subscribe([topic])
last = None
while True:
    c.poll(0.1)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        print("assignment", *now, flush=True)
        last = now
"""


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"])
def test_silent_member_is_removed_after_session_timeout(group_broker, topic, group, members, sig):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=4)
    a = members(b.bootstrap, group, topic, name="a", **{"partition.assignment.strategy": "range"})
    wait_for(lambda: a.partitions() == {0, 1, 2, 3}, [a], 20, "a alone owns all partitions")

    child = subprocess.Popen([sys.executable, "-c", _CHILD_CONSUMER, b.bootstrap, topic, group],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, preexec_fn=_die_with_parent)
    child_parts = [set()]

    def read_child():
        for line in child.stdout:
            words = line.split()
            if words and words[0] == "assignment":
                child_parts[0] = {int(w) for w in words[1:]}

    threading.Thread(target=read_child, daemon=True).start()
    try:
        wait_for(lambda: child_parts[0] and a.partitions()
                 and child_parts[0] | a.partitions() == {0, 1, 2, 3}
                 and not child_parts[0] & a.partitions(),
                 [a], 40, "a and the child process split the partitions")
        poll_for([a], 1.0)   # the child heartbeats a couple of times in the stable group
        os.kill(child.pid, getattr(signal, sig))
        killed_at = time.monotonic()
        poll_for([a], 2.0)
        assert len(a.partitions()) == 2, "the silent member was removed before its session timed out"
        wait_for(lambda: a.partitions() == {0, 1, 2, 3}, [a], 30,
                 f"a takes over after the {sig}ed member's session expires")
        took = time.monotonic() - killed_at
        print(f"\npartitions moved {took:.1f}s after {sig} (session.timeout.ms={SESSION_TIMEOUT_MS})")
        assert took >= 4.0, f"member removed after {took:.1f}s, well before the session timeout"
        assert took < 15.0, f"member removed only after {took:.1f}s"
    finally:
        child.kill()
        child.wait(10)


# ============================================================ 5. commit after processing

@pytest.mark.parametrize("shards", [1, 2])
def test_commit_after_processing_hands_over_exactly_once(broker_factory, topic, group, members,
                                                        shards):
    b = broker_factory(shards=shards, config=FAST)
    create_topic(b.bootstrap, topic, partitions=3)
    items = [(b"k%d" % i, b"v%d" % i) for i in range(600)]
    ck_produce_all(ck_producer(b.bootstrap), topic, items)

    first = members(b.bootstrap, group, topic, name="first")
    processed = []
    deadline = time.monotonic() + 30
    while len(processed) < 250:
        assert time.monotonic() < deadline, f"only {len(processed)} messages processed in 30s"
        m = first.c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        processed.append(m.value())
        res = first.c.commit(message=m, asynchronous=False)
        assert [tp.error for tp in res] == [None], res
    first.close()

    second = members(b.bootstrap, group, topic, name="second")
    consume_until([second], 600 - len(processed), settle=1.5)
    rest = [v for (_p, _o, _k, v) in second.msgs]
    assert not set(rest) & set(processed), "processed-and-committed messages were delivered again"
    assert len(processed) + len(rest) == 600
    assert sorted(processed + rest) == sorted(v for (_k, v) in items)

    second.c.commit(asynchronous=False)   # what it consumed (the first may have done a partition)
    ends = {p: second.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(3)}
    got = second.c.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)
    assert {tp.partition: tp.offset for tp in got} == ends


# ============================================================ 6. durability

@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_committed_offsets_and_groups_survive_restart(group_broker, topic, members, how):
    b = group_broker
    g1, g2 = f"g1-{topic}", f"g2-{topic}"
    create_topic(b.bootstrap, topic, partitions=2)
    produced = produce_to_partitions(b.bootstrap, topic, {0: 100, 1: 100})

    m = members(b.bootstrap, g1, topic, name="m")
    wait_for(lambda: m.partitions() == {0, 1}, [m], 20, "m assigned")
    res = m.c.commit(offsets=[TopicPartition(topic, 0, 30, "meta-0"),
                              TopicPartition(topic, 1, 70, "meta-1")], asynchronous=False)
    assert [tp.error for tp in res] == [None, None], res
    m.close()
    admin = ck_admin(b.bootstrap)
    res = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        g2, [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)])])[g2].result(30)
    assert [tp.error for tp in res.topic_partitions] == [None, None]

    restart(b, how)

    admin = ck_admin(b.bootstrap)
    assert {g1, g2} <= set(list_groups(admin))
    assert describe_group(admin, g1).state == ConsumerGroupState.EMPTY
    assert group_offsets(admin, g2) == {(topic, 0): (3, ""), (topic, 1): (4, "")}
    n = members(b.bootstrap, g1, name="n")
    got = n.c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=15)
    assert [(tp.partition, tp.offset, tp.metadata) for tp in got] == \
        [(0, 30, "meta-0"), (1, 70, "meta-1")]

    n.subscribe(topic)
    consume_until([n], 100)
    assert len(n.msgs) == 100
    for part, start in ((0, 30), (1, 70)):
        offsets = sorted(o for (p, o, _k, _v) in n.msgs if p == part)
        assert offsets == list(range(start, 100)), f"partition {part} did not resume at {start}"
        assert [v for (p, _o, _k, v) in sorted(n.msgs) if p == part] == produced[part][start:]
    d = describe_group(admin, g1)
    assert d.state == ConsumerGroupState.STABLE and len(d.members) == 1
    res = n.c.commit(asynchronous=False)
    assert sorted((tp.partition, tp.offset) for tp in res) == [(0, 100), (1, 100)]
    n.close()

    restart(b, how)   # the latest commit wins after replay

    admin = ck_admin(b.bootstrap)
    assert group_offsets(admin, g1) == {(topic, 0): (100, ""), (topic, 1): (100, "")}
    assert group_offsets(admin, g2) == {(topic, 0): (3, ""), (topic, 1): (4, "")}


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_active_consumer_continues_across_restart(group_broker, topic, group, members, how):
    """A member committing after each message keeps going through a broker restart: nothing is
    lost, and only messages whose commit failed may come again."""
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=2)
    before = [(b"k%d" % i, b"before-%d" % i) for i in range(200)]
    ck_produce_all(ck_producer(b.bootstrap), topic, before)
    m = members(b.bootstrap, group, topic, name="m")
    processed, uncommitted = [], set()

    def process(until, timeout) -> bool:
        """Process (then commit) one message at a time until until() holds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                return False
            msg = m.c.poll(0.2)
            if msg is None or msg.error():
                continue
            processed.append(msg.value())
            try:
                res = m.c.commit(message=msg, asynchronous=False)
                if any(tp.error for tp in res):
                    uncommitted.add(msg.value())
            except KafkaException:
                uncommitted.add(msg.value())
        return True

    assert process(lambda: len(processed) >= 100, 30), f"only {len(processed)} processed"
    restart(b, how)
    after = [(b"k%d" % i, b"after-%d" % i) for i in range(200)]
    ck_produce_all(ck_producer(b.bootstrap), topic, after)
    expected = {v for (_k, v) in before + after}
    process(lambda: set(processed) >= expected, 60)
    assert set(processed) == expected, f"{len(expected - set(processed))} messages lost"
    settle_end = time.monotonic() + 1.0
    process(lambda: time.monotonic() > settle_end, 5)   # catch late redeliveries
    dups = {v for v in processed if processed.count(v) > 1}
    assert dups <= uncommitted, f"committed messages delivered again: {sorted(dups - uncommitted)[:5]}"
    print(f"\n{len(uncommitted)} commits failed around the restart, {len(dups)} redeliveries")


def test_many_groups_on_two_shards_survive_kill9(broker_factory, topic):
    b = broker_factory(shards=2, config={**FAST, "offsets_topic_num_partitions": 8})
    create_topic(b.bootstrap, topic, partitions=2)
    produce_to_partitions(b.bootstrap, topic, {0: 50, 1: 50})
    admin = ck_admin(b.bootstrap)
    groups = {f"many-{i}-{topic}": (i, 2 * i + 1) for i in range(12)}
    for g, (o0, o1) in groups.items():
        res = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            g, [TopicPartition(topic, 0, o0), TopicPartition(topic, 1, o1)])])[g].result(30)
        assert all(tp.error is None for tp in res.topic_partitions), res

    b.kill9()
    b.start()
    admin = ck_admin(b.bootstrap)
    assert set(groups) <= set(list_groups(admin))
    for g, (o0, o1) in groups.items():
        assert group_offsets(admin, g) == {(topic, 0): (o0, ""), (topic, 1): (o1, "")}, g


# ============================================================ 7. static membership

def _static_pair(b, group, topic, members):
    conf = {"partition.assignment.strategy": "range"}
    a = members(b.bootstrap, group, topic, name="a", **{"group.instance.id": "inst-a", **conf})
    bm = members(b.bootstrap, group, topic, name="b", **{"group.instance.id": "inst-b", **conf})
    wait_for(lambda: split([a, bm], 4), [a, bm], 30, "static members a and b split")
    poll_for([a, bm], 1.0)
    assert split([a, bm], 4), describe_assignments([a, bm])
    return a, bm, conf


def test_static_member_restart_gets_its_partitions_without_rebalance(group_broker, topic, group,
                                                                     members):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=4)
    a, bm, conf = _static_pair(b, group, topic, members)
    a_parts, b_parts, b_calls = a.partitions(), bm.partitions(), (bm.assigns, bm.revokes)

    a.close()   # a static member does not send LeaveGroup
    a2 = members(b.bootstrap, group, topic, name="a2", **{"group.instance.id": "inst-a", **conf})
    took = wait_for(lambda: a2.partitions() == a_parts, [a2, bm], 15,
                    "the restarted static member gets a's partitions")
    poll_for([a2, bm], 2.0)
    assert a2.partitions() == a_parts and bm.partitions() == b_parts
    assert (bm.assigns, bm.revokes) == b_calls, "b went through a rebalance"
    print(f"\nstatic member back with its partitions after {took:.1f}s")

    d = describe_group(ck_admin(b.bootstrap), group)
    assert d.state == ConsumerGroupState.STABLE
    assert sorted(mem.group_instance_id for mem in d.members) == ["inst-a", "inst-b"]
    by_instance = {mem.group_instance_id: {tp.partition for tp in mem.assignment.topic_partitions}
                   for mem in d.members}
    assert by_instance == {"inst-a": a_parts, "inst-b": b_parts}


def _fenced(errors) -> bool:
    for e in errors:
        if isinstance(e, KafkaError) and (e.code() == KafkaError.FENCED_INSTANCE_ID
                                          or "FENCED" in e.name().upper()
                                          or "fenced" in e.str().lower()):
            return True
    return False


def test_duplicate_static_instance_fences_the_old_member(group_broker, topic, group, members):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=4)
    a, bm, conf = _static_pair(b, group, topic, members)
    a_parts, b_calls = a.partitions(), (bm.assigns, bm.revokes)

    dup = members(b.bootstrap, group, topic, name="dup", **{"group.instance.id": "inst-a", **conf})
    wait_for(lambda: _fenced(a.errors), [a, bm, dup], 20,
             "the old member with the same group.instance.id is fenced (FENCED_INSTANCE_ID)")
    wait_for(lambda: dup.partitions() == a_parts, [bm, dup], 20, "the new instance owns a's partitions")
    assert (bm.assigns, bm.revokes) == b_calls, "b went through a rebalance"
    assert not _fenced(dup.errors) and not _fenced(bm.errors)
    try:
        a.close()
    except KafkaException:
        pass


# ============================================================ 8. admin APIs

def test_confluent_admin_consumer_group_lifecycle(group_broker, topic, group, members):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=2)
    produce_to_partitions(b.bootstrap, topic, {0: 50, 1: 50})
    admin = ck_admin(b.bootstrap)
    m = members(b.bootstrap, group, topic, name="m",
                **{"client.id": "itest-admin-member", "partition.assignment.strategy": "range"})
    wait_for(lambda: m.partitions() == {0, 1}, [m], 20, "m assigned")
    m.c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)],
               asynchronous=False)

    listed = list_groups(admin)
    assert listed[group].state == ConsumerGroupState.STABLE
    assert not listed[group].is_simple_consumer_group
    assert group in list_groups(admin, states={ConsumerGroupState.STABLE})
    assert group not in list_groups(admin, states={ConsumerGroupState.EMPTY})
    d = describe_group(admin, group)
    assert d.state == ConsumerGroupState.STABLE and not d.is_simple_consumer_group
    assert d.partition_assignor == "range"
    assert d.coordinator.id == 0 and d.coordinator.port == b.port
    [mem] = d.members
    assert mem.client_id == "itest-admin-member" and mem.host and mem.member_id
    assert {(tp.topic, tp.partition) for tp in mem.assignment.topic_partitions} == \
        {(topic, 0), (topic, 1)}
    assert group_offsets(admin, group) == {(topic, 0): (5, ""), (topic, 1): (7, "")}
    assert err_code(admin.delete_consumer_groups([group])[group]) == KafkaError.NON_EMPTY_GROUP

    m.close()
    d = wait_group_state(admin, group, ConsumerGroupState.EMPTY)
    assert d.members == []
    assert group in list_groups(admin, states={ConsumerGroupState.EMPTY})
    res = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, 0, 20), TopicPartition(topic, 1, 30)])])[group].result(30)
    assert [tp.error for tp in res.topic_partitions] == [None, None]
    assert group_offsets(admin, group) == {(topic, 0): (20, ""), (topic, 1): (30, "")}

    n = members(b.bootstrap, group, topic, name="n")
    consume_until([n], 50)
    assert len(n.msgs) == 50
    assert {p: min(o for (q, o, _k, _v) in n.msgs if q == p) for p in (0, 1)} == {0: 20, 1: 30}
    n.close()
    wait_group_state(admin, group, ConsumerGroupState.EMPTY)

    assert admin.delete_consumer_groups([group])[group].result(30) is None
    assert group not in list_groups(admin)
    try:
        assert group_offsets(admin, group) == {}, "committed offsets outlived their group"
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e
    try:
        assert describe_group(admin, group).state in (ConsumerGroupState.DEAD,
                                                      ConsumerGroupState.UNKNOWN)
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e


def test_kafka_python_admin_consumer_groups(group_broker, topic, group, members):
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition as KTP
    import kafka.errors as Errors
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=2)
    m = members(b.bootstrap, group, topic, name="m",
                **{"client.id": "itest-kp-admin", "partition.assignment.strategy": "roundrobin"})
    wait_for(lambda: m.partitions() == {0, 1}, [m], 20, "m assigned")
    m.c.commit(offsets=[TopicPartition(topic, 0, 3, "m0"), TopicPartition(topic, 1, 4, "m1")],
               asynchronous=False)

    a = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=20000)
    try:
        listed = {g["group_id"]: g for g in a.list_groups()}
        assert listed[group]["protocol_type"] == "consumer"
        stable = {g["group_id"]: g for g in a.list_groups(states_filter=["Stable"])}
        assert stable[group]["group_state"] == "Stable"
        assert group not in {g["group_id"] for g in a.list_groups(states_filter=["Empty"])}

        d = a.describe_groups([group])[group]
        assert d["error"] is None, d
        assert (d["group_state"], d["protocol_type"], d["protocol_data"]) == \
            ("Stable", "consumer", "roundrobin")
        [mem] = d["members"]
        assert mem["client_id"] == "itest-kp-admin"
        assert mem["member_metadata"]["topics"] == [topic], mem
        assigned = {(t["topic"], p) for t in mem["member_assignment"]["assigned_partitions"]
                    for p in t["partitions"]}
        assert assigned == {(topic, 0), (topic, 1)}

        offsets = a.list_group_offsets(group)[group]
        # confluent-kafka sends its metadata C string with the terminating NUL.
        assert {(tp.topic, tp.partition): (o.offset, o.metadata.rstrip("\x00"))
                for tp, o in offsets.items()} == {(topic, 0): (3, "m0"), (topic, 1): (4, "m1")}
        assert a.delete_groups([group]) == {group: "NonEmptyGroupError"}
        # OffsetDelete refuses partitions of topics the live group subscribes to.
        assert a.delete_group_offsets(group, [KTP(topic, 0)]) == \
            {KTP(topic, 0): Errors.GroupSubscribedToTopicError}

        m.close()
        deadline = time.monotonic() + 15
        while a.describe_groups([group])[group]["group_state"] != "Empty":
            assert time.monotonic() < deadline, "group not Empty after its only member left"
            time.sleep(0.2)
        assert a.delete_group_offsets(group, [KTP(topic, 0)]) == {KTP(topic, 0): Errors.NoError}
        left = {(tp.topic, tp.partition): o.offset
                for tp, o in a.list_group_offsets(group)[group].items() if o.offset >= 0}
        assert left == {(topic, 1): 4}

        assert a.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in a.list_groups()}
        assert a.delete_groups([group]) == {group: "GroupIdNotFoundError"}
        with pytest.raises(Errors.GroupIdNotFoundError):
            a.delete_group_offsets(group, [KTP(topic, 1)])
    finally:
        a.close()


# ============================================================ 9. lag and commit metadata

def test_consumer_lag_from_committed_offsets(group_broker, topic, group, members):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=3)
    produce_to_partitions(b.bootstrap, topic, {0: 100, 1: 100, 2: 100})
    m = members(b.bootstrap, group, topic, name="m")
    wait_for(lambda: m.partitions() == {0, 1, 2}, [m], 20, "m assigned")
    committed = {0: 10, 1: 50, 2: 100}
    m.c.commit(offsets=[TopicPartition(topic, p, o) for p, o in committed.items()],
               asynchronous=False)
    produce_to_partitions(b.bootstrap, topic, {0: 20, 1: 20, 2: 20}, b"more")

    got = {tp.partition: tp.offset
           for tp in m.c.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)}
    assert got == committed
    lag = {p: m.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] - got[p]
           for p in range(3)}
    assert lag == {0: 110, 1: 70, 2: 20}


def test_commit_metadata_round_trip_and_limit(group_broker, topic, group, members):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=2)
    produce_to_partitions(b.bootstrap, topic, {0: 10, 1: 10})
    m = members(b.bootstrap, group, topic, name="m")
    wait_for(lambda: m.partitions() == {0, 1}, [m], 20, "m assigned")
    m.c.commit(offsets=[TopicPartition(topic, 0, 4, "checkpoint é")], asynchronous=False)
    [tp] = m.c.committed([TopicPartition(topic, 0)], timeout=15)
    assert (tp.offset, tp.metadata) == (4, "checkpoint é")

    # Kafka's offset.metadata.max.bytes (4096): a longer string is refused, the old commit stays.
    try:
        res = m.c.commit(offsets=[TopicPartition(topic, 0, 6, "x" * 5000)], asynchronous=False)
        code = res[0].error.code() if res[0].error else None
    except KafkaException as e:
        code = e.args[0].code()
    assert code == KafkaError.OFFSET_METADATA_TOO_LARGE
    [tp] = m.c.committed([TopicPartition(topic, 0)], timeout=15)
    assert (tp.offset, tp.metadata) == (4, "checkpoint é")


# ============================================================ 10. default join delay

def test_join_with_default_initial_rebalance_delay(broker_factory, topic, group, members):
    b = broker_factory()   # no config file: group_initial_rebalance_delay_ms is 3000
    create_topic(b.bootstrap, topic, partitions=2)
    m = members(b.bootstrap, group, name="m")
    start = time.monotonic()
    m.subscribe(topic)
    wait_for(lambda: m.partitions() == {0, 1}, [m], 20, "single member assigned")
    took = time.monotonic() - start
    print(f"\nfirst join with the default initial rebalance delay took {took:.2f}s")
    assert took < 10.0
    d = describe_group(ck_admin(b.bootstrap), group)
    assert d.state == ConsumerGroupState.STABLE and len(d.members) == 1


# ============================================================ 11. raw protocol

def _str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def _nstr(s) -> bytes:
    return b"\xff\xff" if s is None else _str(s)


def _bytes(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        vals = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return vals[0] if len(vals) == 1 else vals

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def bytes_(self):
        n = self.take(">i")
        if n < 0:
            return None
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b


class RawGroupClient:
    """Group APIs as struct-encoded frames (non-flexible versions, request header v1)."""

    def __init__(self, broker):
        self.s = socket.create_connection(broker.address, timeout=15)
        self.s.settimeout(15)
        self.corr = 0

    def call(self, api_key: int, version: int, body: bytes) -> _Reader:
        self.corr += 1
        self.s.sendall(frame(request_header_v1(api_key, version, self.corr) + body))
        corr, resp = read_response(self.s)
        assert corr == self.corr
        return _Reader(resp)

    def find_coordinator(self, group: str, timeout: float = 15.0):
        """FindCoordinator v0, retried while the offsets topic is being created."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.call(10, 0, _str(group))
            err, node = r.take(">hi")
            host = r.string()
            port = r.take(">i")
            if err != 15 or time.monotonic() > deadline:
                return err, node, host, port
            time.sleep(0.1)

    def join(self, group, member_id="", session_ms=SESSION_TIMEOUT_MS, protocol="range",
             metadata=b"", protocol_type="consumer", instance_id=None) -> dict:
        body = (_str(group) + struct.pack(">ii", session_ms, 10000) + _str(member_id)
                + _nstr(instance_id) + _str(protocol_type) + struct.pack(">i", 1)
                + _str(protocol) + _bytes(metadata))
        r = self.call(11, 5, body)
        _throttle, err, generation = r.take(">ihi")
        out = dict(error=err, generation=generation, protocol=r.string(), leader=r.string(),
                   member_id=r.string(), members=[])
        for _ in range(r.take(">i")):
            out["members"].append((r.string(), r.string(), r.bytes_()))
        return out

    def sync(self, group, generation, member_id, assignments=()):
        body = (_str(group) + struct.pack(">i", generation) + _str(member_id) + _nstr(None)
                + struct.pack(">i", len(assignments))
                + b"".join(_str(mid) + _bytes(a) for mid, a in assignments))
        r = self.call(14, 3, body)
        _throttle, err = r.take(">ih")
        return err, r.bytes_()

    def heartbeat(self, group, generation, member_id) -> int:
        r = self.call(12, 3, _str(group) + struct.pack(">i", generation) + _str(member_id)
                      + _nstr(None))
        return r.take(">ih")[1]

    def leave(self, group, member_id):
        r = self.call(13, 3, _str(group) + struct.pack(">i", 1) + _str(member_id) + _nstr(None))
        _throttle, err = r.take(">ih")
        members = [(r.string(), r.string(), r.take(">h")) for _ in range(r.take(">i"))]
        return err, members

    def close(self):
        self.s.close()


def _subscription(topic: str) -> bytes:
    """ConsumerProtocolSubscription v0."""
    return struct.pack(">hi", 0, 1) + _str(topic) + struct.pack(">i", -1)


def _assignment(topic: str, partitions) -> bytes:
    """ConsumerProtocolAssignment v0."""
    return (struct.pack(">hi", 0, 1) + _str(topic) + struct.pack(">i", len(partitions))
            + b"".join(struct.pack(">i", p) for p in partitions) + struct.pack(">i", -1))


def test_raw_group_protocol_error_codes(group_broker, topic, group):
    b = group_broker
    create_topic(b.bootstrap, topic, partitions=2)
    r = RawGroupClient(b)
    try:
        assert r.find_coordinator(group) == (0, 0, "127.0.0.1", b.port)

        assert r.join(group, session_ms=1000)["error"] == 26            # INVALID_SESSION_TIMEOUT
        assert r.join(group, session_ms=1_800_001)["error"] == 26
        first = r.join(group, metadata=_subscription(topic))
        assert first["error"] == 79, first                               # MEMBER_ID_REQUIRED
        member = first["member_id"]
        assert member, "MEMBER_ID_REQUIRED without a member id"

        joined = r.join(group, member_id=member, metadata=_subscription(topic))
        assert joined["error"] == 0, joined
        gen = joined["generation"]
        assert gen >= 1 and joined["protocol"] == "range"
        assert joined["leader"] == member and joined["member_id"] == member
        assert joined["members"] == [(member, None, _subscription(topic))]

        assignment = _assignment(topic, [0, 1])
        assert r.sync(group, gen + 1, member, [(member, assignment)])[0] == 22   # ILLEGAL_GENERATION
        assert r.sync(group, gen, "no-such-member", [])[0] == 25                 # UNKNOWN_MEMBER_ID
        assert r.sync(group, gen, member, [(member, assignment)]) == (0, assignment)

        assert r.heartbeat(group, gen, member) == 0
        assert r.heartbeat(group, gen, "no-such-member") == 25                   # UNKNOWN_MEMBER_ID
        assert r.heartbeat(group, gen + 5, member) == 22                         # ILLEGAL_GENERATION

        # A member with no protocol in common with the group's: INCONSISTENT_GROUP_PROTOCOL.
        r2 = RawGroupClient(b)
        try:
            assert r2.join(group, protocol="no-such-assignor",
                           metadata=_subscription(topic))["error"] == 23
        finally:
            r2.close()
        assert r.heartbeat(group, gen, member) == 0   # the group was not disturbed

        err, left = r.leave(group, member)
        assert err == 0 and [e for (_m, _i, e) in left] == [0], left
        assert r.heartbeat(group, gen, member) == 25
    finally:
        r.close()
    assert b.alive()


def test_offsets_topic_is_created_lazily(broker_factory, topic, group):
    b = broker_factory(config={**FAST, "offsets_topic_num_partitions": 5})
    create_topic(b.bootstrap, topic, partitions=1)
    admin = ck_admin(b.bootstrap)
    assert "__consumer_offsets" not in admin.list_topics(timeout=10).topics
    r = RawGroupClient(b)
    try:
        assert r.find_coordinator(group)[0] == 0
    finally:
        r.close()
    t = wait_for_topic(b.bootstrap, "__consumer_offsets", 5)
    assert all(p.leader == 0 for p in t.partitions.values())
    assert b.stop() == 0
    b.start()
    wait_for_topic(b.bootstrap, "__consumer_offsets", 5)
