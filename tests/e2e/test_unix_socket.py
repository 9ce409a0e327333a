"""postgresql.use_unix_socket as in Patroni: a Debian-style setup where the
superuser has no password and pg_hba lets it in only through the socket
(`local all all peer`, no TCP line for it). pgwarden's own connections (the
monitor, the bootstrap's roles, slot management) go through the socket, so
the cluster bootstraps, replicates and fails over; the other members are
reached over TCP as the replication and rewind users."""
import subprocess
import time

import psycopg2
import pytest

from pgw_harness import PGBIN, Cluster, wait_for

HBA = [
    "local all all peer",
    "host replication replicator 127.0.0.1/32 scram-sha-256",
    "host all rewind_user 127.0.0.1/32 scram-sha-256",
]


def psql(node, sql):
    """sql through the node's socket, as the postgres OS user (peer)."""
    out = subprocess.run([f"{PGBIN}/psql", "-XAt", "-h", node.cluster.dir, "-p",
                          str(node.pg_port), "-U", "postgres", "-d", "postgres", "-c", sql],
                         user="postgres", group="postgres", extra_groups=[],
                         capture_output=True, text=True, timeout=20, cwd=node.dir)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def cluster():
    c = Cluster(n=3)
    for n in c.nodes:
        orig = n.config

        def config(orig=orig):
            cfg = orig()
            pg = cfg["postgresql"]
            pg["authentication"]["superuser"] = {"username": "postgres"}  # no password
            pg["use_unix_socket"] = True
            pg["pg_hba"] = list(HBA)
            return cfg
        n.config = config
    try:
        yield c.start()
    finally:
        c.cleanup()


def members(c, node=None):
    view = c.cluster_view(node)
    return {m["name"]: m for m in view["members"]} if view else {}


def wait_streaming(c, primary, want, timeout):
    def pred():
        ms = members(c, primary)
        lead = [m for m in ms.values() if m["role"] == "leader"]
        if len(lead) != 1 or lead[0]["name"] != primary.name:
            return False
        return sum(1 for m in ms.values() if m["role"] == "replica" and m["state"] == "streaming"
                   and m.get("timeline") == lead[0].get("timeline")) >= want
    wait_for(pred, timeout, interval=0.25, what=f"{want} streaming replicas of {primary.name}")


def test_peer_only_superuser_bootstraps_and_fails_over(cluster):
    p = cluster.wait_primary(timeout=90)
    wait_streaming(cluster, p, 2, 90)
    # the superuser cannot come in over TCP: every pgwarden session on the
    # primary is a socket one (client_addr NULL)
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host="127.0.0.1", port=p.pg_port, user="postgres", dbname="postgres",
                         connect_timeout=3).close()
    wait_for(lambda: psql(p, "SELECT count(*) FROM pg_stat_activity WHERE "
                             "application_name = 'pgwarden' AND client_addr IS NULL") != "0",
             15, what="pgwarden's monitor connected through the socket")
    assert psql(p, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'postgres' AND "
                   "client_addr IS NOT NULL") == "0"
    # the roles the bootstrap created through the socket, and the slots
    assert psql(p, "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE "
                   "rolname IN ('replicator', 'rewind_user')") == "replicator,rewind_user"
    slots = psql(p, "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots")
    assert slots == ",".join(sorted(n.name for n in cluster.nodes if n is not p)), slots
    # the monitor's view: /patroni reports a running primary with its WAL position
    st, body = p.get("/patroni")
    assert st == 200 and body["state"] == "running" and body["role"] in ("primary", "master")
    assert body.get("xlog", {}).get("location", 0) > 0, body

    psql(p, "CREATE TABLE t AS SELECT generate_series(1, 50) AS x")
    old = p
    t_kill = time.monotonic()
    old.kill()
    old.kill_postmaster()
    new = cluster.wait_primary(timeout=30, exclude=old)
    assert time.monotonic() - t_kill < 20
    wait_for(lambda: psql(new, "SELECT pg_is_in_recovery()") == "f", 15,
             what="the new primary out of recovery")
    assert psql(new, "SELECT count(*) FROM t") == "50"
    # the old primary rejoins (pg_rewind as rewind_user over TCP if needed)
    old.start()
    wait_streaming(cluster, new, 2, 120)
    assert psql(old, "SELECT pg_is_in_recovery()") == "t"
