"""Process faults on the primary, end to end on 127.0.0.1 (issue 5, item 9):
a frozen node, a frozen pgwarden, a crashed and a hung postmaster, pause
mode and a graceful stop. Every test runs the Prober (never two nodes
answering 200 on /primary in one round) and, where data matters, the Writer
ledger. Timings use the default dynamic configuration (ttl 2 s, loop_wait
0.5 s, retry_timeout 0.75 s)."""
import signal
import time

import pytest

from pgw_harness import (FencingViolation, hold_no_promotion, http, managed_clusters,
                         node_timeline, served_after, signal_pids, start_prober, start_session,
                         start_writer, wait_for, watch_rejoin)

TTL = 2.0


@pytest.fixture
def make_cluster(request):
    yield from managed_clusters(request)


def writes_resumed_on(writer, node, after, timeout=15):
    wait_for(lambda: any(t > after and n == node.name for _, t, n in writer.acked), timeout,
             what=f"writes resuming on {node.name}")
    return min(t for _, t, n in writer.acked if t > after and n == node.name) - after


def test_sigstop_whole_primary_node(make_cluster):
    """Scenario 1: the whole primary node (pgwarden, its fence keeper, the
    postmaster and every backend) is frozen; once a new primary is up it is
    thawed: it never answers 200 again before it has become a replica."""
    c = make_cluster(n=3)
    old = c.wait_healthy(timeout=90)
    prober = start_prober(c, recording=True)
    writer = start_writer(c)
    time.sleep(1.5)
    t0 = time.monotonic()
    pids = old.stop_all()
    new = c.wait_primary(timeout=30, exclude=old)
    took = served_after(prober, new, t0)
    gap = writes_resumed_on(writer, new, t0)
    t_cont = time.monotonic()
    signal_pids(pids, signal.SIGCONT)
    rejoin, answers_200 = watch_rejoin(old, want_timeline=node_timeline(new), timeout=90)
    assert answers_200 == [], f"{old.name} answered 200 on /primary after SIGCONT: {answers_200}"
    assert c.wait_healthy(timeout=60) is new
    assert old.query("SELECT pg_is_in_recovery()")[0][0] is True
    writer.stop()
    assert prober.stop() == [], "two primaries in one round"
    print(f"\n[scenario 1] new primary {new.name} {took:.2f}s after SIGSTOP, first write there "
          f"after {gap:.2f}s; thawed node streaming {rejoin:.2f}s after SIGCONT "
          f"({time.monotonic() - t_cont:.2f}s to healthy); lost {len(writer.lost(new))} acked commits")
    assert took < 10


def test_sigstop_pgwarden_only_fences_old_sessions(make_cluster):
    """Scenario 2: only pgwarden is frozen on the primary; PostgreSQL keeps
    running. A session opened before the fault must stop committing within
    the lease (ttl + 1 s of margin), before a new primary serves; after
    SIGCONT the old node rejoins as a replica."""
    c = make_cluster(n=3)
    old = c.wait_healthy(timeout=90)
    prober = start_prober(c, recording=True)
    sess = start_session(old, interval=0.05)
    wait_for(lambda: len(sess.ok) >= 5, 5, what="the session committing")
    pid = old.pgwarden_pid()
    t0 = time.monotonic()
    signal_pids([pid], signal.SIGSTOP)
    new = c.wait_primary(timeout=30, exclude=old)
    took = served_after(prober, new, t0)
    t_new = t0 + served_after(prober, new, t0, end=True)  # surely serving by then
    # let the session show whether it can still commit, well past the lease
    time.sleep(max(0.0, max(t_new + 1.0, t0 + TTL + 3.0) - time.monotonic()))
    last = sess.last_ok()
    signal_pids([pid], signal.SIGCONT)
    rejoin, answers_200 = watch_rejoin(old, want_timeline=node_timeline(new), timeout=90)
    sess.stop()
    assert answers_200 == [], f"{old.name} answered 200 on /primary after SIGCONT: {answers_200}"
    assert c.wait_healthy(timeout=60) is new
    assert prober.stop() == [], "two primaries in one round"
    after_new = [t for t in sess.ok if t >= t_new]
    first_err = sess.errors[0] if sess.errors else None
    print(f"\n[scenario 2] new primary {new.name} {took:.2f}s after SIGSTOP of pgwarden; "
          f"old session's last commit {last - t0:+.2f}s after the SIGSTOP "
          f"({len(after_new)} commits after the new primary served); first error: "
          f"{(round(first_err[0] - t0, 2), first_err[1]) if first_err else None}; "
          f"old node streaming {rejoin:.2f}s after SIGCONT")
    if last - t0 > TTL + 1.0 or after_new:
        raise FencingViolation(
            f"a session opened on {old.name} before pgwarden was stopped committed "
            f"{last - t0:.2f}s after the SIGSTOP (limit ttl + 1 s = {TTL + 1.0}s); "
            f"{len(after_new)} of its commits came after {new.name} was already primary")


