"""Incremental fetch sessions (KIP-227): kafka-python 3 opens a session and keeps consuming through
incremental fetches (which list only changed partitions), across several partitions."""

import time

from kafka import TopicPartition

from harness import ck_produce_all, ck_producer, create_topic, kp_consumer


def test_kafka_python_consumes_through_an_incremental_session(broker, topic):
    partitions = 4
    create_topic(broker.bootstrap, topic, partitions=partitions)
    producer = ck_producer(broker.bootstrap)
    consumer = kp_consumer(broker.bootstrap, fetch_max_wait_ms=200)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        seen = {}
        epochs = set()
        session_ids = set()
        # Several rounds, each producing to one partition only: the incremental responses must still
        # deliver exactly what was produced, while the other partitions stay quiet.
        for round_number in range(6):
            target = round_number % partitions
            items = [(f"r{round_number}-{i}".encode(), f"v{round_number}-{i}".encode()) for i in range(50)]
            ck_produce_all(producer, topic, items, partition=target)
            deadline = time.monotonic() + 20
            while sum(len(v) for v in seen.values()) < 50 * (round_number + 1) and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=200).items():
                    seen.setdefault(tp.partition, []).extend(r.value for r in records)
                for handler in consumer._fetcher._session_handlers.values():
                    session_ids.add(handler.next_metadata.session_id)
                    epochs.add(handler.next_metadata.epoch)
        total = sum(len(v) for v in seen.values())
        assert total == 50 * 6, f"consumed {total} of 300"
        for p, values in seen.items():
            assert len(values) == len(set(values)), f"duplicates on partition {p}"
        # The broker handed out a real session and the client advanced through incremental epochs.
        assert any(session_id > 0 for session_id in session_ids), session_ids
        assert max(epochs) > 1, epochs
    finally:
        consumer.close()
        producer.flush(5)
