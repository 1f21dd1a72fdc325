"""Transactional offsets (TxnOffsetCommit, API 28) against the real binary.

TxnOffsetCommit is driven with kafka-python's protocol classes (the frames a transactional producer
sends from `send_offsets_to_transaction`), with a producer id from InitProducerId. Its offsets stay
pending: OffsetFetch returns the last committed offset, and with `require_stable` (KIP-447, asked by
confluent-kafka's AdminClient here) answers UNSTABLE_OFFSET_COMMIT for the partition, also after a
restart (replayed from `__consumer_offsets`). A COMMIT marker (WriteTxnMarkers, when the broker serves
it) makes them the committed offsets. The end-to-end consume-transform-produce test needs the
transaction coordinator (transactional ids)."""

import socket
import struct
import time

import pytest
from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, Producer,
                             TopicPartition)
from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetCommitResponse
from kafka.protocol.consumer.group import OffsetFetchRequest, OffsetFetchResponse
from kafka.protocol.metadata import (ApiVersionsRequest, ApiVersionsResponse,
                                     FindCoordinatorRequest, FindCoordinatorResponse)
from kafka.protocol.producer.transaction import (InitProducerIdRequest, InitProducerIdResponse,
                                                 TxnOffsetCommitRequest, TxnOffsetCommitResponse,
                                                 WriteTxnMarkersRequest, WriteTxnMarkersResponse)

from harness import ck_admin, create_topic, recv_exact

UNSTABLE_OFFSET_COMMIT = 88
RETRIABLE = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR


class Connection:
    """One socket speaking kafka-python's protocol classes."""

    def __init__(self, broker):
        self.sock = socket.create_connection(broker.address, timeout=10)
        self.correlation_id = 0

    def call(self, request, response_class, version):
        self.correlation_id += 1
        request.with_header(correlation_id=self.correlation_id, client_id="itest-txn-offsets")
        self.sock.sendall(request.encode(version=version, header=True, framed=True))
        (size,) = struct.unpack(">i", recv_exact(self.sock, 4))
        response = response_class.decode(recv_exact(self.sock, size), version=version, header=True)
        return response

    def close(self):
        self.sock.close()


def _retrying(call, error_of, timeout=20.0):
    deadline = time.time() + timeout
    while True:
        response = call()
        if error_of(response) not in RETRIABLE or time.time() > deadline:
            return response
        time.sleep(0.2)


def _find_coordinator(conn, group):
    response = _retrying(
        lambda: conn.call(FindCoordinatorRequest(key=group, key_type=0), FindCoordinatorResponse, 3),
        lambda response: response.error_code)
    assert response.error_code == 0, response


def _producer_id(conn):
    request = InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000,
                                    producer_id=-1, producer_epoch=-1)
    response = conn.call(request, InitProducerIdResponse, 4)
    assert response.error_code == 0, response
    return response.producer_id, response.producer_epoch


def _txn_commit(conn, group, producer, topic, offsets, version=3):
    """TxnOffsetCommit of {partition: offset}; {partition: error_code}."""
    T = TxnOffsetCommitRequest
    request = T(
        transactional_id="txn-offsets-test", group_id=group, producer_id=producer[0],
        producer_epoch=producer[1], generation_id=-1, member_id="", group_instance_id=None,
        topics=[T.TxnOffsetCommitRequestTopic(name=topic, partitions=[
            T.TxnOffsetCommitRequestTopic.TxnOffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_leader_epoch=-1,
                committed_metadata="txn")
            for partition, offset in sorted(offsets.items())])])
    response = _retrying(lambda: conn.call(request, TxnOffsetCommitResponse, version),
                         lambda response: response.topics[0].partitions[0].error_code)
    return {p.partition_index: p.error_code for p in response.topics[0].partitions}