def test_postmaster_crash_restarts_in_place(make_cluster):
    """Scenario 3: kill -9 of the postmaster only, pgwarden alive: PostgreSQL
    is restarted in place, no failover (same member and epoch), writes resume
    and nothing acknowledged is lost."""
    c = make_cluster(n=3)
    p = c.wait_healthy(timeout=90)
    before = c.primary_record()
    assert before[0] == p.name and before[2] == "running", before
    prober = start_prober(c, recording=True)
    writer = start_writer(c)
    time.sleep(1.5)
    pid = p.kill_postmaster(signal.SIGKILL)
    assert pid
    t0 = time.monotonic()
    wait_for(lambda: p.postmaster_pid() not in (None, pid) and p.status("/primary") == 200, 30,
             what=f"{p.name} restarted in place and answering 200")
    back = time.monotonic() - t0
    gap = writes_resumed_on(writer, p, t0)
    time.sleep(1)
    after = c.primary_record()
    writer.stop()
    assert prober.stop() == [], "two primaries in one round"
    assert after[:2] == before[:2] and after[2] == "running", \
        f"failover happened: primary record {before} -> {after}"
    assert set(prober.seen) == {p.name}, f"other nodes answered 200: {prober.seen}"
    for r in c.nodes:
        if r is not p:
            assert r.query("SELECT pg_is_in_recovery()")[0][0] is True, f"{r.name} was promoted"
    lost = writer.lost(p)
    assert lost == [], f"a restart in place lost acknowledged commits: {lost}"
    print(f"\n[scenario 3] postmaster restarted in place, /primary 200 again after {back:.2f}s, "
          f"writes after {gap:.2f}s; record {after}")


HUNG_REASON = (
    "pgwarden bug: a hung primary is 'fenced' with SIGQUIT to its postmaster only "
    "(ha/agent.c fence_now, called from act_release_hung), which a stopped postmaster never "
    "acts on and which does not reach the backends, and the role is released at once "
    "(PRIMARY_RELEASE), so the controller promotes a replica without any lease wait "
    "(ha/controller.c: state NONE) while sessions opened on the old primary still commit")


