"""pg/ end to end against real PostgreSQL 15 run as the postgres user:
bootstrap, connect, clone with a slot, promote, timeline fork + pg_rewind,
adopt of a standalone cluster."""
import os
import stat
import pytest

from pg_helpers import (PGBIN, REPL_PASSWORD, REWIND_PASSWORD, SU_PASSWORD, Env, as_postgres,
                        pg_uid, wait_for)


@pytest.fixture
def env():
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()


def test_bootstrap_and_connect(env):
    n1 = env.node("n1")
    out = n1.ok("bootstrap")
    assert out["status"] == "success"
    st = n1.status()
    assert st["state"] == "running"
    assert st["in_recovery"] is False
    assert st["timeline"] == 1
    assert st["server_version"] >= 150000
    # cluster-wide value wins; the local max_connections is ignored
    assert n1.sql("SHOW max_connections") == [("60",)]
    assert n1.sql("SHOW max_wal_senders") == [("8",)]
    assert n1.sql("SHOW wal_log_hints") == [("on",)]
    assert n1.sql("SHOW cluster_name") == [("e2e",)]
    assert n1.sql("SHOW data_checksums") == [("on",)]
    assert n1.sql("SHOW server_encoding") == [("UTF8",)]
    roles = dict(n1.sql("SELECT rolname, rolreplication FROM pg_roles "
                        "WHERE rolname IN ('replicator', 'rewinder')"))
    assert roles == {"replicator": True, "rewinder": False}
    grants = n1.sql("SELECT has_function_privilege('rewinder', 'pg_catalog.pg_ls_dir(text, boolean, boolean)', 'execute'),"
                    " has_function_privilege('rewinder', 'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'execute')")
    assert grants == [(True, True)]
    # the roles can log in with their passwords
    n1.connect(user="rewinder", password="rw-secret").close()
    # managed files
    conf = open(os.path.join(n1.data_dir, "postgresql.conf")).read()
    assert conf.startswith("# managed by pgwarden, do not edit")
    assert "include 'postgresql.base.conf'" in conf
    assert f"port = '{n1.port}'" in conf
    assert os.path.exists(os.path.join(n1.data_dir, "postgresql.base.conf"))
    hba = open(os.path.join(n1.data_dir, "pg_hba.conf")).read()
    assert "host replication replicator 127.0.0.1/32 scram-sha-256" in hba
    pgpass = n1.cfg["postgresql"]["pgpass"]
    assert stat.S_IMODE(os.stat(pgpass).st_mode) == 0o600
    assert "*:*:*:postgres:su\\:pass\\\\word" in open(pgpass).read()
    # passwords never reach the config files
    assert REPL_PASSWORD not in conf and SU_PASSWORD not in conf
    # bootstrap is never run over existing data
    rc, out, _ = n1.tool("bootstrap")
    assert rc != 0 and "not empty" in out["error"]
    # a cluster-wide change that needs a restart: flagged, applied at restart
    n1.cfg["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"] = 70
    n1.write_cfg()
    out = n1.ok("reload")
    assert out["restart_hint"] is True
    wait_for(lambda: n1.status()["pending_restart"], 10, what="pending_restart after reload")
    assert n1.sql("SHOW max_connections") == [("60",)]
    # fast stop, then idempotent stop and start
    n1.ok("stop", "fast")
    assert n1.pid() is None or not os.path.exists(f"/proc/{n1.pid()}")
    n1.ok("stop", "fast")
    n1.ok("start")
    n1.ok("start")
    st = n1.status()
    assert st["state"] == "running" and st["pending_restart"] is False
    assert n1.sql("SHOW max_connections") == [("70",)]


