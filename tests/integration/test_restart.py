"""Durability across a clean restart (SIGTERM) and a crash (SIGKILL)."""

import threading
import time
from collections import defaultdict

from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

from harness import (DeliveryLog, ck_admin, ck_consume, ck_producer, ck_produce_all,
                     create_topic, wait_for_topic)


def _offsets_by_partition(dl):
    d = defaultdict(list)
    for (_t, p, o, _k, _v) in dl.ok:
        d[p].append(o)
    return {p: sorted(v) for p, v in d.items()}


def test_clean_restart_keeps_data_and_offsets_continue(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2, config={"segment.bytes": "65536"})
    p = ck_producer(broker.bootstrap)
    first = [(b"k%d" % (i % 5), b"before-%d-" % i + b"x" * 200) for i in range(1000)]
    dl1 = ck_produce_all(p, topic, first)
    assert dl1.errors == []
    before = _offsets_by_partition(dl1)
    for part, offs in before.items():
        assert offs == list(range(len(offs)))
    del p

    rc = broker.stop()
    assert rc == 0, f"broker exit code after SIGTERM: {rc}"
    broker.restart()

    t = wait_for_topic(broker.bootstrap, topic, 2)
    assert all(pm.leader == 0 for pm in t.partitions.values())
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0), (topic, 1, 0)], expected=1000)
    assert sorted(m[4] for m in msgs) == sorted(v for _k, v in first)
    pos = {(m[1], m[2]): m[4] for m in msgs}
    for (_t, part, off, _k, v) in dl1.ok:
        assert pos[(part, off)] == v

    p = ck_producer(broker.bootstrap)
    second = [(b"k%d" % (i % 5), b"after-%d" % i) for i in range(500)]
    dl2 = ck_produce_all(p, topic, second)
    assert dl2.errors == []
    after = _offsets_by_partition(dl2)
    for part, offs in after.items():
        start = len(before.get(part, []))
        assert offs == list(range(start, start + len(offs))), f"partition {part}: gap/overlap"

    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0), (topic, 1, 0)], expected=1500)
    assert len(msgs) == 1500
    for part in (0, 1):
        offs = [m[2] for m in msgs if m[1] == part]
        assert offs == list(range(len(offs)))


def test_topic_config_and_partitions_persist_across_restart(broker, topic):
    from confluent_kafka.admin import NewPartitions
    create_topic(broker.bootstrap, topic, partitions=2,
                 config={"max.message.bytes": "300000", "message.timestamp.type": "LogAppendTime"})
    admin = ck_admin(broker.bootstrap)
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(30)
    wait_for_topic(broker.bootstrap, topic, 4)

    assert broker.stop() == 0
    broker.restart()

    wait_for_topic(broker.bootstrap, topic, 4)
    admin = ck_admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([res])[res].result(30)
    assert entries["max.message.bytes"].value == "300000"
    assert ConfigSource(entries["max.message.bytes"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert entries["message.timestamp.type"].value == "LogAppendTime"


def test_deleted_topic_stays_deleted_after_restart(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    ck_produce_all(ck_producer(broker.bootstrap), topic, [(None, b"x")])
    admin = ck_admin(broker.bootstrap)
    admin.delete_topics([topic])[topic].result(30)
    assert broker.stop() == 0
    broker.restart()
    assert topic not in ck_admin(broker.bootstrap).list_topics(timeout=10).topics


def test_kill9_during_acks_all_production(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    p = ck_producer(broker.bootstrap, **{"acks": "all", "linger.ms": 2,
                                         "message.timeout.ms": 5000,
                                         "retries": 2, "retry.backoff.ms": 100})
    dl = DeliveryLog()
    stop = threading.Event()
    sent = [0]

    def run():
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, key=b"k%d" % (i % 30), value=b"val-%08d" % i, on_delivery=dl)
                i += 1
            except BufferError:
                p.poll(0.01)
                continue
            if i % 100 == 0:
                p.poll(0)
                time.sleep(0.001)
        sent[0] = i

    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    while dl.count < 20_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dl.count > 0, "no acknowledgements before the kill"
    broker.kill9()
    time.sleep(0.5)
    stop.set()
    th.join(30)
    p.flush(20)          # everything un-acked now times out (broker is down)
    p.purge()
    acked = list(dl.ok)
    assert len(acked) >= 1000, len(acked)

    broker.restart()
    wait_for_topic(broker.bootstrap, topic, 3)

    from confluent_kafka import TopicPartition
    from harness import ck_consumer
    c = ck_consumer(broker.bootstrap)
    ends = {q: c.get_watermark_offsets(TopicPartition(topic, q), timeout=10) for q in range(3)}
    c.close()
    total = sum(hi - lo for lo, hi in ends.values())
    msgs = ck_consume(broker.bootstrap, [(topic, q, 0) for q in range(3)], expected=total,
                      timeout=120)
    assert len(msgs) == total
    log = {(m[1], m[2]): m[4] for m in msgs}
    for q in range(3):
        offs = sorted(o for (pp, o) in log if pp == q)
        assert offs == list(range(ends[q][1])), f"partition {q}: offsets not dense after recovery"

    missing = [(pp, o, v) for (_t, pp, o, _k, v) in acked if log.get((pp, o)) != v]
    assert not missing, (f"{len(missing)} of {len(acked)} acknowledged records lost or changed "
                         f"after kill -9, e.g. {missing[:5]}")

    # Production resumes at the recovered end offsets.
    p2 = ck_producer(broker.bootstrap)
    dl2 = ck_produce_all(p2, topic, [(None, b"post-crash")], partition=0)
    assert dl2.ok[0][2] == ends[0][1]
