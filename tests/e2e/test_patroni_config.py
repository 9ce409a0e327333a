"""Patroni configurations run as Patroni runs them (issue 17), end to end on
127.0.0.1: a configuration without a postgresql.authentication.rewind
section rewinds a killed primary as the superuser."""
import re
import signal
import time

import pytest

from pgw_harness import (managed_clusters, node_timeline, signal_pids, start_prober,
                         start_writer, wait_for, watch_rejoin)


@pytest.fixture
def make_cluster(request):
    yield from managed_clusters(request)


def test_no_rewind_section_rewinds_as_superuser(make_cluster):
    """Without a rewind section Patroni runs pg_rewind as the superuser. The
    primary's whole node is killed (kill -9 of pgwarden, its fence keeper and
    every PostgreSQL process) right after it committed rows its replicas never
    received, so its timeline has forked: once restarted it must rewind, as
    the superuser, and stream from the new primary within 90 s. Before the
    fix pgwarden connected as a passwordless rewind_user and every pg_rewind
    failed (fe_sendauth: no password supplied)."""
    c = make_cluster(n=3, node_opts={f"n{i}": {"rewind": False} for i in (1, 2, 3)})
    for n in c.nodes:
        assert "rewind" not in n.config()["postgresql"]["authentication"]
    old = c.wait_healthy(timeout=90)
    assert old.query("SELECT count(*) FROM pg_roles WHERE rolname = 'rewind_user'") == [(0,)]
    prober = start_prober(c)
    writer = start_writer(c)
    old.query("CREATE TABLE fork (x int)")
    replicas = [n for n in c.nodes if n is not old]
    for r in replicas:
        wait_for(lambda: r.query("SELECT to_regclass('fork') IS NOT NULL") == [(True,)], 20,
                 what=f"table fork on {r.name}")
    time.sleep(1)

    # the fork: the walsenders are frozen, then the old primary commits rows
    # that only it has
    senders = [old.walsender_pid(r.name) for r in replicas]
    assert all(senders), senders
    signal_pids(senders, signal.SIGSTOP)
    old.query("INSERT INTO fork SELECT generate_series(1, 1000)")
    t_kill = time.monotonic()
    old.kill_all()
    new = c.wait_primary(timeout=30, exclude=old)
    wait_for(lambda: any(t > t_kill and n == new.name for _, t, n in writer.acked), 15,
             what=f"writes resuming on {new.name}")

    # the old node comes back (as systemd would restart it)
    old.start()
    took, answers_200 = watch_rejoin(old, want_timeline=node_timeline(new), timeout=90)
    assert answers_200 == [], f"{old.name} answered 200 on /primary while rejoining: {answers_200}"
    log = old.log()
    assert "rejoin: pg_rewind needed" in log, log[-4000:]
    assert "rewound with pg_rewind and restarted as a replica" in log, log[-4000:]
    assert re.search(r"pg_rewind of \S+ done", log), log[-4000:]
    for bad in ("fe_sendauth", "pg_rewind failed", "cannot rejoin as a replica"):
        assert bad not in log, log[-4000:]
    # the forked rows are gone: the old node now has the new primary's history
    assert new.query("SELECT count(*) FROM fork") == [(0,)]
    wait_for(lambda: old.query("SELECT count(*) FROM fork") == [(0,)], 20,
             what=f"the forked rows gone on {old.name}")
    assert old.query("SELECT pg_is_in_recovery()")[0][0] is True
    # pg_rewind connected as the superuser: no rewind role was ever created
    assert new.query("SELECT count(*) FROM pg_roles WHERE rolname = 'rewind_user'") == [(0,)]
    assert c.wait_healthy(timeout=60) is new
    writer.stop()
    assert prober.stop() == [], "two primaries in one round"
    print(f"\n[no rewind section] new primary {new.name}; {old.name} rewound as the superuser "
          f"and streaming {took:.2f}s after its restart")
