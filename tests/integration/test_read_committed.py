"""The read path of transactions with real clients: DescribeProducers and WriteTxnMarkers (kafka-python's
transaction admin calls), read_committed and read_uncommitted consumers (confluent-kafka, kafka-python)
over idempotent and transactional data, ListOffsets with read_committed (the last stable offset).

Tests marked `needs the transaction coordinator` drive a confluent-kafka transactional producer, which
needs FindCoordinator for transactions, InitProducerId with a transactional id, AddPartitionsToTxn and
EndTxn (built in parallel); they are expected to pass once it is merged.
"""

import pytest
from confluent_kafka import TopicPartition as CkTopicPartition

from harness import ck_consume, ck_consumer, ck_produce_all, ck_producer, create_topic, kp_consume



@pytest.fixture
def kp_admin(broker):
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    yield admin
    admin.close()


def _idempotent_records(broker, topic, count):
    producer = ck_producer(broker.bootstrap, **{"enable.idempotence": True})
    log = ck_produce_all(producer, topic, [(b"k%d" % i, b"v%d" % i) for i in range(count)],
                         partition=0)
    assert [offset for (_t, _p, offset, _k, _v) in log.ok] == list(range(count))


def _producers(kp_admin, topic, partition=0):
    from kafka import TopicPartition
    states = kp_admin.describe_producers([TopicPartition(topic, partition)])
    return states[TopicPartition(topic, partition)].active_producers


def _watermarks(bootstrap, topic, isolation_level):
    consumer = ck_consumer(bootstrap, **{"isolation.level": isolation_level})
    try:
        return consumer.get_watermark_offsets(CkTopicPartition(topic, 0), timeout=10,
                                              cached=False)
    finally:
        consumer.close()


def test_describe_producers_reports_an_idempotent_producer(broker, topic, kp_admin):
    from kafka import TopicPartition
    from kafka.errors import UnknownTopicOrPartitionError
    create_topic(broker.bootstrap, topic, partitions=1)
    _idempotent_records(broker, topic, 5)
    (producer,) = _producers(kp_admin, topic)
    assert producer.producer_id >= 0
    assert producer.producer_epoch >= 0
    assert producer.last_sequence == 4
    assert producer.last_timestamp > 0
    assert producer.current_transaction_start_offset == -1
    with pytest.raises(UnknownTopicOrPartitionError):
        kp_admin.describe_producers([TopicPartition(topic, 3)], broker_id=0)


def test_an_abort_marker_is_skipped_by_consumers_of_both_isolation_levels(broker, topic, kp_admin):
    """kafka-python's abort_transaction sends WriteTxnMarkers (ABORT) to the partition leader: the
    control batch takes an offset, and no consumer returns it as a record."""
    from kafka import TopicPartition
    from kafka.admin import AbortTransactionSpec
    create_topic(broker.bootstrap, topic, partitions=1)
    _idempotent_records(broker, topic, 5)
    (producer,) = _producers(kp_admin, topic)
    kp_admin.abort_transaction(AbortTransactionSpec(
        topic_partition=TopicPartition(topic, 0),
        producer_id=producer.producer_id,
        producer_epoch=producer.producer_epoch,
    ))
    assert _watermarks(broker.bootstrap, topic, "read_uncommitted") == (0, 6)
    assert _watermarks(broker.bootstrap, topic, "read_committed") == (0, 6)
    expected = [b"v%d" % i for i in range(5)]
    for isolation in ("read_uncommitted", "read_committed"):
        records = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=5,
                             **{"isolation.level": isolation})
        assert [value for (_t, _p, _o, _k, value, _h, _ts) in records] == expected, isolation
        records = kp_consume(broker.bootstrap, [(topic, 0, 0)], expected=5,
                             isolation_level=isolation)
        assert [record.value for record in records] == expected, isolation
    # The producer went on after the marker: its next records are read past it.
    _idempotent_records_after = ck_producer(broker.bootstrap, **{"enable.idempotence": True})
    ck_produce_all(_idempotent_records_after, topic, [(b"k", b"after")], partition=0)
    records = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=6,
                         **{"isolation.level": "read_committed"})
    assert [value for (_t, _p, _o, _k, value, _h, _ts) in records] == expected + [b"after"]


