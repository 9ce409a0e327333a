"""Fencing against busy sessions (issue 15, item 1), end to end on 127.0.0.1.

A fence must stop every session of the old primary in the middle of its
work: a long INSERT ... SELECT, a COPY being fed, a pipelined stream of
INSERTs. PostgreSQL's children each call setsid(), so killing the
postmaster's process group kills the postmaster alone, and a busy backend
only notices its postmaster's death the next time it waits for its client.

The bound, measured from the client: with T the send time of the old
primary's last confirmed renewal (before the fault), its fence deadline is
T + ttl - retry_timeout and the keeper acts KEEPER_GRACE (0.1 s) later. No
commit may be acknowledged after freeze + ttl - retry_timeout + 0.1 s + SLACK
(the keeper's 20 ms tick, its kill and the client's read, on a loaded
machine), and none at all once the new primary serves."""
import signal
import time

import pytest

from busy import create_busy_tables, start_busy_writers
from pgw_harness import (FencingViolation, instance_pids, managed_clusters, node_timeline,
                         process_tree, served_after, signal_pids, start_prober, wait_for,
                         watch_rejoin)

TTL, RETRY = 2.0, 0.75
KEEPER_GRACE = 0.1
SLACK = 0.3


@pytest.fixture
def make_cluster(request):
    yield from managed_clusters(request)


def conninfo(node):
    from pgw_harness import SU_PASSWORD
    return (f"host=127.0.0.1 port={node.pg_port} user=postgres password={SU_PASSWORD} "
            "dbname=postgres connect_timeout=5")


def settle(writers, t_fault, t_new):
    """Give any surviving backend time to show itself, well past the lease:
    at least 2 s after the new primary served, and while a session still
    runs, up to 15 s after the fault (a long statement then gets to commit)."""
    time.sleep(max(0.0, max(t_new + 2.0, t_fault + TTL + 3.0) - time.monotonic()))
    wait_for(lambda: all(w.ended for w in writers) or time.monotonic() > t_fault + 15, 20,
             interval=0.1, what="busy sessions ending")


def summary(acks, t0):
    """'' for none, else how many and when the first and last came."""
    if not acks:
        return ""
    return f"{len(acks)} from {acks[0][0] - t0:+.2f}s to {acks[-1][0] - t0:+.2f}s"


def pipeline_missing(writer, t, node):
    """The pipeline session's commits acknowledged after t that node lacks
    (its k-th acknowledgement is the row with v = k: one INSERT per
    transaction, answered in order)."""
    vs = [k + 1 for k, (ta, _) in enumerate(writer.acks) if ta > t]
    if not vs:
        return []
    present = {r[0] for r in node.query("SELECT v FROM busy_pipe WHERE v = ANY(%s)", (vs,))}
    return [v for v in vs if v not in present]


def check_writers(writers, t_fault, t_new, label, durable_on=None):
    """Fails (FencingViolation) when a busy session had a commit acknowledged
    after the fence deadline or after the new primary served.

    durable_on (synchronous replication): a pipelined commit whose WAL the
    synchronous standby flushed before the freeze may be acknowledged when
    the old primary thaws (the standby's reply sat unread in its socket):
    such a commit is in the promoted standby's history. Those late
    acknowledgements pass if every one of their rows is on durable_on (the
    new primary); a single one missing is a lost write."""
    limit = t_fault + TTL - RETRY + KEEPER_GRACE + SLACK
    report = [w.describe(t_fault) for w in writers]
    print(f"\n[{label}] new primary served {t_new - t_fault:+.2f}s after the fault; " +
          "; ".join(report))
    if durable_on is not None:
        pipe = [w for w in writers if w.mode == "pipeline"]
        for w in pipe:
            first = min(limit, t_new)
            missing = pipeline_missing(w, first, durable_on)
            late = len(w.acks_after(first))
            print(f"[{label}] pipeline: {late} commits acknowledged late, {len(missing)} of them "
                  f"missing on {durable_on.name}")
            if missing:
                raise FencingViolation(f"{label}: {len(missing)} pipelined commits acknowledged "
                                       f"after the fence deadline are not on the new primary "
                                       f"{durable_on.name}: v = {missing[:20]}")
        writers = [w for w in writers if w not in pipe]
    late = {w.mode: summary(w.acks_after(limit), t_fault) for w in writers}
    after_new = {w.mode: len(w.acks_after(t_new)) for w in writers}
    if any(late.values()) or any(after_new.values()):
        raise FencingViolation(
            f"{label}: commits acknowledged after the fence deadline (+{limit - t_fault:.2f}s): "
            f"{late}; after the new primary served: {after_new}")
    for w in writers:
        assert w.mode != "pipeline" or any(t_fault - 0.5 <= t <= t_fault for t, _ in w.acks), \
            f"the pipeline was not committing when the fault came: {w.describe(t_fault)}"
        assert w.ended is not None and w.ended[0] == "err", \
            f"{w.mode} session was not cut by the fence: {w.describe(t_fault)}"


