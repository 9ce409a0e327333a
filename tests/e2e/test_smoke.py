"""Smoke test of the daemon itself: one witness node (no PostgreSQL), the
REST skeleton, SIGHUP, a clean SIGTERM exit, root refused, version."""
import os
import signal
import subprocess

import pytest
import yaml

from pgw_harness import Cluster, http, pgw_binary, wait_for


@pytest.fixture
def node():
    c = Cluster(n=1, witnesses=("n1",))
    try:
        n = c.nodes[0]
        n.start()
        wait_for(lambda: n.status("/liveness") == 200, 20, what="/liveness answering 200")
        yield n
    finally:
        c.cleanup()


def test_liveness_and_http_errors(node):
    status, body = node.get("/liveness")
    assert status == 200 and body == {"alive": True}
    # HEAD and OPTIONS: same status, no body
    for method in ("HEAD", "OPTIONS"):
        status, body = http(node.api + "/liveness", method=method)
        assert status == 200 and body is None
    # an unknown path: 503 with the status document (Patroni's generic do_GET)
    status, body = http(node.api + "/no/such/path")
    assert status == 503 and "patroni" in body, body
    status, _ = http(node.api + "/liveness", method="DELETE")
    assert status == 405
    # a single-node witness cluster elects itself and registers
    wait_for(lambda: node.get("/raft")[1]["state"] == "leader", 10, what="single node leader")
    view = wait_for(lambda: node.get("/cluster")[1] if node.get("/cluster")[1]["members"] else None,
                    10, what="the node registered as a member")
    assert [m["name"] for m in view["members"]] == ["n1"]
    assert node.status("/primary") == 503  # a witness never serves the primary


def test_sighup_reports_changes_and_keeps_running_on_bad_config(node):
    cfg = node.config()
    cfg["log"] = {"level": "debug"}
    cfg["tags"] = {"zone": "b"}
    with open(node.cfg_path, "w") as f:
        yaml.safe_dump(cfg, f)
    os.kill(node.proc.pid, signal.SIGHUP)
    wait_for(lambda: "config changed: log.level: info -> debug" in node.log(), 10,
             what="SIGHUP diff in the log")
    assert "config changed: tags.zone" in node.log()
    # the new tags reach the replicated state
    def zone():
        members = node.get("/cluster")[1]["members"]
        return members and members[0]["tags"].get("zone") == "b"
    wait_for(zone, 10, what="new tags registered")
    with open(node.cfg_path, "w") as f:
        f.write("scope: [unterminated\n")
    os.kill(node.proc.pid, signal.SIGHUP)
    wait_for(lambda: "keeping the running configuration" in node.log(), 10,
             what="bad config refused on SIGHUP")
    assert node.alive() and node.status("/liveness") == 200


def test_sigterm_exits_cleanly(node):
    assert node.stop(timeout=20) == 0
    assert "stopped" in node.log()
    assert "event loop did not close cleanly" not in node.log()


def test_run_refuses_root(tmp_path):
    binary = pgw_binary()
    cfg = tmp_path / "c.yml"
    cfg.write_text("scope: s\nname: n\nraft: {self_addr: '127.0.0.1:1', data_dir: /tmp/x}\n")
    r = subprocess.run([binary, "run", "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "refusing to run as root" in r.stderr


def test_version_and_help():
    binary = pgw_binary()
    r = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for lib in ("pgwarden", "libraft", "libuv", "libpq", "llhttp"):
        assert lib in r.stdout
    for sub in ("run", "validate", "version"):
        r = subprocess.run([binary, sub, "--help"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and "Usage: pgwarden " + sub in r.stdout
    r = subprocess.run([binary, "frobnicate"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "unknown command" in r.stderr
