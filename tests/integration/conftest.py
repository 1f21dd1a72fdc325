"""pytest fixtures for the real-client integration suite.

Fixtures:
  broker          -- a fresh single-shard broker per test (function scope)
  broker_factory  -- start extra/custom brokers: broker_factory(shards=2),
                     broker_factory(config={"num_partitions": 3}) (a --config TOML)
  topic           -- a unique topic name per test
On failure the tail of every broker log used by the test is attached to the
report. A broker that crashes or panics during a test fails that test's
teardown.
"""

import atexit
import itertools
import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import Broker, kill_all_brokers  # noqa: E402

atexit.register(kill_all_brokers)

_counter = itertools.count()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_brokers", []):
            rep.sections.append((f"{b.name} log tail ({b.log_path})", b.log_tail(80)))


@pytest.fixture
def broker_factory(request, tmp_path):
    brokers = []
    request.node._brokers = brokers

    def make(shards: int = 1, start: bool = True, **kw) -> Broker:
        b = Broker(tmp_path, shards=shards, name=f"broker{len(brokers)}", **kw)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make

    problems = []
    for b in brokers:
        problems += b.cleanup()
    if problems:
        pytest.fail("broker problems: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory(shards=1)


@pytest.fixture
def topic(request) -> str:
    base = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    base = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in base)[:80]
    return f"{base}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
