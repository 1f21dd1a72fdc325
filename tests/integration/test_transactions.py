"""Transactions with confluent-kafka (librdkafka) as producer and consumer: atomic commit across
partitions and topics, abort, the last stable offset holding read_committed readers, zombie fencing,
consume-transform-produce with send_offsets_to_transaction, the coordinator aborting a timed-out
transaction, and kill -9 with a committed and an open transaction.

Offsets below count the control batch (COMMIT/ABORT marker) each partition of a transaction gets
when it ends: a transaction of n records on an empty partition ends with the high watermark at n + 1.
"""

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from harness import ck_produce_all, ck_producer, create_topic
from txn_helpers import (
    INIT_TIMEOUT_S, TXN_TIMEOUT_BROKER_CONFIG, fenced_error, init_transactions, is_fenced, list_offsets,
    produce_in_txn, read, restart_after_kill9, txn_producer, values_of, wait_until,
)


def _values(prefix: str, count: int, start: int = 0) -> list[bytes]:
    return [b"%s-%d" % (prefix.encode(), i) for i in range(start, start + count)]


@pytest.mark.parametrize("shards", [1, 2])
def test_commit_is_atomic_across_partitions_and_topics(broker_factory, topic, shards):
    broker = broker_factory(shards=shards)
    bootstrap = broker.bootstrap
    topic_a, topic_b = f"{topic}-a", f"{topic}-b"
    create_topic(bootstrap, topic_a, partitions=2)
    create_topic(bootstrap, topic_b, partitions=1)
    partitions = [(topic_a, 0), (topic_a, 1), (topic_b, 0)]
    assignments = [(t, p, 0) for (t, p) in partitions]
    producer = txn_producer(bootstrap, f"{topic}-txn")

    expected = {}
    for round_no in range(2):
        producer.begin_transaction()
        for (t, p) in partitions:
            values = _values(f"{t}-{p}-r{round_no}", 10)
            produce_in_txn(producer, t, values, partition=p)
            expected.setdefault((t, p), []).extend(values)
        committed_before = sum(len(v) for v in expected.values()) - 30
        # Open: read_committed readers see none of it, read_uncommitted readers all of it.
        seen = read(bootstrap, assignments, committed_before, committed=True, settle=1.5)
        assert len(seen) == committed_before, (
            f"round {round_no}: read_committed saw {len(seen) - committed_before} records of an open "
            f"transaction: {values_of(seen)[committed_before:][:5]}")
        for (t, p) in partitions:
            # LSO = first offset of the open transaction = (11 per committed round).
            assert list_offsets(bootstrap, t, p, committed=True) == 11 * round_no, \
                f"{t}-{p}: read_committed ListOffsets must answer the first offset of the open transaction"
        everything = read(bootstrap, assignments, committed_before + 30, committed=False)
        assert len(everything) == committed_before + 30, \
            f"round {round_no}: read_uncommitted must see the open transaction's records"
        producer.commit_transaction(30)

        seen = read(bootstrap, assignments, committed_before + 30, committed=True)
        by_partition = {}
        for m in sorted(seen, key=lambda m: (m[0], m[1], m[2])):
            by_partition.setdefault((m[0], m[1]), []).append(m[4])
        for tp in partitions:
            assert by_partition.get(tp) == expected[tp], (
                f"round {round_no}: {tp} after commit: read_committed got {by_partition.get(tp)}, "
                f"expected {expected[tp]}")
        for (t, p) in partitions:
            end = 11 * (round_no + 1)
            assert list_offsets(bootstrap, t, p, committed=False) == end, \
                f"{t}-{p}: high watermark must be {end} (10 records + a COMMIT marker per round)"
            assert list_offsets(bootstrap, t, p, committed=True) == end, \
                f"{t}-{p}: after the commit the LSO must reach the high watermark"