def test_clone_promote_rewind(env):
    n1, n2 = env.node("n1"), env.node("n2")
    n2.cfg["postgresql"]["parameters"]["recovery_min_apply_delay"] = "10ms"
    n2.write_cfg()
    n1.ok("bootstrap")
    n1.ok("slots", "n1,n2")
    assert n1.sql("SELECT slot_name FROM pg_replication_slots") == [("n2",)]
    n1.sql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)")
    n2.ok("clone", "127.0.0.1", n1.port)
    assert os.path.exists(os.path.join(n2.data_dir, "standby.signal"))
    conf = open(os.path.join(n2.data_dir, "postgresql.conf")).read()
    assert "application_name=''n2''" in conf and "primary_slot_name = 'n2'" in conf
    assert REPL_PASSWORD not in conf

    def streaming():
        st = n2.status()
        w = st.get("wal_receiver")
        return w and w["status"] == "streaming" and w["slot_name"] == "n2" and st
    st2 = wait_for(streaming, 20, what="n2 streaming with its slot")
    assert st2["in_recovery"] is True
    assert n2.sql("SHOW recovery_min_apply_delay") == [("10ms",)]  # delayed replica
    rows = n1.status()["replication"]
    assert [r["application_name"] for r in rows] == ["n2"]
    assert rows[0]["state"] == "streaming"
    assert n1.sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'n2'") == [(True,)]
    wait_for(lambda: n2.sql("SELECT count(*) FROM t") == [(1,)], 10, what="row replicated")
    # slots: idempotent; an unknown inactive slot is dropped, an ignored one kept
    n1.sql("SELECT pg_create_physical_replication_slot('stale'), pg_create_physical_replication_slot('keepme')")
    n1.ok("slots", "n1,n2,n3", "keepme")
    assert sorted(r[0] for r in n1.sql("SELECT slot_name FROM pg_replication_slots")) == ["keepme", "n2", "n3"]

    # promote: verified in the control file
    n2.ok("promote")
    cd = n2.ok("controldata")
    assert cd["state"] == "in production"
    assert cd["timeline"] == 2  # the checkpoint after promotion made it visible
    assert not os.path.exists(os.path.join(n2.data_dir, "standby.signal"))
    st2 = n2.status()
    assert st2["in_recovery"] is False and st2["timeline"] == 2

    # fork: the old primary keeps writing on timeline 1
    n1.sql("INSERT INTO t VALUES (2)")
    n1.sql("SELECT pg_switch_wal()")
    n1.ok("stop", "immediate")
    out = n1.ok("rewind-check", "127.0.0.1", n2.port)
    assert out["verdict"] == "needed", out
    assert "switch point" in out["reason"]
    # its slot first (the HA primary keeps one per member): the rewound
    # standby may need to stream before it is consistent and pg_ctl start
    # returns
    n2.ok("slots", "n1,n2")
    out = n1.ok("rejoin", "127.0.0.1", n2.port)
    assert out["rewound"] is True and out["needs_reinit"] is False
    n2.sql("INSERT INTO t VALUES (3)")

    def following():
        st = n1.status()
        w = st.get("wal_receiver")
        return (w and w["status"] == "streaming" and w["received_tli"] == 2
                and n1.sql("SELECT array_agg(x ORDER BY x) FROM t") == [([1, 3],)])
    wait_for(following, 30, what="rewound n1 streaming from n2 with the forked row gone")
    assert n1.status()["timeline"] == 2
    # a second rejoin finds nothing to rewind (same timeline)
    n1.ok("stop", "fast")
    out = n1.ok("rewind-check", "127.0.0.1", n2.port)
    assert out["verdict"] == "not_needed", out
    n1.ok("start")
    wait_for(lambda: n2.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == [(1,)],
             20, what="n1 streaming again")

    # planned switchover: the old primary stops cleanly, the replica is
    # promoted at the end of its shutdown checkpoint: no rewind needed
    n2.ok("stop", "fast")
    n1.ok("promote")
    out = n2.ok("rewind-check", "127.0.0.1", n1.port)
    assert out["verdict"] == "not_needed" and "exactly" in out["reason"], out
    out = n2.ok("rejoin", "127.0.0.1", n1.port)
    assert out["rewound"] is False and out["recloned"] is False
    n1.ok("slots", "n1,n2")
    n1.sql("INSERT INTO t VALUES (4)")
    wait_for(lambda: n2.sql("SELECT max(x) FROM t") == [(4,)], 30, what="n2 following n1")
    assert n2.status()["timeline"] == 3


def test_rewind_impossible_then_reclone(env):
    n1, n2 = env.node("n1"), env.node("n2")
    for n in (n1, n2):
        n.cfg["bootstrap"]["initdb"] = [{"encoding": "UTF8"}]  # no data checksums
        n.cfg["bootstrap"]["dcs"]["postgresql"]["parameters"]["wal_log_hints"] = "off"
        n.write_cfg()
    n1.ok("bootstrap")
    n1.ok("slots", "n1,n2")
    n1.sql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)")
    n2.ok("clone", "127.0.0.1", n1.port)
    wait_for(lambda: n2.sql("SELECT count(*) FROM t") == [(1,)], 20, what="replication")
    n2.ok("promote")
    n1.sql("INSERT INTO t VALUES (2)")
    n1.ok("stop", "immediate")
    rc, out, _ = n1.tool("rejoin", "127.0.0.1", n2.port)
    assert rc != 0 and out["needs_reinit"] is True, out
    assert "wal_log_hints" in out["reason"], out
    assert os.path.exists(os.path.join(n1.data_dir, "PG_VERSION"))  # nothing removed
    n1.cfg["postgresql"]["remove_data_directory_on_rewind_failure"] = True
    n1.write_cfg()
    n2.ok("slots", "n1,n2")
    out = n1.ok("rejoin", "127.0.0.1", n2.port)
    assert out["recloned"] is True and out["rewound"] is False, out
    moved = out["moved_to"]
    assert moved.startswith(n1.data_dir + ".") and os.path.exists(os.path.join(moved, "PG_VERSION"))
    n2.sql("INSERT INTO t VALUES (3)")
    wait_for(lambda: n1.sql("SELECT array_agg(x ORDER BY x) FROM t") == [([1, 3],)], 30,
             what="re-cloned n1 following n2")


