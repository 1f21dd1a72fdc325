"""A cluster of brokers with a Raft metadata quorum (`--controller-quorum-voters`): forming,
electing a new controller after kill -9, fencing and re-admitting a node, keeping its cluster id
across restarts, refusing a data dir from another cluster; and a plain broker as a cluster of one.

Every test name contains `cluster`: run them with
    .venv/bin/python -m pytest tests/integration/test_cluster.py -v
The quorum and the broker list are read from each node with raw DescribeQuorum v1 and Metadata v12
requests (harness.describe_quorum / harness.metadata) so that "from each broker" really is that
broker; confluent-kafka's AdminClient is used for describe_cluster, topics and records.
"""

import shutil
import struct
import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from harness import (Cluster, ck_admin, ck_consume, ck_producer, ck_produce_all,
                     create_topic, describe_quorum, describe_quorum_v1_request, metadata,
                     metadata_v12_request, parse_describe_quorum_v1, parse_metadata_v12,
                     request_header_v2, _uvarint)

HOST = "127.0.0.1"
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_INTERVAL_MS = 500


# --------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture
def cluster_factory(request, tmp_path, broker_factory):
    """cluster_factory(n=3, name="node", start=True) -> harness.Cluster. Its brokers join the list
    broker_factory cleans up (crash/panic checks) and whose log tails a failing test reports."""
    tracked = request.node._brokers
    clusters = []

    def make(n: int = 3, name: str = "node", start: bool = True, **kw) -> Cluster:
        c = Cluster(tmp_path, n=n, name=name, session_timeout_ms=SESSION_TIMEOUT_MS,
                    heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS, **kw)
        tracked.extend(c.nodes)
        clusters.append(c)
        if start:
            c.start()
        return c

    yield make
    # SIGTERM all nodes of a cluster at once (a node stopped alone after its peers are gone must
    # not be what decides whether teardown passes); broker_factory then checks every node.
    problems = []
    for c in clusters:
        try:
            c.stop(timeout=20)
        except Exception as e:  # noqa: BLE001 -- reported below, after every cluster was stopped
            problems.append(str(e).splitlines()[0])
    if problems:
        pytest.fail("cluster stop problems: " + "; ".join(problems), pytrace=False)


def _tails(brokers, n: int = 25) -> str:
    return "".join(f"\n----- {b.name} log tail -----\n{b.log_tail(n)}" for b in brokers)


def _poll(check, timeout: float, what: str, brokers, interval: float = 0.25):
    """Calls check() -> (done, observation) until done; returns the observation. An exception from
    check() (connection refused, a malformed response, a client error) counts as not done."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        try:
            done, seen = check()
            if done:
                return seen
        except (OSError, AssertionError, struct.error, KafkaException, UnicodeDecodeError) as e:
            seen = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.1f}s; last observed: "
                                 f"{seen!r}" + _tails(brokers))
        time.sleep(interval)


def _quorums(c: Cluster, ids) -> dict:
    return {i: describe_quorum(c[i].address) for i in ids}


def _quorum_agreed(qs: dict, voters) -> tuple[bool, str]:
    """Every node's DescribeQuorum answers without error, with the same leader (one of `voters`)
    and epoch (>= 1), and lists exactly `voters` as voters."""
    problems = []
    for i, q in qs.items():
        if q["error_code"] != 0 or q["partition_error_code"] != 0:
            problems.append(f"node {i}: error codes {q['error_code']}/{q['partition_error_code']}")
        elif q["leader_id"] not in voters or q["leader_epoch"] < 1:
            problems.append(f"node {i}: leader {q['leader_id']} epoch {q['leader_epoch']}")
        elif sorted(v["replica_id"] for v in q["voters"]) != sorted(voters):
            problems.append(f"node {i}: voters {[v['replica_id'] for v in q['voters']]}")
    views = {(q["leader_id"], q["leader_epoch"]) for q in qs.values()}
    if len(views) != 1:
        problems.append(f"(leader, epoch) views differ: {sorted(views, key=str)}")
    return not problems, "; ".join(problems) or "agreed"


def _wait_formed(c: Cluster, timeout: float = 20.0) -> dict:
    """Waits until all nodes agree on the quorum; returns node 1's DescribeQuorum answer."""
    def check():
        qs = _quorums(c, c.ids)
        ok, why = _quorum_agreed(qs, c.ids)
        return ok, (qs if ok else why)
    return _poll(check, timeout, "quorum agreed by every node", c.nodes)[c.ids[0]]