def test_abort_is_invisible_to_read_committed_and_visible_to_read_uncommitted(broker, topic):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, partitions=2)
    assignments = [(topic, 0, 0), (topic, 1, 0)]
    producer = txn_producer(bootstrap, f"{topic}-txn")

    producer.begin_transaction()
    produce_in_txn(producer, topic, _values("aborted-p0", 10), partition=0)
    produce_in_txn(producer, topic, _values("aborted-p1", 4), partition=1)
    producer.abort_transaction(30)

    producer.begin_transaction()
    produce_in_txn(producer, topic, _values("committed-p0", 5), partition=0)
    produce_in_txn(producer, topic, _values("committed-p1", 5), partition=1)
    producer.commit_transaction(30)

    seen = read(bootstrap, assignments, 10, committed=True, settle=1.5)
    assert values_of(seen) == _values("committed-p0", 5) + _values("committed-p1", 5), \
        f"read_committed must skip the aborted transaction: got {values_of(seen)}"
    # Partition 0: aborted records at 0..9, ABORT marker at 10, committed records at 11..15.
    assert [m[2] for m in seen if m[1] == 0] == list(range(11, 16)), \
        "committed records on partition 0 must follow the 10 aborted records and the ABORT marker"
    assert [m[2] for m in seen if m[1] == 1] == list(range(5, 10))

    everything = read(bootstrap, assignments, 24, committed=False)
    assert values_of(everything) == (_values("aborted-p0", 10) + _values("committed-p0", 5)
                                     + _values("aborted-p1", 4) + _values("committed-p1", 5)), \
        "read_uncommitted must see the aborted records too (never the markers)"
    for partition, end in ((0, 17), (1, 11)):
        assert list_offsets(bootstrap, topic, partition, committed=True) == end, \
            f"partition {partition}: with no open transaction the LSO is the high watermark {end}"


def test_open_transaction_holds_read_committed_readers_at_the_lso(broker, topic):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, partitions=1)
    plain = ck_producer(bootstrap, **{"enable.idempotence": True})
    ck_produce_all(plain, topic, [(None, v) for v in _values("before", 5)], partition=0)

    producer = txn_producer(bootstrap, f"{topic}-txn")
    producer.begin_transaction()
    reports = produce_in_txn(producer, topic, _values("txn", 5), partition=0)
    assert [offset for (_p, offset, _v) in reports] == list(range(5, 10))
    ck_produce_all(plain, topic, [(None, v) for v in _values("after", 5)], partition=0)

    assert list_offsets(bootstrap, topic, 0, committed=False) == 15
    assert list_offsets(bootstrap, topic, 0, committed=True) == 5, \
        "the LSO is the first offset of the open transaction"
    seen = read(bootstrap, [(topic, 0, 0)], 5, committed=True, settle=1.5)
    assert values_of(seen) == _values("before", 5), (
        "read_committed must stop at the open transaction (records before it only, not the "
        f"non-transactional records after it): got {values_of(seen)}")
    everything = read(bootstrap, [(topic, 0, 0)], 15, committed=False)
    assert values_of(everything) == _values("before", 5) + _values("txn", 5) + _values("after", 5), \
        "read_uncommitted reads up to the high watermark"

    producer.commit_transaction(30)
    seen = read(bootstrap, [(topic, 0, 0)], 15, committed=True)
    assert values_of(seen) == _values("before", 5) + _values("txn", 5) + _values("after", 5), \
        "after the commit read_committed reads everything, in offset order"
    assert list_offsets(bootstrap, topic, 0, committed=True) == 16, \
        "after the commit the LSO is the high watermark (15 records + the COMMIT marker)"