def standalone(env, node, sql, conf="", hba=None):
    """A standalone cluster made by hand in node's data directory, the way an
    operator would have it (peer locally, scram-sha-256 over TCP), running,
    with sql run in it as the superuser."""
    p = as_postgres([f"{PGBIN}/initdb", "-D", node.data_dir, "-U", "postgres", "--auth-local=peer",
                     "--auth-host=scram-sha-256"])
    assert p.returncode == 0, p.stderr
    if hba is not None:
        with open(os.path.join(node.data_dir, "pg_hba.conf"), "w") as f:
            f.write(hba)
    with open(os.path.join(node.data_dir, "postgresql.conf"), "a") as f:
        f.write(f"\nport = {node.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{env.dir}'\n{conf}")
    p = as_postgres([f"{PGBIN}/pg_ctl", "start", "-w", "-D", node.data_dir, "-l",
                     os.path.join(env.dir, "standalone.log")])
    assert p.returncode == 0, p.stderr
    p = as_postgres(["psql", "-h", env.dir, "-p", str(node.port), "-U", "postgres", "-v",
                     "ON_ERROR_STOP=1", "-c", sql])
    assert p.returncode == 0, p.stderr


def test_adopt_standalone(env):
    n1 = env.node("n1")
    n1.cfg["postgresql"].pop("pg_hba")
    n1.write_cfg()
    uid, _ = pg_uid()
    standalone(env, n1, "ALTER ROLE postgres PASSWORD 'su:pass\\word'; CREATE TABLE keep(i int);"
               " INSERT INTO keep SELECT generate_series(1, 1000);", conf="work_mem = '7MB'\n")
    before = n1.ok("controldata")["system_identifier"]
    pid_before = n1.pid()

    out = n1.ok("adopt")
    assert out["was_running"] is True and out["started"] is False
    assert out["system_identifier"] == before
    assert n1.pid() == pid_before  # taken over without a restart
    assert n1.sql("SELECT count(*) FROM keep") == [(1000,)]
    base = open(os.path.join(n1.data_dir, "postgresql.base.conf")).read()
    assert "work_mem = '7MB'" in base  # the operator's file is kept and included
    assert n1.sql("SHOW work_mem") == [("7MB",)]
    assert n1.sql("SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'") == [(True,)]
    # the operator's pg_hba.conf is kept when the configuration has none
    assert "scram-sha-256" in open(os.path.join(n1.data_dir, "pg_hba.conf")).read()

    # stopped standalone: started, never re-initialised
    n1.ok("stop", "fast")
    out = n1.ok("adopt")
    assert out["was_running"] is False and out["started"] is True
    assert out["system_identifier"] == before
    assert n1.sql("SELECT count(*) FROM keep") == [(1000,)]
    assert n1.ok("controldata")["system_identifier"] == before
    assert os.stat(n1.data_dir).st_uid == uid


def test_adopt_keeps_the_operators_roles_and_pg_hba(env):
    """Adopting a cluster pgwarden did not make, with no pg_hba lines in the
    configuration (issue 17): the operator's pg_hba.conf stays byte for byte
    through the adoption and later reconfigurations, and a role that exists
    keeps its password (Patroni touches neither); a missing role is created."""
    n1 = env.node("n1")
    n1.cfg["postgresql"].pop("pg_hba")
    # bootstrap.users belong to a new cluster's bootstrap only (as in Patroni)
    n1.cfg["bootstrap"]["users"] = {"app": {"password": "app-secret", "options": ["createdb"]}}
    n1.write_cfg()
    hba = ("# the operator's own file\n"
           "local all all peer\n"
           "host all all 127.0.0.1/32 scram-sha-256\n"
           "host replication replicator 127.0.0.1/32 scram-sha-256\n"
           "host all app 10.9.8.0/24 md5\n")
    standalone(env, n1, f"ALTER ROLE postgres PASSWORD '{SU_PASSWORD}';"
               " CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'the-operators-own';", hba=hba)

    def secret(role):
        return n1.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))

    before = secret("replicator")
    n1.ok("adopt")
    n1.ok("reload")  # a reconfiguration, as after any change of the file
    assert open(os.path.join(n1.data_dir, "pg_hba.conf")).read() == hba
    assert secret("replicator") == before, "the replication role's password was reset"
    # the rewind role did not exist: created, with the configured password
    assert n1.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'rewinder' AND rolcanlogin") == [(1,)]
    assert n1.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'app'") == [(0,)]