def _wait_meta_properties(brokers, timeout: float = 10.0) -> dict:
    """Waits until each broker's data dir has a meta.properties with cluster.id and node.id."""
    def check():
        props = {b.name: b.meta_properties() for b in brokers}
        done = all(p and p.get("cluster.id") and p.get("node.id") for p in props.values())
        return done, props
    return _poll(check, timeout, "meta.properties with cluster.id and node.id", brokers)


def _expected_brokers(c: Cluster, ids) -> dict:
    return {i: (HOST, c[i].port, f"rack-{i}") for i in ids}


# --------------------------------------------------------------------------- wire self-check

def test_cluster_wire_encoders_self_check():
    """No broker: the raw DescribeQuorum v1 / Metadata v12 encoders produce the exact bytes and
    the decoders read hand-assembled responses (including a tagged field)."""
    assert _uvarint(0) == b"\x00" and _uvarint(127) == b"\x7f" and _uvarint(300) == b"\xac\x02"
    assert request_header_v2(55, 1, 7) == (b"\x00\x37" b"\x00\x01" b"\x00\x00\x00\x07"
                                           b"\x00\x09itest-raw" b"\x00")

    header = b"\x00\x37\x00\x01\x00\x00\x00\x07\x00\x09itest-raw\x00"
    body = (b"\x02"                                  # Topics: 1 entry
            b"\x13__cluster_metadata"                # TopicName (18 bytes + 1)
            b"\x02" b"\x00\x00\x00\x00" b"\x00"      # Partitions: [PartitionIndex 0, no tags]
            b"\x00"                                  # topic tags
            b"\x00")                                 # request tags
    assert describe_quorum_v1_request(7) == struct.pack(">i", len(header + body)) + header + body
    assert len(header + body) == 48

    header = b"\x00\x03\x00\x0c\x00\x00\x00\x03\x00\x09itest-raw\x00"
    body = b"\x01" b"\x00" b"\x00" b"\x00"            # Topics [] / no auto-create / no auth ops / tags
    assert metadata_v12_request(3) == struct.pack(">i", 24) + header + body

    def replica(rid, leo, fetch, caught):
        return struct.pack(">iqqq", rid, leo, fetch, caught) + b"\x00"
    response = (b"\x00"                              # response header v1 tags
                b"\x00\x00"                          # ErrorCode
                b"\x02" b"\x13__cluster_metadata"
                b"\x02" + struct.pack(">ihiiq", 0, 0, 2, 5, 42)
                + b"\x04" + replica(1, 42, 1000, 999) + replica(2, 42, -1, -1) + replica(3, 40, 7, 6)
                + b"\x01"                            # Observers: []
                + b"\x01\x00\x08" + struct.pack(">q", 123456)   # tag 0: HighWatermarkUpdateTimeMs
                + b"\x00" b"\x00")
    q = parse_describe_quorum_v1(response)
    assert (q["error_code"], q["partition_error_code"], q["leader_id"], q["leader_epoch"],
            q["high_watermark"]) == (0, 0, 2, 5, 42)
    assert [(v["replica_id"], v["log_end_offset"]) for v in q["voters"]] == [(1, 42), (2, 42), (3, 40)]
    assert q["voters"][0]["last_fetch_timestamp"] == 1000
    assert q["voters"][2]["last_caught_up_timestamp"] == 6
    assert q["observers"] == []
    with pytest.raises(AssertionError):
        parse_describe_quorum_v1(response[:-3])

    md = (b"\x00" + struct.pack(">i", 0)
          + b"\x03" + struct.pack(">i", 1) + b"\x0a127.0.0.1" + struct.pack(">i", 9000) + b"\x07rack-1\x00"
          + struct.pack(">i", 2) + b"\x0a127.0.0.1" + struct.pack(">i", 9001) + b"\x00\x00"
          + b"\x05abcd" + struct.pack(">i", 1) + b"\x01" + b"\x00")
    assert parse_metadata_v12(md) == {
        "brokers": {1: ("127.0.0.1", 9000, "rack-1"), 2: ("127.0.0.1", 9001, None)},
        "cluster_id": "abcd", "controller_id": 1}


