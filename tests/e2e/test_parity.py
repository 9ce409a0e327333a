"""Patroni parity (issue 17 item 5) on a 3-node cluster in quorum synchronous
mode: GET /quorum and /read-only-quorum, an unknown path (503 with the status
document for GET/HEAD/OPTIONS, 501 for a write method), the metrics
patroni_master, patroni_quorum_standby, patroni_dcs_last_seen and
patroni_postgres_state, and the ctl commands query, dsn, restart --any and
remove (last: it needs the cluster stopped)."""
import glob
import json
import os
import re
import time

import pytest

from pgw_harness import SU_PASSWORD, Cluster, http, wait_for
from test_ctl import ep, run_ctl

PG = ("-U", "postgres", "-d", "postgres")
PGENV = {"PGPASSWORD": SU_PASSWORD}


def quorum_members(c, via=None):
    view = c.cluster_view(via)
    return sorted(m["name"] for m in view["members"] if m["role"] == "quorum_standby") if view else []


@pytest.fixture(scope="module")
def cluster(request):
    c = Cluster(n=3, dcs={"synchronous_mode": "quorum"})
    failed_before = request.session.testsfailed
    try:
        c.start()
        c.wait_healthy(timeout=90)
        wait_for(lambda: len(quorum_members(c)) == 2, 60, what="two quorum standbys")
        yield c
    finally:
        if request.session.testsfailed > failed_before:
            print(c.dump_logs(tail=200))
        c.cleanup()


