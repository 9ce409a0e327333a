"""HAProxy in front of a 3-node cluster with Patroni's documented check
configuration: writers reach the primary before and after a switchover,
readers reach a replica."""
import os
import signal
import subprocess
import time

import psycopg2
import pytest

from pgw_harness import SU_PASSWORD, Cluster, free_ports, http, wait_for

HAPROXY = "/usr/sbin/haproxy"


def haproxy_config(nodes, wport, stats, rport=None):
    """Patroni's documented HAProxy configuration (haproxy.cfg in its
    repository): writers to the member answering /primary, readers (when
    rport is given) round-robin over those answering /replica. A node's
    address is its `host` attribute when it has one, else 127.0.0.1."""
    servers = "\n".join(f"    server {n.name} {getattr(n, 'host', '127.0.0.1')}:{n.pg_port} "
                        f"check port {n.api_port}" for n in nodes)
    cfg = f"""
global
    maxconn 200
defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen stats
    mode http
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /
listen primary
    bind 127.0.0.1:{wport}
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
"""
    if rport is not None:
        cfg += f"""listen replicas
    bind 127.0.0.1:{rport}
    balance roundrobin
    option httpchk OPTIONS /replica
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
"""
    return cfg


@pytest.fixture
def setup():
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is not installed (make deps installs it)")
    c = Cluster(n=3)
    proc = None
    try:
        c.start()
        c.wait_healthy(timeout=90)
        wport, rport, stats = free_ports(3)
        cfg = os.path.join(c.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(haproxy_config(c.nodes, wport, stats, rport))
        proc = subprocess.Popen([HAPROXY, "-f", cfg, "-db"], stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(c.dir, "haproxy.log"), "wb"))
        yield c, wport, rport, stats
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        c.cleanup()


def via(port):
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=SU_PASSWORD,
                            dbname="postgres", connect_timeout=2)
    conn.autocommit = True
    return conn


def up_servers(stats, backend):
    """Names of the servers HAProxy considers UP in a backend."""
    status, text = http(f"http://127.0.0.1:{stats}/;csv")
    if status != 200 or not isinstance(text, str):
        return None
    rows = [line.split(",") for line in text.splitlines() if line and not line.startswith("#")]
    return sorted(r[1] for r in rows if r[0] == backend and r[1] not in ("FRONTEND", "BACKEND")
                  and r[17].startswith("UP"))


def served_by(port):
    """(server port, in recovery) of whoever answers through HAProxy."""
    try:
        conn = via(port)
    except psycopg2.Error:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port(), pg_is_in_recovery()")
            return cur.fetchone()
    finally:
        conn.close()


def test_writer_follows_the_primary_through_a_switchover(setup):
    c, wport, rport, stats = setup
    p = c.wait_healthy()
    # HAProxy starts with every server UP and marks them down after `fall` checks
    wait_for(lambda: up_servers(stats, "primary") == [p.name], 20,
             what="only the primary UP in the writer backend")
    assert served_by(wport) == (p.pg_port, False)
    conn = via(wport)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE hp (x int)")
        cur.execute("INSERT INTO hp VALUES (1)")
    conn.close()
    replicas = sorted(n.name for n in c.nodes if n is not p)
    wait_for(lambda: up_servers(stats, "replicas") == replicas, 20,
             what="only the replicas UP in the reader backend")
    r = wait_for(lambda: served_by(rport), 20, what="reader port answering")
    assert r[1] is True and r[0] != p.pg_port
    cand = next(n for n in c.nodes if n is not p)
    status, body = http(p.api + "/switchover", "POST", {"leader": p.name, "candidate": cand.name},
                        timeout=70)
    assert status == 200, body
    t0 = time.monotonic()
    wait_for(lambda: up_servers(stats, "primary") == [cand.name], 30,
             what="writer backend moved to the new primary")
    assert served_by(wport) == (cand.pg_port, False)
    print(f"writer port moved {time.monotonic() - t0:.2f}s after the switchover reply")
    conn = via(wport)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO hp VALUES (2)")
        cur.execute("SELECT count(*) FROM hp")
        assert cur.fetchone()[0] == 2
    conn.close()
    c.wait_healthy(timeout=60)
    replicas = sorted(n.name for n in c.nodes if n is not cand)
    wait_for(lambda: up_servers(stats, "replicas") == replicas, 30,
             what="the old primary UP and the new one DOWN in the reader backend")
    r = wait_for(lambda: served_by(rport), 20, what="reader port answering after the switchover")
    assert r[1] is True and r[0] != cand.pg_port
