"""Patroni configurations run as Patroni runs them (issue 17), end to end on
127.0.0.1: a configuration without a postgresql.authentication.rewind
section rewinds a killed primary as the superuser; relative paths are
resolved against the working directory, by validate and run alike."""
import os
import re
import signal
import subprocess
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


def test_relative_paths_resolve_against_working_directory(make_cluster):
    """Patroni's example postgres0.yml has data_dir: data/postgresql0,
    relative to the working directory. Every node here writes its data
    directory, Raft directory, password file and log directory relative to
    the directory pgwarden starts in (the harness starts it in the node's
    directory): validate accepts the file, run bootstraps, and the replicas
    clone and stream (their primary_conninfo's passfile is read by a
    walreceiver whose working directory is the data directory, so it must be
    absolute). Before the fix validate said yes and run exited 1 (and
    crashed)."""
    c = make_cluster(n=3, start=False)
    for n in c.nodes:
        os.makedirs(os.path.join(n.dir, "log"))
        c.chown(os.path.join(n.dir, "log"))
        n.extra = {"raft": {"data_dir": "raft"},
                   "postgresql": {"data_dir": "data", "pgpass": "./pgpass"},
                   "log": {"dir": "log"}}
        n.write_config()
        assert n.config()["postgresql"]["data_dir"] == "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_")}
        r = subprocess.run([c.binary, "validate", "-c", n.cfg_path], cwd=n.dir, env=env,
                           capture_output=True, timeout=30, check=False)
        assert (r.returncode, r.stderr) == (0, b""), r.stderr
    c.start()
    p = c.wait_healthy(timeout=120)
    for n in c.nodes:
        real = os.path.realpath
        assert real(n.query("SHOW data_directory")[0][0]) == real(n.data_dir)
        assert os.path.isfile(os.path.join(n.data_dir, "PG_VERSION"))
        assert os.path.isfile(os.path.join(n.dir, "pgpass"))
        assert os.path.isfile(os.path.join(n.dir, "log", "pgwarden.log"))
        assert os.listdir(os.path.join(n.dir, "raft"))
        assert "absolute path" not in n.log(), n.log()[-3000:]
    for r in (n for n in c.nodes if n is not p):
        conninfo = r.query("SHOW primary_conninfo")[0][0]
        assert f"passfile={os.path.join(os.path.realpath(r.dir), 'pgpass')}" in conninfo.replace(
            "'", ""), conninfo
