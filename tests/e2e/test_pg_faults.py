"""pg/ end to end: crash and hang detection by the monitor, and clear
errors for the usual operator mistakes."""
import json
import os
import select
import signal
import socket
import subprocess
import time

import pytest

from pg_helpers import Env, PGUSER, pg_uid, wait_for

INTERVAL_MS = 500
PROBE_TIMEOUT_MS = 1000


@pytest.fixture
def env():
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()


class Monitor:
    """pgtool monitor in the background; state changes read as they come."""

    def __init__(self, node, seconds):
        self.p = subprocess.Popen(["runuser", "-u", PGUSER, "--", node.env.pgtool, "monitor",
                                   node.cfg_path, str(seconds), str(INTERVAL_MS),
                                   str(PROBE_TIMEOUT_MS)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = []

    def wait_state(self, state, timeout):
        """Returns (event, monotonic time it was read)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            line = self.p.stdout.readline()
            if not line:
                break
            ev = json.loads(line)
            self.events.append(ev)
            if ev.get("state") == state:
                return ev, time.monotonic()
        raise AssertionError(f"no '{state}' within {timeout}s; events: {self.events}")

    def close(self):
        if self.p.poll() is None:
            self.p.kill()  # our own child, by pid
        self.p.wait(timeout=10)


def test_kill9_detected_as_down(env):
    n1 = env.node("n1")
    n1.ok("bootstrap")
    mon = Monitor(n1, 20)
    try:
        mon.wait_state("running", 10)
        pid = n1.pid()
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        ev, t_seen = mon.wait_state("down", 5)
        assert "gone" in ev["error"]
        # noticed within one tick (+ scheduling slack)
        assert t_seen - t_kill <= INTERVAL_MS / 1000 + 0.4, (t_seen - t_kill, mon.events)
    finally:
        mon.close()
    # restart in place works after a crash (once orphaned backends are gone)
    wait_for(lambda: n1.tool("start")[0] == 0, 15, interval=0.5, what="restart after kill -9")
    assert n1.status()["state"] == "running"


def test_sigstop_detected_as_hung(env):
    n1 = env.node("n1")
    n1.ok("bootstrap")
    mon = Monitor(n1, 30)
    pid = n1.pid()
    try:
        mon.wait_state("running", 10)
        t_stop = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            ev, t_seen = mon.wait_state("hung", 6)
            assert str(pid) in ev["error"] and "no answer" in ev["error"]
            assert t_seen - t_stop <= (INTERVAL_MS + PROBE_TIMEOUT_MS) / 1000 + 0.5, mon.events
            # a hung postmaster is not "down"
            assert "down" not in [e["state"] for e in mon.events]
        finally:
            os.kill(pid, signal.SIGCONT)
        mon.wait_state("running", 6)
    finally:
        os.kill(pid, signal.SIGCONT)
        mon.close()
    # the fencing path stops a hung postmaster too (SIGKILL after the deadline)
    os.kill(pid, signal.SIGSTOP)
    try:
        rc, out, err = n1.tool("stop", "immediate")
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert rc == 0, (out, err[-2000:])
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] in "ZX"


def test_stop_immediate_is_fast(env):
    n1 = env.node("n1")
    n1.ok("bootstrap")
    t0 = time.monotonic()
    n1.ok("stop", "immediate")
    elapsed = time.monotonic() - t0
    # includes starting pgtool under runuser and ASan; the stop itself is a signal + polling
    assert elapsed < 3.0, elapsed
    assert n1.ok("controldata")["state"] == "in production"  # immediate: no shutdown checkpoint


def test_wrong_bin_dir(env):
    n1 = env.node("n1", bin_dir="/nonexistent/pg/bin")
    rc, out, _ = n1.tool("bootstrap")
    assert rc != 0
    assert "postgresql.bin_dir" in out["error"] and "/nonexistent/pg/bin" in out["error"], out


def test_data_dir_owned_by_another_user(env):
    n1 = env.node("n1")
    os.makedirs(n1.data_dir, mode=0o700)
    open(os.path.join(n1.data_dir, "PG_VERSION"), "w").write("15\n")
    # owned by root, unreadable for postgres
    for op in ("bootstrap", "adopt", "clone"):
        args = ("127.0.0.1", "1") if op == "clone" else ()
        rc, out, _ = n1.tool(op, *args)
        assert rc != 0, op
        assert n1.data_dir in out["error"] and ("uid 0" in out["error"] or "owned" in out["error"]), out
    assert os.path.exists(os.path.join(n1.data_dir, "PG_VERSION"))  # nothing touched
    # readable but owned by root: adopt refuses, naming the owner
    os.chmod(n1.data_dir, 0o755)
    os.makedirs(os.path.join(n1.data_dir, "global"))
    open(os.path.join(n1.data_dir, "global", "pg_control"), "w").close()
    rc, out, _ = n1.tool("adopt")
    assert rc != 0 and "owned by uid 0" in out["error"], out


def test_port_in_use(env):
    n1 = env.node("n1")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", n1.port))
    s.listen(1)
    try:
        rc, out, _ = n1.tool("bootstrap")
    finally:
        s.close()
    assert rc != 0
    err = out["error"]
    assert "pg_ctl start" in err and "Address already in use" in err, err


def test_bad_pg_hba_line(env):
    n1 = env.node("n1")
    n1.cfg["postgresql"]["pg_hba"] = ["hots all all 127.0.0.1/32 md5"]
    n1.write_cfg()
    rc, out, _ = n1.tool("bootstrap")
    assert rc != 0
    assert "postgresql.pg_hba[0]" in out["error"] and "hots" in out["error"], out
    # a line only PostgreSQL can judge: the start fails with its own words
    n2 = env.node("n2")
    n2.cfg["postgresql"]["pg_hba"] = ["local all all peer", "host all all 127.0.0.1/32 nosuchmethod"]
    n2.write_cfg()
    rc, out, _ = n2.tool("bootstrap")
    assert rc != 0
    assert "pg_hba.conf" in out["error"] and "nosuchmethod" in out["error"], out


def test_move_aside_needs_writable_parent(env):
    n1 = env.node("n1")
    parent = os.path.join(env.dir, "locked")
    os.makedirs(os.path.join(parent, "data"))
    os.chown(os.path.join(parent, "data"), *pg_uid())
    os.chmod(parent, 0o755)  # owned by root: postgres cannot rename inside
    n1.cfg["postgresql"]["data_dir"] = os.path.join(parent, "data")
    n1.write_cfg()
    rc, out, _ = n1.tool("move-aside")
    assert rc != 0 and "not writable" in out["error"] and parent in out["error"], out
    assert os.path.isdir(os.path.join(parent, "data"))
    os.chown(parent, *pg_uid())
    out = n1.ok("move-aside")
    assert out["moved_to"].startswith(os.path.join(parent, "data."))
    assert os.path.isdir(out["moved_to"])
