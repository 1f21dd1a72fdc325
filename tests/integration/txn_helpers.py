"""Shared helpers for the transaction tests (test_transactions*.py): transactional producers,
read_committed / read_uncommitted reads, the last stable offset through ListOffsets, and the broker
settings that make the coordinator's timeout-driven abort quick.

Kafka semantics these helpers lean on:
* a read_committed consumer reads up to the partition's last stable offset (LSO: the first offset
  of the oldest open transaction, else the high watermark) and drops records of aborted transactions;
  a read_uncommitted consumer reads up to the high watermark and gets every data record;
* control batches (COMMIT/ABORT markers) take an offset each but are never handed to applications;
* ListOffsets(latest) with isolation_level=read_committed answers the LSO.
"""

from __future__ import annotations

import time

from harness import BrokerError, ck_consume, ck_producer

# Broker settings (TOML keys: Kafka's names with dots replaced by underscores) for tests that wait for
# the coordinator to abort a timed-out transaction: Kafka checks every 10 s by default
# (transaction.abort.timed.out.transaction.cleanup.interval.ms); 200 ms keeps those tests quick.
TXN_TIMEOUT_BROKER_CONFIG = {
    "transaction_abort_timed_out_transaction_cleanup_interval_ms": 200,
}

READ_COMMITTED = {"isolation.level": "read_committed"}
READ_UNCOMMITTED = {"isolation.level": "read_uncommitted"}

# How long a test waits for init_transactions before calling the coordinator missing.
INIT_TIMEOUT_S = 20.0


def txn_producer(bootstrap: str, transactional_id: str, transaction_timeout_ms: int = 10000,
                 init: bool = True, **overrides):
    """A confluent-kafka transactional producer; init_transactions() already called unless
    `init=False`. librdkafka requires message.timeout.ms <= transaction.timeout.ms."""
    conf = {
        "transactional.id": transactional_id,
        "transaction.timeout.ms": transaction_timeout_ms,
        "message.timeout.ms": transaction_timeout_ms,
        "linger.ms": 1,
        "retry.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    }
    conf.update(overrides)
    producer = ck_producer(bootstrap, **conf)
    if init:
        init_transactions(producer, transactional_id)
    return producer


def init_transactions(producer, transactional_id: str, timeout: float = INIT_TIMEOUT_S):
    from confluent_kafka import KafkaException
    try:
        producer.init_transactions(timeout)
    except KafkaException as e:
        raise AssertionError(
            f"init_transactions({transactional_id!r}) failed: {e.args[0]} -- the broker must answer "
            "FindCoordinator(key_type=TRANSACTION) and InitProducerId with a transactional id") from e


def produce_in_txn(producer, topic: str, values, partition: int | None = None, key: bytes | None = None):
    """Produces `values` (bytes) inside the producer's open transaction and flushes them, so they are
    in the log (and visible to read_uncommitted readers) before the caller commits or aborts.
    Returns the delivery reports [(partition, offset, value)]; fails on any delivery error."""
    reports, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append((err, msg.value()))
        else:
            reports.append((msg.partition(), msg.offset(), msg.value()))

    for value in values:
        kw = {"partition": partition} if partition is not None else {}
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery, **kw)
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} transactional records not delivered within 30 s"
    assert not errors, f"transactional produce to {topic} failed: {errors[:3]}"
    return reports


def values_of(messages) -> list[bytes]:
    """Values of ck_consume tuples, in (topic, partition, offset) order."""
    return [m[4] for m in sorted(messages, key=lambda m: (m[0], m[1], m[2]))]


def read(bootstrap: str, assignments, expected: int, committed: bool, timeout: float = 20.0,
         settle: float = 1.0):
    """ck_consume with isolation.level read_committed (committed=True) or read_uncommitted."""
    level = READ_COMMITTED if committed else READ_UNCOMMITTED
    return ck_consume(bootstrap, assignments, expected=expected, timeout=timeout, settle=settle, **level)


def list_offsets(bootstrap: str, topic: str, partition: int, committed: bool) -> int:
    """ListOffsets(latest) through the AdminClient: the LSO for read_committed, else the high
    watermark."""
    from confluent_kafka import IsolationLevel, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec
    admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    tp = TopicPartition(topic, partition)
    futures = admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=level, request_timeout=10)
    return futures[tp].result(15).offset


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Polls `predicate()` until it returns a truthy value (returned) or `timeout` seconds pass
    (AssertionError naming `what` and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def fenced_error(exc) -> tuple[bool, int, str]:
    """(fatal, code, text) of a confluent-kafka KafkaException."""
    err = exc.args[0]
    return err.fatal(), err.code(), err.str()


def is_fenced(exc) -> bool:
    """Whether a confluent-kafka KafkaException is the fatal error of a fenced transactional producer.
    librdkafka reports it as the local _FENCED error, or with the broker's PRODUCER_FENCED (90) /
    INVALID_PRODUCER_EPOCH (47), or as the generic _FATAL naming the fencing in its text."""
    from confluent_kafka import KafkaError
    fatal, code, text = fenced_error(exc)
    if not fatal:
        return False
    if code in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH):
        return True
    return code == KafkaError._FATAL and ("fenced" in text.lower() or "epoch" in text.lower())


def restart_after_kill9(broker, timeout: float = 10.0):
    """kill -9, then start again on the same port and data dir. The killed process's listening
    socket can outlive it briefly (its io_uring is torn down asynchronously by the kernel), and the
    broker refuses to start while a socket listens on its port: retry until it is gone."""
    broker.kill9()
    deadline = time.monotonic() + timeout
    while True:
        try:
            return broker.restart()
        except BrokerError as e:
            if "Address already in use" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