def metrics(node):
    status, text = node.get("/metrics")
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{[^}]*\} (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_quorum_endpoints(cluster):
    p = cluster.wait_healthy()
    standbys = [n for n in cluster.nodes if n is not p]
    for n in standbys:
        for path in ("/quorum", "/read-only-quorum", "/replica", "/read-only"):
            assert n.status(path) == 200, (n.name, path)
        # a quorum standby is neither synchronous nor asynchronous for Patroni
        for path in ("/sync", "/synchronous", "/read-only-sync", "/async", "/asynchronous"):
            assert n.status(path) == 503, (n.name, path)
        status, body = n.get("/quorum")
        assert body["quorum_standby"] is True and "sync_standby" not in body, body
        # HEAD and OPTIONS: the same status, no body
        for method in ("HEAD", "OPTIONS"):
            assert http(n.api + "/quorum", method=method) == (200, None), (n.name, method)
        # the replica conditions still apply
        assert n.status("/quorum?tag_nosuch=1") == 503
        assert n.status("/read-only-quorum?replication_state=nosuch") == 503
    assert p.status("/quorum") == 503
    assert p.status("/read-only-quorum") == 200
    assert http(p.api + "/quorum", method="HEAD") == (503, None)
    assert http(p.api + "/read-only-quorum", method="OPTIONS") == (200, None)
    status, body = p.get("/patroni")
    assert "quorum_standby" not in body and "sync_standby" not in body
    # ctl list names the role as patronictl does
    r = run_ctl(cluster, ep(p), "list", "-f", "json")
    assert r.returncode == 0, r.stderr
    roles = {row["Member"]: row["Role"] for row in json.loads(r.stdout)}
    assert sorted(k for k, v in roles.items() if v == "Quorum Standby") == sorted(n.name for n in standbys)


def test_unknown_paths(cluster):
    n = cluster.nodes[1]
    status, body = n.get("/no/such/path")
    assert status == 503 and body["patroni"]["name"] == n.name, body
    assert n.get("/primaryx")[0] == 503  # no substring matching: an exact path or nothing
    for method in ("HEAD", "OPTIONS"):
        assert http(n.api + "/no/such/path", method=method) == (503, None), method
    status, body = http(n.api + "/no/such/path", method="POST", body={})
    assert status == 501 and "no such endpoint" in body["error"], (status, body)
    assert http(n.api + "/nothing", method="DELETE")[0] == 501
    # a known path with a wrong method: 405 with Allow, as before
    assert http(n.api + "/primary", method="POST", body={})[0] == 405
    assert http(n.api + "/liveness", method="DELETE")[0] == 405


def test_metrics(cluster):
    p = cluster.wait_healthy()
    for n in cluster.nodes:
        m = metrics(n)
        primary = n is p
        assert m["patroni_master"] == m["patroni_primary"] == (1 if primary else 0), n.name
        assert m["patroni_quorum_standby"] == (0 if primary else 1), n.name
        assert m["patroni_sync_standby"] == 0, n.name
        assert m["patroni_standby_leader"] == 0, n.name
        assert m["patroni_replica"] == (0 if primary else 1), n.name
        assert m["patroni_postgres_state"] == 5, n.name  # running
        # the last Raft commit applied here: members report every loop_wait
        assert abs(m["patroni_dcs_last_seen"] - time.time()) < 15, (n.name, m["patroni_dcs_last_seen"])
    status, text = p.get("/metrics")
    assert "# Values: 0=initdb, 1=initdb_failed" in text and "14=crashed" in text


def test_dcs_last_seen_stops_without_a_majority(cluster):
    """A node cut off from the majority stops advancing patroni_dcs_last_seen."""
    import signal
    p = cluster.wait_healthy()
    lone = next(n for n in cluster.nodes if n is not p)
    others = [n for n in cluster.nodes if n is not lone]
    for n in others:
        n.kill(signal.SIGSTOP)
    try:
        time.sleep(1)
        first = metrics(lone)["patroni_dcs_last_seen"]
        time.sleep(4)
        assert metrics(lone)["patroni_dcs_last_seen"] == first
    finally:
        for n in others:
            n.kill(signal.SIGCONT)
    wait_for(lambda: metrics(lone)["patroni_dcs_last_seen"] > first, 30, what="dcs_last_seen to move")
    cluster.wait_healthy(timeout=90)


def test_ctl_dsn(cluster):
    p = cluster.wait_healthy()
    other = next(n for n in cluster.nodes if n is not p)
    r = run_ctl(cluster, ep(other), "dsn")
    assert r.returncode == 0 and r.stdout == f"host=127.0.0.1 port={p.pg_port}\n", r.stdout
    r = run_ctl(cluster, ep(p), "dsn", cluster.scope, "-m", other.name)
    assert r.returncode == 0 and r.stdout == f"host=127.0.0.1 port={other.pg_port}\n"
    r = run_ctl(cluster, ep(p), "dsn", "-r", "replica")
    assert r.returncode == 0 and r.stdout != f"host=127.0.0.1 port={p.pg_port}\n"
    r = run_ctl(cluster, ep(p), "dsn", "-m", "nosuch")
    assert r.returncode == 1 and "nosuch is not a member" in r.stderr
    r = run_ctl(cluster, ep(p), "dsn", "-r", "standby-leader")
    assert r.returncode == 1 and "no member has the role" in r.stderr
    r = run_ctl(cluster, ep(p), "dsn", "-m", other.name, "-r", "replica")
    assert r.returncode == 2 and "mutually exclusive" in r.stderr
    r = run_ctl(cluster, ep(p), "dsn", "other-cluster")
    assert r.returncode == 1 and "not \"other-cluster\"" in r.stderr


def test_ctl_query(cluster, tmp_path):
    p = cluster.wait_healthy()
    other = next(n for n in cluster.nodes if n is not p)
    q = lambda *a: run_ctl(cluster, ep(other), "query", *PG, *a, env_extra=PGENV)
    r = q("-c", "SELECT 1 AS one, NULL::text AS nothing, 'x' AS s")
    assert r.returncode == 0 and r.stdout == "one\tnothing\ts\n1\t\tx\n", r.stdout
    # the leader by default; -r replica lands on a standby (checked in PostgreSQL)
    r = q("-c", "SELECT pg_is_in_recovery() AS r, inet_server_port() AS port", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout) == [{"r": False, "port": p.pg_port}], r.stdout
    r = q("-r", "replica", "-c", "SELECT pg_is_in_recovery()", "--delimiter", ",")
    assert r.returncode == 0 and r.stdout.splitlines()[1] == "t", r.stdout
    r = q("-m", other.name, "-c", "SELECT inet_server_port() AS port", "--format", "pretty")
    assert r.returncode == 0 and f"| {other.pg_port} |" in r.stdout, r.stdout
    f = tmp_path / "q.sql"
    f.write_text("CREATE TEMP TABLE t(v int); INSERT INTO t VALUES (7); SELECT v FROM t;\n")
    r = q("-f", str(f), "--format", "yaml")
    assert r.returncode == 0 and r.stdout.strip() == "- v: 7", r.stdout
    # errors: bad SQL, bad member, bad password, usage
    r = q("-c", "SELEC 1")
    assert r.returncode == 1 and f"member {p.name}" in r.stderr and "42601" in r.stderr, r.stderr
    r = q("-m", "nosuch", "-c", "SELECT 1")
    assert r.returncode == 1 and "nosuch is not a member" in r.stderr
    r = run_ctl(cluster, ep(other), "query", *PG, "-c", "SELECT 1", env_extra={"PGPASSWORD": "wrong"})
    assert r.returncode == 1 and f"cannot connect to member {p.name} (127.0.0.1:{p.pg_port})" in r.stderr
    assert "password authentication failed" in r.stderr, r.stderr
    r = q("-f", str(tmp_path / "missing.sql"))
    assert r.returncode == 1 and "missing.sql" in r.stderr
    r = q()
    assert r.returncode == 2 and "--command or --file" in r.stderr
    r = q("-c", "SELECT 1", "-f", str(f))
    assert r.returncode == 2 and "mutually exclusive" in r.stderr
    r = q("-c", "SELECT 1", "--format", "xml")
    assert r.returncode == 2


def test_ctl_query_unreachable(cluster):
    """A member whose PostgreSQL is down: exit 1 naming it."""
    p = cluster.wait_healthy()
    other = next(n for n in cluster.nodes if n is not p)
    r = run_ctl(cluster, ep(p), "pause", "--wait")
    assert r.returncode == 0, r.stderr
    try:
        other.kill_postmaster()
        wait_for(lambda: other.postmaster_pid() is None, 20, what="the postmaster to go")
        r = run_ctl(cluster, ep(p), "query", *PG, "-m", other.name, "-c", "SELECT 1", env_extra=PGENV)
        assert r.returncode == 1 and f"cannot connect to member {other.name}" in r.stderr, r.stderr
    finally:
        assert run_ctl(cluster, ep(p), "resume", "--wait").returncode == 0
    cluster.wait_healthy(timeout=90)


def test_ctl_restart_any_and_roles(cluster):
    p = cluster.wait_healthy()
    r = run_ctl(cluster, ep(p), "restart", "--any", "-r", "replica", "--force")
    assert r.returncode == 0, r.stderr
    done = re.findall(r"Success: restart on member (\w+)", r.stdout)
    assert len(done) == 1 and done[0] != p.name, r.stdout
    r = run_ctl(cluster, ep(p), "restart", "-r", "standby-leader", "--force")
    assert r.returncode == 1 and "no member to restart" in r.stderr
    r = run_ctl(cluster, ep(p), "restart", "-r", "nosuch", "--force")
    assert r.returncode == 2 and "standby-leader" in r.stderr
    cluster.wait_healthy(timeout=90)


def test_ctl_remove(cluster):
    """Last: refused while the cluster runs; once stopped, moves the Raft state aside."""
    n = cluster.nodes[0]
    remove = lambda *a, **kw: run_ctl(cluster, "-c", n.cfg_path, "remove", *a, **kw)
    r = remove(cluster.scope, input=f"{cluster.scope}\nYes I am aware\n")
    assert r.returncode == 1 and "pgwarden runs on this node" in r.stderr, r.stderr
    r = run_ctl(cluster, "-c", n.cfg_path, "--endpoint", cluster.nodes[1].api, "remove", cluster.scope,
                input="")
    assert r.returncode == 1 and "pgwarden runs on this node" in r.stderr
    r = remove("other", input="")
    assert r.returncode == 1 and "not \"other\"" in r.stderr
    assert run_ctl(cluster, "remove", cluster.scope).returncode == 2  # no -c
    n.stop()
    # this node stopped, the others still run: still refused (the Raft partners answer)
    r = remove(cluster.scope, input=f"{cluster.scope}\nYes I am aware\n")
    assert r.returncode == 1 and "raft partner" in r.stderr, r.stderr
    for m in cluster.nodes[1:]:
        m.stop()
    r = remove(cluster.scope, input="wrong\n")
    assert r.returncode == 1 and "do not match" in r.stderr and os.path.isdir(n.raft_dir)
    r = remove(cluster.scope, input=f"{cluster.scope}\nyes\n")
    assert r.returncode == 1 and "Yes I am aware" in r.stderr and os.path.isdir(n.raft_dir)
    r = remove(cluster.scope, input=f"{cluster.scope}\nYes I am aware\n")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(n.raft_dir)
    assert len(glob.glob(n.raft_dir + ".removed-*")) == 1
    assert os.path.isdir(n.data_dir)  # PostgreSQL's data is left alone