def test_zombie_producer_is_fenced_by_a_new_instance(broker, topic):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, partitions=2)
    transactional_id = f"{topic}-txn"
    zombie = txn_producer(bootstrap, transactional_id)
    zombie.begin_transaction()
    produce_in_txn(zombie, topic, [b"zombie-0"], partition=0)

    # The new instance's init_transactions bumps the epoch and aborts the zombie's open transaction.
    successor = txn_producer(bootstrap, transactional_id)
    successor.begin_transaction()
    produce_in_txn(successor, topic, [b"successor-0"], partition=0)

    def zombie_goes_on():
        # The zombie's next produce (a new partition: AddPartitionsToTxn with the old epoch) and
        # commit; confluent-kafka raises the fatal error from whichever call meets it first.
        zombie.produce(topic, value=b"zombie-1", partition=1)
        zombie.flush(10)
        zombie.commit_transaction(15)

    with pytest.raises(KafkaException) as failure:
        zombie_goes_on()
    assert is_fenced(failure.value), (
        "the zombie's next produce/commit must fail with a fatal fencing error (PRODUCER_FENCED / "
        "INVALID_PRODUCER_EPOCH / _FENCED), got fatal=%s code=%s %r" % fenced_error(failure.value))
    with pytest.raises(KafkaException) as failure:
        zombie.commit_transaction(15)
    assert is_fenced(failure.value), "a fenced producer stays fenced: its commit fails too"
    with pytest.raises(KafkaException):
        zombie.begin_transaction()

    successor.commit_transaction(30)
    seen = read(bootstrap, [(topic, 0, 0), (topic, 1, 0)], 1, committed=True, settle=1.5)
    assert values_of(seen) == [b"successor-0"], \
        f"only the successor's transaction may be visible to read_committed, got {values_of(seen)}"
    # Partition 0: zombie-0 at 0, the ABORT marker of the fencing at 1, successor-0 at 2.
    assert [(m[1], m[2]) for m in seen] == [(0, 2)], \
        "the fencing must have aborted the zombie's transaction with a marker before the successor wrote"
    everything = read(bootstrap, [(topic, 0, 0), (topic, 1, 0)], 2, committed=False)
    assert b"zombie-0" in values_of(everything), "the zombie's first record is in the log (aborted)"


N_INPUT = 200
BATCH = 20
ABORTED_TRANSACTION = 3  # the third transaction is aborted and its input re-processed


def _rewind_to_committed(consumer):
    """After an abort: seek every assigned partition back to the group's committed offset."""
    assignment = consumer.assignment()
    assert assignment, "the consumer has no assignment to rewind"
    for tp in consumer.committed(assignment, timeout=15):
        assert tp.error is None, f"committed offset of {tp}: {tp.error}"
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


@pytest.mark.parametrize("shards", [1, 2])
def test_consume_transform_produce_exactly_once(broker_factory, topic, shards):
    broker = broker_factory(shards=shards, config={"group_initial_rebalance_delay_ms": 100})
    bootstrap = broker.bootstrap
    input_topic, output_topic, group = f"{topic}-in", f"{topic}-out", f"{topic}-group"
    create_topic(bootstrap, input_topic, partitions=2)
    create_topic(bootstrap, output_topic, partitions=2)
    delivered = ck_produce_all(ck_producer(bootstrap), input_topic,
                               [(b"key-%d" % i, b"%d" % i) for i in range(N_INPUT)])
    input_sizes = {p: sum(1 for r in delivered.ok if r[1] == p) for p in (0, 1)}
    assert sum(input_sizes.values()) == N_INPUT

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "broker.address.family": "v4", "group.id": group,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "isolation.level": "read_committed", "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })
    consumer.subscribe([input_topic])
    producer = txn_producer(bootstrap, f"{topic}-ctp")
    transactions, committed_inputs, aborted_outputs = 0, 0, 0
    deadline = time.monotonic() + 60
    try:
        while committed_inputs < N_INPUT:
            assert time.monotonic() < deadline, \
                f"consume-transform-produce stalled: {committed_inputs}/{N_INPUT} inputs committed"
            messages = consumer.consume(num_messages=BATCH, timeout=0.5)
            for m in messages:
                assert m.error() is None, f"consumer error: {m.error()}"
            if not messages:
                continue
            producer.begin_transaction()
            next_offsets = {}
            for m in messages:
                producer.produce(output_topic, key=m.key(), value=b"out-" + m.value())
                producer.poll(0)
                next_offsets[(m.topic(), m.partition())] = m.offset() + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
                consumer.consumer_group_metadata(), 30)
            transactions += 1
            if transactions == ABORTED_TRANSACTION:
                assert producer.flush(30) == 0  # the outputs reach the log, then are aborted
                producer.abort_transaction(30)
                aborted_outputs = len(messages)
                _rewind_to_committed(consumer)
                continue
            producer.commit_transaction(30)
            committed_inputs += len(messages)
    finally:
        consumer.close()
    assert aborted_outputs > 0, "the test must have aborted one transaction"

    outputs = [(0, 0), (1, 0)]
    seen = read(bootstrap, [(output_topic, p, o) for p, o in outputs], N_INPUT, committed=True,
                timeout=30, settle=1.5)
    values = values_of(seen)
    duplicates = sorted({v for v in values if values.count(v) > 1})
    missing = sorted(set(b"out-%d" % i for i in range(N_INPUT)) - set(values))
    assert not duplicates and not missing and len(values) == N_INPUT, (
        f"exactly one output per input under read_committed: {len(values)} outputs, "
        f"{len(duplicates)} duplicated (e.g. {duplicates[:5]}), {len(missing)} missing (e.g. {missing[:5]})")
    everything = read(bootstrap, [(output_topic, p, o) for p, o in outputs], N_INPUT + aborted_outputs,
                      committed=False, timeout=30)
    assert len(everything) == N_INPUT + aborted_outputs, (
        f"read_uncommitted must also see the {aborted_outputs} outputs of the aborted transaction "
        f"(got {len(everything)} records, expected {N_INPUT + aborted_outputs})")

    checker = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                        "group.id": group, "isolation.level": "read_committed"})
    try:
        committed = checker.committed([TopicPartition(input_topic, p) for p in (0, 1)], timeout=15)
    finally:
        checker.close()
    offsets = {tp.partition: tp.offset for tp in committed}
    assert offsets == input_sizes, (
        f"the group's committed offsets must be the input's end offsets {input_sizes} "
        f"(sum {N_INPUT}), got {offsets}")


