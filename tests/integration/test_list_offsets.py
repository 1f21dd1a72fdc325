"""ListOffsets: earliest, latest, by timestamp, max timestamp."""

import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

from harness import ck_admin, ck_consumer, ck_producer, create_topic, kp_consumer

BASE = (int(time.time()) - 3600) * 1000  # an hour ago, whole seconds


def _produce_timestamps(broker, topic, timestamps, batched_prefix):
    """First `batched_prefix` records go in one batch, the rest one batch each."""
    p = ck_producer(broker.bootstrap, **{"linger.ms": 200})
    for i, ts in enumerate(timestamps):
        p.produce(topic, value=b"v%d" % i, partition=0, timestamp=ts)
        if i >= batched_prefix - 1:
            assert p.flush(30) == 0
    assert p.flush(30) == 0


def test_earliest_latest_and_by_timestamp_confluent(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    stamps = [BASE + i * 1000 for i in range(10)]
    _produce_timestamps(broker, topic, stamps, batched_prefix=5)

    c = ck_consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 10)

        def lookup(ts):
            (r,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert r.error is None
            return r.offset

        assert lookup(BASE - 5000) == 0
        assert lookup(BASE) == 0
        assert lookup(BASE + 1) == 1
        assert lookup(BASE + 2500) == 3        # inside the first (multi-record) batch
        assert lookup(BASE + 4000) == 4
        assert lookup(BASE + 4001) == 5        # first of the single-record batches
        assert lookup(BASE + 7000) == 7
        assert lookup(BASE + 9000) == 9
        assert lookup(BASE + 9001) == -1       # past the end: OFFSET_END
    finally:
        c.close()

    # Consumed timestamps are the producer-assigned CreateTime values.
    from harness import ck_consume
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=10)
    assert [m[6][1] for m in msgs] == stamps


def test_admin_list_offsets_and_max_timestamp_confluent(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    # Non-monotonic timestamps: the max is at offset 2.
    stamps = [BASE + 1000, BASE + 3000, BASE + 9000, BASE + 2000, BASE + 5000]
    _produce_timestamps(broker, topic, stamps, batched_prefix=3)

    admin = ck_admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)

    def lo(spec):
        res = admin.list_offsets({tp: spec}, request_timeout=15)[tp].result(30)
        return res.offset, res.timestamp

    assert lo(OffsetSpec.earliest())[0] == 0
    assert lo(OffsetSpec.latest())[0] == 5
    assert lo(OffsetSpec.max_timestamp()) == (2, BASE + 9000)
    assert lo(OffsetSpec.for_timestamp(BASE + 2500))[0] == 1
    assert lo(OffsetSpec.for_timestamp(BASE + 9000))[0] == 2
    assert lo(OffsetSpec.for_timestamp(BASE + 9001))[0] == -1


def test_list_offsets_kafka_python(broker, topic):
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient, OffsetSpec as KOffsetSpec

    create_topic(broker.bootstrap, topic, partitions=2)
    stamps = [BASE + i * 1000 for i in range(6)]
    _produce_timestamps(broker, topic, stamps, batched_prefix=3)
    tp, tp1 = KTP(topic, 0), KTP(topic, 1)

    c = kp_consumer(broker.bootstrap)
    try:
        assert c.beginning_offsets([tp, tp1]) == {tp: 0, tp1: 0}
        assert c.end_offsets([tp, tp1]) == {tp: 6, tp1: 0}
        res = c.offsets_for_times({tp: BASE + 1500})
        assert res[tp].offset == 2 and res[tp].timestamp == BASE + 2000
        res = c.offsets_for_times({tp: BASE})
        assert res[tp].offset == 0 and res[tp].timestamp == BASE
        assert c.offsets_for_times({tp: BASE + 60_000})[tp] is None
        assert c.offsets_for_times({tp1: BASE})[tp1] is None
    finally:
        c.close()

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    try:
        res = admin.list_partition_offsets({tp: KOffsetSpec.MAX_TIMESTAMP,
                                            tp1: KOffsetSpec.LATEST})
        assert res[tp].offset == 5 and res[tp].timestamp == BASE + 5000
        assert res[tp1].offset == 0
        res = admin.list_partition_offsets({tp: KOffsetSpec.EARLIEST})
        assert res[tp].offset == 0
    finally:
        admin.close()


def test_log_append_time_topic(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1,
                 config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    p = ck_producer(broker.bootstrap)
    p.produce(topic, value=b"x", partition=0, timestamp=BASE)   # ignored by the broker
    assert p.flush(30) == 0
    after = int(time.time() * 1000)
    from harness import ck_consume
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    (m,) = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=1)
    ts_type, ts = m[6]
    assert ts_type == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= after + 1000, (before, ts, after)