MODES_ALL = ("long-insert", "copy", "pipeline")


def freeze_pgwarden_under_load(c, old, prober, modes, label):
    """Busy sessions on old, then its pgwarden alone frozen until a new
    primary served and the sessions had time to show what survived; checks
    them (check_writers) and that no process of the instance is left.
    Returns the new primary."""
    writers = start_busy_writers(conninfo(old), modes=modes)
    time.sleep(1.0)  # mid-statement, mid-COPY, pipeline flowing
    t0 = time.monotonic()
    pid = old.pgwarden_pid()
    signal_pids([pid], signal.SIGSTOP)
    new = c.wait_primary(timeout=30, exclude=old)
    t_new = t0 + served_after(prober, new, t0)
    settle(writers, t0, t_new)
    left = instance_pids(old.data_dir)
    signal_pids([pid], signal.SIGCONT)
    for w in writers:
        w.stop()
    check_writers(writers, t0, t_new, label)
    assert left == [], f"processes of the fenced instance still running: {left}"
    return new


def test_frozen_pgwarden_stops_busy_sessions(make_cluster):
    """Only pgwarden is frozen on the primary; its fence keeper must kill
    every process of the instance, busy backends included."""
    c = make_cluster(n=3)
    old = c.wait_healthy(timeout=90)
    create_busy_tables(old.query)
    prober = start_prober(c, recording=True)
    new = freeze_pgwarden_under_load(c, old, prober, MODES_ALL, "pgwarden frozen")
    rejoin, answers_200 = watch_rejoin(old, want_timeline=node_timeline(new), timeout=90)
    assert answers_200 == [], f"{old.name} answered 200 on /primary after SIGCONT: {answers_200}"
    assert prober.stop() == [], "two primaries in one round"