def test_coordinator_aborts_a_transaction_after_its_timeout(broker_factory, topic):
    broker = broker_factory(config=TXN_TIMEOUT_BROKER_CONFIG)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, partitions=1)
    transactional_id = f"{topic}-txn"
    timeout_ms = 1500
    producer = txn_producer(bootstrap, transactional_id, transaction_timeout_ms=timeout_ms)
    started = time.monotonic()
    producer.begin_transaction()
    produce_in_txn(producer, topic, _values("stuck", 3), partition=0)
    ck_produce_all(ck_producer(bootstrap), topic, [(None, v) for v in _values("after", 3)], partition=0)
    assert list_offsets(bootstrap, topic, 0, committed=True) == 0, \
        "the idle transaction holds the LSO at its first offset"

    # The producer sits idle; the coordinator aborts the transaction once transaction.timeout.ms has
    # passed (checked every transaction.abort.timed.out.transaction.cleanup.interval.ms).
    wait_until(lambda: list_offsets(bootstrap, topic, 0, committed=True) == 7, timeout=15, interval=0.2,
               what="the coordinator to abort the timed-out transaction (LSO reaching the high "
                    "watermark 7: 3 aborted records, 3 plain records, the ABORT marker)")
    elapsed_ms = (time.monotonic() - started) * 1000
    assert elapsed_ms >= timeout_ms - 100, \
        f"the transaction was aborted after {elapsed_ms:.0f} ms, before its {timeout_ms} ms timeout"
    seen = read(bootstrap, [(topic, 0, 0)], 3, committed=True)
    assert values_of(seen) == _values("after", 3), \
        f"read_committed gets past the aborted transaction and never shows it: {values_of(seen)}"

    with pytest.raises(KafkaException) as failure:
        producer.commit_transaction(15)
    print(f"commit after the coordinator's abort failed as expected: {failure.value.args[0]}")

    # The transactional id is usable again by a new instance.
    fresh = txn_producer(bootstrap, transactional_id, transaction_timeout_ms=timeout_ms)
    fresh.begin_transaction()
    produce_in_txn(fresh, topic, [b"fresh-0"], partition=0)
    fresh.commit_transaction(15)
    seen = read(bootstrap, [(topic, 0, 0)], 4, committed=True)
    assert values_of(seen) == _values("after", 3) + [b"fresh-0"]