def test_markers_and_producer_state_reach_partitions_on_every_shard(broker_factory, topic):
    """With two shards the partitions of one request live on both: DescribeProducers and
    WriteTxnMarkers are split by owning shard and answered in request order."""
    from kafka import TopicPartition
    from kafka.admin import AbortTransactionSpec, KafkaAdminClient
    broker = broker_factory(shards=2)
    create_topic(broker.bootstrap, topic, partitions=4)
    producer = ck_producer(broker.bootstrap, **{"enable.idempotence": True})
    for partition in range(4):
        ck_produce_all(producer, topic, [(None, b"v%d-%d" % (partition, i))
                                         for i in range(partition + 1)], partition=partition)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    try:
        partitions = [TopicPartition(topic, partition) for partition in range(4)]
        states = admin.describe_producers(partitions, broker_id=0)
        last_sequences = [[state.last_sequence for state in states[tp].active_producers]
                          for tp in partitions]
        assert last_sequences == [[0], [1], [2], [3]]
        (producer_state,) = states[partitions[0]].active_producers
        for tp in partitions:
            admin.abort_transaction(AbortTransactionSpec(
                topic_partition=tp, producer_id=producer_state.producer_id,
                producer_epoch=producer_state.producer_epoch))
    finally:
        admin.close()
    consumer = ck_consumer(broker.bootstrap, **{"isolation.level": "read_committed"})
    try:
        ends = [consumer.get_watermark_offsets(CkTopicPartition(topic, partition), timeout=10,
                                               cached=False)[1] for partition in range(4)]
    finally:
        consumer.close()
    assert ends == [2, 3, 4, 5], "one marker after each partition's records"


def _transactional_producer(broker, transactional_id):
    producer = ck_producer(broker.bootstrap, **{"transactional.id": transactional_id,
                                                "transaction.timeout.ms": 60000})
    producer.init_transactions(30)
    return producer


def _send_transaction(producer, topic, values, commit):
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(30) == 0
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def test_read_committed_skips_aborted_transactions_read_uncommitted_sees_them(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    producer = _transactional_producer(broker, f"{topic}-txn")
    committed_first = [b"c%d" % i for i in range(5)]
    aborted = [b"a%d" % i for i in range(3)]
    committed_last = [b"d%d" % i for i in range(2)]
    _send_transaction(producer, topic, committed_first, commit=True)
    _send_transaction(producer, topic, aborted, commit=False)
    _send_transaction(producer, topic, committed_last, commit=True)

    committed = committed_first + committed_last
    records = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(committed),
                         settle=1.0, **{"isolation.level": "read_committed"})
    assert [value for (_t, _p, _o, _k, value, _h, _ts) in records] == committed
    records = kp_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(committed),
                         settle=1.0, isolation_level="read_committed")
    assert [record.value for record in records] == committed
    everything = committed_first + aborted + committed_last
    records = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(everything),
                         settle=1.0, **{"isolation.level": "read_uncommitted"})
    assert [value for (_t, _p, _o, _k, value, _h, _ts) in records] == everything


def test_an_open_transaction_holds_read_committed_consumers_at_the_last_stable_offset(
        broker, topic, kp_admin):
    create_topic(broker.bootstrap, topic, partitions=1)
    plain = ck_producer(broker.bootstrap)
    ck_produce_all(plain, topic, [(None, b"p0"), (None, b"p1")], partition=0)
    producer = _transactional_producer(broker, f"{topic}-txn")
    producer.begin_transaction()
    for value in (b"t0", b"t1", b"t2"):
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(30) == 0

    assert _watermarks(broker.bootstrap, topic, "read_committed") == (0, 2)
    assert _watermarks(broker.bootstrap, topic, "read_uncommitted") == (0, 5)
    transactional = [state for state in _producers(kp_admin, topic)
                     if state.current_transaction_start_offset != -1]
    assert [state.current_transaction_start_offset for state in transactional] == [2]
    records = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=2, settle=1.0,
                         **{"isolation.level": "read_committed"})
    assert [value for (_t, _p, _o, _k, value, _h, _ts) in records] == [b"p0", b"p1"]
    records = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=5,
                         **{"isolation.level": "read_uncommitted"})
    assert len(records) == 5

    producer.commit_transaction(30)
    assert _watermarks(broker.bootstrap, topic, "read_committed") == (0, 6)
    records = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=5,
                         **{"isolation.level": "read_committed"})
    assert [value for (_t, _p, _o, _k, value, _h, _ts) in records] == [
        b"p0", b"p1", b"t0", b"t1", b"t2"]
