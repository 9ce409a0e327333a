"""Lease timing against the holder's own view (issue 15, items 2 and 4),
end to end on 127.0.0.1.

Item 2: lowering ttl at run time must never shorten a lease the holder (and
its fence keeper) still counts on. With ttl 30 s, loop_wait 10 s and
retry_timeout 10 s, the holder's last renewal T lies at most loop_wait
before a freeze; it fences at T + 20 s (+0.1 s for its keeper). The judge
must wait T + 30 s x 17/16 whatever ttl it is told later.

Item 4: a decision of a controller that stalled (a former Raft leader
frozen for 3 s, then thawed) must not be committed by the next leader when
the holder renewed since."""
import signal
import time

import pytest

from busy import create_busy_tables, start_busy_writers
from pgw_harness import (http, instance_pids, managed_clusters, served_after, signal_pids,
                         start_prober, start_writer, wait_for)
from test_fence_busy import conninfo

SLOW = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}
FAST = {"ttl": 2, "loop_wait": 0.5, "retry_timeout": 0.75}


@pytest.fixture
def make_cluster(request):
    yield from managed_clusters(request)


def test_lowering_ttl_never_shortens_a_held_lease(make_cluster):
    c = make_cluster(n=3, dcs=SLOW)
    old = c.wait_healthy(timeout=120)
    create_busy_tables(old.query)
    prober = start_prober(c, recording=True)
    writers = start_busy_writers(conninfo(old), modes=("pipeline",))
    time.sleep(1.0)
    t0 = time.monotonic()
    pid = old.pgwarden_pid()
    signal_pids([pid], signal.SIGSTOP)
    other = next(n for n in c.data_nodes() if n is not old)
    # the frozen node may lead Raft too: the others elect a new leader first
    # (election timeout 2 s at ttl 30), meanwhile the change is refused
    status, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
        http(other.api + "/config", "PATCH", FAST, timeout=10)), 60, interval=0.5,
        what="the configuration change committed")
    assert body.get("ttl") == 2, (status, body)
    t_patch = time.monotonic()
    # watch until someone else serves: at each look, is the old instance alive?
    alive_when_served = None
    deadline = time.monotonic() + 90
    new = None
    while time.monotonic() < deadline and new is None:
        up = [n for n in c.primaries(timeout=0.5) if n is not old]
        if up:
            new = up[0]
            alive_when_served = instance_pids(old.data_dir)
        time.sleep(0.05)
    assert new is not None, "no new primary within 90 s"
    t_new = t0 + served_after(prober, new, t0)
    time.sleep(2.0)
    signal_pids([pid], signal.SIGCONT)
    for w in writers:
        w.stop()
    print(f"\n[ttl 30 -> 2 during a freeze] config lowered {t_patch - t0:+.2f}s after the freeze, "
          f"new primary {new.name} served {t_new - t0:+.2f}s after it; old instance processes "
          f"when it did: {alive_when_served}; {writers[0].describe(t0)}")
    assert alive_when_served == [], \
        f"{new.name} served while {old.name}'s PostgreSQL still ran: {alive_when_served}"
    # the old lease: last renewal at most loop_wait before the freeze, 30 s x 17/16 judged
    assert t_new - t0 >= 30 * 17 / 16 - 10, \
        f"promoted {t_new - t0:.2f}s after the freeze: before the old lease could have run out"
    after_new = writers[0].acks_after(t_new)
    assert after_new == [], f"{len(after_new)} commits acknowledged on {old.name} after {new.name} served"
    assert prober.stop() == [], "two primaries in one round"


def test_stalled_former_leader_cannot_assign(make_cluster):
    """Freeze the Raft leader's pgwarden (a node that is not the primary) for
    3 s, four times, under writes: the primary keeps its role and epoch, no
    round has two nodes answering 200, nothing acknowledged is lost."""
    c = make_cluster(n=3)
    primary = c.wait_healthy(timeout=90)
    prober = start_prober(c)
    writer = start_writer(c)
    record = c.primary_record()
    frozen_rounds = 0
    fenced = 0
    # a switchover leaves the Raft leader on a replica (leadership does not
    # follow the primary role), so rounds alternate at worst: freeze, switch;
    # ten rounds give at least four freezes whatever Raft elects in between
    for _ in range(10):
        if frozen_rounds >= 4:
            break
        leader = wait_for(c.raft_leader, 20, what="a Raft leader")
        if leader == primary.name:
            # move the primary away: the Raft leader then is a replica
            target = next(n for n in c.data_nodes() if n.name != leader)
            status, body = http(primary.api + "/switchover", "POST",
                                {"leader": primary.name, "candidate": target.name}, timeout=30)
            assert status == 200, (status, body)
            primary = wait_for(lambda: c.primary() if c.primary() is target else None, 60,
                               what=f"{target.name} primary after the switchover")
            c.wait_healthy(timeout=90)
            record = c.primary_record()
            continue
        node = c.node(leader)
        pid = node.pgwarden_pid()
        fences_before = primary.log().count("FENCING")
        signal_pids([pid], signal.SIGSTOP)
        time.sleep(3.0)
        signal_pids([pid], signal.SIGCONT)
        frozen_rounds += 1
        time.sleep(2.0)
        # the primary's renewals were waiting on the frozen leader: they go to
        # the new leader as soon as it is elected, so the primary never
        # fences itself (before: it did in most rounds)
        fenced += primary.log().count("FENCING") - fences_before
        rec = c.primary_record()
        assert rec[:2] == record[:2], f"the primary record moved from {record} to {rec} after " \
                                      f"{leader} (Raft leader, not primary) was frozen and thawed"
    writer.stop()
    assert frozen_rounds >= 3, f"only {frozen_rounds} rounds froze a leader that was not primary"
    assert prober.stop() == [], "two primaries in one round"
    final = c.wait_healthy(timeout=60)
    lost = writer.lost(final)
    # how often a thawed leader's decision actually reached the FSM and was
    # refused: the race is milliseconds wide on one machine, so usually 0
    # (the refusal itself is unit-tested: test_fsm.c, stale decisions)
    refused = sum(n.log().count("has renewed") for n in c.nodes)
    print(f"\n[stalled former leader] {frozen_rounds} freezes of a Raft leader that was not primary; "
          f"primary {final.name} kept epoch {record[1]}; stale assignments refused: {refused}; "
          f"{len(writer.acked)} commits acknowledged, {len(lost)} lost; the primary fenced "
          f"itself {fenced} time(s)")
    assert lost == [], f"acknowledged commits lost: {lost[:20]}"
    # 0 in every run here since renewals follow a new leader at once (2 of 4
    # rounds fenced before); one is tolerated for a slow election on a loaded
    # CI machine
    assert fenced <= 1, f"the primary fenced itself in {fenced} of {frozen_rounds} rounds: its " \
                        "renewals waited on the frozen Raft leader instead of the new one"
