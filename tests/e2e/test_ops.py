"""Operator endpoints: restart (now, scheduled, refused), reload, a
cluster-wide parameter change reaching every node, pending_restart,
reinitialize of a replica (old data moved aside, never deleted), metrics,
basic auth on write methods, bad request bodies."""
import glob
import os
import time

import pytest

from pgw_harness import Cluster, http, wait_for


# Custom tags that spell the status document's own "lease_expires_in": key
# (once as a key, once after an escaped quote): the value put into the cached
# document for each reply must land in pgwarden{}, not in the tags.
TRICKY_TAGS = {"lease_expires_in": 'x"lease_expires_in', 'a"lease_expires_in': '0'}


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(n=3, node_opts={n: {"extra": {"restapi": {"authentication": {
        "username": "admin", "password": "op-Secret-9"}}}, "tags": TRICKY_TAGS}
        for n in ("n1", "n2", "n3")})
    try:
        c.start()
        c.wait_healthy(timeout=90)
        yield c
    finally:
        c.cleanup()


AUTH = ("admin", "op-Secret-9")


def test_write_methods_need_auth(cluster):
    p = cluster.wait_healthy()
    assert http(p.api + "/switchover", "POST", {"leader": p.name})[0] == 401
    assert http(p.api + "/switchover", "POST", {"leader": p.name}, auth=("admin", "wrong"))[0] == 401
    assert http(p.api + "/restart", "POST", {})[0] == 401
    assert http(p.api + "/config", "PATCH", {"ttl": 3})[0] == 401
    # read methods never need it
    assert http(p.api + "/cluster")[0] == 200
    # with credentials the request is judged on its merits
    status, body = http(p.api + "/switchover", "POST", {"leader": "nobody"}, auth=AUTH)
    assert status == 412 and "not the running primary" in body["error"]


