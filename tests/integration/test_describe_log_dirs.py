"""DescribeLogDirs with a real client: kafka-python's KafkaAdminClient.describe_log_dirs() (what
`kafka-log-dirs`-style tools read) sees the data directory's absolute path, every partition of a topic on
several shards (or only those asked for; unknown ones left out), sizes growing as records are produced,
offset lag 0, and the file system's total and usable bytes (v4)."""

import os

from kafka import KafkaAdminClient

from harness import ck_producer, create_topic


def _log_dirs(bootstrap, topic_partitions=None):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    try:
        (answer,) = admin.describe_log_dirs(topic_partitions)
        (log_dir,) = answer["log_dirs"]
        return log_dir
    finally:
        admin.close()


def _sizes(log_dir, topic):
    return {partition["partition_index"]: partition["partition_size"]
            for entry in log_dir["topics"] if entry["name"] == topic
            for partition in entry["partitions"]
            if partition["offset_lag"] == 0 and not partition["is_future_key"]}


def test_describe_log_dirs_reports_partitions_and_growing_sizes(broker_factory, topic):
    broker = broker_factory(shards=2)
    create_topic(broker.bootstrap, topic, partitions=3)
    log_dir = _log_dirs(broker.bootstrap)
    assert log_dir["error_code"] == 0
    assert os.path.isabs(log_dir["log_dir"])
    assert os.path.samefile(log_dir["log_dir"], broker.data_dir)
    assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
    before = _sizes(log_dir, topic)
    assert sorted(before) == [0, 1, 2]

    producer = ck_producer(broker.bootstrap)
    for index in range(300):
        producer.produce(topic, value=b"v" * 200, partition=index % 3)
    assert producer.flush(30) == 0
    after = _sizes(_log_dirs(broker.bootstrap), topic)
    for partition in range(3):
        assert after[partition] >= before[partition] + 100 * 200, (before, after)

    # Only the partitions asked for; those that do not exist are left out.
    asked = _log_dirs(broker.bootstrap, {topic: [1, 7], topic + "-missing": [0]})
    assert [entry["name"] for entry in asked["topics"]] == [topic]
    assert list(_sizes(asked, topic)) == [1]
