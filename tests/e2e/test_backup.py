"""Backups as a cluster feature (issue 18 item 2), with pgBackRest and a
local (posix) repository shared by three nodes on 127.0.0.1:

- with backup.method pgbackrest the primary creates the stanza and takes a
  full backup at once (none in the repository); archive_command and
  restore_command are pgwarden's; GET /backup, /metrics and `ctl backup`
  show it;
- after a failover the new primary archives (the archive goes on across the
  timeline switch) and takes the next backup on request;
- point-in-time recovery from the repository, row-exact, to a time between
  two known commits before the failover, and to one after it (which needs
  the WAL of both timelines, from a backup taken before the switch);
- a replica rebuilt from the repository (create_replica_methods
  [pgbackrest, basebackup]) streams afterwards."""
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import yaml

from pgw_harness import PGBIN, free_ports, http, managed_clusters, wait_for

PGBACKREST = "/usr/bin/pgbackrest"

pytestmark = pytest.mark.skipif(not os.path.exists(PGBACKREST),
                                reason="pgbackrest not installed (make deps installs it)")


@pytest.fixture
def make(request):
    yield from managed_clusters(request)


def run_pg(cluster, args, timeout=300, check=True):
    r = subprocess.run(args, user="postgres", group="postgres", extra_groups=[],
                       capture_output=True, text=True, timeout=timeout, cwd=cluster.dir)
    if check:
        assert r.returncode == 0, f"{args} failed ({r.returncode}): {r.stdout}\n{r.stderr}"
    return r


def backup_cluster(make, command=None):
    c = make(start=False, dcs={"ttl": 4, "loop_wait": 1, "retry_timeout": 1})
    repo = os.path.join(c.dir, "repo")
    os.makedirs(repo)
    c.chown(repo)
    for n in c.nodes:
        opts = {"repo1-path": repo, "log-path": os.path.join(n.dir, "pgbr-log"),
                "lock-path": os.path.join(n.dir, "pgbr-lock"), "repo1-retention-full": "4",
                "start-fast": "y", "compress-type": "none"}
        for d in ("pgbr-log", "pgbr-lock"):
            os.makedirs(os.path.join(n.dir, d))
            c.chown(os.path.join(n.dir, d))
        conf = os.path.join(n.raft_dir, "pgbackrest.conf")
        n.extra = {
            "backup": {"method": "pgbackrest", "options": opts, "full_interval": 3600,
                       "diff_interval": 0, **({"command": command} if command else {})},
            "postgresql": {
                "create_replica_methods": ["pgbackrest", "basebackup"],
                "pgbackrest": {"command": f"{PGBACKREST} --config={conf} --stanza={c.scope} "
                                          "--delta restore",
                               "keep_data": True, "no_params": True},
            },
        }
    return c.start()


def backup_status(node):
    code, body = http(node.api + "/backup", timeout=5)
    assert code == 200, (code, body)
    return body if isinstance(body, dict) else json.loads(body)


def repo_backups(node):
    st = backup_status(node)
    repo = st.get("repository") or {}
    return repo.get("list") or []


def commit_rows(node, first, last):
    node.query("INSERT INTO ledger SELECT g FROM generate_series(%s, %s) g", (first, last))


def server_time(node):
    return node.query("SELECT clock_timestamp()::text")[0][0]


def switch_and_archive(node):
    """Close the current WAL segment and wait until it is archived."""
    before = node.query("SELECT archived_count FROM pg_stat_archiver")[0][0]
    node.query("SELECT pg_switch_wal()")
    wait_for(lambda: node.query("SELECT archived_count FROM pg_stat_archiver")[0][0] > before,
             60, what=f"{node.name} archives the switched segment")


