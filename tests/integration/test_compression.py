"""Every codec, across clients: confluent-kafka -> kafka-python and back."""

import os
import random

import pytest

from harness import ck_consume, ck_producer, ck_produce_all, kp_consume, kp_producer

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N = 600


def _payloads(seed):
    rnd = random.Random(seed)
    out = []
    for i in range(N):
        if i % 3 == 0:
            value = os.urandom(rnd.randint(0, 300))          # incompressible
        else:
            value = (b"compressible-%d-" % i) * rnd.randint(1, 200)
        key = None if i % 10 == 0 else b"key-%d" % (i % 17)
        headers = [("i", str(i).encode()), ("codec-test", b"\x00\x01\xff")]
        out.append((key, value, headers))
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_to_kafka_python(broker, topic, codec):
    items = _payloads(1)
    p = ck_producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 50,
                                         "batch.num.messages": 200})
    dl = ck_produce_all(p, topic, items, partition=0)
    assert dl.errors == []
    assert sorted(o for (_t, _p, o, _k, _v) in dl.ok) == list(range(N))

    recs = kp_consume(broker.bootstrap, [(topic, 0, 0)], expected=N)
    assert len(recs) == N
    assert [r.offset for r in recs] == list(range(N))
    got = [(r.key, r.value, [(k, v) for k, v in r.headers]) for r in recs]
    assert got == items


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_to_confluent(broker, topic, codec):
    items = _payloads(2)
    p = kp_producer(broker.bootstrap, compression_type=None if codec == "none" else codec,
                    linger_ms=50, batch_size=256 * 1024)
    futs = [p.send(topic, key=k, value=v, headers=h, partition=0) for (k, v, h) in items]
    p.flush(60)
    offsets = [f.get(timeout=30).offset for f in futs]
    assert offsets == list(range(N))
    p.close()

    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=N)
    assert len(msgs) == N
    assert [m[2] for m in msgs] == list(range(N))
    got = [(m[3], m[4], list(m[5] or [])) for m in msgs]
    assert got == items


@pytest.mark.parametrize("codec", CODECS)
def test_mixed_codecs_same_partition(broker, topic, codec):
    """Batches with different codecs interleaved in one partition read back in order."""
    expected = []
    for round_ in range(3):
        for c in (codec, "none", "gzip" if codec != "gzip" else "zstd"):
            p = ck_producer(broker.bootstrap, **{"compression.type": c, "linger.ms": 20})
            vals = [(b"r%d" % round_, b"%s-%d-%d" % (c.encode(), round_, i) * 20)
                    for i in range(50)]
            ck_produce_all(p, topic, vals, partition=0)
            expected += vals
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(expected))
    assert [(m[3], m[4]) for m in msgs] == expected
    recs = kp_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(expected))
    assert [(r.key, r.value) for r in recs] == expected