def test_failed_second_start_keeps_the_fence(make_cluster):
    """Issue 15, item 3: a second `pgwarden run` on the same configuration
    refuses before it touches the fence, and the live daemon's keeper still
    fences when the live daemon is then frozen."""
    c = make_cluster(n=3)
    old = c.wait_healthy(timeout=90)
    create_busy_tables(old.query)
    import subprocess
    env = dict(c.sanitizer_env())
    r = subprocess.run([c.binary, "run", "-c", old.cfg_path], user="postgres", group="postgres",
                       extra_groups=[], cwd=old.dir, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, f"a second pgwarden on {old.cfg_path} exited {r.returncode}"
    out = r.stdout + r.stderr
    assert "already running" in out, f"no clear refusal from the second instance: {out[-2000:]}"
    prober = start_prober(c, recording=True)
    freeze_pgwarden_under_load(c, old, prober, ("pipeline",),
                               "pgwarden frozen after a refused second start")
    wait_for(lambda: old.is_streaming_replica(), 90, what=f"{old.name} rejoining")
    assert prober.stop() == [], "two primaries in one round"


def freeze_node(node):
    """SIGSTOP every process of the node: pgwarden and its children (the
    fence keeper among them, though in a session of its own) and every
    PostgreSQL process."""
    return signal_pids(sorted(set(process_tree(node.pgwarden_pid()) +
                                  instance_pids(node.data_dir))), signal.SIGSTOP)


def keeper_pids(node):
    """The fence keeper: a child of pgwarden in a session of its own, named
    pgwarden-keeper."""
    out = []
    for pid in process_tree(node.pgwarden_pid()):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "pgwarden-keeper":
                    out.append(pid)
        except OSError:
            continue
    return out


def test_frozen_node_in_sync_mode_acks_nothing_after_thaw(make_cluster):
    """The whole primary node frozen (as a hypervisor pause would), a new
    primary serving, then the node thawed with PostgreSQL first and the
    fence keeper last (the worst order): in synchronous mode no commit the
    old primary acknowledges after the freeze's fence deadline is lost. A
    commit waits for a synchronous standby that now follows someone else;
    only one whose WAL the standby flushed before the freeze (its reply sat
    unread in the old primary's socket) can be acknowledged at the thaw, and
    it is in the promoted standby's history: every such row must be on the
    new primary (seen once in 10 clean runs: 1 pipelined commit, present).
    (Without synchronous replication nothing on a thawed node can stop a
    commit it had in flight from completing first: docs/architecture.md, the
    timing argument.)"""
    c = make_cluster(n=3, dcs={"synchronous_mode": True})
    old = c.wait_healthy(timeout=90)
    wait_for(lambda: any(m["role"] == "sync_standby"
                         for m in (c.cluster_view(old) or {}).get("members", [])),
             30, what="a synchronous standby")
    create_busy_tables(old.query)
    prober = start_prober(c, recording=True)
    writers = start_busy_writers(conninfo(old))
    time.sleep(1.0)
    t0 = time.monotonic()
    keeper = keeper_pids(old)
    assert keeper, "no fence keeper found"
    pids = freeze_node(old)
    new = c.wait_primary(timeout=30, exclude=old)
    t_new = t0 + served_after(prober, new, t0)
    new.query("CREATE TABLE IF NOT EXISTS after_thaw (id int)")
    t_thaw = time.monotonic()
    pg = [p for p in pids if p not in keeper and p != old.pgwarden_pid()]
    signal_pids(pg, signal.SIGCONT)
    signal_pids([old.pgwarden_pid()], signal.SIGCONT)
    signal_pids(keeper, signal.SIGCONT)
    settle(writers, t0, t_new)
    left = instance_pids(old.data_dir)
    for w in writers:
        w.stop()
    print(f"\n[whole node frozen, sync mode] thawed {t_thaw - t0:+.2f}s after the freeze; "
          f"processes of the old instance left: {left}")
    check_writers(writers, t0, t_new, "whole node frozen, synchronous mode", durable_on=new)
    wait_for(lambda: old.is_streaming_replica(), 90, what=f"{old.name} rejoining")
    assert prober.stop() == [], "two primaries in one round"


def test_fence_when_the_status_query_fails(make_cluster):
    """Issue 15, item 6: pgwarden fences whatever PostgreSQL may be writing
    without a valid lease, not only what its monitor sees as a running
    primary. The monitor's role (postgres) can no longer log in, so the
    primary's status is unknown; then the primary loses its Raft majority
    (both other pgwardens frozen). pgwarden itself must fence at its
    deadline (not leave it to the keeper), every process of the instance
    gone, no busy session acknowledged past the deadline."""
    c = make_cluster(n=3)
    p = c.wait_healthy(timeout=90)
    create_busy_tables(p.query)
    p.query("CREATE ROLE busy LOGIN PASSWORD 'busy-Secret'")
    p.query("GRANT ALL ON ALL TABLES IN SCHEMA public TO busy")
    p.query("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO busy")
    conn = p.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER ROLE postgres NOLOGIN")
            # the monitor's open session goes; it cannot log in again
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        "usename = 'postgres' AND backend_type = 'client backend' AND "
                        "pid <> pg_backend_pid()")
    finally:
        conn.close()
    wait_for(lambda: (p.view("/patroni") or {}).get("state") not in (None, "running"), 15,
             what=f"{p.name}'s status query failing")
    writers = start_busy_writers(
        f"host=127.0.0.1 port={p.pg_port} user=busy password=busy-Secret dbname=postgres "
        "connect_timeout=5")
    time.sleep(1.0)
    others = [n.pgwarden_pid() for n in c.data_nodes() if n is not p]
    t0 = time.monotonic()
    signal_pids(others, signal.SIGSTOP)
    try:
        wait_for(lambda: "FENCING" in p.log(), TTL + 5, interval=0.05,
                 what=f"{p.name} fencing itself")
        t_fence = time.monotonic()
        time.sleep(2.0)
        left = instance_pids(p.data_dir)
    finally:
        signal_pids(others, signal.SIGCONT)
    for w in writers:
        w.stop()
    log = p.log()
    print(f"\n[status query failing, majority lost] FENCING {t_fence - t0:+.2f}s after the "
          f"majority was lost; " + "; ".join(w.describe(t0) for w in writers))
    assert left == [], f"processes of the fenced instance still running: {left}"
    assert "pgwarden did not fence" not in log, "the keeper had to fence: pgwarden did not"
    limit = t0 + TTL - RETRY + KEEPER_GRACE + SLACK
    late = {w.mode: summary(w.acks_after(limit), t0) for w in writers}
    assert not any(late.values()), f"commits acknowledged after the fence deadline: {late}"


def test_pipeline_missing_finds_a_lost_commit():
    """The durability check above can fail: a late acknowledgement whose row
    is not on the new primary is reported (no cluster needed)."""
    import types
    w = types.SimpleNamespace(acks=[(1.0, 1), (2.0, 1), (3.0, 1), (4.0, 1)])
    node = types.SimpleNamespace(query=lambda sql, args: [(3,)])
    assert pipeline_missing(w, 2.5, node) == [4]
    assert pipeline_missing(w, 5.0, node) == []
    node_all = types.SimpleNamespace(query=lambda sql, args: [(3,), (4,)])
    assert pipeline_missing(w, 2.5, node_all) == []
