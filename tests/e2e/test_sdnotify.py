"""`pgwarden run` under systemd's Type=notify protocol: a datagram socket named
by NOTIFY_SOCKET (this test binds it, standing in for systemd) receives
READY=1 once the REST API answers, WATCHDOG=1 every WATCHDOG_USEC/2,
RELOADING=1 then READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM followed
by EXTEND_TIMEOUT_USEC= (how long the graceful stop may take with the timings
in force, so that systemd does not kill a handover at TimeoutStopSec=).

The node is a witness (no PostgreSQL needed: what is tested is the daemon's
lifecycle, identical on every kind of node)."""
import os
import signal
import socket
import time

import pytest

from pgw_harness import Cluster, http

WATCHDOG_USEC = 400_000  # pings expected every 200 ms
TTL_S = 5  # not the default (3 s): the stop budget must follow the ttl in force


def stop_budget_usec(ttl_ms, pg_ctl_timeout_ms=60_000, before_stop=False):
    """cmd/run.c stop_budget_usec: handover 4 x ttl + 10 s, pg_ctl stop
    (pg_ctl_timeout + 5 s), a before_stop callback (pg_ctl_timeout), 15 s to
    close Raft and the REST server."""
    ms = 4 * ttl_ms + 10_000 + pg_ctl_timeout_ms + 5_000 + 15_000
    if before_stop:
        ms += pg_ctl_timeout_ms
    return ms * 1000


@pytest.fixture
def witness(monkeypatch):
    c = Cluster(n=1, witnesses=("n1",), dcs={"ttl": TTL_S})
    path = os.path.join(c.dir, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o666)  # pgwarden runs as postgres
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield c, sock
    finally:
        sock.close()
        c.cleanup()


def receive(sock, timeout):
    """Every datagram that arrives within timeout seconds, with its arrival time."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        sock.settimeout(left)
        try:
            got.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            return got


def wait_message(sock, pred, timeout, what):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        seen.append(msg)
        if pred(msg):
            return seen
    raise AssertionError(f"no {what} within {timeout}s; got {seen!r}")


def test_notify_lifecycle(witness):
    c, sock = witness
    node = c.nodes[0]
    node.start()
    seen = wait_message(sock, lambda m: m.startswith("READY=1"), 20, "READY=1")
    ready = seen[-1]
    assert ready == f"READY=1\nSTATUS=member n1 of cluster {c.scope}", ready
    # READY means the REST API already answers
    status, _ = http(node.api + "/liveness", timeout=2)
    assert status in (200, 503), status
    # nothing but keep-alives before READY
    assert all(m == "WATCHDOG=1" for m in seen[:-1]), seen

    pings = [t for t, m in receive(sock, 1.5) if m == "WATCHDOG=1"]
    assert len(pings) >= 4, pings  # ~7 expected in 1.5 s at 200 ms
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.6, gaps

    os.kill(node.proc.pid, signal.SIGHUP)
    seen = wait_message(sock, lambda m: m == "READY=1", 10, "READY=1 after the reload")
    states = [m for m in seen if m != "WATCHDOG=1"]
    assert states == ["RELOADING=1", "READY=1"], seen

    assert node.stop(timeout=60) == 0, node.log()[-3000:]
    rest = [m for _, m in receive(sock, 0.3)]
    # keep-alives go on while the stop runs (it may include a switchover)
    assert [m for m in rest if m != "WATCHDOG=1"] == [
        "STOPPING=1", f"EXTEND_TIMEOUT_USEC={stop_budget_usec(TTL_S * 1000)}"], rest


def test_no_socket_no_notifications(monkeypatch):
    """Without NOTIFY_SOCKET (started by hand) the daemon runs and stops as
    before, and WATCHDOG_USEC alone changes nothing."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    c = Cluster(n=1, witnesses=("n1",))
    try:
        node = c.nodes[0]
        node.start()
        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline and status == 0:
            status, _ = http(node.api + "/liveness", timeout=1)
            time.sleep(0.1)
        assert status in (200, 503), node.log()[-2000:]
        assert node.stop(timeout=60) == 0
        assert "cannot notify the service manager" not in node.log()
    finally:
        c.cleanup()
