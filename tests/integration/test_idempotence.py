"""Idempotent producers: confluent-kafka across a restart, and kafka-python 3's default."""

import threading
import time
from collections import defaultdict

import pytest

from harness import DeliveryLog, ck_consume, ck_producer, create_topic, kp_consume, kp_producer

N = 30_000
N_KEYS = 16


def _check_exactly_once_in_order(msgs, n):
    values = [m[4] for m in msgs]
    counts = defaultdict(int)
    for v in values:
        counts[v] += 1
    dups = [v for v, c in counts.items() if c > 1]
    missing = [i for i in range(n) if (b"%08d" % i) not in counts]
    assert not dups, f"{len(dups)} duplicated values, e.g. {dups[:5]}"
    assert not missing, f"{len(missing)} missing values, e.g. {missing[:5]}"
    assert len(values) == n
    last = {}
    for (_t, part, off, key, value, _h, _ts) in msgs:
        i = int(value)
        assert last.get(key, -1) < i, f"key {key}: {i} after {last.get(key)} (reordered)"
        last[key] = i
    for part in {m[1] for m in msgs}:
        offs = [m[2] for m in msgs if m[1] == part]
        assert offs == list(range(len(offs))), f"partition {part} has offset gaps"


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_confluent_idempotent_producer_across_restart(broker, topic, how):
    create_topic(broker.bootstrap, topic, partitions=4)
    p = ck_producer(broker.bootstrap, **{"enable.idempotence": True, "linger.ms": 5,
                                         "message.timeout.ms": 90000,
                                         "retry.backoff.ms": 50,
                                         "reconnect.backoff.max.ms": 500})
    dl = DeliveryLog()
    produced = [0]

    def run():
        for i in range(N):
            while True:
                try:
                    p.produce(topic, key=b"key-%d" % (i % N_KEYS), value=b"%08d" % i,
                              on_delivery=dl)
                    break
                except BufferError:
                    p.poll(0.05)
            produced[0] = i + 1
            if i % 50 == 0:
                p.poll(0)
                time.sleep(0.002)      # pace so the restart lands mid-stream

    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    while dl.count < N // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dl.count > 0
    if how == "sigterm":
        assert broker.stop() == 0
    else:
        broker.kill9()      # in-flight batches may be persisted without an ack
    time.sleep(1.0)
    broker.restart()
    th.join(120)
    assert not th.is_alive()
    assert p.flush(120) == 0
    assert produced[0] == N
    assert dl.errors == [], f"{len(dl.errors)} delivery errors, e.g. {dl.errors[:3]}"
    assert len(dl.ok) == N
    # Some of the stream must have been produced after the restart.
    assert broker.starts == 2

    msgs = ck_consume(broker.bootstrap, [(topic, q, 0) for q in range(4)], expected=N,
                      timeout=120, settle=1.0)
    _check_exactly_once_in_order(msgs, N)
    pos = {(m[1], m[2]): m[4] for m in msgs}
    for (_t, part, off, _k, v) in dl.ok:
        assert pos.get((part, off)) == v, f"acked {v} at {part}@{off} but log has {pos.get((part, off))}"


def test_kafka_python_default_idempotent_producer(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    kp = kp_producer(broker.bootstrap)
    assert kp.config["enable_idempotence"] is True   # kafka-python 3.x default
    futs = [kp.send(topic, key=b"key-%d" % (i % N_KEYS), value=b"%08d" % i) for i in range(3000)]
    kp.flush(60)
    mds = [f.get(timeout=30) for f in futs]
    assert all(md.offset >= 0 for md in mds)
    kp.close()

    recs = kp_consume(broker.bootstrap, [(topic, 0, 0), (topic, 1, 0)], expected=3000)
    msgs = [(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp) for r in recs]
    _check_exactly_once_in_order(msgs, 3000)


def test_confluent_idempotent_producer_high_inflight(broker, topic):
    """max.in.flight=5 with many small batches: sequence numbers must be accepted in order."""
    create_topic(broker.bootstrap, topic, partitions=1)
    p = ck_producer(broker.bootstrap, **{"enable.idempotence": True, "linger.ms": 0,
                                         "batch.num.messages": 10,
                                         "max.in.flight.requests.per.connection": 5})
    dl = DeliveryLog()
    for i in range(5000):
        p.produce(topic, key=b"k", value=b"%08d" % i, on_delivery=dl)
        p.poll(0)
    assert p.flush(60) == 0
    assert dl.errors == []
    assert sorted(o for (_t, _p, o, _k, _v) in dl.ok) == list(range(5000))
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=5000)
    _check_exactly_once_in_order(msgs, 5000)
