"""Patroni configurations run as Patroni runs them (issue 17), end to end on
127.0.0.1: a configuration without a postgresql.authentication.rewind
section rewinds a killed primary as the superuser; relative paths are
resolved against the working directory, by validate and run alike; a
postgresql.config_dir apart from data_dir (Debian's layout) is what
PostgreSQL reads."""
import os
import re
import signal
import subprocess
import time

import pytest

from pg_helpers import Env, pg_uid
from pg_helpers import wait_for as pg_wait_for
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


@pytest.fixture
def pg_env():
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()


def test_config_dir_apart_from_data_dir(pg_env):
    """Debian's layout: the configuration in config_dir, none in the data
    directory. PostgreSQL must read pgwarden's files there on every start
    (--config-file, hba_file, ident_file), a clone gets its own config_dir,
    and a rejoin after an immediate stop runs the single-user crash recovery
    and pg_rewind with that file too. Before the fix PostgreSQL read
    <data_dir>/postgresql.conf and never saw what pgwarden wrote."""
    env = pg_env
    etc = {}
    for name in ("n1", "n2"):
        etc[name] = os.path.join(env.dir, f"etc-{name}")
        os.makedirs(etc[name])
        os.chown(etc[name], *pg_uid())
    n1 = env.node("n1", config_dir=etc["n1"])
    n2 = env.node("n2", config_dir=etc["n2"])
    n1.ok("bootstrap")
    # initdb's files were copied into config_dir; remove them from the data
    # directory, as Debian's pg_createcluster leaves it
    base = open(os.path.join(etc["n1"], "postgresql.base.conf")).read()
    assert "PostgreSQL configuration file" in base  # initdb's postgresql.conf
    for f in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
        os.remove(os.path.join(n1.data_dir, f))
    n1.ok("stop", "fast")
    n1.ok("start")  # reads nothing from the data directory now

    def shows(node, d):
        return node.sql("SELECT current_setting('config_file'), current_setting('hba_file'), "
                        "current_setting('ident_file'), current_setting('port')") == [
            (f"{d}/postgresql.conf", f"{d}/pg_hba.conf", f"{d}/pg_ident.conf", str(node.port))]
    assert shows(n1, etc["n1"]), n1.sql("SHOW config_file")
    conf = open(os.path.join(etc["n1"], "postgresql.conf")).read()
    assert conf.startswith("# managed by pgwarden, do not edit")
    assert f"hba_file = '{etc['n1']}/pg_hba.conf'" in conf
    assert os.path.isfile(os.path.join(etc["n1"], "pg_ident.conf"))
    assert not os.path.exists(os.path.join(n1.data_dir, "postgresql.conf"))

    # a clone: the data directory it copies holds no configuration either
    n1.ok("slots", "n1,n2")
    n1.sql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)")
    n2.ok("clone", "127.0.0.1", n1.port)
    assert not os.path.exists(os.path.join(n2.data_dir, "postgresql.conf"))
    assert os.path.exists(os.path.join(n2.data_dir, "standby.signal"))
    pg_wait_for(lambda: n2.sql("SELECT count(*) FROM t") == [(1,)], 30, what="row on n2")
    assert shows(n2, etc["n2"])

    # a fork, an immediate stop, and a rejoin with crash recovery + pg_rewind
    n2.ok("promote")
    n1.sql("INSERT INTO t VALUES (2)")
    n1.sql("SELECT pg_switch_wal()")
    n1.ok("stop", "immediate")
    n2.ok("slots", "n1,n2")
    rc, out, err = n1.tool("rejoin", "127.0.0.1", n2.port)
    assert rc == 0 and out.get("rewound") is True, f"{out}\n{err[-3000:]}"
    for line in ("single-user crash recovery", f"crash recovery of {n1.data_dir} done",
                 f"pg_rewind of {n1.data_dir} done"):
        assert line in err, err[-3000:]
    n2.sql("INSERT INTO t VALUES (3)")
    pg_wait_for(lambda: n1.sql("SELECT array_agg(x ORDER BY x) FROM t") == [([1, 3],)], 30,
                what="rewound n1 following n2 with the forked row gone")
    assert shows(n1, etc["n1"])
    assert not os.path.exists(os.path.join(n1.data_dir, "postgresql.conf"))