# --------------------------------------------------------------------------- the cluster

@pytest.mark.timeout(240)
def test_cluster_of_three_forms_and_lists_its_brokers(cluster_factory):
    c = cluster_factory(3)
    expected = _expected_brokers(c, c.ids)

    def formed():
        mds = {i: metadata(c[i].address) for i in c.ids}
        controllers = {i: md["controller_id"] for i, md in mds.items()}
        wrong = {i: md["brokers"] for i, md in mds.items() if md["brokers"] != expected}
        qs = _quorums(c, c.ids)
        quorum_ok, quorum_why = _quorum_agreed(qs, c.ids)
        hw_low = {i: q["high_watermark"] for i, q in qs.items() if not (q["high_watermark"] or 0) > 0}
        # Every node names the quorum's leader (the active controller) as the controller.
        leaders = {q["leader_id"] for q in qs.values()}
        ok = (not wrong and quorum_ok and not hw_low and len(leaders) == 1
              and all(controllers[i] in leaders for i in c.ids))
        seen = (f"brokers differing from {expected}: {wrong}; controllers {controllers}; "
                f"quorum: {quorum_why}; high watermarks not > 0: {hw_low}")
        return ok, ((mds, qs) if ok else seen)

    mds, qs = _poll(formed, 20, "3-node cluster formed, seen alike from every node", c.nodes)
    cluster_ids = {i: md["cluster_id"] for i, md in mds.items()}
    assert len(set(cluster_ids.values())) == 1 and cluster_ids[1], \
        f"cluster ids differ or are empty: {cluster_ids}"
    leader = qs[1]["leader_id"]
    for i, q in qs.items():
        assert q["observers"] == [], f"node {i} reports observers {q['observers']} (all are voters)"

    # The same through a real client (each AdminClient bootstrapped from one node).
    for i in c.ids:
        admin = ck_admin(c[i].bootstrap)

        def described(admin=admin):
            res = admin.describe_cluster(request_timeout=10).result(15)
            nodes = {n.id: (n.host, n.port, n.rack) for n in res.nodes}
            listed = admin.list_topics(timeout=10)
            brokers = {b.id: (b.host, b.port) for b in listed.brokers.values()}
            ok = (nodes == expected and res.controller is not None
                  and res.controller.id in c.ids and res.cluster_id == cluster_ids[1]
                  and brokers == {k: v[:2] for k, v in expected.items()}
                  and listed.controller_id in c.ids)
            return ok, (f"describe_cluster nodes {nodes} controller "
                        f"{res.controller.id if res.controller else None} cluster {res.cluster_id}; "
                        f"list_topics brokers {brokers} controller {listed.controller_id}")
        _poll(described, 15, f"confluent-kafka view of the cluster via node {i}", c.nodes, 0.5)
    assert leader in c.ids


