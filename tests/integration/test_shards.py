"""A 2-shard broker with many connections and many partitions."""

import threading
from collections import defaultdict

from harness import DeliveryLog, ck_consume, ck_producer, create_topic, kp_consume

N_PRODUCERS = 20
PER_PRODUCER = 3000
N_TOPICS = 3
N_PARTS = 8


def test_two_shards_many_connections_exactly_once(broker_factory, topic):
    broker = broker_factory(shards=2)
    topics = [f"{topic}-t{i}" for i in range(N_TOPICS)]
    for t in topics:
        create_topic(broker.bootstrap, t, partitions=N_PARTS)

    logs = [DeliveryLog() for _ in range(N_PRODUCERS)]
    failures = []

    def producer(idx):
        try:
            p = ck_producer(broker.bootstrap, **{"linger.ms": 5, "client.id": f"prod-{idx}"})
            for i in range(PER_PRODUCER):
                key = b"p%d-k%d" % (idx, i % 40)
                while True:
                    try:
                        p.produce(topics[i % N_TOPICS], key=key, value=b"%d:%d" % (idx, i),
                                  on_delivery=logs[idx])
                        break
                    except BufferError:
                        p.poll(0.05)
                p.poll(0)
            left = p.flush(120)
            if left:
                failures.append(f"producer {idx}: {left} undelivered")
        except Exception as e:  # pragma: no cover - reported below
            failures.append(f"producer {idx}: {e!r}")

    threads = [threading.Thread(target=producer, args=(i,), daemon=True) for i in range(N_PRODUCERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(170)
    assert not failures, failures
    errors = [e for dl in logs for e in dl.errors]
    assert not errors, errors[:5]
    total = N_PRODUCERS * PER_PRODUCER
    assert sum(len(dl.ok) for dl in logs) == total

    # Every partition of every topic received data (keys spread over partitions).
    acked = defaultdict(list)
    for dl in logs:
        for (t, p, o, _k, v) in dl.ok:
            acked[(t, p)].append(o)
    assert len(acked) == N_TOPICS * N_PARTS
    for tp, offs in acked.items():
        assert sorted(offs) == list(range(len(offs))), f"{tp}: offsets not unique and dense"

    assignments = [(t, p, 0) for t in topics for p in range(N_PARTS)]
    msgs = ck_consume(broker.bootstrap, assignments, expected=total, timeout=150)
    values = [m[4] for m in msgs]
    assert len(values) == total
    assert len(set(values)) == total, "duplicates"
    assert set(values) == {b"%d:%d" % (i, j) for i in range(N_PRODUCERS) for j in range(PER_PRODUCER)}

    # Per (producer, key) order preserved.
    last = {}
    for (t, p, o, key, value, _h, _ts) in msgs:
        idx, i = map(int, value.split(b":"))
        k = (t, key)
        assert last.get(k, -1) < i, f"order violated for {k}"
        last[k] = i

    # kafka-python reads one topic fully as well, through the other shard(s).
    sub = [(topics[1], p, 0) for p in range(N_PARTS)]
    expected = sum(len(acked[(topics[1], p)]) for p in range(N_PARTS))
    recs = kp_consume(broker.bootstrap, sub, expected=expected, timeout=120)
    assert len(recs) == expected
    assert broker.alive()
