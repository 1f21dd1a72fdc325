"""Authorized operations: with no authorizer every operation is allowed, and the broker says so when
a request asks (Metadata v8–10 cluster operations, topic operations, DescribeCluster); when it does
not ask, the field stays "not requested"."""

from confluent_kafka import TopicCollection
from confluent_kafka.admin import AclOperation

from harness import ck_admin, create_topic

CLUSTER_OPERATIONS = {AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE,
                      AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
                      AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE}
TOPIC_OPERATIONS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
                    AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
                    AclOperation.ALTER_CONFIGS}


def test_describe_cluster_reports_cluster_operations(broker):
    # librdkafka asks with Metadata v10 and include_cluster_authorized_operations.
    admin = ck_admin(broker.bootstrap)
    described = admin.describe_cluster(include_authorized_operations=True,
                                       request_timeout=15).result(30)
    assert set(described.authorized_operations or []) == CLUSTER_OPERATIONS
    plain = admin.describe_cluster(request_timeout=15).result(30)
    assert not plain.authorized_operations


def test_describe_topics_reports_topic_operations(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    admin = ck_admin(broker.bootstrap)
    described = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True,
                                      request_timeout=15)[topic].result(30)
    assert set(described.authorized_operations or []) == TOPIC_OPERATIONS
    plain = admin.describe_topics(TopicCollection([topic]), request_timeout=15)[topic].result(30)
    assert not plain.authorized_operations


def test_kafka_python_describe_cluster(broker):
    # kafka-python asks with DescribeCluster.
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        described = admin.describe_cluster()
    finally:
        admin.close()
    operations = {str(op).split(".")[-1] for op in described["authorized_operations"]}
    assert operations == {op.name for op in CLUSTER_OPERATIONS}, described