@pytest.mark.timeout(300)
def test_cluster_elects_a_new_controller_after_kill9(cluster_factory, topic):
    c = cluster_factory(3)
    _wait_formed(c)
    everyone = _expected_brokers(c, c.ids)

    def registered():
        mds = {i: metadata(c[i].address)["brokers"] for i in c.ids}
        return all(b == everyone for b in mds.values()), mds
    # Every node registered (so the leader's death must be noticed and fenced, not just never seen).
    _poll(registered, 20, "every node lists brokers 1, 2, 3", c.nodes)
    q = _wait_formed(c)
    old_leader, old_epoch = q["leader_id"], q["leader_epoch"]
    survivors = [i for i in c.ids if i != old_leader]

    c.kill9(old_leader)
    killed_at = time.monotonic()

    def new_leader():
        qs = _quorums(c, survivors)
        views = {(x["leader_id"], x["leader_epoch"]) for x in qs.values()}
        errors = {i: (x["error_code"], x["partition_error_code"]) for i, x in qs.items()
                  if (x["error_code"], x["partition_error_code"]) != (0, 0)}
        (leader, epoch), = views if len(views) == 1 else ((None, None),)
        ok = not errors and leader in survivors and epoch > old_epoch
        return ok, ((leader, epoch) if ok else f"views {views}, errors {errors}")

    leader, epoch = _poll(new_leader, 10, f"survivors {survivors} agree on a new leader after "
                          f"kill -9 of leader {old_leader} (epoch {old_epoch})", c.nodes)

    fence_deadline = killed_at + SESSION_TIMEOUT_MS / 1000 + 10
    expected = _expected_brokers(c, survivors)

    def fenced():
        mds = {i: metadata(c[i].address)["brokers"] for i in survivors}
        return all(b == expected for b in mds.values()), mds
    _poll(fenced, max(1.0, fence_deadline - time.monotonic()),
          f"survivors' metadata lists only brokers {survivors} (node {old_leader} fenced)", c.nodes)

    # Admin requests keep working on the two-node cluster: the client sends CreateTopics to the
    # controller the survivors name, the new leader.
    admin = ck_admin(c[survivors[0]].bootstrap)  # held: a collected client fails its futures
    futures = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)],
                                  request_timeout=15)
    futures[topic].result(20)

    # The killed node comes back: listed by the others again, and it follows the current leader.
    c[old_leader].start()

    def rejoined():
        mds = {i: metadata(c[i].address)["brokers"] for i in survivors}
        qs = _quorums(c, c.ids)
        quorum_ok, why = _quorum_agreed(qs, c.ids)
        back_leader = qs[old_leader]["leader_id"]
        ok = (all(b == everyone for b in mds.values()) and quorum_ok
              and qs[old_leader]["leader_epoch"] >= epoch and back_leader in c.ids)
        return ok, f"survivors list {mds}; quorum: {why}; node {old_leader} sees {back_leader}"
    _poll(rejoined, 20, f"node {old_leader} rejoined after restart", c.nodes)


@pytest.mark.timeout(240)
def test_cluster_restart_keeps_its_cluster_id(cluster_factory):
    c = cluster_factory(3)
    _wait_formed(c)

    def one_cluster_id():
        ids = {i: metadata(c[i].address)["cluster_id"] for i in c.ids}
        return len(set(ids.values())) == 1 and bool(ids[1]), ids
    cluster_id = _poll(one_cluster_id, 10, "one non-empty cluster id", c.nodes)[1]
    admin = ck_admin(c[1].bootstrap)  # keep a reference: a collected client fails its futures
    described = admin.describe_cluster(request_timeout=10).result(15)
    assert described.cluster_id == cluster_id, \
        f"describe_cluster says {described.cluster_id!r}, Metadata says {cluster_id!r}"

    rcs = c.stop()
    assert rcs == {i: 0 for i in c.ids}, f"exit codes after SIGTERM: {rcs}" + _tails(c.nodes)

    c.start()
    _wait_formed(c)
    after = _poll(one_cluster_id, 10, "one non-empty cluster id after restart", c.nodes)
    assert after == {i: cluster_id for i in c.ids}, \
        f"cluster id changed across restart: before {cluster_id!r}, after {after}"
    for i in c.ids:
        props = c[i].meta_properties()
        assert props is not None, f"no meta.properties in {c[i].data_dir}"
        assert props.get("cluster.id") == cluster_id, \
            f"node {i} meta.properties cluster.id={props.get('cluster.id')!r}, expected {cluster_id!r}"
        assert props.get("node.id") == str(i), \
            f"node {i} meta.properties node.id={props.get('node.id')!r}"


