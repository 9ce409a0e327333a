"""Live migration of a real Patroni 3.0 + etcd cluster to pgwarden, with the
runbook's steps (patroni_migration.py), under a steady write load through
HAProxy checking /primary on the REST port:

- PostgreSQL is never restarted on any node (postmaster pid and
  pg_postmaster_start_time() unchanged), through the migration and through
  the rollback;
- no write the client got an acknowledgement for is lost;
- the write gap through the router is measured and printed;
- under pgwarden the cluster then fails over when the primary's node is
  killed (a new primary, no acknowledged write lost), and the killed node
  rejoins;
- the rollback (pgwarden -> Patroni) leaves Patroni's cluster healthy with a
  leader, PostgreSQL not restarted.

Needs Debian's patroni and etcd-server (scripts/deps.sh) and haproxy."""
import os
import signal
import subprocess
import threading
import time

import psycopg2
import pytest

import patroni_migration as mig
from pgw_harness import SU_PASSWORD, free_ports, wait_for, with_logs
from test_haproxy import HAPROXY, haproxy_config, up_servers

WRITE_S = 0.02


class RouterWriter(threading.Thread):
    """One INSERT every WRITE_S through the router; reconnects when cut.
    `acked`: (id, monotonic time) of every commit acknowledged."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop_event = threading.Event()
        self.acked = []
        self.errors = 0
        self.next_id = 1

    def run(self):
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                            password=SU_PASSWORD, dbname="postgres",
                                            connect_timeout=1,
                                            options="-c statement_timeout=2000")
                    conn.autocommit = True
                i = self.next_id
                self.next_id += 1  # never retried: an unacknowledged id stays unknown
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO mig_ledger(id) VALUES (%s)", (i,))
                self.acked.append((i, time.monotonic()))
            except psycopg2.Error:
                self.errors += 1
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass
                conn = None
            time.sleep(WRITE_S)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_event.set()
        self.join(15)

    def max_gap(self, start, end):
        """Longest time without an acknowledged write within [start, end]."""
        ts = [start] + [t for _, t in self.acked if start <= t <= end] + [end]
        return max(b - a for a, b in zip(ts, ts[1:]))

    def lost(self, node):
        acked = list(self.acked)  # read before the table (see Writer.lost)
        assert acked, f"the writer got no acknowledgement ({self.errors} errors): no verdict"
        present = {r[0] for r in node.query("SELECT id FROM mig_ledger")}
        return sorted(i for i, _ in acked if i not in present)


def starts(c):
    return {n.name: n.postmaster_start() for n in c.nodes}


@pytest.fixture
def patroni_cluster():
    for prog in (mig.PATRONI, mig.ETCD, HAPROXY):
        if not os.path.exists(prog):
            pytest.fail(f"{prog} is not installed (scripts/deps.sh installs it)")
    c = mig.PatroniCluster(3)
    c.haproxy = None
    try:
        c.start_etcd()
        c.nodes[0].start_patroni()
        wait_for(lambda: c.patroni_view() and any(m.get("role") == "leader" and m.get("state") ==
                                                   "running" for m in c.patroni_view()["members"]),
                 90, what="Patroni bootstrapping n1")
        for n in c.nodes[1:]:
            n.start_patroni()
        with_logs(c, c.wait_patroni_healthy, timeout=120)
        wport, stats = free_ports(2)
        cfg = os.path.join(c.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(haproxy_config(c.nodes, wport, stats))
        c.haproxy = subprocess.Popen([HAPROXY, "-f", cfg, "-db"], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(c.dir, "haproxy.log"), "wb"))
        c.wport, c.stats = wport, stats
        yield c
    finally:
        if c.haproxy is not None and c.haproxy.poll() is None:
            os.kill(c.haproxy.pid, signal.SIGKILL)
            c.haproxy.wait(10)
        c.cleanup()


def test_migrate_from_patroni_fail_over_and_roll_back(patroni_cluster):
    c = patroni_cluster
    t_test = time.monotonic()
    leader = c.wait_patroni_healthy()
    replicas = [n for n in c.nodes if n is not leader]
    leader.query("CREATE TABLE mig_ledger (id bigint PRIMARY KEY, "
                 "t timestamptz DEFAULT clock_timestamp())")
    wait_for(lambda: up_servers(c.stats, "primary") == [leader.name], 30,
             what="HAProxy routing to Patroni's leader")
    w = RouterWriter(c.wport)
    w.start()
    try:
        wait_for(lambda: len(w.acked) >= 20, 30, what="writes acknowledged through HAProxy")
        before = starts(c)

        # --- Patroni -> pgwarden -------------------------------------------
        t0 = time.monotonic()
        steps = with_logs(c, mig.migrate, c, leader, replicas, leader.api)
        t1 = time.monotonic()
        wait_for(lambda: up_servers(c.stats, "primary") == [leader.name], 30,
                 what="HAProxy routing to pgwarden's primary")
        time.sleep(1)  # a second of writes after the migration, inside the window
        t_end = time.monotonic()
        gap = w.max_gap(t0, t_end)
        after = starts(c)
        assert after == before, f"PostgreSQL restarted during the migration: {before} -> {after}"
        lost = w.lost(leader)
        assert lost == [], f"acknowledged writes lost in the migration: {lost[:20]}"
        assert c.primary() is leader
        log = leader.log()
        assert "adopted" in log, "the primary's pgwarden log has no adoption line"
        print(f"\nmigration: write gap through HAProxy {gap:.2f} s, restarts 0, acknowledged "
              f"writes lost 0 ({len(w.acked)} acked), steps "
              + ", ".join(f"{k} {v:.1f}s" for k, v in steps.items())
              + f", migration {t1 - t0:.1f} s")

        # --- a failover under pgwarden ------------------------------------
        # pgwarden's own timing (the converter carried Patroni's ttl 20 over)
        r = c.pwctl("edit-config", "--force", "-q", "-s", "ttl=2", "-s", "loop_wait=0.5",
                    "-s", "retry_timeout=0.75")
        assert r.returncode == 0, f"edit-config: {r.stdout}{r.stderr}"
        # A lower ttl never shortens a lease the primary already counts on:
        # until the last renewal under the old ttl has run out, a failover
        # still waits for it (docs/architecture.md).
        time.sleep(mig.PATRONI_DCS["ttl"] + 1)
        t_kill = time.monotonic()
        leader.kill_all()
        new = with_logs(c, c.wait_primary, timeout=60, exclude=leader)
        t_promoted = time.monotonic()
        assert new is not leader
        wait_for(lambda: up_servers(c.stats, "primary") == [new.name], 30,
                 what="HAProxy routing to the new primary")
        wait_for(lambda: any(t > time.monotonic() - 1 for _, t in w.acked[-5:]), 30,
                 what="writes through HAProxy after the failover")
        fo_gap = w.max_gap(t_kill, time.monotonic())
        lost = w.lost(new)
        assert lost == [], f"acknowledged writes lost in the failover: {lost[:20]}"
        print(f"failover under pgwarden: {leader.name} killed, {new.name} answering 200 on "
              f"/primary {t_promoted - t_kill:.2f} s later, write gap through HAProxy "
              f"{fo_gap:.2f} s, acknowledged writes lost 0")
        leader.start()  # the old primary rejoins (pg_rewind)
        with_logs(c, c.wait_healthy, timeout=120)

        # --- pgwarden -> Patroni (rollback) ---------------------------------
        before = starts(c)
        t0 = time.monotonic()
        patroni_leader = with_logs(c, mig.rollback, c)
        t_end = time.monotonic()
        assert patroni_leader is new, f"Patroni's leader is {patroni_leader.name}, not {new.name}"
        after = starts(c)
        assert after == before, f"PostgreSQL restarted during the rollback: {before} -> {after}"
        wait_for(lambda: up_servers(c.stats, "primary") == [new.name], 30,
                 what="HAProxy routing to Patroni's leader after the rollback")
        wait_for(lambda: new.query("SELECT count(*) FROM pg_stat_replication "
                                   "WHERE state = 'streaming'")[0][0] == 2, 60,
                 what="both replicas streaming from Patroni's leader")
        time.sleep(1)
        rb_gap = w.max_gap(t0, time.monotonic())
        lost = w.lost(new)
        assert lost == [], f"acknowledged writes lost in the rollback: {lost[:20]}"
        print(f"rollback: Patroni leader {new.name}, write gap {rb_gap:.2f} s, restarts 0, "
              f"acknowledged writes lost 0, rollback {t_end - t0:.1f} s")
    finally:
        w.stop()
    print(f"test duration {time.monotonic() - t_test:.1f} s, {len(w.acked)} writes acknowledged")
