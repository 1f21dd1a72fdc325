"""Topics in a cluster: the metadata quorum's log carries topics, partitions (replicas, leader, ISR,
leader epoch) and configs, and every node serves from it. Three real broker processes per test
(combined roles), clients bootstrapped from one node at a time.

Run them with
    .venv/bin/python -m pytest tests/integration/test_cluster_topics.py -v
"""

import collections
import time

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic

from harness import (ck_admin, ck_consume, ck_consumer, ck_producer, ck_produce_all,
                     fetch_v4_request, parse_fetch_v4, raw_call)
from test_cluster import _poll, _wait_formed, cluster_factory  # noqa: F401 -- the fixture


def _topic_view(bootstrap: str, topic: str):
    """{partition: (leader, replicas, isrs)} as a client bootstrapped from `bootstrap` sees it."""
    admin = ck_admin(bootstrap)
    described = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    if described is None or described.error is not None:
        raise AssertionError(f"{topic}: {described.error if described else 'absent'}")
    return {p.id: (p.leader, sorted(p.replicas), sorted(p.isrs))
            for p in described.partitions.values()}


def _three_brokers(cluster_factory, **kw):
    """A formed 3-node cluster whose brokers are all registered (so placement sees three)."""
    c = cluster_factory(3, **kw)
    _wait_formed(c)
    admins = [ck_admin(c[i].bootstrap) for i in c.ids]
    _poll(lambda: (all(len(a.list_topics(timeout=10).brokers) == 3 for a in admins), None), 20,
          "three brokers listed by every node", c.nodes)
    return c


def _create(bootstrap: str, topic: str, partitions: int, replication_factor: int, config=None):
    admin = ck_admin(bootstrap)
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=replication_factor,
                                            config=config or {})], request_timeout=20)
    futures[topic].result(30)


def _all_nodes_agree(c, topic, partitions):
    def check():
        views = {i: _topic_view(c[i].bootstrap, topic) for i in c.ids}
        first = views[c.ids[0]]
        ok = (len(first) == partitions and all(v == first for v in views.values())
              and all(leader >= 0 for leader, _, _ in first.values()))
        return ok, (first if ok else views)
    return _poll(check, 20, f"every node describes {topic} alike with leaders", c.nodes, 0.5)


@pytest.mark.timeout(180)
def test_cluster_rf3_topic_is_placed_across_brokers_with_leaders_spread(cluster_factory, topic):
    c = _three_brokers(cluster_factory)
    _create(c[2].bootstrap, topic, partitions=6, replication_factor=3)
    view = _all_nodes_agree(c, topic, 6)
    leaders = collections.Counter(leader for leader, _, _ in view.values())
    assert sorted(leaders) == [1, 2, 3] and set(leaders.values()) == {2}, \
        f"leaders not spread evenly: {view}"
    for partition, (leader, replicas, isrs) in view.items():
        assert replicas == [1, 2, 3], f"partition {partition}: replicas {replicas}"
        # Every replica starts in sync (all are empty) and stays so while it follows.
        assert isrs == [1, 2, 3], f"partition {partition}: isr {isrs}, leader {leader}"

    # More replicas than brokers: INVALID_REPLICATION_FACTOR, from any node.
    admin = ck_admin(c[3].bootstrap)
    futures = admin.create_topics([NewTopic(topic + "-rf4", num_partitions=1,
                                            replication_factor=4)], request_timeout=20)
    with pytest.raises(KafkaException) as refused:
        futures[topic + "-rf4"].result(30)
    assert refused.value.args[0].name() == "INVALID_REPLICATION_FACTOR", refused.value

    # A fetch sent straight to a node that does not lead the partition: NOT_LEADER_OR_FOLLOWER (6).
    for partition, (leader, _, _) in view.items():
        follower = next(i for i in c.ids if i != leader)
        answer = parse_fetch_v4(raw_call(c[follower].address,
                                         fetch_v4_request(7, topic, partition, 0, max_wait_ms=0), 7))
        assert [(p, err) for (_t, p, err, _hw, _n) in answer] == [(partition, 6)], answer

    # Records go to each partition's leader whichever node the producer bootstrapped from, and a
    # consumer bootstrapped from another node reads them all.
    producer = ck_producer(c[1].bootstrap)
    delivered = ck_produce_all(producer, topic, [(f"k{i}".encode(), f"v{i}".encode())
                                                 for i in range(300)])
    assert delivered.errors == [], delivered.errors[:3]
    records = ck_consume(c[3].bootstrap, [(topic, p, 0) for p in range(6)], expected=300)
    assert sorted(r[4] for r in records) == sorted(f"v{i}".encode() for i in range(300))