@pytest.mark.timeout(300)
def test_cluster_refuses_a_data_directory_from_another_cluster(cluster_factory, broker_factory):
    a = cluster_factory(3, name="a")
    _wait_formed(a)
    props = _wait_meta_properties(a.nodes)
    a_ids = {p["cluster.id"] for p in props.values()}
    assert len(a_ids) == 1, f"cluster A's nodes wrote different cluster ids: {props}"
    (a_id,) = a_ids

    # Another cluster, B, with the same node ids formats its own directories (another cluster id),
    # so only the cluster id differs from what node 3 of cluster A expects.
    b = cluster_factory(3, name="b")
    _wait_formed(b)
    s_id = _wait_meta_properties([b[3]])[b[3].name]["cluster.id"]
    assert s_id != a_id, f"cluster B reused cluster A's id {a_id!r}"
    assert b.stop() == {i: 0 for i in b.ids}, "cluster B: non-zero exit after SIGTERM"

    assert a[3].stop() == 0, "node 3: non-zero exit after SIGTERM" + _tails([a[3]])
    shutil.rmtree(a[3].data_dir)
    shutil.copytree(b[3].data_dir, a[3].data_dir)

    rc = a[3].run_expecting_exit(30)
    log = a[3].last_run_log()
    assert rc is not None, ("node 3 kept running with another cluster's data dir for 30 s"
                            + _tails([a[3]], 40))
    assert rc != 0, f"node 3 exited with code 0 on a foreign data dir\n{log[-3000:]}"
    assert a_id in log and s_id in log, (
        f"node 3's log does not name both its directory's cluster ({s_id}) and the quorum's "
        f"({a_id}):\n{log[-3000:]}")
    assert (a[3].meta_properties() or {}).get("cluster.id") == s_id, \
        "the refused start rewrote the foreign directory's meta.properties"

    # Nodes 1 and 2 keep serving.
    def serving():
        for i in (1, 2):
            assert a[i].alive(), f"node {i} exited with {a[i].proc.returncode}"
            md = metadata(a[i].address)
            assert md["cluster_id"] == a_id, f"node {i} reports cluster id {md['cluster_id']!r}"
        qs = _quorums(a, (1, 2))
        views = {(q["leader_id"], q["error_code"], q["partition_error_code"]) for q in qs.values()}
        (leader, e1, e2), = views if len(views) == 1 else ((None, None, None),)
        return leader in (1, 2) and (e1, e2) == (0, 0), views
    _poll(serving, 15, "nodes 1 and 2 serving with a leader among them", a.nodes)


def test_single_broker_is_a_cluster_of_one(broker_factory):
    b = broker_factory(node_id=0)

    def quorum_of_one():
        q = describe_quorum(b.address)
        voters = [v["replica_id"] for v in q["voters"] or []]
        ok = (q["error_code"], q["partition_error_code"], q["leader_id"], voters) == (0, 0, 0, [0])
        return ok, q
    _poll(quorum_of_one, 10, "DescribeQuorum: leader 0, voters [0]", [b])

    md = metadata(b.address)
    assert set(md["brokers"]) == {0} and md["brokers"][0][:2] == (HOST, b.port), \
        f"metadata brokers {md['brokers']}, expected only 0 at {b.bootstrap}"
    assert md["controller_id"] in (0, -1), f"controller {md['controller_id']}, expected 0"

    props = _wait_meta_properties([b])[b.name]
    assert props.get("node.id") == "0", f"meta.properties node.id={props.get('node.id')!r}"
    assert props.get("cluster.id") == md["cluster_id"], \
        f"meta.properties cluster.id={props.get('cluster.id')!r}, Metadata says {md['cluster_id']!r}"


