"""Replica sources and slots (issue 11 items 3, 4, 6), end to end on 127.0.0.1:

- a replica created by a custom create_replica_methods entry (a script
  standing in for a backup tool: it copies a base backup the test prepared
  with pg_basebackup) streams afterwards; a failing first method falls back
  to basebackup;
- permanent physical and logical slots exist on the primary and survive a
  switchover; ignore_slots protects a slot, any other unknown slot is dropped;
  PATCH /config with slots applies without a restart;
- a replica that is down (pgwarden and PostgreSQL) longer than ttl keeps its
  slot on the primary (restart_lsn held while WAL moves on) and catches up
  through it; with a tiny member_slots_ttl the slot is dropped;
- a custom bootstrap.method (restoring a prepared base backup, then its
  recovery_conf until it promotes) plus post_bootstrap (writing a marker
  table through the connection string it is given) creates the cluster;
- a failing bootstrap method runs once per node and never loops."""
import glob
import os
import shutil
import subprocess
import time

import pytest

from pgw_harness import (PGBIN, REPL_PASSWORD, free_ports, http, managed_clusters, wait_for,
                         write_wal)


@pytest.fixture
def make(request):
    yield from managed_clusters(request)


def as_postgres(cluster, args, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(args, user="postgres", group="postgres", extra_groups=[], env=e,
                       capture_output=True, text=True, timeout=timeout, cwd=cluster.dir)
    assert r.returncode == 0, f"{args[0]} failed ({r.returncode}): {r.stdout}\n{r.stderr}"
    return r.stdout


def script(cluster, name, body):
    """An executable script the postgres user can run, in the scratch dir."""
    d = os.path.join(cluster.dir, "scripts")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write("#!/bin/bash\nset -u\n" + body)
    os.chmod(path, 0o755)
    return path


# the argument parsing every stand-in tool shares
ARGS = """for a in "$@"; do case "$a" in --datadir=*) d="${a#--datadir=}";; --from=*) src="${a#--from=}";; esac; done
"""


def base_backup(cluster, node, dest):
    as_postgres(cluster, [f"{PGBIN}/pg_basebackup", "-D", dest, "-h", "127.0.0.1",
                          "-p", str(node.pg_port), "-U", "replicator", "-X", "stream",
                          "-c", "fast"], env={"PGPASSWORD": REPL_PASSWORD})


def slots(node):
    return {name: (typ, plugin, restart is not None) for name, typ, plugin, restart in node.query(
        "SELECT slot_name, slot_type, plugin, restart_lsn FROM pg_replication_slots "
        "WHERE NOT temporary")}


def read(path):
    with open(path) as f:
        return f.read()


def test_custom_replica_method_then_fallback(make):
    c = make(start=False, n=3)
    n1, n2, n3 = c.nodes
    prepared = os.path.join(c.dir, "prepared")
    args_file = os.path.join(c.dir, "fakerestore.args")
    broken_file = os.path.join(c.dir, "broken.runs")
    fake = script(c, "fakerestore.sh", ARGS + f"""
{{ echo "$@"; echo "PGPASSFILE=${{PGPASSFILE:-}}"; }} > {args_file}
echo "fakerestore: copying the base backup from $src"
mkdir -p "$d" && cp -a "$src"/. "$d"/ && chmod 700 "$d"
""")
    broken = script(c, "broken.sh", ARGS + f"""
echo run >> {broken_file}
mkdir -p "$d" && echo junk > "$d/junk"
echo "broken: no backup found in the repository" >&2
exit 3
""")
    # n1 and n2 form the cluster (2 of 3 Raft voters); n3 joins later
    n1.start()
    n2.start()
    p = c.wait_healthy(replicas=1, timeout=90)
    p.query("CREATE TABLE before_backup AS SELECT 1 AS x")
    base_backup(c, p, prepared)
    p.query("CREATE TABLE after_backup AS SELECT 2 AS x")

    n3.extra = {"postgresql": {
        "create_replica_methods": ["fakerestore", "basebackup"],
        "fakerestore": {"command": f"{fake} --from={prepared}", "extra_opt": "x1", "timeout": "5min"},
    }}
    t0 = time.monotonic()
    n3.start()
    wait_for(n3.is_streaming_replica, 60, what="n3 streaming after the custom method")
    took = time.monotonic() - t0
    assert "replica created in %s by fakerestore" % n3.data_dir in n3.log()
    assert "fakerestore: fakerestore: copying the base backup" in n3.log()  # output in our log
    # it streams: what was written after the backup arrives
    wait_for(lambda: n3.query("SELECT to_regclass('after_backup') IS NOT NULL")[0][0], 30,
             what="rows written after the backup")
    got = read(args_file)
    argv, env = got.splitlines()
    assert "--extra_opt=x1" in argv and "--role=replica" in argv, argv
    assert f"--scope={c.scope}" in argv and f"--datadir={n3.data_dir}" in argv, argv
    assert "--connstring=" in argv and "user='replicator'" in argv, argv
    assert "password" not in argv and REPL_PASSWORD not in argv, argv
    assert env.startswith("PGPASSFILE=/"), env
    print(f"custom replica method: n3 streaming {took:.1f}s after its start")

    # a failing first method: the next one (basebackup) creates the replica
    n3.kill_all()
    shutil.rmtree(n3.data_dir)
    n3.extra = {"postgresql": {
        "create_replica_methods": ["broken", "basebackup"],
        "broken": {"command": broken},
    }}
    n3.start()
    wait_for(n3.is_streaming_replica, 60, what="n3 streaming after the fallback")
    after = n3.log().split("starting: member n3")[-1]  # this run only
    assert "broken: broken: no backup found in the repository" in after, after[-3000:]
    assert "replica method broken failed: broken exited with code 3" in after, after[-3000:]
    assert "replica created in %s by basebackup" % n3.data_dir in after, after[-3000:]
    assert read(broken_file).count("run") == 1
    assert not os.path.exists(os.path.join(n3.data_dir, "junk"))


def test_no_leader_method_restores_without_a_primary(make):
    """n1 is the only data node (n2 a witness) and dies; n3 joins with no data.
    Right after its start n3 may still count n1's lease as valid (it judges
    it from when it applied the last renewal) and run its methods with n1 as
    the source: the stand-in refuses that (it only restores when no primary
    runs). Once the lease expired and no primary ran for 3 * ttl, only the
    no_leader method runs, without a source."""
    c = make(start=False, n=3, witnesses=("n2",))
    n1, n2, n3 = c.nodes
    prepared = os.path.join(c.dir, "prepared")
    args_file = os.path.join(c.dir, "walrestore.args")
    fake = script(c, "walrestore.sh", ARGS + f"""
echo "$@" >> {args_file}
for a in "$@"; do case "$a" in --connstring=?*) echo "walrestore: a primary runs, not restoring" >&2; exit 2;; esac; done
mkdir -p "$d" && cp -a "$src"/. "$d"/
""")
    n1.start()
    n2.start()
    p = c.wait_healthy(replicas=0, timeout=90)
    assert p is n1
    p.query("CREATE TABLE in_backup AS SELECT 3 AS x")
    base_backup(c, p, prepared)
    n1.kill_all()
    n3.extra = {"postgresql": {
        "create_replica_methods": ["walrestore"],
        "walrestore": {"command": f"{fake} --from={prepared}", "no_leader": True},
    }}
    t0 = time.monotonic()
    n3.start()
    # restored, then a candidate like any replica: the controller promotes it
    # (it lags the dead primary's last position by less than
    # maximum_lag_on_failover), so the cluster is back
    assert c.wait_primary(timeout=60) is n3
    took = time.monotonic() - t0
    log = n3.log()
    assert "no data and no running primary" in log and "by walrestore" in log, log[-3000:]
    runs = read(args_file).splitlines()
    # how many refused tries with n1 as the source came first depends on
    # when n3 caught up relative to n1's lease (none if it had expired
    # already); the run that restored had no source
    assert runs and runs[-1].endswith("--connstring="), runs
    assert all("--connstring=host=" in r for r in runs[:-1]), runs
    assert n3.query("SELECT x FROM in_backup")[0][0] == 3
    print(f"no_leader restore: n3 primary {took:.1f}s after its start")


def test_permanent_slots_switchover_and_member_retention(make):
    dcs = {
        "slots": {"perm_phys": {"type": "physical"},
                  "perm_logical": {"type": "logical", "database": "postgres", "plugin": "pgoutput"}},
        "ignore_slots": [{"name": "ext_keep"}],
        "postgresql": {"parameters": {"wal_level": "logical", "wal_keep_size": "0"}},
    }
    c = make(n=3, dcs=dcs)
    p = c.wait_healthy(timeout=90)
    others = [n for n in c.nodes if n is not p]
    wait_for(lambda: {"perm_phys", "perm_logical", others[0].name, others[1].name} <= set(slots(p)),
             30, what="member and permanent slots on the primary")
    s = slots(p)
    assert s["perm_phys"][0] == "physical" and s["perm_phys"][2] is True  # reserves WAL
    assert s["perm_logical"][:2] == ("logical", "pgoutput")
    for r in others:
        # physical permanent slots on replicas too, without pinning WAL there;
        # logical ones on the primary only (PostgreSQL 15)
        wait_for(lambda: "perm_phys" in slots(r), 30, what=f"perm_phys on {r.name}")
        rs = slots(r)
        assert rs["perm_phys"][2] is False and "perm_logical" not in rs, rs

    # PATCH /config with slots applies at once; an ignored slot stays, an
    # unknown one is dropped
    p.query("SELECT pg_create_physical_replication_slot('ext_keep')")
    p.query("SELECT pg_create_physical_replication_slot('ext_drop')")
    status, body = http(p.api + "/config", "PATCH", {"slots": {"perm_late": {"type": "physical"}}})
    assert status == 200, body
    wait_for(lambda: "perm_late" in slots(p) and "ext_drop" not in slots(p), 20,
             what="perm_late created and ext_drop dropped")
    assert "ext_keep" in slots(p) and "perm_logical" in slots(p)

    # switchover: the permanent slots exist on the new primary
    cand = others[0]
    status, body = http(p.api + "/switchover", "POST", {"leader": p.name, "candidate": cand.name},
                        timeout=70)
    assert status == 200, (status, body)
    new = c.wait_healthy(timeout=60)
    assert new is cand
    wait_for(lambda: {"perm_phys", "perm_logical", "perm_late", p.name, others[1].name}
             <= set(slots(new)), 30, what="permanent and member slots on the new primary")
    assert slots(new)["perm_logical"][:2] == ("logical", "pgoutput")
    # the old primary is a replica now: its logical slot goes (it would pin
    # WAL on a standby), the physical one stays
    wait_for(lambda: "perm_logical" not in slots(p), 45, what="perm_logical dropped on the old primary")
    assert "perm_phys" in slots(p)

    # a replica down (pgwarden and PostgreSQL) longer than ttl keeps its
    # slot: WAL is held for it
    r = others[1]
    assert r.stop() == 0
    assert not r.postmaster_alive(), "pgwarden's shutdown leaves PostgreSQL stopped"
    time.sleep(1)
    (held,) = new.query("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                        (r.name,))[0]
    assert held is not None
    t_down = time.monotonic()
    for _ in range(3):
        write_wal(new, 8)
        new.query("SELECT pg_switch_wal()")
        new.query("CHECKPOINT")
    time.sleep(max(0.0, 7 - (time.monotonic() - t_down)))  # > 3 * ttl: Patroni < 4 dropped it by now
    rows = new.query("SELECT restart_lsn::text, pg_current_wal_lsn() - restart_lsn, "
                     "pg_walfile_name(restart_lsn) IN (SELECT name FROM pg_ls_waldir()) "
                     "FROM pg_replication_slots WHERE slot_name = %s", (r.name,))
    assert rows, f"the slot of {r.name} was dropped while it was down for {time.monotonic() - t_down:.1f}s"
    lsn, behind, kept = rows[0]
    assert lsn == held and behind > 16 * 1024 * 1024 and kept, rows
    n_rows = new.query("SELECT count(*) FROM walfill")[0][0]
    r.start()
    wait_for(r.is_streaming_replica, 60, what=f"{r.name} streaming again")
    wait_for(lambda: r.query("SELECT count(*) FROM walfill")[0][0] == n_rows, 30,
             what=f"{r.name} caught up through its slot")
    after = r.log().split(f"starting: member {r.name}")[-1]
    assert "requested WAL segment" not in after and "pg_rewind:" not in after, after[-3000:]
    wait_for(lambda: new.query("SELECT restart_lsn > %s::pg_lsn FROM pg_replication_slots "
                               "WHERE slot_name = %s", (held, r.name))[0][0], 20,
             what="the slot advancing again")

    # member_slots_ttl: with a tiny one the slot of a down member goes
    status, body = http(new.api + "/config", "PATCH", {"member_slots_ttl": 1})
    assert status == 200, body
    r.kill_all()
    t_down = time.monotonic()
    wait_for(lambda: r.name not in slots(new), 30, what=f"the slot of {r.name} dropped")
    gone_after = time.monotonic() - t_down
    assert gone_after >= 2.5, f"dropped after {gone_after:.1f}s: before ttl + member_slots_ttl"
    assert p.name in slots(new)  # the live member keeps its slot
    print(f"slot of a down member dropped {gone_after:.1f}s after it stopped (ttl 2 s + 1 s)")


def prepare_source_backup(c, dest):
    """A stand-alone PostgreSQL with a marker table, and a base backup of it
    in dest, as a backup tool would restore it."""
    src = os.path.join(c.dir, "source")
    (port,) = free_ports(1)
    as_postgres(c, [f"{PGBIN}/initdb", "-D", src, "-U", "postgres", "--auth=trust", "-N"])
    as_postgres(c, [f"{PGBIN}/pg_ctl", "start", "-w", "-D", src, "-l", src + ".log", "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -k {c.dir} -c fsync=off"])
    try:
        as_postgres(c, [f"{PGBIN}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
                        "CREATE TABLE restored_marker AS SELECT 7 AS x"])
        as_postgres(c, [f"{PGBIN}/pg_basebackup", "-D", dest, "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", "-X", "stream", "-c", "fast"])
    finally:
        as_postgres(c, [f"{PGBIN}/pg_ctl", "stop", "-m", "fast", "-w", "-D", src])


def test_custom_bootstrap_with_recovery_and_post_bootstrap(make):
    c = make(start=False, n=2)
    prepared = os.path.join(c.dir, "prepared_boot")
    prepare_source_backup(c, prepared)
    runs = os.path.join(c.dir, "restore.runs")
    post_args = os.path.join(c.dir, "post.args")
    restore = script(c, "restore.sh", ARGS + f"""
echo "$@" >> {runs}
mkdir -p "$d" && cp -a "$src"/. "$d"/ && chmod 700 "$d"
""")
    post = script(c, "post.sh", f"""
{{ echo "$1"; echo "PGPASSFILE=${{PGPASSFILE:-}}"; echo "PGOPTIONS=${{PGOPTIONS:-}}"; }} > {post_args}
exec {PGBIN}/psql "$1" -v ON_ERROR_STOP=1 -c "CREATE TABLE post_bootstrap_marker AS SELECT 42 AS answer; CREATE ROLE reporter NOLOGIN"
""")
    for n in c.nodes:
        n.extra = {"bootstrap": {
            "method": "restore",
            "restore": {"command": f"{restore} --from={prepared}",
                        "recovery_conf": {"restore_command": "false", "recovery_target": "immediate",
                                          "recovery_target_action": "promote"}},
            "post_bootstrap": post,
            # after post_bootstrap, as in Patroni: the role post.sh made is
            # altered (before it, post.sh's CREATE ROLE would fail)
            "users": {"reporter": {"password": "reporter-secret", "options": ["login"]}},
        }}
    c.start()
    p = c.wait_healthy(timeout=90)
    assert p.query("SELECT x FROM restored_marker")[0][0] == 7
    assert p.query("SELECT answer FROM post_bootstrap_marker")[0][0] == 42
    assert p.query("SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid "
                   "WHERE rolname = 'reporter'") == [(True, True)]
    # it recovered to the end of the backup and promoted: a new timeline
    assert p.query("SELECT timeline_id FROM pg_control_checkpoint()")[0][0] == 2
    assert "recovery ended" in p.log()
    # the pgwarden configuration took over: our password works, the
    # temporary trust lines are gone
    hba = read(os.path.join(p.data_dir, "pg_hba.conf"))
    assert "custom bootstrap in progress" not in hba and " trust" not in hba.replace("local all all peer", "")
    r = next(n for n in c.nodes if n is not p)
    wait_for(lambda: r.query("SELECT to_regclass('post_bootstrap_marker') IS NOT NULL")[0][0], 30,
             what="the markers replicated")
    assert read(runs).count("--scope=") == 1  # ran once, on the founder only
    conninfo, passfile, options = read(post_args).splitlines()
    assert "user='postgres'" in conninfo and "password" not in conninfo, conninfo
    assert passfile.startswith("PGPASSFILE=/") and "synchronous_commit=local" in options


def test_failing_bootstrap_does_not_loop(make):
    """n1 has a bootstrap method that fails; n2 runs initdb and then a
    post_bootstrap that exits non-zero (PostgreSQL is then running and must be
    stopped first). Each tries once, then nobody tries again."""
    c = make(start=False, n=2)
    n1, n2 = c.nodes
    runs = os.path.join(c.dir, "fail.runs")
    fail = script(c, "fail.sh", ARGS + f"""
echo run >> {runs}
mkdir -p "$d" && echo junk > "$d/junk"
echo "fail: the backup is corrupt" >&2
exit 5
""")
    post_fail = script(c, "post_fail.sh", f"""
echo post >> {runs}
echo "post_fail: cannot create the application roles" >&2
exit 4
""")
    n1.extra = {"bootstrap": {"method": "restore", "restore": {"command": fail}}}
    n2.extra = {"bootstrap": {"post_bootstrap": post_fail}}
    c.start()
    wait_for(lambda: all((n.view("/patroni") or {}).get("state") == "bootstrap failed"
                         for n in c.nodes), 60, what="both nodes reporting bootstrap failed")
    done = read(runs).split()
    assert sorted(done) == ["post", "run"], done
    time.sleep(4)
    assert read(runs).split() == done, "a bootstrap ran again"
    assert c.primaries() == []
    for n in c.nodes:
        log = n.log()
        # the controller does not hand the role back in a loop
        assert log.count("giving up the primary role") <= 3, log[-3000:]
        moved = glob.glob(n.data_dir + ".2*")
        assert len(moved) == 1, moved
        assert not os.path.exists(n.data_dir) or os.listdir(n.data_dir) == []
        assert not n.postmaster_alive()
    assert "restore: fail: the backup is corrupt" in n1.log()  # the tool's output, in our log
    assert os.path.exists(os.path.join(glob.glob(n1.data_dir + ".2*")[0], "junk"))
    assert "post_bootstrap exited with code 4" in n2.log()
    assert "bootstrap failed (post_bootstrap exited with code 4" in n2.log()  # stopped first
    assert os.path.exists(os.path.join(glob.glob(n2.data_dir + ".2*")[0], "PG_VERSION"))
    # the controller says why nothing happens
    wait_for(lambda: "bootstrap failed on 2 member(s)" in ((c.leader_view() or {}).get(
        "controller_note") or ""), 10, what="the controller's note")


def test_unstarted_base_backup_starts_as_standby(make):
    """A replica's data directory is a base backup that never started (a
    clone whose first start failed: a stale socket lock, a crash). Its
    control file says "in production", copied from the primary; single-user
    crash recovery would end recovery with a checkpoint the primary never
    wrote, and the copy could not stream. pgwarden starts it as a standby
    instead, and it streams."""
    c = make(n=3)
    p = c.wait_healthy(timeout=90)
    r = next(n for n in c.nodes if n is not p)
    assert r.stop() == 0
    shutil.rmtree(r.data_dir)
    base_backup(c, p, r.data_dir)
    as_postgres(c, ["touch", os.path.join(r.data_dir, "standby.signal")])
    assert os.path.exists(os.path.join(r.data_dir, "backup_label"))
    before = len(r.log())
    r.start()
    # no WAL written meanwhile: a copy that ended its recovery has a
    # checkpoint past anything the primary wrote and would not stream
    wait_for(r.is_streaming_replica, 60, what=f"{r.name} streaming from the base backup")
    log = r.log()[before:]
    p.query("CREATE TABLE after_backup (x int)")
    wait_for(lambda: r.query("SELECT to_regclass('after_backup') IS NOT NULL")[0][0], 30,
             what=f"{r.name} replaying what the primary wrote after the backup")
    assert "a base backup that never started" in log, log[-3000:]
    assert "single-user" not in log, log[-3000:]
    c.wait_healthy(timeout=60)


def test_stale_socket_lock_of_a_zombie_is_cleared(make):
    """The Unix socket's lock file names a postmaster that is dead but still
    a zombie (killed, not yet reaped by its adoptive parent): PostgreSQL
    refuses to start ("lock file ... already exists"). pgwarden removes
    that lock and starts again at once instead of failing the start."""
    c = make(n=3)
    p = c.wait_healthy(timeout=90)
    r = next(n for n in c.nodes if n is not p)
    assert r.stop() == 0
    lock = os.path.join(c.dir, f".s.PGSQL.{r.pg_port}.lock")
    assert not os.path.exists(lock)
    # not waited for: a zombie of ours, owned by postgres as a killed
    # postmaster is (PostgreSQL ignores a lock whose pid it may not signal)
    zombie = subprocess.Popen(["true"], user="postgres", group="postgres", extra_groups=[])
    try:
        wait_for(lambda: open(f"/proc/{zombie.pid}/stat").read().split(") ")[1][0] == "Z", 10,
                 what="the child to become a zombie")
        with open(lock, "w") as f:
            f.write(f"{zombie.pid}\n{r.data_dir}\n")
        c.chown(lock)
        before = len(r.log())
        r.start()
        wait_for(r.is_streaming_replica, 60, what=f"{r.name} streaming after the stale lock")
        log = r.log()[before:]
        assert f"removed stale {lock}" in log, log[-3000:]
        assert "pg_ctl start of" not in log, log[-3000:]  # no failed start reported
    finally:
        zombie.wait(5)