@pytest.mark.timeout(240)
def test_cluster_full_restart_keeps_topics_configs_and_records(cluster_factory, topic):
    c = _three_brokers(cluster_factory)
    _create(c[1].bootstrap, topic, partitions=3, replication_factor=2,
            config={"retention.ms": "86400000"})
    admin = ck_admin(c[3].bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic,
                              set_config={"retention.ms": "3600000", "cleanup.policy": "delete"})
    admin.alter_configs([resource], request_timeout=20)[resource].result(30)
    before = _all_nodes_agree(c, topic, 3)
    ids_before = {i: ck_admin(c[i].bootstrap).list_topics(topic=topic, timeout=10)
                  .topics[topic].partitions.keys() for i in c.ids}
    assert all(len(v) == 3 for v in ids_before.values())
    delivered = ck_produce_all(ck_producer(c[2].bootstrap), topic,
                               [(None, f"r{i}".encode()) for i in range(90)])
    assert delivered.errors == []

    c.stop()
    c.start()
    _wait_formed(c, timeout=30)
    after = _all_nodes_agree(c, topic, 3)
    assert {p: v[1] for p, v in after.items()} == {p: v[1] for p, v in before.items()}, \
        "replicas changed across the restart"

    admins = {node: ck_admin(c[node].bootstrap) for node in c.ids}  # held: a collected client fails its futures

    def configs_kept(node):
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        entries = admins[node].describe_configs([res], request_timeout=20)[res].result(30)
        got = {k: entries[k].value for k in ("retention.ms", "cleanup.policy")}
        return got == {"retention.ms": "3600000", "cleanup.policy": "delete"}, got
    for node in c.ids:
        _poll(lambda node=node: configs_kept(node), 20, f"configs from node {node}", c.nodes, 0.5)
    records = ck_consume(c[3].bootstrap, [(topic, p, 0) for p in range(3)], expected=90)
    assert sorted(r[4] for r in records) == sorted(f"r{i}".encode() for i in range(90))


@pytest.mark.timeout(240)
def test_cluster_leader_kill9_takes_its_partitions_offline_until_it_returns(cluster_factory, topic):
    """With one replica the ISR is the leader alone: when the leader dies its partitions have no
    leader (no unclean election, no acknowledged record lost), the others keep serving, and the
    restarted broker leads them again with a higher leader epoch and its records."""
    c = _three_brokers(cluster_factory)
    _create(c[1].bootstrap, topic, partitions=3, replication_factor=1)
    view = _all_nodes_agree(c, topic, 3)
    delivered = ck_produce_all(ck_producer(c[1].bootstrap), topic,
                               [(None, f"a{i}".encode()) for i in range(60)])
    assert delivered.errors == []
    victim = view[0][0]
    survivors = [i for i in c.ids if i != victim]
    c.kill9(victim)

    def offline():
        views = {i: _topic_view(c[i].bootstrap, topic) for i in survivors}
        ok = all(v[0][0] == -1 and all(v[p][0] != -1 for p in v if view[p][0] != victim)
                 for v in views.values())
        return ok, views
    _poll(offline, 30, f"partition 0 offline after kill -9 of its leader {victim}", c.nodes, 0.5)

    c[victim].start()
    back = _all_nodes_agree(c, topic, 3)
    assert back[0][0] == victim, back
    records = ck_consume(c[survivors[0]].bootstrap, [(topic, p, 0) for p in range(3)],
                         expected=60)
    assert sorted(r[4] for r in records) == sorted(f"a{i}".encode() for i in range(60))


