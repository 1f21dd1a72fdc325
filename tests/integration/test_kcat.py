"""kcat (Debian's kcat 1.7.1 / librdkafka 2.0.2) against the broker."""

import json
import shutil
import subprocess

import pytest

from harness import create_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


@pytest.fixture(autouse=True)
def _need_kcat():
    if KCAT is None:
        pytest.fail("kcat not installed (scripts/test.sh installs it with apt-get)")


def kcat(*args, input=None, timeout=60):
    p = subprocess.run([KCAT, *args], input=input, capture_output=True, timeout=timeout)
    assert p.returncode == 0, (f"kcat {' '.join(args)} exited {p.returncode}\n"
                               f"stdout: {p.stdout[-2000:]!r}\nstderr: {p.stderr[-2000:]!r}")
    return p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_kcat_list_metadata(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    out, _ = kcat("-b", broker.bootstrap, "-L")
    assert "1 brokers:" in out, out
    assert f"broker 0 at {broker.bootstrap}" in out, out
    assert f'topic "{topic}" with 3 partitions:' in out, out

    out, _ = kcat("-b", broker.bootstrap, "-L", "-J")
    md = json.loads(out)
    assert [(b["id"], b["name"]) for b in md["brokers"]] == [(0, broker.bootstrap)]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics
    parts = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    assert all(p["leader"] == 0 for p in parts), parts


def test_kcat_roundtrip_keys_and_headers(broker, topic):
    lines = [f"key-{i}:value number {i}" for i in range(50)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-H", "source=kcat", "-H", "n=1",
         input=("\n".join(lines) + "\n").encode())

    out, _ = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                  "-f", "%k|%s|%h|%p|%o\\n")
    got = [ln for ln in out.splitlines() if ln]
    assert len(got) == 50, out
    for i, ln in enumerate(got):
        k, v, h, p, o = ln.split("|")
        assert k == f"key-{i}"
        assert v == f"value number {i}"
        assert h == "source=kcat,n=1"
        assert (p, o) == ("0", str(i))


def test_kcat_consume_from_offset_and_count(broker, topic):
    kcat("-b", broker.bootstrap, "-P", "-t", topic, input=b"".join(b"m%d\n" % i for i in range(20)))
    out, _ = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "15", "-e",
                  "-f", "%o=%s\\n")
    assert out.split() == [f"{i}=m{i}" for i in range(15, 20)]
    out, _ = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "-3", "-e", "-f", "%s\\n")
    assert out.split() == ["m17", "m18", "m19"]