def test_hung_postmaster_fails_over(make_cluster):
    """Scenario 4: the postmaster is frozen (SIGSTOP) and kept frozen: a
    replica takes over within a bounded time; once thawed, the old instance
    rejoins as a replica. A session opened on the old primary before the
    fault must not commit once the new primary serves (invariant 2)."""
    c = make_cluster(n=3)
    old = c.wait_healthy(timeout=90)
    prober = start_prober(c, recording=True)
    writer = start_writer(c)
    sess = start_session(old, interval=0.05)
    time.sleep(1.5)
    pm = old.postmaster_pid()
    t0 = time.monotonic()
    signal_pids([pm], signal.SIGSTOP)
    try:
        new = c.wait_primary(timeout=30, exclude=old)
        took = served_after(prober, new, t0)
        t_new = t0 + served_after(prober, new, t0, end=True)  # surely serving by then
        gap = writes_resumed_on(writer, new, t0)
        # /primary answers 200 once PostgreSQL is promoted under the lease; the
        # record says "running" after the agent reports it, a moment later
        deadline = time.monotonic() + 5
        rec = c.primary_record()
        while rec[2] != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            rec = c.primary_record()
        assert rec[0] == new.name and rec[2] == "running", rec
        # keep the postmaster frozen a while: the old sessions must be cut
        time.sleep(max(0.0, t_new + 2.0 - time.monotonic()))
    finally:
        signal_pids([pm], signal.SIGCONT)
    t_cont = time.monotonic()
    assert c.wait_healthy(timeout=120) is new
    assert old.query("SELECT pg_is_in_recovery()")[0][0] is True
    sess.stop()
    writer.stop()
    assert prober.stop() == [], "two primaries in one round"
    late = [t for t in sess.ok if t >= t_new]
    print(f"\n[scenario 4] hung postmaster: new primary {new.name} after {took:.2f}s, writes "
          f"after {gap:.2f}s; old node healthy replica {time.monotonic() - t_cont:.2f}s after "
          f"SIGCONT; lost {len(writer.lost(new))} acked commits; old session's last commit "
          f"{sess.last_ok() - t0:+.2f}s after the SIGSTOP, {len(late)} after the new primary served")
    # detection (probe deadline retry_timeout) + 2 * retry_timeout of certainty
    # + release + promotion: a few seconds (Patroni never detects it)
    assert took < 10
    if late:
        raise FencingViolation(
            f"a session opened on {old.name} before its postmaster hung committed {len(late)} "
            f"times after {new.name} was primary (last {sess.last_ok() - t_new:.2f}s after)")


def test_pause_mode_holds(make_cluster):
    """Scenario 10: in pause mode a dead postmaster is neither restarted nor
    replaced for 2 * ttl + 3 s; resuming heals the cluster."""
    c = make_cluster(n=3)
    p = c.wait_healthy(timeout=90)
    prober = start_prober(c)
    status, body = http(p.api + "/config", "PATCH", {"pause": True})
    assert status == 200 and body.get("pause") is True, (status, body)
    wait_for(lambda: all((n.view("/patroni") or {}).get("pause") for n in c.nodes), 10,
             what="every node in pause mode")
    before = c.primary_record()
    pid = p.kill_postmaster(signal.SIGKILL)
    assert pid
    t0 = time.monotonic()
    hold_no_promotion(c, before, 2 * TTL + 3, old=p)
    assert not p.postmaster_alive(), "PostgreSQL was restarted in pause mode"
    for r in c.nodes:
        if r is not p:
            assert r.query("SELECT pg_is_in_recovery()")[0][0] is True, f"{r.name} was promoted"
    assert c.primary_record()[:2] == before[:2]
    status, body = http(p.api + "/config", "PATCH", {"pause": None})
    assert status == 200 and "pause" not in body, (status, body)
    t1 = time.monotonic()
    healed = c.wait_healthy(timeout=60)
    assert prober.stop() == [], "two primaries in one round"
    print(f"\n[scenario 10] held {t1 - t0:.2f}s in pause with the postmaster dead; healed "
          f"{time.monotonic() - t1:.2f}s after resume, primary {healed.name}, record "
          f"{c.primary_record()}")


GRACEFUL_REASON = (
    "pgwarden bug: no handover on SIGTERM. When the primary also leads Raft (the usual case: "
    "the first leader founds the cluster), ha/ha.c step() runs agent_shutdown_step instead of "
    "controller_step, so nobody processes the switchover request; pgwarden waits out its "
    "shutdown deadline (4*ttl+10 s), stops PostgreSQL and releases the role (a crash-style "
    "failover follows). When it does not lead Raft, agent_shutdown_step (ha/agent.c, 'the "
    "controller is on it') reads st->sw.pending before the local FSM has applied the request it "
    "just committed, concludes 'no replica can take over' and stops PostgreSQL at once")