def _plain_commit(conn, group, topic, partition, offset):
    R = OffsetCommitRequest
    request = R(group_id=group, generation_id_or_member_epoch=-1, member_id="",
                group_instance_id=None, retention_time_ms=-1,
                topics=[R.OffsetCommitRequestTopic(name=topic, partitions=[
                    R.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
                        partition_index=partition, committed_offset=offset,
                        committed_leader_epoch=-1, committed_metadata="")])])
    response = _retrying(lambda: conn.call(request, OffsetCommitResponse, 8),
                         lambda response: response.topics[0].partitions[0].error_code)
    assert response.topics[0].partitions[0].error_code == 0, response


def _fetch(conn, group, topic, partition, require_stable):
    """OffsetFetch v7 of one partition: (error_code, committed_offset)."""
    R = OffsetFetchRequest
    request = R(group_id=group, require_stable=require_stable,
                topics=[R.OffsetFetchRequestTopic(name=topic, partition_indexes=[partition])])
    response = _retrying(lambda: conn.call(request, OffsetFetchResponse, 7),
                         lambda response: response.error_code)
    assert response.error_code == 0, response
    found = response.topics[0].partitions[0]
    return found.error_code, found.committed_offset


def _admin_offsets(bootstrap, group, topic, partition, require_stable):
    """confluent-kafka's AdminClient.list_consumer_group_offsets of one partition: (error, offset)."""
    admin = ck_admin(bootstrap)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, partition)])
    result = admin.list_consumer_group_offsets([request], require_stable=require_stable)
    (found,) = result[group].result(30).topic_partitions
    return found.error, found.offset