def test_bad_bodies_are_refused_and_change_nothing(cluster):
    p = cluster.wait_healthy()
    before = http(p.api + "/config")[1]
    import urllib.request
    req = urllib.request.Request(p.api + "/config", data=b"{not json", method="PATCH")
    import base64
    req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:op-Secret-9").decode())
    try:
        urllib.request.urlopen(req, timeout=2)
        raise AssertionError("malformed JSON accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 400 and b"malformed JSON" in e.read()
    status, body = http(p.api + "/config", "PATCH", {"ttl": "abc"}, auth=AUTH)
    assert status == 400 and "ttl" in body["error"]
    status, body = http(p.api + "/config", "PATCH", {"loop_wait": 5}, auth=AUTH)
    assert status == 400 and "timing rule" in body["error"]
    status, body = http(p.api + "/config", "PATCH", {"no_such_key": 1}, auth=AUTH)
    assert status == 400 and "no_such_key" in body["error"]
    assert http(p.api + "/config")[1] == before
    assert http(p.api + "/restart", "POST", {"role": "bogus"}, auth=AUTH)[0] == 400
    assert http(p.api + "/failover", "POST", {}, auth=AUTH)[0] == 400


def test_parameter_change_reaches_every_node(cluster):
    p = cluster.wait_healthy()
    status, body = http(p.api + "/config", "PATCH",
                        {"postgresql": {"parameters": {"work_mem": "7MB"}}}, auth=AUTH)
    assert status == 200, body
    assert body["postgresql"]["parameters"]["work_mem"] == "7MB"
    for n in cluster.nodes:
        wait_for(lambda: n.query("SHOW work_mem")[0][0] == "7MB", 20,
                 what=f"work_mem reloaded on {n.name}")


def test_pending_restart_then_restart(cluster):
    p = cluster.wait_healthy()
    status, _ = http(p.api + "/config", "PATCH",
                     {"postgresql": {"parameters": {"max_connections": 120}}}, auth=AUTH)
    assert status == 200
    replica = next(n for n in cluster.nodes if n is not p)
    wait_for(lambda: replica.get("/patroni")[1].get("pending_restart") is True, 20,
             what="pending_restart on a replica")
    # a role mismatch is refused
    status, body = http(replica.api + "/restart", "POST", {"role": "primary"}, auth=AUTH)
    assert status == 503 and "not a primary" in body["error"]
    started = replica.get("/patroni")[1]["postmaster_start_time"]
    status, body = http(replica.api + "/restart", "POST", {"restart_pending": True}, auth=AUTH,
                        timeout=60)
    assert status == 200 and "restarted" in body["message"], body
    wait_for(lambda: replica.get("/patroni")[1].get("postmaster_start_time", started) != started
             and replica.get("/patroni")[1].get("pending_restart") is False, 20,
             what="restarted replica without pending restart")
    assert replica.query("SHOW max_connections")[0][0] == "120"
    cluster.wait_healthy(timeout=60)


def test_alter_system_cannot_override_a_cluster_wide_parameter(cluster):
    """ALTER SYSTEM of a parameter that must be equal on all nodes would win
    over the cluster-wide value at the next start (Patroni puts those on the
    command line); pgwarden removes it from postgresql.auto.conf before the
    start and says so. Other ALTER SYSTEM settings stay."""
    p = cluster.wait_healthy()
    replica = next(n for n in cluster.nodes if n is not p)
    want = replica.query("SHOW max_connections")[0][0]
    replica.query("ALTER SYSTEM SET max_connections = 25")
    replica.query("ALTER SYSTEM SET work_mem = '7MB'")
    started = replica.get("/patroni")[1]["postmaster_start_time"]
    status, body = http(replica.api + "/restart", "POST", {}, auth=AUTH, timeout=60)
    assert status == 200, body
    wait_for(lambda: replica.get("/patroni")[1].get("postmaster_start_time", started) != started,
             30, what="the replica restarted")
    assert replica.query("SHOW max_connections")[0][0] == want
    assert replica.query("SHOW work_mem")[0][0] == "7MB"
    assert "removed max_connections from" in replica.log()
    with open(os.path.join(replica.data_dir, "postgresql.auto.conf")) as f:
        auto = f.read()
    assert "max_connections" not in auto and "work_mem" in auto, auto
    replica.query("ALTER SYSTEM RESET work_mem")
    cluster.wait_healthy(timeout=60)


def test_scheduled_restart_and_delete(cluster):
    p = cluster.wait_healthy()
    r = next(n for n in cluster.nodes if n is not p)
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 3600))
    status, body = http(r.api + "/restart", "POST", {"schedule": at}, auth=AUTH)
    assert status == 202, body
    assert http(r.api + "/restart", "POST", {"schedule": at}, auth=AUTH)[0] == 409
    assert http(r.api + "/restart", "DELETE", auth=AUTH)[0] == 200
    assert http(r.api + "/restart", "DELETE", auth=AUTH)[0] == 404
    past = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
    assert http(r.api + "/restart", "POST", {"schedule": past}, auth=AUTH)[0] == 422


def test_reload(cluster):
    p = cluster.wait_healthy()
    status, body = http(p.api + "/reload", "POST", auth=AUTH)
    assert status == 202 and body["message"] == "reload scheduled"


def test_reinitialize_replica_keeps_old_data(cluster):
    p = cluster.wait_healthy()
    status, body = http(p.api + "/reinitialize", "POST", {}, auth=AUTH)
    assert status == 503 and "leader" in body["error"]
    r = next(n for n in cluster.nodes if n is not p)
    status, body = http(r.api + "/reinitialize", "POST", {"force": True}, auth=AUTH, timeout=60)
    assert status == 200 and "reinitialize started" in body["message"], body
    assert glob.glob(r.data_dir + ".*"), "the old data directory must be moved aside, not deleted"
    # its own view, not the cluster's: the replicated report may still say
    # "streaming" from before the reinitialize for a moment
    wait_for(r.is_streaming_replica, 90, what=f"{r.name} streaming again after the reinitialize")
    cluster.wait_healthy(timeout=90)
    assert r.query("SELECT pg_is_in_recovery()")[0][0] is True


