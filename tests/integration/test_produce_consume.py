"""Bulk keyed produce/consume with confluent-kafka, plus acks=0/1."""

from collections import defaultdict

import pytest
from confluent_kafka import TopicPartition

from harness import ck_consume, ck_consumer, ck_producer, ck_produce_all, create_topic

N_MESSAGES = 120_000
N_KEYS = 1_000
N_PARTITIONS = 8


def test_bulk_keyed_8_partitions(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=N_PARTITIONS)
    p = ck_producer(broker.bootstrap, **{"linger.ms": 20, "batch.num.messages": 10000,
                                         "queue.buffering.max.messages": 500000,
                                         "queue.buffering.max.kbytes": 512 * 1024})
    seq = defaultdict(int)
    items = []
    for i in range(N_MESSAGES):
        k = f"key-{i % N_KEYS}"
        items.append((k.encode(), f"{k}:{seq[k]}".encode()))
        seq[k] += 1
    dl = ck_produce_all(p, topic, items, timeout=120)
    assert dl.errors == []
    assert len(dl.ok) == N_MESSAGES

    # Acknowledged offsets are unique and dense per partition.
    acked = defaultdict(list)
    for (_t, part, off, _k, _v) in dl.ok:
        acked[part].append(off)
    assert len(acked) == N_PARTITIONS, "default partitioner should spread 1000 keys over all 8"
    for part, offs in acked.items():
        assert sorted(offs) == list(range(len(offs))), f"partition {part} offsets not dense"
    dr_by_pos = {(part, off): v for (_t, part, off, _k, v) in dl.ok}

    msgs = ck_consume(broker.bootstrap, [(topic, q, 0) for q in range(N_PARTITIONS)],
                      expected=N_MESSAGES, timeout=120)
    assert len(msgs) == N_MESSAGES

    key_partition = {}
    last_seq = {}
    positions = set()
    for (_t, part, off, key, value, _h, _ts) in msgs:
        assert (part, off) not in positions, f"duplicate delivery of {part}@{off}"
        positions.add((part, off))
        assert dr_by_pos[(part, off)] == value
        k, s = value.decode().rsplit(":", 1)
        assert key.decode() == k
        assert key_partition.setdefault(k, part) == part, f"{k} found in two partitions"
        s = int(s)
        assert s == last_seq.get(k, -1) + 1, f"{k}: got seq {s} after {last_seq.get(k)}"
        last_seq[k] = s
    assert last_seq == {k: n - 1 for k, n in seq.items()}

    c = ck_consumer(broker.bootstrap)
    try:
        for q in range(N_PARTITIONS):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, q), timeout=10)
            assert (lo, hi) == (0, len(acked[q]))
    finally:
        c.close()


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_levels(broker, topic, acks):
    create_topic(broker.bootstrap, topic, partitions=2)
    p = ck_producer(broker.bootstrap, acks=acks)
    n = 2000
    dl = ck_produce_all(p, topic, [(b"k%d" % (i % 7), b"v%d" % i) for i in range(n)])
    assert dl.errors == [] and len(dl.ok) == n
    if acks != "0":
        assert all(off >= 0 for (_t, _p, off, _k, _v) in dl.ok)
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0), (topic, 1, 0)], expected=n)
    assert sorted(m[4] for m in msgs) == sorted(b"v%d" % i for i in range(n))
    for part in (0, 1):
        offs = [m[2] for m in msgs if m[1] == part]
        assert offs == list(range(len(offs)))


def test_consume_from_middle_offset(broker, topic):
    p = ck_producer(broker.bootstrap)
    dl = ck_produce_all(p, topic, [(None, b"m%d" % i) for i in range(300)], partition=0)
    assert [o for (_t, _p, o, _k, _v) in dl.ok] == list(range(300))
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 123)], expected=177)
    assert [(m[2], m[4]) for m in msgs] == [(i, b"m%d" % i) for i in range(123, 300)]
