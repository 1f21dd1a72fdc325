"""Record edge cases: headers, null key, tombstones, large values, MESSAGE_TOO_LARGE."""

import hashlib
import os

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import ConfigResource, ResourceType

from harness import (ck_admin, ck_consume, ck_producer, ck_produce_all, create_topic,
                     kp_consume, kp_producer)


def test_headers_roundtrip_both_clients(broker, topic):
    headers = [("a", b"1"), ("a", b"2"), ("empty", b""), ("bin", bytes(range(256))),
               ("unicode-\u00e9", "v\u00e9".encode())]
    p = ck_producer(broker.bootstrap)
    ck_produce_all(p, topic, [(b"k", b"with headers", headers), (b"k2", b"no headers", None)],
                   partition=0)
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=2)
    assert [m[4] for m in msgs] == [b"with headers", b"no headers"]
    assert list(msgs[0][5]) == headers
    assert not msgs[1][5]

    recs = kp_consume(broker.bootstrap, [(topic, 0, 0)], expected=2)
    assert [(k, v) for k, v in recs[0].headers] == headers
    assert list(recs[1].headers) == []


def test_null_key_null_value_empty_value(broker, topic):
    p = ck_producer(broker.bootstrap)
    items = [(None, b"no key"), (b"tomb", None), (b"empty", b""), (None, None), (b"", b"empty key")]
    ck_produce_all(p, topic, items, partition=0)

    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(items))
    assert [(m[3], m[4]) for m in msgs] == items

    recs = kp_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(items))
    assert [(r.key, r.value) for r in recs] == items


def test_900kb_values(broker, topic):
    values = [os.urandom(900 * 1024) for _ in range(4)]
    p = ck_producer(broker.bootstrap, **{"message.max.bytes": 2_000_000})
    dl = ck_produce_all(p, topic, [(b"big-%d" % i, v) for i, v in enumerate(values)], partition=0)
    assert dl.errors == [] and len(dl.ok) == 4

    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=4)
    assert [hashlib.sha256(m[4]).hexdigest() for m in msgs] == \
        [hashlib.sha256(v).hexdigest() for v in values]

    recs = kp_consume(broker.bootstrap, [(topic, 0, 0)], expected=4)
    assert [r.value == v for r, v in zip(recs, values)] == [True] * 4

    # kafka-python producer sends them too
    kp = kp_producer(broker.bootstrap, max_request_size=2_000_000)
    md = kp.send(topic, key=b"kp-big", value=values[0], partition=0).get(timeout=30)
    assert md.offset == 4
    kp.close()


def _topic_max_message_bytes(broker, topic):
    admin = ck_admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return int(admin.describe_configs([res])[res].result(30)["max.message.bytes"].value)


def test_too_large_rejected_by_broker_confluent(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    limit = _topic_max_message_bytes(broker, topic)
    assert 900 * 1024 < limit < 2 * 1024 * 1024, f"unexpected default max.message.bytes {limit}"

    # Client limits raised far above the value so only the broker can reject it.
    p = ck_producer(broker.bootstrap, **{"message.max.bytes": 10_000_000,
                                         "compression.type": "none", "retries": 0})
    errs = []

    def cb(err, msg):
        errs.append(err)

    p.produce(topic, key=b"huge", value=os.urandom(2 * 1024 * 1024), partition=0, on_delivery=cb)
    assert p.flush(60) == 0
    assert len(errs) == 1 and errs[0] is not None, errs
    assert errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs[0]   # broker error code 10
    assert errs[0].code() == 10

    # Partition still healthy; the rejected record was not stored.
    dl = ck_produce_all(p, topic, [(b"small", b"after")], partition=0)
    assert [o for (_t, _p, o, _k, _v) in dl.ok] == [0]
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=1)
    assert [(m[2], m[4]) for m in msgs] == [(0, b"after")]


def test_too_large_rejected_by_broker_kafka_python(broker, topic):
    import kafka.errors as Errors

    create_topic(broker.bootstrap, topic, partitions=1)
    kp = kp_producer(broker.bootstrap, max_request_size=10_000_000, retries=0)
    fut = kp.send(topic, value=os.urandom(2 * 1024 * 1024), partition=0)
    with pytest.raises(Errors.MessageSizeTooLargeError) as ei:
        fut.get(timeout=60)
    assert "max_request_size" not in str(ei.value), f"client-side rejection: {ei.value}"
    assert ei.value.errno == 10
    assert kp.send(topic, value=b"ok", partition=0).get(timeout=30).offset == 0
    kp.close()


def test_topic_max_message_bytes_override(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1, config={"max.message.bytes": "200000"})
    p = ck_producer(broker.bootstrap, **{"message.max.bytes": 10_000_000, "retries": 0})
    errs = []
    p.produce(topic, value=os.urandom(150_000), partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    p.produce(topic, value=os.urandom(300_000), partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert errs[0] is None, errs[0]
    assert errs[1] is not None and errs[1].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs[1]
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=1)
    assert [(m[2], len(m[4])) for m in msgs] == [(0, 150_000)]
