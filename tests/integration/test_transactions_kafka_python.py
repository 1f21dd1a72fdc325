"""Transactions seen through kafka-python (its own protocol implementation): a read_committed
consumer and ListOffsets with read_committed over committed, aborted and open transactions (written
by confluent-kafka); kafka-python's own transactional producer; and its transaction admin calls
(ListTransactions, DescribeTransactions, DescribeProducers).
"""

import time

import pytest

from harness import create_topic, kp_consume, kp_consumer
from txn_helpers import list_offsets, produce_in_txn, read, txn_producer, values_of, wait_until


def _values(prefix: str, count: int) -> list[bytes]:
    return [b"%s-%d" % (prefix.encode(), i) for i in range(count)]


def _kp_values(records) -> list[bytes]:
    return [r.value for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset))]


def test_kafka_python_read_committed_consumer(broker, topic):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, partitions=2)
    assignments = [(topic, 0, 0), (topic, 1, 0)]
    producer = txn_producer(bootstrap, f"{topic}-txn")
    for name, commit in (("first", True), ("aborted", False), ("second", True)):
        producer.begin_transaction()
        produce_in_txn(producer, topic, _values(f"{name}-p0", 4), partition=0)
        produce_in_txn(producer, topic, _values(f"{name}-p1", 3), partition=1)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    committed = (_values("first-p0", 4) + _values("second-p0", 4)
                 + _values("first-p1", 3) + _values("second-p1", 3))
    # Wait through confluent-kafka until the last COMMIT markers are written (EndTxn answers first).
    assert values_of(read(bootstrap, assignments, 14, committed=True, settle=0)) == committed

    # Then a transaction left open on partition 0.
    producer.begin_transaction()
    produce_in_txn(producer, topic, _values("open-p0", 2), partition=0)

    records = kp_consume(bootstrap, assignments, expected=14, settle=1.5, isolation_level="read_committed")
    assert _kp_values(records) == committed, \
        f"kafka-python read_committed: committed records only, never aborted or open ones: {_kp_values(records)}"
    # Partition 0: first 0..3 + COMMIT 4, aborted 5..8 + ABORT 9, second 10..13 + COMMIT 14, open 15..
    assert [r.offset for r in records if r.partition == 0] == [0, 1, 2, 3, 10, 11, 12, 13]
    everything = kp_consume(bootstrap, assignments, expected=23, settle=1.0,
                            isolation_level="read_uncommitted")
    assert len(everything) == 23 and b"aborted-p0-0" in _kp_values(everything) \
        and b"open-p0-1" in _kp_values(everything), \
        "kafka-python read_uncommitted: every data record, including aborted and open ones"

    from kafka import TopicPartition
    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    for level, expected_ends in (("read_committed", {0: 15, 1: 12}),
                                 ("read_uncommitted", {0: 17, 1: 12})):
        consumer = kp_consumer(bootstrap, isolation_level=level)
        try:
            ends = {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
        finally:
            consumer.close()
        assert ends == expected_ends, \
            f"kafka-python end_offsets with {level} (ListOffsets: LSO vs high watermark): {ends}"

    producer.commit_transaction(30)
    records = kp_consume(bootstrap, assignments, expected=16, settle=1.0, isolation_level="read_committed")
    assert _kp_values(records)[:10] == committed[:8] + _values("open-p0", 2), \
        "after its commit the formerly open transaction is visible to read_committed"


def test_kafka_python_transactional_producer(broker, topic):
    from kafka import KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, partitions=1)
    group = f"{topic}-group"
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-kp",
                             transaction_timeout_ms=10000, max_block_ms=20000,
                             request_timeout_ms=10000)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for value in _values("kept", 5):
            producer.send(topic, value=value, partition=0)
        producer.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(5, "", -1)}, group)
        producer.commit_transaction()
        producer.begin_transaction()
        for value in _values("dropped", 5):
            producer.send(topic, value=value, partition=0)
        producer.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(99, "", -1)}, group)
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close(timeout=5)

    records = kp_consume(bootstrap, [(topic, 0, 0)], expected=5, settle=1.5, isolation_level="read_committed")
    assert _kp_values(records) == _values("kept", 5), \
        f"kafka-python's committed transaction only: {_kp_values(records)}"
    seen = read(bootstrap, [(topic, 0, 0)], 5, committed=True, settle=0.5)
    assert values_of(seen) == _values("kept", 5), "confluent-kafka read_committed agrees"
    everything = read(bootstrap, [(topic, 0, 0)], 10, committed=False)
    assert values_of(everything) == _values("kept", 5) + _values("dropped", 5)

    from confluent_kafka import Consumer, TopicPartition as CkTopicPartition
    checker = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                        "group.id": group, "isolation.level": "read_committed"})
    try:
        [committed] = checker.committed([CkTopicPartition(topic, 0)], timeout=15)
    finally:
        checker.close()
    assert committed.offset == 5, \
        f"the group's offset is the committed transaction's (5), not the aborted one's (99): {committed.offset}"