def test_kill9_with_a_committed_and_an_open_transaction(broker, topic):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, partitions=2)
    assignments = [(topic, 0, 0), (topic, 1, 0)]
    committed_values = _values("committed-p0", 5) + _values("committed-p1", 5)
    committer = txn_producer(bootstrap, f"{topic}-committed")
    committer.begin_transaction()
    produce_in_txn(committer, topic, committed_values[:5], partition=0)
    produce_in_txn(committer, topic, committed_values[5:], partition=1)
    committer.commit_transaction(30)
    # EndTxn answers before the markers are written: wait for them, so the open transaction below
    # starts after the COMMIT marker on both partitions.
    assert values_of(read(bootstrap, assignments, 10, committed=True, settle=0)) == committed_values

    open_id = f"{topic}-open"
    holder = txn_producer(bootstrap, open_id, transaction_timeout_ms=60000)
    holder.begin_transaction()
    produce_in_txn(holder, topic, _values("open-p0", 5), partition=0)
    produce_in_txn(holder, topic, _values("open-p1", 5), partition=1)
    for partition in (0, 1):
        assert list_offsets(bootstrap, topic, partition, committed=True) == 6, \
            "before the kill: the open transaction starts after 5 records and the COMMIT marker"

    restart_after_kill9(broker)

    seen = read(bootstrap, assignments, 10, committed=True, settle=1.5)
    assert values_of(seen) == committed_values, \
        f"after kill -9 the committed transaction is intact and nothing of the open one shows: {values_of(seen)}"
    for partition in (0, 1):
        assert list_offsets(bootstrap, topic, partition, committed=True) == 6, \
            "recovery rebuilt the open transaction: the LSO still holds at its first offset"
    everything = read(bootstrap, assignments, 20, committed=False)
    assert sorted(values_of(everything)) == sorted(
        committed_values + _values("open-p0", 5) + _values("open-p1", 5)), \
        "the open transaction's acknowledged records survived the kill (read_uncommitted)"

    # A new instance with the same id: the coordinator (state replayed from __transaction_state)
    # aborts the open transaction and hands out a new epoch.
    successor = txn_producer(bootstrap, open_id)
    for partition in (0, 1):
        wait_until(lambda: list_offsets(bootstrap, topic, partition, committed=True) == 12, timeout=15,
                   what=f"partition {partition}: the ABORT marker of the open transaction (LSO 12)")
    successor.begin_transaction()
    produce_in_txn(successor, topic, _values("successor", 3), partition=0)
    successor.commit_transaction(30)
    seen = read(bootstrap, assignments, 13, committed=True)
    assert values_of(seen) == committed_values[:5] + _values("successor", 3) + committed_values[5:], \
        f"read_committed: the committed transaction and the successor's, never the open one: {values_of(seen)}"
    with pytest.raises(KafkaException) as failure:
        holder.commit_transaction(15)
    assert is_fenced(failure.value), \
        "the pre-crash instance must be fenced by the new epoch, got fatal=%s code=%s %r" % fenced_error(
            failure.value)
    # init_transactions is also fine again on the same id (one more epoch).
    again = txn_producer(bootstrap, open_id, init=False)
    init_transactions(again, open_id)


def test_transaction_timeout_above_the_broker_maximum_is_refused(broker_factory, topic):
    broker = broker_factory(config={"transaction_max_timeout_ms": 5000})
    from confluent_kafka import KafkaError
    producer = txn_producer(broker.bootstrap, f"{topic}-txn", transaction_timeout_ms=10000, init=False)
    with pytest.raises(KafkaException) as failure:
        producer.init_transactions(INIT_TIMEOUT_S)
    code = failure.value.args[0].code()
    assert code == KafkaError.INVALID_TRANSACTION_TIMEOUT, (
        "InitProducerId with transaction.timeout.ms above transaction.max.timeout.ms must answer "
        f"INVALID_TRANSACTION_TIMEOUT, got {failure.value.args[0]}")
    # At the maximum it is accepted.
    txn_producer(broker.bootstrap, f"{topic}-txn", transaction_timeout_ms=5000)