def test_graceful_stop_of_primary_hands_over(make_cluster):
    """Scenario 11: SIGTERM to the primary's pgwarden hands the role over with
    a switchover (nothing acknowledged lost) before PostgreSQL stops; the
    process exits 0."""
    c = make_cluster(n=3)
    old = c.wait_healthy(timeout=90)
    raft_leader = c.raft_leader()
    prober = start_prober(c)
    writer = start_writer(c)
    time.sleep(1.5)
    t0 = time.monotonic()
    rc = old.stop(timeout=60)
    took = time.monotonic() - t0
    rec = c.primary_record()
    print(f"\n[scenario 11] primary {old.name} (Raft leader {raft_leader}): pgwarden exited {rc} "
          f"after {took:.2f}s; primary record then {rec}")
    assert rc == 0, f"pgwarden exited {rc}"
    assert not old.postmaster_alive(), "PostgreSQL still runs after the graceful stop"
    # the handover completes before pgwarden exits: the new primary is
    # assigned and running already (allow the survivors' views a moment)
    wait_for(lambda: (lambda r: r is not None and r[0] != old.name and r[2] == "running")(
        c.primary_record()), 2, what="a new running primary assigned before the old pgwarden exited",
        floor=False)
    assert "switchover: stopped cleanly" in old.log(), "PostgreSQL stopped without a switchover"
    assert "stopping the primary anyway" not in old.log(), "PostgreSQL stopped without a handover"
    # a clean stop is no fence (the monitor's last status may still say primary)
    assert "FENCING" not in old.log(), old.log()[-3000:]
    new = c.wait_primary(timeout=10, exclude=old)
    writes_resumed_on(writer, new, t0)
    time.sleep(0.5)
    writer.stop()
    assert prober.stop() == [], "two primaries in one round"
    lost = writer.lost(new)
    assert lost == [], f"the handover lost acknowledged commits: {lost}"
    gap = writer.max_gap(t0 - 0.5)
    old.start()
    assert c.wait_healthy(timeout=90) is new
    assert old.query("SELECT pg_is_in_recovery()")[0][0] is True
    print(f"[scenario 11] handed over to {new.name}, write gap {gap:.2f}s, 0 lost")


def test_stop_under_probe_load_exits_cleanly(make_cluster):
    """SIGTERM to a replica's pgwarden while clients keep asking its REST API
    (probes, /patroni with a fresh status, a restart request): the API keeps
    answering until it closes, after the HA part is already gone, and the
    process exits 0 (the test build aborts on any sanitizer report)."""
    import http.client
    import threading
    c = make_cluster(n=3)
    p = c.wait_healthy(timeout=90)
    r = next(n for n in c.nodes if n is not p)
    host, port = r.api.split("//")[1].split(":")
    stop = threading.Event()
    answered = [0]

    def hammer(reqs):
        conn = None
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            for method, path in reqs:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(host, int(port), timeout=1)
                    conn.request(method, path)
                    conn.getresponse().read()
                    answered[0] += 1
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.001)
        if conn is not None:
            conn.close()

    mixes = [[("GET", "/primary"), ("GET", "/replica")], [("GET", "/patroni")],
             [("GET", "/cluster"), ("GET", "/metrics")], [("POST", "/restart")]]
    threads = [threading.Thread(target=hammer, args=(m,), daemon=True) for m in mixes]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: answered[0] > 50, 10, what="the clients getting answers")
        rc = r.stop(timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert rc == 0, f"{r.name}: pgwarden exited {rc} under REST load:\n{r.log()[-4000:]}"
