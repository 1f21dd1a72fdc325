"""The transaction coordinator with confluent-kafka's transactional producer: init_transactions /
begin / produce / commit and abort (each partition of the transaction gets one COMMIT or ABORT
marker: the end offset moves past the data by one, and read_uncommitted consumers skip the marker),
two producers with one transactional.id (the first is fenced: a fatal error), the coordinator aborting a
transaction past its timeout, and kill -9 with an open transaction (aborted when the id's next producer
starts, which gets a new epoch and commits).

What read_committed consumers see (the last stable offset, aborted data skipped) is the read path's,
tested elsewhere; these tests consume read_uncommitted and look at the end offsets the markers move."""

import time

import pytest
from confluent_kafka import KafkaException, TopicPartition

from harness import ck_consume, ck_consumer, ck_producer, create_topic

N = 20


def txn_producer(bootstrap: str, transactional_id: str, **overrides):
    conf = {"transactional.id": transactional_id, "linger.ms": 5,
            "transaction.timeout.ms": 30000, "message.timeout.ms": 30000}
    conf.update(overrides)
    return ck_producer(bootstrap, **conf)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    """The high watermarks (a read_uncommitted consumer's end offsets: librdkafka's default,
    read_committed, would answer the last stable offset)."""
    c = ck_consumer(bootstrap, **{"isolation.level": "read_uncommitted"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
    finally:
        c.close()


def wait_end_offsets(bootstrap, topic, partitions, expected, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        got = end_offsets(bootstrap, topic, partitions)
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def produce_values(producer, topic, values, partition):
    for value in values:
        producer.produce(topic, value=value, partition=partition)
    producer.flush(30)


def read_uncommitted(bootstrap, topic, partition, expected):
    return ck_consume(bootstrap, [(topic, partition, 0)], expected,
                      **{"isolation.level": "read_uncommitted"})


def test_commit_and_abort_write_one_marker_per_partition(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    p = txn_producer(broker.bootstrap, f"{topic}-tid")
    p.init_transactions(30)

    p.begin_transaction()
    produce_values(p, topic, [b"c%d" % i for i in range(N)], partition=0)
    produce_values(p, topic, [b"c%d" % i for i in range(N)], partition=1)
    p.commit_transaction(30)
    # The data, then one COMMIT marker in each partition.
    assert wait_end_offsets(broker.bootstrap, topic, 2, [N + 1, N + 1]) == [N + 1, N + 1]

    p.begin_transaction()
    produce_values(p, topic, [b"a%d" % i for i in range(N)], partition=0)
    p.abort_transaction(30)
    # An ABORT marker only where the transaction wrote.
    expected = [2 * N + 2, N + 1]
    assert wait_end_offsets(broker.bootstrap, topic, 2, expected) == expected

    # read_uncommitted sees every data record (aborted ones too), never a marker.
    msgs = read_uncommitted(broker.bootstrap, topic, 0, 2 * N)
    assert [m[4] for m in msgs] == [b"c%d" % i for i in range(N)] + [b"a%d" % i for i in range(N)]
    offsets = [m[2] for m in msgs]
    assert offsets == list(range(N)) + list(range(N + 1, 2 * N + 1)), "marker at offset N skipped"

    # The producer goes on with the next transaction.
    p.begin_transaction()
    produce_values(p, topic, [b"after"], partition=1)
    p.commit_transaction(30)
    assert wait_end_offsets(broker.bootstrap, topic, 2, [2 * N + 2, N + 3]) == [2 * N + 2, N + 3]


def test_a_second_producer_with_the_same_id_fences_the_first(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    tid = f"{topic}-tid"
    first = txn_producer(broker.bootstrap, tid)
    first.init_transactions(30)
    first.begin_transaction()
    produce_values(first, topic, [b"zombie%d" % i for i in range(N)], partition=0)

    second = txn_producer(broker.bootstrap, tid)
    second.init_transactions(30)        # aborts the first one's open transaction
    assert wait_end_offsets(broker.bootstrap, topic, 1, [N + 1]) == [N + 1]

    with pytest.raises(KafkaException) as raised:
        first.commit_transaction(30)
    error = raised.value.args[0]
    assert error.fatal(), f"the fenced producer's error is fatal: {error}"

    second.begin_transaction()
    produce_values(second, topic, [b"live"], partition=0)
    second.commit_transaction(30)
    assert wait_end_offsets(broker.bootstrap, topic, 1, [N + 3]) == [N + 3]


def test_the_coordinator_aborts_a_transaction_past_its_timeout(broker_factory, topic):
    broker = broker_factory(config={
        "transaction_abort_timed_out_transaction_cleanup_interval_ms": 200})
    create_topic(broker.bootstrap, topic, partitions=1)
    tid = f"{topic}-tid"
    p = txn_producer(broker.bootstrap, tid, **{"transaction.timeout.ms": 1000,
                                              "message.timeout.ms": 1000})
    p.init_transactions(30)
    p.begin_transaction()
    produce_values(p, topic, [b"slow%d" % i for i in range(N)], partition=0)
    # Past the timeout the coordinator writes the ABORT marker by itself.
    assert wait_end_offsets(broker.bootstrap, topic, 1, [N + 1], timeout=10) == [N + 1]
    # The timed-out producer was fenced (its epoch bumped): it cannot commit.
    with pytest.raises(KafkaException):
        p.commit_transaction(10)

    # The id is usable by a new producer.
    fresh = txn_producer(broker.bootstrap, tid)
    fresh.init_transactions(30)
    fresh.begin_transaction()
    produce_values(fresh, topic, [b"fresh"], partition=0)
    fresh.commit_transaction(30)
    assert wait_end_offsets(broker.bootstrap, topic, 1, [N + 3]) == [N + 3]


def test_an_open_transaction_is_aborted_after_kill9_and_the_id_gets_a_new_epoch(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    tid = f"{topic}-tid"
    p = txn_producer(broker.bootstrap, tid)
    p.init_transactions(30)
    p.begin_transaction()
    produce_values(p, topic, [b"committed%d" % i for i in range(N)], partition=0)
    p.commit_transaction(30)
    p.begin_transaction()
    produce_values(p, topic, [b"open%d" % i for i in range(N)], partition=0)
    assert end_offsets(broker.bootstrap, topic, 1) == [2 * N + 1]

    broker.kill9()
    broker.restart()

    # The id's next producer: the coordinator replays __transaction_state, finds the open
    # transaction, fences its producer and aborts it; the new producer gets the next epoch.
    again = txn_producer(broker.bootstrap, tid)
    again.init_transactions(60)
    assert wait_end_offsets(broker.bootstrap, topic, 1, [2 * N + 2]) == [2 * N + 2]
    again.begin_transaction()
    produce_values(again, topic, [b"after-restart"], partition=0)
    again.commit_transaction(30)
    assert wait_end_offsets(broker.bootstrap, topic, 1, [2 * N + 4]) == [2 * N + 4]

    msgs = read_uncommitted(broker.bootstrap, topic, 0, 2 * N + 1)
    values = [m[4] for m in msgs]
    assert values[:N] == [b"committed%d" % i for i in range(N)]
    assert values[N:2 * N] == [b"open%d" % i for i in range(N)]
    assert values[2 * N:] == [b"after-restart"]


def test_kafka_python_admin_describes_and_lists_transactions(broker, topic):
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TransactionalIdNotFoundError
    create_topic(broker.bootstrap, topic, partitions=2)
    tid = f"{topic}-tid"
    p = txn_producer(broker.bootstrap, tid)
    p.init_transactions(30)
    p.begin_transaction()
    produce_values(p, topic, [b"x"], partition=1)

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        described = admin.describe_transactions([tid])[tid]
        assert str(described.state.value) == "Ongoing"
        assert described.producer_epoch == 0
        assert described.transaction_timeout_ms == 30000
        assert described.transaction_start_time_ms > 0
        assert {(tp.topic, tp.partition) for tp in described.topic_partitions} == {(topic, 1)}

        listed = [t for ts in admin.list_transactions().values() for t in ts]
        assert [(t.transactional_id, str(t.state.value)) for t in listed] == [(tid, "Ongoing")]
        assert admin.list_transactions(state_filters=["CompleteCommit"]) in ({}, {0: []})
        running = admin.list_transactions(duration_filter_ms=60_000)
        assert [t for ts in running.values() for t in ts] == [], "not running that long"

        p.commit_transaction(30)
        deadline = time.monotonic() + 10
        while str(admin.describe_transactions([tid])[tid].state.value) != "CompleteCommit":
            assert time.monotonic() < deadline, "commit never completed"
            time.sleep(0.05)
        with pytest.raises(TransactionalIdNotFoundError):
            admin.describe_transactions([f"{topic}-unknown"])
    finally:
        admin.close()
