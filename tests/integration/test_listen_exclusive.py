"""Only one broker process may listen on an address: the shards of one process share it with
SO_REUSEPORT, but a second process must not join them and take a share of the clients."""

import subprocess

from harness import ck_consume, ck_producer, ck_produce_all, create_topic


def test_second_broker_on_the_same_port_refuses_to_start(broker_factory, topic):
    first = broker_factory(shards=2)
    create_topic(first.bootstrap, topic, partitions=2)

    second = broker_factory(shards=2, start=False)
    second.port = first.port
    result = subprocess.run(second.command(), capture_output=True, timeout=30,
                            env={"RUST_LOG": "info", "NO_COLOR": "1"})
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode != 0, output
    assert f"cannot listen on {first.bootstrap}" in output, output
    assert "Address already in use" in output, output

    # The first broker serves every connection (none went to the second), across many connections.
    for round_ in range(5):
        producer = ck_producer(first.bootstrap)
        log = ck_produce_all(producer, topic, [(None, b"r%d-%d" % (round_, i)) for i in range(20)])
        assert log.errors == []
    messages = ck_consume(first.bootstrap, [(topic, 0, 0), (topic, 1, 0)], expected=100, timeout=30)
    assert len(messages) == 100
    assert first.alive()