def pitr_count(cluster, target, tag):
    """Restore the repository to `target` into a fresh directory, start
    PostgreSQL there until recovery ends, and count the rows."""
    conf = os.path.join(cluster.nodes[0].raft_dir, "pgbackrest.conf")
    data = os.path.join(cluster.dir, f"pitr-{tag}")
    sock = os.path.join(cluster.dir, f"pitr-{tag}-sock")
    for d in (data, sock):
        os.makedirs(d)
        cluster.chown(d)
    os.chmod(data, 0o700)
    t0 = time.monotonic()
    run_pg(cluster, [PGBACKREST, f"--config={conf}", f"--stanza={cluster.scope}",
                     f"--pg1-path={data}", "--type=time", f"--target={target}",
                     "--target-action=promote", "--target-timeline=latest", "restore"])
    port = free_ports(1)[0]
    with open(os.path.join(data, "postgresql.auto.conf"), "a") as f:
        f.write(f"\nport = {port}\nunix_socket_directories = '{sock}'\narchive_mode = off\n"
                "listen_addresses = ''\nhot_standby = on\n")
    log = os.path.join(cluster.dir, f"pitr-{tag}.log")
    st = run_pg(cluster, [os.path.join(PGBIN, "pg_ctl"), "-D", data, "-l", log, "-w", "-t",
                          "120", "start"], check=False)
    if st.returncode != 0:
        with open(log, errors="replace") as f:
            raise AssertionError(f"PITR {tag}: the restored server did not start:\n"
                                 f"{f.read()[-4000:]}")
    try:
        def promoted():
            r = run_pg(cluster, [os.path.join(PGBIN, "psql"), "-h", sock, "-p", str(port), "-U",
                                 "postgres", "-qAtc", "SELECT pg_is_in_recovery()"], check=False)
            return r.returncode == 0 and r.stdout.strip() == "f"
        def promoted_or_dead():
            if promoted():
                return True
            st = run_pg(cluster, [os.path.join(PGBIN, "pg_ctl"), "-D", data, "status"],
                        check=False)
            if st.returncode != 0:  # recovery failed and the server exited
                raise AssertionError("server exited")
            return False
        try:
            wait_for(promoted_or_dead, 120, what=f"PITR {tag} ends recovery")
        except AssertionError:
            with open(log, errors="replace") as f:
                raise AssertionError(f"PITR {tag}: recovery did not end:\n{f.read()[-4000:]}")
        r = run_pg(cluster, [os.path.join(PGBIN, "psql"), "-h", sock, "-p", str(port), "-U",
                             "postgres", "-qAtc",
                             "SELECT count(*), coalesce(min(id), 0), coalesce(max(id), 0) "
                             "FROM ledger"])
        count, lo, hi = (int(x) for x in r.stdout.strip().split("|"))
    finally:
        run_pg(cluster, [os.path.join(PGBIN, "pg_ctl"), "-D", data, "-m", "immediate", "-w",
                         "stop"], check=False)
    print(f"PITR {tag} to {target}: {count} rows ({lo}..{hi}) in {time.monotonic() - t0:.1f} s")
    return count, lo, hi