def test_txn_offsets_stay_pending_and_unstable_across_a_restart(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    group = f"{topic}-group"
    conn = Connection(broker)
    try:
        _find_coordinator(conn, group)
        producer = _producer_id(conn)
        _plain_commit(conn, group, topic, 0, 3)
        assert _txn_commit(conn, group, producer, topic, {0: 10, 1: 20}) == {0: 0, 1: 0}
        # The same producer again (base sequence 0 again): appended, the later value kept pending.
        assert _txn_commit(conn, group, producer, topic, {0: 11}) == {0: 0}
        # An unknown partition is refused on its own.
        assert _txn_commit(conn, group, producer, topic, {0: 12, 9: 1}) == {0: 0, 9: 3}

        assert _fetch(conn, group, topic, 0, require_stable=False) == (0, 3)
        assert _fetch(conn, group, topic, 1, require_stable=False) == (0, -1)
        assert _fetch(conn, group, topic, 0, require_stable=True) == (UNSTABLE_OFFSET_COMMIT, -1)
        assert _fetch(conn, group, topic, 1, require_stable=True) == (UNSTABLE_OFFSET_COMMIT, -1)
    finally:
        conn.close()

    # A real client: confluent-kafka's AdminClient sees the committed offset, or the instability.
    error, offset = _admin_offsets(broker.bootstrap, group, topic, 0, require_stable=False)
    assert error is None and offset == 3
    error, _ = _admin_offsets(broker.bootstrap, group, topic, 0, require_stable=True)
    assert error is not None and error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT

    # The pending offsets are replayed from __consumer_offsets after a restart.
    broker.restart()
    conn = Connection(broker)
    try:
        _find_coordinator(conn, group)
        assert _fetch(conn, group, topic, 0, require_stable=False) == (0, 3)
        assert _fetch(conn, group, topic, 0, require_stable=True) == (UNSTABLE_OFFSET_COMMIT, -1)
    finally:
        conn.close()


def _serves(conn, api_key):
    response = conn.call(ApiVersionsRequest(), ApiVersionsResponse, 0)
    return any(entry.api_key == api_key for entry in response.api_keys)


def _write_marker(conn, producer, topic_partitions, commit):
    """WriteTxnMarkers v1 of one marker: {(topic, partition): error_code}."""
    R = WriteTxnMarkersRequest
    marker = R.WritableTxnMarker(
        producer_id=producer[0], producer_epoch=producer[1], transaction_result=commit,
        coordinator_epoch=0,
        topics=[R.WritableTxnMarker.WritableTxnMarkerTopic(name=name, partition_indexes=[index])
                for name, index in topic_partitions])
    response = conn.call(R(markers=[marker]), WriteTxnMarkersResponse, 1)
    return {(t.name, p.partition_index): p.error_code
            for t in response.markers[0].topics for p in t.partitions}


def _offsets_partition(group, partitions=50):
    """Kafka's placement of a group: Java's String.hashCode, made non-negative, modulo partitions."""
    units = group.encode("utf-16-be")
    value = 0
    for index in range(0, len(units), 2):
        value = (value * 31 + int.from_bytes(units[index:index + 2], "big")) & 0xFFFFFFFF
    if value >= 1 << 31:
        value -= 1 << 32
    return (value & 0x7FFFFFFF) % partitions


def test_commit_and_abort_markers_end_the_pending_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    conn = Connection(broker)
    try:
        assert _serves(conn, 27), "WriteTxnMarkers (API 27) must be served"
        committed_group, aborted_group = f"{topic}-committed", f"{topic}-aborted"
        for group in (committed_group, aborted_group):
            _find_coordinator(conn, group)
        committing, aborting = _producer_id(conn), _producer_id(conn)
        _plain_commit(conn, aborted_group, topic, 0, 2)
        assert _txn_commit(conn, committed_group, committing, topic, {0: 7}) == {0: 0}
        assert _txn_commit(conn, aborted_group, aborting, topic, {0: 9}) == {0: 0}
        for group, producer, commit in ((committed_group, committing, True),
                                        (aborted_group, aborting, False)):
            place = ("__consumer_offsets", _offsets_partition(group))
            assert _write_marker(conn, producer, [place], commit) == {place: 0}
        assert _fetch(conn, committed_group, topic, 0, require_stable=True) == (0, 7)
        assert _fetch(conn, aborted_group, topic, 0, require_stable=True) == (0, 2)
    finally:
        conn.close()
    broker.restart()
    conn = Connection(broker)
    try:
        _find_coordinator(conn, committed_group)
        assert _fetch(conn, committed_group, topic, 0, require_stable=True) == (0, 7)
        assert _fetch(conn, aborted_group, topic, 0, require_stable=True) == (0, 2)
    finally:
        conn.close()


def test_send_offsets_to_transaction_commits_the_consumed_offsets(broker, topic):
    """Consume-transform-produce with confluent-kafka: the input offsets are committed with the output
    transaction; an aborted transaction leaves them where they were."""
    create_topic(broker.bootstrap, topic, partitions=1)
    output = f"{topic}-out"
    create_topic(broker.bootstrap, output, partitions=1)
    group = f"{topic}-group"
    feeder = Producer({"bootstrap.servers": broker.bootstrap})
    for index in range(10):
        feeder.produce(topic, value=b"in-%d" % index)
    assert feeder.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    producer = Producer({"bootstrap.servers": broker.bootstrap,
                         "transactional.id": f"{topic}-txn"})
    producer.init_transactions(30)
    try:
        messages = []
        deadline = time.time() + 30
        while len(messages) < 10 and time.time() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                messages.append(message)
        assert len(messages) == 10

        # Aborted: the offsets stay uncommitted.
        producer.begin_transaction()
        producer.produce(output, value=b"discarded")
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, 5)],
                                             consumer.consumer_group_metadata(), 30)
        producer.abort_transaction(30)
        assert consumer.committed([TopicPartition(topic, 0)], 30)[0].offset < 0

        # Committed: the offsets with the output.
        producer.begin_transaction()
        for message in messages:
            producer.produce(output, value=message.value().replace(b"in", b"out"))
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, 10)],
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        assert consumer.committed([TopicPartition(topic, 0)], 30)[0].offset == 10
    finally:
        consumer.close()