@pytest.mark.timeout(240)
def test_cluster_controller_port_survives_hostile_bytes(cluster_factory):
    """The controller port is for voters and broker-only nodes: garbage, absurd frame lengths, a
    voter's hello followed by a malformed Raft message, and a would-be learner's vote requests,
    appends, snapshots or higher terms each close that one connection or are dropped; the node keeps
    serving and its quorum keeps its leader and epoch."""
    import random
    import socket
    import struct as st
    c = cluster_factory(3)
    q = _wait_formed(c)
    leader, epoch = q["leader_id"], q["leader_epoch"]
    target = c[2]

    def hello(node_id: int, cluster_id: bytes = b"") -> bytes:
        payload = b"KQRM" + st.pack(">Hi", 0, node_id) + bytes([len(cluster_id)]) + cluster_id
        return st.pack(">I", len(payload) + 1) + b"\x01" + payload

    def varint(value: int) -> bytes:
        out = b""
        while True:
            byte, value = value & 0x7F, value >> 7
            out += bytes([byte | (0x80 if value else 0)])
            if not value:
                return out

    def raft_frame(msg_type: int, sender: int, term: int, kind: int = 3) -> bytes:
        """A raft-rs eraftpb.Message (msg_type, to, from, term) from node `sender` to node 2."""
        body = (b"\x08" + varint(msg_type) + b"\x10" + varint(2 + 1) + b"\x18" + varint(sender + 1)
                + b"\x20" + varint(term))
        return st.pack(">I", len(body) + 1) + bytes([kind]) + body

    rng = random.Random(55)
    attacks = [
        # A broker-only node (a would-be learner) may send only a learner's messages, never with a
        # higher term, and never a snapshot: a vote request, a heartbeat answer of term 10^6 (dropped),
        # a snapshot frame claiming 60 MiB, an append.
        hello(99) + raft_frame(5, 99, 1_000_000),
        hello(99) + raft_frame(9, 99, 1_000_000),
        hello(99) + st.pack(">I", 60 << 20) + b"\x05",
        hello(99) + raft_frame(3, 99, 1_000_000),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        st.pack(">I", 0xFFFFFFF0) + b"\x03" + b"x" * 64,          # absurd length
        st.pack(">I", 0),                                           # empty frame
        hello(99),                                                  # not a voter: a learner
        hello(2),                                                   # the node's own id
        hello(1) + st.pack(">I", 9) + b"\x03" + b"\xff" * 8,        # a voter, then bad protobuf
        hello(1) + st.pack(">I", 2) + b"\x07\x00",                  # a voter, then an unknown kind
        bytes(rng.getrandbits(8) for _ in range(4096)),
    ]
    for attack in attacks * 3:
        with socket.create_connection((HOST, target.controller_port), timeout=5) as s:
            try:
                s.sendall(attack)
                s.settimeout(3)
                while s.recv(4096):
                    pass
            except OSError:
                pass  # reset by the node: what a refused connection looks like
    assert target.alive(), f"node 2 exited with {target.proc.returncode}" + _tails(c.nodes)
    after = _wait_formed(c)
    assert (after["leader_id"], after["leader_epoch"]) == (leader, epoch), \
        f"the quorum changed its leader under hostile bytes: {(leader, epoch)} -> " \
        f"{(after['leader_id'], after['leader_epoch'])}"


@pytest.mark.timeout(240)
def test_cluster_leader_hands_over_on_sigterm(cluster_factory):
    """A leader that is stopped (SIGTERM) hands the quorum's leadership to a follower before it
    exits, so the others have a leader again at once rather than after an election timeout."""
    c = cluster_factory(3)
    q = _wait_formed(c)
    leader, epoch = q["leader_id"], q["leader_epoch"]
    others = [i for i in c.ids if i != leader]
    assert c[leader].stop() == 0, "the leader did not exit cleanly after SIGTERM" + _tails(c.nodes)
    stopped_at = time.monotonic()

    def handed_over():
        qs = _quorums(c, others)
        views = {(x["leader_id"], x["leader_epoch"]) for x in qs.values()}
        (new, new_epoch), = views if len(views) == 1 else ((None, None),)
        return new in others and new_epoch > epoch, views
    _poll(handed_over, 10, f"a new leader among {others} after the leader's SIGTERM", c.nodes)
    log = c[leader].last_run_log()
    assert "handing the quorum's leadership over" in log, \
        "the stopping leader did not hand over its leadership:\n" + log[-2000:]
    # Well inside an election timeout (1-2 s) plus polling.
    assert time.monotonic() - stopped_at < 5


# --------------------------------------------------------------------------- roles

