"""Start-up and shutdown are bounded: many starts under CPU load all become ready and end on SIGTERM
(two of ~120 starts used to hang forever, ignoring SIGTERM), a start-up that overruns its deadline fails
loudly, and SIGINT ends the process like SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import pytest

from harness import BrokerError

STARTS = int(os.environ.get("STARTUP_STRESS_STARTS", "40"))


@pytest.fixture
def cpu_hogs():
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield hogs
    for hog in hogs:
        hog.kill()
        hog.wait()


def test_many_starts_under_cpu_load_become_ready_and_stop(broker_factory, cpu_hogs):
    broker = broker_factory(shards=2, start=False)
    slowest = 0.0
    for start in range(STARTS):
        began = time.monotonic()
        broker.start(timeout=20)
        slowest = max(slowest, time.monotonic() - began)
        if start % 4 == 3:
            # Now and then a signal right after readiness, while the shards are still settling.
            broker.proc.send_signal(signal.SIGINT)
            assert broker.proc.wait(20) == 0
            broker._expected_exit = True
        else:
            assert broker.stop(timeout=20) == 0
    print(f"{STARTS} starts, slowest {slowest:.2f} s to ready")
    assert broker.log_text().count("broker ready") == STARTS


def test_a_start_past_its_deadline_exits_with_an_error(broker_factory):
    broker = broker_factory(shards=2, start=False, config={"startup_timeout_ms": 1})
    with pytest.raises(BrokerError):
        broker.start(timeout=20)
    assert broker.proc.wait(10) == 1
    broker._expected_exit = True
    assert "start-up did not complete within 1 ms" in broker.log_text()


def test_a_second_signal_ends_the_process_at_once(broker_factory):
    broker = broker_factory(shards=2)
    broker.proc.send_signal(signal.SIGTERM)
    broker.proc.send_signal(signal.SIGTERM)
    assert broker.proc.wait(10) in (0, 1)
    broker._expected_exit = True