@pytest.mark.timeout(180)
def test_cluster_consumer_group_and_deletion_from_any_node(cluster_factory, topic):
    """A consumer group coordinated by whichever broker leads its __consumer_offsets partition
    (FindCoordinator from any node names it) commits and reads back offsets; a topic deleted
    through one node is gone on every node and its leader's directories go."""
    c = _three_brokers(cluster_factory)
    _create(c[2].bootstrap, topic, partitions=3, replication_factor=1)
    _all_nodes_agree(c, topic, 3)
    delivered = ck_produce_all(ck_producer(c[3].bootstrap), topic,
                               [(None, f"g{i}".encode()) for i in range(30)])
    assert delivered.errors == []
    group = topic + "-group"
    consumer = ck_consumer(c[1].bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                              "enable.auto.offset.store": True})
    try:
        consumer.subscribe([topic])
        seen, deadline = 0, time.monotonic() + 40
        while seen < 30 and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=100, timeout=0.5):
                if m.error() is None:
                    seen += 1
        assert seen == 30, f"group consumer read {seen} of 30"
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    other = ck_consumer(c[2].bootstrap, **{"group.id": group})
    try:
        committed = other.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
        # Partitions nothing was read from have no committed offset (-1001).
        assert sum(max(tp.offset, 0) for tp in committed) == 30, committed
    finally:
        other.close()

    admin = ck_admin(c[3].bootstrap)
    admin.delete_topics([topic], request_timeout=20)[topic].result(30)

    def gone():
        present = {i: topic in ck_admin(c[i].bootstrap).list_topics(timeout=10).topics
                   for i in c.ids}
        dirs = {i: sorted(p.name for p in c[i].data_dir.iterdir()
                          if p.name.startswith(topic + "-") and p.is_dir()
                          and not p.name.endswith("-delete") and "group" not in p.name)
                for i in c.ids}
        return not any(present.values()) and not any(dirs.values()), (present, dirs)
    _poll(gone, 20, f"{topic} deleted everywhere", c.nodes, 0.5)


@pytest.mark.timeout(120)
def test_single_broker_upgrade_migrates_its_topics_into_the_quorum(broker_factory, topic):
    """A data directory from before the quorum carried topics (no quorum log, no meta.properties,
    a cluster_metadata.toml without `quorum_managed`): the broker proposes its topics to its quorum
    on the first start and keeps serving them with the same id, configs and records."""
    import re
    broker = broker_factory()
    admin = ck_admin(broker.bootstrap)
    _create(broker.bootstrap, topic, partitions=2, replication_factor=1,
            config={"retention.ms": "7200000"})
    delivered = ck_produce_all(ck_producer(broker.bootstrap), topic,
                               [(None, f"m{i}".encode()) for i in range(50)])
    assert delivered.errors == []
    broker.stop()
    metadata_file = broker.data_dir / "cluster_metadata.toml"
    text = metadata_file.read_text()
    topic_id = re.search(r'\[topics\.' + re.escape(f'"{topic}"') + r'\]\nid = "([^"]+)"', text) \
        or re.search(r'\[topics\.' + re.escape(topic) + r'\]\nid = "([^"]+)"', text)
    assert topic_id, text[:2000]
    assert "quorum_managed = true" in text
    # Back to what a broker before the quorum wrote.
    text = re.sub(r"^(quorum_managed|applied_index) = .*\n", "", text, flags=re.M)
    metadata_file.write_text(text)
    import shutil
    shutil.rmtree(broker.data_dir / "__cluster_metadata-0")
    (broker.data_dir / "meta.properties").unlink()

    broker.start()
    _poll(lambda: ("quorum_managed = true" in metadata_file.read_text(), None), 20,
          "the migrated topics managed by the quorum", [broker])
    assert topic_id.group(1) in metadata_file.read_text(), "the topic kept its id"
    assert (broker.data_dir / "__cluster_metadata-0" / "quorum.log").exists()
    records = ck_consume(broker.bootstrap, [(topic, p, 0) for p in range(2)], expected=50)
    assert sorted(r[4] for r in records) == sorted(f"m{i}".encode() for i in range(50))
    admin = ck_admin(broker.bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource], request_timeout=20)[resource].result(30)
    assert entries["retention.ms"].value == "7200000"
    # Still changeable through the quorum after the migration.
    _create(broker.bootstrap, topic + "-after", partitions=1, replication_factor=1)


@pytest.mark.timeout(180)
def test_cluster_with_two_shards_per_broker_serves_every_partition(cluster_factory, topic):
    """Each broker places the partitions it leads on its own shards; clients see one cluster."""
    c = _three_brokers(cluster_factory, shards=2)
    _create(c[1].bootstrap, topic, partitions=8, replication_factor=2)
    view = _all_nodes_agree(c, topic, 8)
    assert collections.Counter(leader for leader, _, _ in view.values()).most_common(1)[0][1] <= 3
    delivered = ck_produce_all(ck_producer(c[2].bootstrap), topic,
                               [(f"k{i}".encode(), f"s{i}".encode()) for i in range(400)])
    assert delivered.errors == []
    records = ck_consume(c[3].bootstrap, [(topic, p, 0) for p in range(8)], expected=400)
    assert sorted(r[4] for r in records) == sorted(f"s{i}".encode() for i in range(400))