def test_metrics(cluster):
    p = cluster.wait_healthy()
    status, text = http(p.api + "/metrics")
    assert status == 200
    labels = f'scope="{cluster.scope}",name="{p.name}"'
    assert f"patroni_primary{{{labels}}} 1" in text
    assert f"patroni_postgres_running{{{labels}}} 1" in text
    assert f"pgwarden_lease_held{{{labels}}} 1" in text
    r = next(n for n in cluster.nodes if n is not p)
    text = http(r.api + "/metrics")[1]
    assert f'patroni_replica{{scope="{cluster.scope}",name="{r.name}"}} 1' in text
    assert "# TYPE pgwarden_raft_term counter" in text
    # the HA tick-delay histogram: cumulative buckets ending in +Inf == _count
    # and the event loop's busy-time histogram, the same way
    for hist, bounds in (("pgwarden_ha_tick_delay_seconds",
                          ["0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "+Inf"]),
                         ("pgwarden_loop_busy_seconds",
                          ["0.0001", "0.0005", "0.001", "0.005", "0.01", "0.05", "0.1", "1", "+Inf"])):
        assert f"# TYPE {hist} histogram" in text
        buckets = [(line.split('le="')[1].split('"')[0], int(line.rsplit(" ", 1)[1]))
                   for line in text.splitlines() if line.startswith(hist + "_bucket{")]
        assert [b[0] for b in buckets] == bounds, buckets
        counts = [b[1] for b in buckets]
        assert counts == sorted(counts), buckets
        count = next(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith(hist + "_count{"))
        assert counts[-1] == count > 0, (buckets, count)  # the node has been running for seconds
    busy_max = next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("pgwarden_loop_busy_max_seconds{"))
    assert 0 < busy_max < 60, busy_max
    # every metric the node serves is documented
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "rest-api.md")) as f:
        doc = f.read()
    served = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert len(served) > 30, served
    assert sorted(m for m in served if f"`{m}`" not in doc) == [], "undocumented metrics"


def test_monitor_probe_leaves_no_trace_in_the_server_log(cluster):
    """Every loop_wait each node's monitor checks that PostgreSQL still
    accepts connections with a startup packet and no login (pg/pgprobe.c,
    what pg_isready does): PostgreSQL must log nothing for it, neither a
    reset connection nor a broken authentication exchange."""
    cluster.wait_healthy()
    time.sleep(3)  # a few more loop_waits of probes on every node
    noise = ("could not receive data from client", "unexpected EOF", "connection reset",
             "expected SASL response", "incomplete startup packet",
             "password authentication failed", "pgwarden-probe")
    for n in cluster.data_nodes():
        with open(n.data_dir + ".startup.log", errors="replace") as f:
            text = f.read()
        assert "ready to accept" in text, (n.name, text[-2000:])  # the server's own log
        bad = [line for line in text.splitlines() if any(s in line for s in noise)]
        assert bad == [], (n.name, bad[:5])


def test_status_document_follows_every_change(cluster):
    """The status document (GET /patroni, the body of every health check) is
    reused while nothing in it changed (api/handlers_status.c): it must still
    follow the clock (lease_expires_in) and every replicated change at once."""
    p = cluster.wait_healthy()
    first = http(p.api + "/primary")[1]
    time.sleep(0.05)
    second = http(p.api + "/primary")[1]
    assert first["pgwarden"]["lease_expires_in"] != second["pgwarden"]["lease_expires_in"], \
        (first, second)
    for doc in (first, second):
        lease = doc["pgwarden"]["lease_expires_in"]
        assert isinstance(lease, float) and 0 < lease <= 2.0, doc  # ttl 2 s
        for k, v in TRICKY_TAGS.items():
            assert doc["tags"][k] == v, doc
    assert "pause" not in second
    try:
        assert http(p.api + "/config", "PATCH", {"pause": True}, auth=AUTH)[0] == 200
        for n in cluster.data_nodes():  # the FSM change reaches each node's cached document
            wait_for(lambda: http(n.api + "/patroni")[1].get("pause") is True, 20,
                     what=f"pause in {n.name}'s /patroni")
            path = "/primary" if n is p else "/replica"
            status, body = http(n.api + path)
            assert status == 200 and body.get("pause") is True, (n.name, status, body)
    finally:
        assert http(p.api + "/config", "PATCH", {"pause": None}, auth=AUTH)[0] == 200
    for n in cluster.data_nodes():
        wait_for(lambda: "pause" not in http(n.api + "/patroni")[1], 20,
                 what=f"pause gone from {n.name}'s /patroni")