def test_kafka_python_transaction_admin_calls(broker, topic):
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.admin._transactions import TransactionState
    from kafka.errors import TransactionalIdNotFoundError
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, partitions=1)
    done_id, open_id = f"{topic}-done", f"{topic}-open"
    done = txn_producer(bootstrap, done_id)
    done.begin_transaction()
    produce_in_txn(done, topic, _values("done", 3), partition=0)
    done.commit_transaction(30)
    wait_until(lambda: list_offsets(bootstrap, topic, 0, committed=True) == 4, timeout=10,
               what="the COMMIT marker of the first transaction (LSO 4)")
    before_open_ms = int(time.time() * 1000)
    holder = txn_producer(bootstrap, open_id, transaction_timeout_ms=30000)
    holder.begin_transaction()
    produce_in_txn(holder, topic, _values("open", 2), partition=0)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        listings = {listing.transactional_id: listing
                    for per_broker in admin.list_transactions().values() for listing in per_broker}
        assert open_id in listings and done_id in listings, f"ListTransactions: {listings}"
        assert listings[open_id].state == TransactionState.ONGOING, listings[open_id]
        assert listings[done_id].state == TransactionState.COMPLETE_COMMIT, listings[done_id]
        ongoing = {listing.transactional_id
                   for per_broker in admin.list_transactions(state_filters=["Ongoing"]).values()
                   for listing in per_broker}
        assert open_id in ongoing and done_id not in ongoing, \
            f"ListTransactions filtered on Ongoing: {ongoing}"
        by_producer = {listing.transactional_id
                       for per_broker in admin.list_transactions(
                           producer_id_filters=[listings[done_id].producer_id]).values()
                       for listing in per_broker}
        assert by_producer == {done_id}, f"ListTransactions filtered on a producer id: {by_producer}"

        described = admin.describe_transactions([open_id, done_id])
        open_txn, done_txn = described[open_id], described[done_id]
        assert open_txn.state == TransactionState.ONGOING
        assert open_txn.producer_id == listings[open_id].producer_id
        assert open_txn.transaction_timeout_ms == 30000
        assert open_txn.topic_partitions == {TopicPartition(topic, 0)}, open_txn
        assert before_open_ms - 5000 <= open_txn.transaction_start_time_ms <= int(time.time() * 1000) + 5000, \
            f"transaction_start_time_ms {open_txn.transaction_start_time_ms} is not the time it began"
        assert done_txn.state == TransactionState.COMPLETE_COMMIT and done_txn.topic_partitions == set(), done_txn
        with pytest.raises(TransactionalIdNotFoundError):
            admin.describe_transactions([f"{topic}-never-used"])

        tp = TopicPartition(topic, 0)
        producers = {p.producer_id: p for p in admin.describe_producers([tp])[tp].active_producers}
        assert set(producers) >= {done_txn.producer_id, open_txn.producer_id}, producers
        assert producers[open_txn.producer_id].current_transaction_start_offset == 4, \
            f"DescribeProducers: the open transaction starts at offset 4: {producers[open_txn.producer_id]}"
        assert producers[open_txn.producer_id].producer_epoch == open_txn.producer_epoch
        assert producers[done_txn.producer_id].current_transaction_start_offset == -1, \
            "a producer with no open transaction reports -1"
        assert producers[done_txn.producer_id].last_sequence == 2, \
            "three records (sequences 0..2) from the committed producer"

        holder.commit_transaction(30)
        wait_until(lambda: admin.describe_transactions([open_id])[open_id].state
                   == TransactionState.COMPLETE_COMMIT, timeout=10, what="the open transaction to complete")
        wait_until(lambda: admin.describe_producers([tp])[tp].active_producers and all(
            p.current_transaction_start_offset == -1 for p in admin.describe_producers([tp])[tp].active_producers),
            timeout=10, what="DescribeProducers to show no open transaction after the commit")

        # A new instance with the same id gets the same producer id with a higher epoch.
        successor = txn_producer(bootstrap, open_id)
        after = admin.describe_transactions([open_id])[open_id]
        assert after.producer_id == open_txn.producer_id and after.producer_epoch > open_txn.producer_epoch, \
            f"init_transactions on a known id bumps the epoch: before {open_txn}, after {after}"
        assert after.state == TransactionState.EMPTY, after
        del successor
    finally:
        admin.close()