@pytest.mark.timeout(240)
def test_cluster_broker_behind_the_snapshot_catches_up_and_restarts_from_it(cluster_factory, topic):
    """Metadata-log snapshots: with compaction every 4 KiB of entries, a broker killed while 40 topics
    are created finds the log it missed compacted away; the leader sends it a snapshot, and it
    serves every topic. Every node then restarts from its snapshot (and the entries after it)."""
    c = _three_brokers(cluster_factory,
                       config={"metadata_log_max_record_bytes_between_snapshots": 4096})
    # Not the active controller (an admin client would wait for that one to return).
    controller = ck_admin(c[1].bootstrap).list_topics(timeout=10).controller_id
    victim = next(i for i in reversed(c.ids) if i != controller)
    live = [i for i in c.ids if i != victim]
    c.kill9(victim)
    names = [f"{topic}-{i}" for i in range(40)]
    admin = ck_admin(c[live[0]].bootstrap)
    futures = admin.create_topics([NewTopic(n, num_partitions=2, replication_factor=2)
                                   for n in names], request_timeout=30)
    for name in names:
        futures[name].result(60)
    _poll(lambda: (all("compacted the metadata log into a snapshot" in c[i].log_text()
                       for i in live), None), 20, "both live nodes compacted", c.nodes)

    c[victim].start()

    def all_listed(node):
        listed = ck_admin(c[node].bootstrap).list_topics(timeout=10).topics
        missing = [n for n in names if n not in listed or len(listed[n].partitions) != 2]
        return not missing, missing[:5]
    _poll(lambda: all_listed(victim), 30, "the returning broker lists every topic", c.nodes, 0.5)
    assert "installed the leader's snapshot of the metadata log" in c[victim].log_text(), \
        "caught up by a snapshot"

    # Produce to one topic led by the returned broker, through any node.
    led_by_victim = next(n for n in names
                         if any(v[0] == victim for v in _topic_view(c[live[0]].bootstrap, n).values()))
    delivered = ck_produce_all(ck_producer(c[live[1]].bootstrap), led_by_victim,
                               [(None, f"s{i}".encode()) for i in range(20)])
    assert delivered.errors == [], delivered.errors[:3]

    c.stop()
    c.start()
    _wait_formed(c, timeout=30)
    for node in c.ids:
        _poll(lambda: all_listed(node), 30, f"node {node} lists every topic after a restart",
              c.nodes, 0.5)
    records = ck_consume(c[1].bootstrap, [(led_by_victim, p, 0) for p in range(2)], expected=20)
    assert len(records) == 20


@pytest.mark.timeout(240)
def test_cluster_transaction_across_brokers_commits_and_aborts(cluster_factory, topic):
    """A transaction whose partitions are led by all three brokers, whichever one coordinates it: the
    coordinator sends markers to the other brokers (WriteTxnMarkers), and each partition's leader asks
    the coordinator's broker to verify the first transactional batch (AddPartitionsToTxn
    verify_only). A read_committed consumer sees the committed transactions only, and the group offsets
    sent with them (AddOffsetsToTxn + TxnOffsetCommit) are committed with them."""
    from txn_helpers import produce_in_txn, read, txn_producer
    c = _three_brokers(cluster_factory)
    _create(c[1].bootstrap, topic, partitions=3, replication_factor=1)
    view = _all_nodes_agree(c, topic, 3)
    assert sorted(leader for leader, _, _ in view.values()) == [1, 2, 3], view

    group = f"{topic}-group"
    consumer = ck_consumer(c[3].bootstrap, **{"group.id": group, "enable.auto.commit": False})
    for round_, txn_id in enumerate([f"{topic}-tx-a", f"{topic}-tx-b"]):
        producer = txn_producer(c[2].bootstrap, txn_id)
        producer.begin_transaction()
        for partition in range(3):
            produce_in_txn(producer, topic, [f"c{round_}-{partition}-{i}".encode() for i in range(10)],
                           partition=partition)
        # The group's offsets commit with the transaction (its coordinator may be a third broker).
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, 5 + round_)],
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        producer.begin_transaction()
        for partition in range(3):
            produce_in_txn(producer, topic, [f"a{round_}-{partition}-{i}".encode() for i in range(10)],
                           partition=partition)
        producer.abort_transaction(30)

    # Every partition's last stable offset reaches its end: all markers were written, on every broker.
    records = read(c[3].bootstrap, [(topic, p, 0) for p in range(3)], expected=60, committed=True)
    values = sorted(r[4] for r in records)
    assert values == sorted(f"c{r}-{p}-{i}".encode() for r in range(2) for p in range(3)
                            for i in range(10)), values[:5]
    uncommitted = read(c[1].bootstrap, [(topic, p, 0) for p in range(3)], expected=120,
                       committed=False)
    assert len(uncommitted) == 120
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=20)
    assert committed[0].offset == 6, committed
    consumer.close()
