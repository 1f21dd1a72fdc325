"""Group session expiry is exact: a member that stops heartbeating is removed when its session
timeout passes (a timer per deadline), not up to a housekeeping period later. Driven with raw
JoinGroup v3 / SyncGroup v1 / DeleteGroups v1 frames so the test knows the deadline to the ms."""

import socket
import struct
import time

from harness import frame, read_response, request_header_v1

SESSION_TIMEOUT_MS = 6000
NONE = 0
NON_EMPTY_GROUP = 68
COORDINATOR_NOT_AVAILABLE = 15
COORDINATOR_LOAD_IN_PROGRESS = 14


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _bytes(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


class Reader:
    def __init__(self, body: bytes):
        self.body, self.pos = body, 0

    def take(self, fmt: str):
        values = struct.unpack_from(fmt, self.body, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        length = self.take(">h")
        text = self.body[self.pos:self.pos + max(length, 0)].decode()
        self.pos += max(length, 0)
        return text


class Client:
    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=15)
        self.correlation = 0

    def call(self, api_key: int, version: int, body: bytes) -> Reader:
        self.correlation += 1
        self.sock.sendall(frame(request_header_v1(api_key, version, self.correlation) + body))
        correlation, response = read_response(self.sock)
        assert correlation == self.correlation
        return Reader(response)

    def find_coordinator(self, group: str):
        deadline = time.monotonic() + 20
        while True:
            reader = self.call(10, 0, _string(group))
            error = reader.take(">h")
            if error == NONE:
                return
            assert error in (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS), error
            assert time.monotonic() < deadline, "no coordinator"
            time.sleep(0.1)

    def join(self, group: str, member_id: str = ""):
        subscription = struct.pack(">hi", 0, 0) + struct.pack(">i", -1)  # v0, no topics, null data
        body = (_string(group) + struct.pack(">ii", SESSION_TIMEOUT_MS, 10000) + _string(member_id)
                + _string("consumer") + struct.pack(">i", 1) + _string("range") + _bytes(subscription))
        reader = self.call(11, 3, body)
        reader.take(">i")  # throttle
        error = reader.take(">h")
        generation = reader.take(">i")
        reader.string()  # protocol
        reader.string()  # leader
        return error, generation, reader.string()

    def sync(self, group: str, generation: int, member_id: str):
        body = (_string(group) + struct.pack(">i", generation) + _string(member_id)
                + struct.pack(">i", 1) + _string(member_id) + _bytes(b""))
        reader = self.call(14, 1, body)
        reader.take(">i")
        return reader.take(">h")

    def delete_group(self, group: str) -> int:
        reader = self.call(42, 1, struct.pack(">i", 1) + _string(group))
        reader.take(">i")
        assert reader.take(">i") == 1
        assert reader.string() == group
        return reader.take(">h")


def test_member_expires_at_its_session_deadline(broker_factory):
    broker = broker_factory(config={"group_initial_rebalance_delay_ms": 0,
                                    "offsets_topic_num_partitions": 1})
    group = "session-expiry"
    client = Client(broker.address)
    client.find_coordinator(group)
    error, generation, member_id = client.join(group)
    assert error == NONE and member_id, (error, member_id)
    sync_sent = time.monotonic()
    assert client.sync(group, generation, member_id) == NONE
    sync_answered = time.monotonic()
    # The broker set the deadline while handling the sync: between these two instants + 6 s.
    assert sync_answered - sync_sent < 0.5

    session = SESSION_TIMEOUT_MS / 1000
    time.sleep(max(0.0, sync_sent + session - 0.05 - time.monotonic()))
    assert client.delete_group(group) == NON_EMPTY_GROUP, "member removed before its deadline"

    time.sleep(max(0.0, sync_answered + session + 0.02 - time.monotonic()))
    assert client.delete_group(group) == NONE, "member still present 20 ms after its deadline"