def test_backup_failover_pitr_and_replica_from_repository(make):
    c = backup_cluster(make)
    p = c.wait_primary(timeout=90)
    c.wait_healthy(timeout=120)

    # the stanza and a first full backup, taken by the primary alone
    wait_for(lambda: any(b["type"] == "full" for b in repo_backups(p)), 240,
             what="a first full backup in the repository")
    logs = {n.name: n.log() for n in c.nodes}
    starters = [name for name, text in logs.items() if "starting a full backup" in text]
    assert starters == [p.name], f"full backups started on {starters}, primary is {p.name}"
    assert "the repository holds no full backup" in logs[p.name]
    ac = p.query("SHOW archive_command")[0][0]
    assert "archive-push" in ac and "pgbackrest.conf" in ac, ac
    assert p.query("SHOW archive_mode")[0][0] == "on"
    replica = next(n for n in c.nodes if n is not p)
    assert "archive-get" in replica.query("SHOW restore_command")[0][0]
    code, metrics = http(p.api + "/metrics", timeout=5)
    assert code == 200
    assert "pgwarden_backup_last_full_age_seconds{" in metrics, metrics
    assert "pgwarden_archive_archived_total{" in metrics

    # commits A, a point in time, commits B; both archived
    p.query("CREATE TABLE ledger (id int PRIMARY KEY)")
    commit_rows(p, 1, 100)
    time.sleep(1.1)
    t_between = server_time(p)
    time.sleep(1.1)
    commit_rows(p, 101, 200)
    switch_and_archive(p)
    for n in c.nodes:
        if n is not p:
            wait_for(lambda n=n: n.query("SELECT count(*) FROM ledger")[0][0] == 200, 30,
                     what=f"{n.name} replays B")

    # failover: the primary's node dies
    old = p
    old.kill()
    old.kill_postmaster()
    p = c.wait_primary(timeout=60, exclude=[old.name])
    commit_rows(p, 201, 300)
    time.sleep(1.1)
    t_after = server_time(p)
    time.sleep(1.1)
    commit_rows(p, 301, 400)  # recovery to t_after stops at the first commit past it
    switch_and_archive(p)

    # a backup on request from the new primary, through ctl
    r = subprocess.run([c.binary, "ctl", "--endpoint", p.api, "backup", "--type", "diff",
                        "--wait", "--timeout", "300"], capture_output=True, text=True, timeout=320)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "diff backup done" in r.stdout
    # every node has it in the replicated state, with pgBackRest's label
    other = next(n for n in c.nodes if n is not p and n is not old)
    rec = wait_for(lambda: [b for b in backup_status(other)["recorded"]
                            if b["type"] == "diff" and b["ok"] and b["member"] == p.name], 30,
                   what=f"the diff backup recorded, seen from {other.name}")
    assert rec[-1]["label"].endswith("D"), rec
    assert any(b["type"] == "full" and b["ok"] and b["member"] == old.name
               for b in backup_status(other)["recorded"])
    r = subprocess.run([c.binary, "ctl", "--endpoint", p.api, "backup", "list"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    assert " full " in r.stdout and " diff " in r.stdout, r.stdout

    # the repository is consistent across the timeline switch
    conf = os.path.join(p.raft_dir, "pgbackrest.conf")
    chk = run_pg(c, [PGBACKREST, f"--config={conf}", f"--stanza={c.scope}", "check"],
                 check=False)
    assert chk.returncode == 0, chk.stdout + chk.stderr

    # PITR, row-exact: between A and B (before the failover), and after the
    # failover from the full backup taken on the first timeline
    assert pitr_count(c, t_between, "between") == (100, 1, 100)
    assert pitr_count(c, t_after, "after") == (300, 1, 300)

    # a new cluster at t_between, written by ctl restore, founded by one node
    c2 = make(start=False, n=1)
    n = c2.nodes[0]
    opts = {"repo1-path": os.path.join(c.dir, "repo"), "log-path": os.path.join(n.dir),
            "lock-path": os.path.join(n.dir), "start-fast": "y", "compress-type": "none",
            "repo1-retention-full": "4"}
    n.extra = {"backup": {"method": "pgbackrest", "options": opts, "diff_interval": 0}}
    n.write_config()
    gen = os.path.join(n.dir, "restored.yml")
    r = subprocess.run([c2.binary, "ctl", "-c", n.cfg_path, "restore", "--target-time", t_between,
                        "--from-stanza", c.scope, "-o", gen], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)
    print(r.stderr)
    with open(gen) as f:
        boot = yaml.safe_load(f)["bootstrap"]
    assert boot["method"] == "pgbackrest_restore", boot
    n.extra["bootstrap"] = boot
    c2.start()
    p2 = c2.wait_primary(timeout=180)
    rows = p2.query("SELECT count(*), min(id), max(id) FROM ledger")[0]
    print(f"new cluster restored to {t_between}: {rows}")
    assert tuple(rows) == (100, 1, 100)
    def auto_conf(node):
        with open(os.path.join(node.data_dir, "postgresql.auto.conf")) as f:
            return f.read()
    # removed when the bootstrap ends (its last step writes the final configuration)
    wait_for(lambda: "restore_command" not in auto_conf(n) and "recovery_target" not in
             auto_conf(n), 60, what="pgBackRest's recovery settings removed from auto.conf")
    wait_for(lambda: any(b["type"] == "full" for b in repo_backups(p2)), 240,
             what="the new cluster's first full backup, in its own stanza")
    assert backup_status(p2)["stanza"] == c2.scope

    # a replica rebuilt from the repository
    rep = next(n for n in c.nodes if n is not p and n is not old)
    r = subprocess.run([c.binary, "ctl", "--endpoint", p.api, "reinit", rep.name, "--force",
                        "--wait"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout, r.stderr)
    wait_for(lambda: rep.is_streaming_replica(), 120, what=f"{rep.name} streams again")
    with open(os.path.join(rep.data_dir, "postgresql.auto.conf")) as f:
        auto = f.read()
    assert "restore_command" not in auto, f"pgBackRest's settings left in auto.conf: {auto}"
    tail = rep.log()
    assert f"replica created in {rep.data_dir} by pgbackrest" in tail, tail[-3000:]
    wait_for(lambda: rep.query("SELECT count(*) FROM ledger")[0][0] == 400, 60,
             what=f"{rep.name} has every row")


def test_archive_has_no_gap_across_a_failover(make):
    """Segments the old primary completed but never archived (its archiver
    stuck, then the node died) are on the new primary, received by
    streaming; it pushes them, so a recovery through them works."""
    c = backup_cluster(make)
    p = c.wait_primary(timeout=90)
    c.wait_healthy(timeout=120)
    wait_for(lambda: any(b["type"] == "full" for b in repo_backups(p)), 240,
             what="a first full backup in the repository")
    p.query("CREATE TABLE ledger (id int PRIMARY KEY)")
    switch_and_archive(p)
    pid = p.pg_process("archiver")
    assert pid, "no archiver process found"
    os.kill(pid, signal.SIGSTOP)
    commit_rows(p, 1, 100)
    time.sleep(1.1)
    t_mid = server_time(p)
    time.sleep(1.1)
    commit_rows(p, 101, 200)
    for _ in range(3):
        p.query("SELECT pg_switch_wal()")
        commit_rows(p, 1000 + _, 1000 + _)
    for n in c.nodes:
        if n is not p:
            wait_for(lambda n=n: n.query("SELECT count(*) FROM ledger")[0][0] == 203, 30,
                     what=f"{n.name} replays everything")
    ready = [f for f in os.listdir(os.path.join(p.data_dir, "pg_wal", "archive_status"))
             if f.endswith(".ready")]
    assert len(ready) >= 3, f"the old primary should hold unarchived segments: {ready}"
    old = p
    old.kill_all()
    p = c.wait_primary(timeout=60, exclude=[old.name])
    wait_for(lambda: "pushed" in p.log() and "to the archive" in p.log(), 60,
             what=f"{p.name} pushes the previous timeline's segments")
    print("".join(l + "\n" for l in p.log().splitlines() if "[backup] pushed" in l))
    commit_rows(p, 2000, 2099)
    switch_and_archive(p)
    assert pitr_count(c, t_mid, "gap") == (100, 1, 100)


def backup_proc(node):
    """pid of the `pgbackrest ... backup` pgwarden runs on this node."""
    pw = node.pgwarden_pid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pw and argv and argv[0].endswith(b"pgbackrest") and b"backup" in argv:
            return int(pid)
    return None


def test_backup_interrupted_by_a_switchover_and_failing(make):
    """A backup running when its node stops being primary is stopped; the new
    primary takes backups. A backup that fails is reported as failed (ctl
    exits 1 with pgBackRest's error, GET /backup, the failure counter) and
    the schedule retries later."""
    c = backup_cluster(make)
    p = c.wait_primary(timeout=90)
    c.wait_healthy(timeout=120)
    wait_for(lambda: any(b["type"] == "full" for b in repo_backups(p)), 240,
             what="a first full backup in the repository")
    wait_for(lambda: backup_status(p)["running"] is None, 60, what="the first backup reported")

    # a backup frozen mid-way, then a switchover away from its node
    r = subprocess.run([c.binary, "ctl", "--endpoint", p.api, "backup", "--type", "full"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)
    pid = wait_for(lambda: backup_proc(p), 30, what="pgbackrest backup running")
    os.kill(pid, signal.SIGSTOP)
    cand = next(n for n in c.nodes if n is not p)
    code, body = http(p.api + "/switchover", "POST", {"leader": p.name, "candidate": cand.name},
                      timeout=70)
    assert code == 200, (code, body)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30,
             what="the old primary stops its pgbackrest")
    assert "no longer the primary: stopping pgbackrest backup" in p.log()
    st = wait_for(lambda: (lambda s: s if s["last"] is not None else None)(backup_status(p)), 30,
                  what="the stopped backup reported")
    assert st["last"]["ok"] is False and "no longer the primary" in st["last"]["result"], st
    assert st["failures"] == 0, "a backup stopped by a switchover is not a failure"
    new = c.wait_primary(timeout=60)
    assert new is cand
    r = subprocess.run([c.binary, "ctl", "--endpoint", new.api, "backup", "--type", "diff",
                        "--wait", "--timeout", "300"], capture_output=True, text=True, timeout=320)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "diff backup done" in r.stdout

    # a repository pgBackRest cannot write to: the backup fails, visibly
    bdir = os.path.join(c.dir, "repo", "backup", c.scope)
    os.chmod(bdir, 0o500)
    try:
        r = subprocess.run([c.binary, "ctl", "--endpoint", new.api, "backup", "--type", "incr",
                            "--wait", "--timeout", "300"], capture_output=True, text=True,
                           timeout=320)
    finally:
        os.chmod(bdir, 0o750)
    print(r.stdout, r.stderr)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "incr backup failed" in r.stdout and "ERROR" in r.stdout, r.stdout
    st = backup_status(new)
    assert st["last"]["ok"] is False and st["failures"] >= 1, st
    code, metrics = http(new.api + "/metrics", timeout=5)
    line = next(ln for ln in metrics.splitlines() if ln.startswith("pgwarden_backup_failures_total{"))
    assert float(line.rsplit(" ", 1)[1]) >= 1, line
    assert "next try in 60 s" in new.log()


def test_stopping_pgwarden_mid_backup_leaves_nothing_running(make):
    """pgwarden stopped cleanly (SIGTERM) while a backup runs: what it
    started for the backup is gone, the program's own children included
    (pgBackRest runs helper processes; a wrapper script its commands). The
    backup program here is a wrapper that, for `backup`, starts a child and
    waits for it; for anything else it is pgbackrest. Before the fix only the
    wrapper was killed and its child lived on."""
    bindir = tempfile.mkdtemp(prefix="pgw-wrap-")
    pw_user = pwd.getpwnam("postgres")
    os.chown(bindir, pw_user.pw_uid, pw_user.pw_gid)
    os.chmod(bindir, 0o755)
    marker = os.path.join(bindir, "backup-child.pid")
    wrapper = os.path.join(bindir, "pgbackrest-wrapper")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                'case " $* " in *" backup "*)\n'
                f"  sleep 3607 & echo $! > {marker}; wait $!; exit 1;;\n"
                "esac\n"
                f'exec {PGBACKREST} "$@"\n')
    os.chmod(wrapper, 0o755)

    def child_pid():
        try:
            with open(marker) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None
    child = None
    try:
        c = backup_cluster(make, command=wrapper)
        p = c.wait_primary(timeout=90)
        child = wait_for(child_pid, 120, what="the backup (the wrapper's child) running on the primary")
        assert os.path.exists(f"/proc/{child}")
        wait_for(lambda: backup_status(p)["running"] is not None, 10, what="GET /backup: running")
        pw = p.proc.pid
        os.kill(pw, signal.SIGTERM)
        p.proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{child}"), \
            f"pgwarden stopped, but the backup's child (pid {child}) still runs"
        print(f"\npgwarden (pid {pw}) stopped mid-backup: the backup's child {child} is gone")
    finally:
        if child is not None and os.path.exists(f"/proc/{child}"):
            os.kill(child, signal.SIGKILL)
        shutil.rmtree(bindir, ignore_errors=True)