def test_bootstrap_users_not_logged_with_log_statement_all(env):
    """bootstrap.users (Patroni 3's) are created by the bootstrap with their
    attributes (LOGIN added unless NOLOGIN is given) and password, and no
    password reaches PostgreSQL's log even with log_statement = all: a SET
    at the head of the SQL would come too late (PostgreSQL logs the whole
    query text before it runs it), so the session starts with it."""
    app_pw = "app-Secret-42"
    n1 = env.node("n1")
    n1.cfg["postgresql"]["parameters"]["log_statement"] = "all"
    n1.cfg["bootstrap"]["users"] = {
        "app": {"password": app_pw, "options": ["CreateDB", "connection limit 3"]},
        "batch": {"options": ["nologin"]},
    }
    n1.write_cfg()
    n1.ok("bootstrap")
    rows = n1.sql("SELECT rolname, rolcreatedb, rolcanlogin, rolconnlimit FROM pg_roles "
                  "WHERE rolname IN ('app', 'batch') ORDER BY 1")
    assert rows == [("app", True, True, 3), ("batch", False, False, -1)]
    n1.connect(user="app", password=app_pw).close()
    with open(n1.data_dir + ".startup.log", errors="replace") as f:
        log = f.read()
    assert "statement: " in log, "log_statement = all is not in effect: the check proves nothing"
    for pw in (app_pw, SU_PASSWORD, REPL_PASSWORD, REWIND_PASSWORD):
        assert pw not in log, f"a password is in PostgreSQL's log: {pw}"


@pytest.mark.parametrize("fork", ["apart", "same point"])
def test_one_timeline_number_over_two_histories(env, fork):
    """Two standbys of one primary both promoted, at different points, each
    to timeline 2 (as when a candidate is killed after its promotion and
    before it could confirm it, and the next candidate promotes too). The
    one that rejoins the other must be rewound: by number alone the two
    timelines look the same, and it could never stream again (seen once in
    test_raft_leader_killed_mid_failover). pg_rewind cannot do it either (it
    sees one timeline and rewinds nothing): the node is re-cloned when
    remove_data_directory_on_diverged_timelines allows it (its data moved
    aside), else it needs a reinit, saying why."""
    n1, n2, n3 = env.node("n1"), env.node("n2"), env.node("n3")
    n1.ok("bootstrap")
    n1.ok("slots", "n1,n2,n3")
    n1.sql("CREATE TABLE t(x int); INSERT INTO t VALUES (1)")
    n2.ok("clone", "127.0.0.1", n1.port)
    n3.ok("clone", "127.0.0.1", n1.port)
    for n in (n2, n3):
        wait_for(lambda: n.sql("SELECT count(*) FROM t") == [(1,)], 30, what=f"{n.name} replicating")
    if fork == "same point":
        n1.ok("stop", "fast")  # both replayed all there is: they fork at one point
    n2.ok("promote")  # timeline 2 forks here
    if fork == "apart":
        n1.sql("INSERT INTO t VALUES (2)")
        wait_for(lambda: n3.sql("SELECT count(*) FROM t") == [(2,)], 30, what="n3 replaying row 2")
    n3.ok("promote")  # timeline 2 again: past row 2, or from the very same point
    assert n2.ok("controldata")["timeline"] == 2 and n3.ok("controldata")["timeline"] == 2
    n3.sql("INSERT INTO t VALUES (3)")
    if fork == "apart":
        n1.ok("stop", "immediate")
    n3.ok("stop", "fast")
    out = n3.ok("rewind-check", "127.0.0.1", n2.port)
    assert out["verdict"] == "impossible" and "two histories under one number" in out["reason"], out
    print(f"\n[{fork}] {out['reason']}")
    n2.ok("slots", "n2,n3")
    rc, out, _ = n3.tool("rejoin", "127.0.0.1", n2.port)
    assert out.get("needs_reinit") is True and "two histories" in out.get("reason", ""), out
    n3.cfg["postgresql"]["remove_data_directory_on_diverged_timelines"] = True
    n3.write_cfg()
    out = n3.ok("rejoin", "127.0.0.1", n2.port)
    assert out["recloned"] is True and out["moved_to"], out
    n2.sql("INSERT INTO t VALUES (4)")
    wait_for(lambda: n3.sql("SELECT array_agg(x ORDER BY x) FROM t") == [([1, 4],)], 30,
             what="n3 streaming from n2 with n2's history only")