@pytest.mark.timeout(180)
def test_cluster_controller_only_node_votes_but_serves_no_clients(cluster_factory, topic):
    """Node 3 runs `--process-roles controller`: it is one of the three voters (it may lead the
    quorum) but opens no Kafka port, never registers as a broker, and holds no partitions."""
    c = cluster_factory(3, controller_only=(3,))
    brokers = [1, 2]

    def agreed():
        qs = _quorums(c, brokers)
        ok, why = _quorum_agreed(qs, c.ids)
        return ok, (qs if ok else why)
    _poll(agreed, 20, "three voters agreed, as the brokers see them", c.nodes)
    admin = ck_admin(c[1].bootstrap)
    _poll(lambda: (sorted(admin.list_topics(timeout=10).brokers) == brokers, None), 20,
          "only the two brokers listed", c.nodes)
    import socket
    with pytest.raises(OSError):
        socket.create_connection(c[3].address, timeout=2).close()

    futures = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=2)],
                                  request_timeout=20)
    futures[topic].result(30)
    described = admin.list_topics(topic=topic, timeout=10).topics[topic]
    assert all(sorted(p.replicas) == brokers for p in described.partitions.values()), \
        {p.id: p.replicas for p in described.partitions.values()}
    futures = admin.create_topics([NewTopic(topic + "-rf3", num_partitions=1,
                                            replication_factor=3)], request_timeout=20)
    with pytest.raises(KafkaException) as refused:
        futures[topic + "-rf3"].result(30)
    assert refused.value.args[0].name() == "INVALID_REPLICATION_FACTOR", refused.value
    assert not any(p.name.startswith(topic) for p in c[3].data_dir.iterdir()), \
        "no partition directories on the controller-only node"

    # Broker 2 dies: the controller-only node and broker 1 are still a majority of the voters, so
    # admin requests keep working.
    c.kill9(2)
    deadline = time.monotonic() + 30
    while True:
        # A new client each time: one that knew node 2 as the controller waits for it to return.
        survivor = ck_admin(c[1].bootstrap)
        futures = survivor.create_topics([NewTopic(topic + "-after", num_partitions=1,
                                                   replication_factor=1)], request_timeout=10)
        try:
            futures[topic + "-after"].result(15)
            break
        except KafkaException as e:
            if e.args[0].name() == "TOPIC_ALREADY_EXISTS":  # an earlier try committed late
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"no topic created after broker 2 died: {e}\n{c.log_tails()}")
            time.sleep(0.5)
    c[2].start()


@pytest.mark.timeout(180)
def test_cluster_broker_only_node_follows_the_quorum_and_serves_partitions(cluster_factory, topic):
    """Node 4 runs `--process-roles broker`: not a voter (no controller port), it follows the
    metadata log as a learner, registers, is listed, leads partitions, takes admin requests, and is
    fenced when it dies and listed again when it returns."""
    c = cluster_factory(4, broker_only=(4,))
    voters = [1, 2, 3]

    def agreed():
        qs = _quorums(c, c.ids)
        ok, why = _quorum_agreed(qs, voters)
        return ok, (qs if ok else why)
    _poll(agreed, 20, "three voters, as every node (the broker-only one too) sees them", c.nodes)
    admin = ck_admin(c[4].bootstrap)
    _poll(lambda: (sorted(admin.list_topics(timeout=10).brokers) == c.ids, None), 20,
          "all four brokers listed by the broker-only node", c.nodes)
    # DescribeQuorum from the leader lists it as an observer (a learner), not a voter.
    leader = describe_quorum(c[1].address)["leader_id"]
    q = describe_quorum(c[leader].address)
    assert [o["replica_id"] for o in q["observers"]] == [4], q
    assert sorted(v["replica_id"] for v in q["voters"]) == voters, q

    futures = admin.create_topics([NewTopic(topic, num_partitions=8, replication_factor=1)],
                                  request_timeout=20)
    futures[topic].result(30)

    def led_everywhere():
        partitions = ck_admin(c[1].bootstrap).list_topics(topic=topic, timeout=10) \
            .topics[topic].partitions
        leaders = sorted({p.leader for p in partitions.values()})
        return leaders == c.ids, leaders
    _poll(led_everywhere, 20, "partitions led by all four brokers", c.nodes)
    delivered = ck_produce_all(ck_producer(c[1].bootstrap), topic,
                               [(None, f"b{i}".encode()) for i in range(80)])
    assert delivered.errors == [], delivered.errors[:3]
    records = ck_consume(c[4].bootstrap, [(topic, p, 0) for p in range(8)], expected=80)
    assert sorted(r[4] for r in records) == sorted(f"b{i}".encode() for i in range(80))

    c.kill9(4)
    other = ck_admin(c[1].bootstrap)
    _poll(lambda: (sorted(other.list_topics(timeout=10).brokers) == voters, None), 20,
          "the dead broker-only node fenced", c.nodes)
    c[4].start()
    _poll(lambda: (sorted(other.list_topics(timeout=10).brokers) == c.ids, None), 20,
          "the broker-only node listed again", c.nodes)
    records = ck_consume(c[2].bootstrap, [(topic, p, 0) for p in range(8)], expected=80)
    assert len(records) == 80
