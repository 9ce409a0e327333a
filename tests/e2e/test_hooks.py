"""Operator hooks end to end on 127.0.0.1 (issue 11, items 1-2):
postgresql.callbacks, pre_promote and before_stop.

Every data node runs the same small scripts, given the node's name as their
first argument: the callbacks append "<time> <node> <action> <role> <scope>"
to one events file (pgwarden adds <action> <role> <scope>), before_stop
appends "<time> <node> before_stop", pre_promote appends "<time> <node>
pre_promote" and fails with exit 3 while a file fail-<node> exists. The
tests read that file to see which hook ran where, in which order."""
import os
import signal
import time

import pytest

from pgw_harness import http, managed_clusters, signal_pids, start_prober, wait_for

CALLBACKS = ("on_start", "on_stop", "on_restart", "on_reload", "on_role_change")


@pytest.fixture
def make_cluster(request):
    yield from managed_clusters(request)


class Hooks:
    """The scripts and their events file, in a directory the postgres user owns."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.dir = os.path.join(cluster.dir, "hooks")
        os.makedirs(self.dir)
        cluster.chown(self.dir)
        os.chmod(self.dir, 0o755)
        self.events_path = os.path.join(self.dir, "events.log")
        self._write("events.log", "", 0o644)
        self.callback = self._write("callback.sh",
                                    f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {self.events_path}\n')
        self.pre_promote = self._write(
            "pre_promote.sh",
            f'#!/bin/sh\necho "$(date +%s.%N) $1 pre_promote" >> {self.events_path}\n'
            f'if [ -e {self.dir}/fail-$1 ]; then echo "refusing: fail-$1 exists" >&2; exit 3; fi\n'
            'exit 0\n')
        for n in cluster.data_nodes():
            n.extra = {"postgresql": {
                "callbacks": {a: f"{self.callback} {n.name}" for a in CALLBACKS},
                "pre_promote": f"{self.pre_promote} {n.name}",
                "before_stop": f"{self.callback} {n.name} before_stop",
            }}

    def _write(self, name, text, mode=0o755):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        self.cluster.chown(path)
        os.chmod(path, mode)
        return path

    def fail(self, node, on=True):
        path = os.path.join(self.dir, f"fail-{node.name}")
        if on:
            self._write(f"fail-{node.name}", "", 0o644)
        elif os.path.exists(path):
            os.unlink(path)

    def events(self, node=None, action=None, role=None, after=0.0):
        """[(time, node, action, role, scope)] in file order, filtered."""
        out = []
        with open(self.events_path) as f:
            for line in f:
                w = line.split()
                if len(w) < 3:
                    continue
                ev = (float(w[0]), w[1], w[2], w[3] if len(w) > 3 else None,
                      w[4] if len(w) > 4 else None)
                if ((node is None or ev[1] == node.name) and (action is None or ev[2] == action)
                        and (role is None or ev[3] == role) and ev[0] >= after):
                    out.append(ev)
        return out

    def wait(self, node, action, role=None, after=0.0, timeout=60):
        return wait_for(lambda: self.events(node, action, role, after), timeout, interval=0.1,
                        what=f"{node.name}: {action} {role or ''} after {after:.1f} "
                             f"(events: {self.events(after=after)})")[0]


def test_callbacks_follow_the_roles(make_cluster):
    """on_start at startup; on a switchover and a failover on_role_change
    primary on the new primary (after its pre_promote) and, on the old one,
    before_stop, on_stop primary and on_role_change replica when it comes
    back; on_restart and on_reload; before_stop and on_stop replica when a
    replica's pgwarden is stopped."""
    c = make_cluster(n=3, start=False)
    hooks = Hooks(c)
    c.start()
    p = c.wait_healthy(timeout=90)
    scope = c.scope
    ev = hooks.wait(p, "on_start", "primary")
    assert ev[4] == scope, ev
    replicas = [n for n in c.nodes if n is not p]
    for r in replicas:
        hooks.wait(r, "on_start", "replica")
    assert hooks.events(action="on_role_change") == []
    assert hooks.events(action="pre_promote") == []  # founding the cluster is no promotion
    prober = start_prober(c)

    # switchover p -> cand
    cand = replicas[0]
    t_sw = time.time()
    status, body = http(p.api + "/switchover", "POST", {"leader": p.name, "candidate": cand.name},
                        timeout=70)
    assert status == 200, (status, body)
    assert c.wait_healthy(timeout=60) is cand
    pre = hooks.wait(cand, "pre_promote", after=t_sw)
    promoted = hooks.wait(cand, "on_role_change", "primary", after=t_sw)
    assert pre[0] <= promoted[0], (pre, promoted)
    bstop = hooks.wait(p, "before_stop", after=t_sw)
    stopped = hooks.wait(p, "on_stop", "primary", after=t_sw)
    assert bstop[0] <= stopped[0], (bstop, stopped)
    demoted = hooks.wait(p, "on_role_change", "replica", after=t_sw)
    assert stopped[0] <= demoted[0]
    assert hooks.events(p, "on_start", after=t_sw) == []  # its role changed: no on_start
    assert hooks.events(replicas[1], "on_role_change", after=t_sw) == []

    # failover: the new primary's node dies; another replica is promoted
    t_fo = time.time()
    cand.kill_all()
    new = c.wait_primary(timeout=30, exclude=cand)
    pre = hooks.wait(new, "pre_promote", after=t_fo)
    promoted = hooks.wait(new, "on_role_change", "primary", after=t_fo)
    assert pre[0] <= promoted[0]
    # the old primary comes back (as systemd would restart it): a replica now
    t_back = time.time()
    cand.start()
    hooks.wait(cand, "on_role_change", "replica", after=t_back, timeout=90)
    c.wait_healthy(timeout=90)
    assert prober.stop() == [], "two primaries in one round"

    # restart and reload
    r = next(n for n in c.nodes if n is not new)
    t_op = time.time()
    status, body = http(r.api + "/restart", "POST", {}, timeout=70)
    assert status == 200, (status, body)
    hooks.wait(r, "on_restart", "replica", after=t_op)
    hooks.wait(r, "before_stop", after=t_op)
    assert hooks.events(r, "on_stop", after=t_op) == []  # a restart is not a stop
    status, body = http(new.api + "/config", "PATCH",
                        {"postgresql": {"parameters": {"work_mem": "5MB"}}})
    assert status == 200, (status, body)
    hooks.wait(new, "on_reload", "primary", after=t_op)
    for n in c.nodes:
        if n is not new:
            hooks.wait(n, "on_reload", "replica", after=t_op)

    # a replica's pgwarden stops: PostgreSQL is stopped, before_stop first
    t_stop = time.time()
    assert r.stop(timeout=60) == 0
    bstop = hooks.wait(r, "before_stop", after=t_stop)
    stopped = hooks.wait(r, "on_stop", "replica", after=t_stop)
    assert bstop[0] <= stopped[0]
    assert "[hooks] on_stop: exited with 0" in r.log()
    # every callback got the scope as its last argument
    assert all(e[4] == scope for e in hooks.events() if e[2] in CALLBACKS), hooks.events()


def test_pre_promote_failure_hands_the_role_on(make_cluster):
    """A switchover to a member whose pre_promote fails: it does not promote,
    it gives the role back with the reason, and another member becomes the
    primary; never two primaries, never the refusing one."""
    c = make_cluster(n=3, start=False)
    hooks = Hooks(c)
    c.start()
    p = c.wait_healthy(timeout=90)
    x = next(n for n in c.nodes if n is not p)
    hooks.fail(x)
    prober = start_prober(c, recording=True)
    t0 = time.time()
    # the switchover itself may be reported as failed: its candidate refused
    http(p.api + "/switchover", "POST", {"leader": p.name, "candidate": x.name}, timeout=70)
    refused = hooks.wait(x, "pre_promote", after=t0)
    new = wait_for(lambda: (lambda q: q if q is not None and q is not x else None)(c.primary()),
                   60, what="a primary other than the refusing member")
    hooks.wait(new, "on_role_change", "primary", after=t0)
    assert "pre_promote failed: exit 3" in x.log()
    assert "refusing: fail-" + x.name in x.log()  # its stderr reached our log
    assert hooks.events(x, "on_role_change", "primary") == []
    assert prober.stop() == [], "two primaries in one round"
    assert x.name not in prober.seen, f"{x.name} answered 200 on /primary"
    c.wait_healthy(timeout=90)
    print(f"\n{x.name} refused at +{refused[0] - t0:.2f}s; {new.name} primary")


def test_pre_promote_back_off(make_cluster):
    """The only member that may be promoted refuses: it is not chosen again
    for ttl after each refusal, /cluster says why, nothing is promoted
    meanwhile; once its pre_promote succeeds it is promoted."""
    c = make_cluster(n=3, start=False, node_opts={"n3": {"tags": {"nofailover": True}}})
    hooks = Hooks(c)
    c.start()
    p = c.wait_healthy(timeout=90)
    assert p.name != "n3"
    x = c.node("n2" if p.name == "n1" else "n1")
    ttl = float(http(x.api + "/config")[1]["ttl"])
    hooks.fail(x)
    prober = start_prober(c, recording=True)
    t0 = time.time()
    p.kill_all()
    wait_for(lambda: len(hooks.events(x, "pre_promote", after=t0)) >= 3, 12 * ttl + 20,
             what=f"three refusals by {x.name}")
    # asked of a node that does not lead Raft: it has no controller state of
    # its own, so what it says comes from the replicated refusal
    leader = c.raft_leader()
    viewer = next(n for n in (x, c.node("n3")) if n.name != leader)

    def backoff_reason():
        view = c.cluster_view(viewer)
        why = next((m.get("not_candidate_reason") or "" for m in (view or {}).get("members", [])
                    if m["name"] == x.name), "")
        return why if "pre_promote refused" in why and c.raft_leader() == leader else None
    reason = wait_for(backoff_reason, 4 * ttl, interval=0.05,
                      what=f"the back-off shown in /cluster on {viewer.name} (leader {leader})")
    tries = [e[0] for e in hooks.events(x, "pre_promote", after=t0)]
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    # each refusal is judged from when it was applied, a little after the
    # script started; 0.2 s covers the script's own run and the apply
    assert all(g >= ttl - 0.2 for g in gaps), (ttl, gaps)
    assert c.primaries() == [], "promoted while its only candidate refused"
    hooks.fail(x, on=False)
    new = c.wait_primary(timeout=6 * ttl + 10)
    assert new is x
    hooks.wait(x, "on_role_change", "primary", after=t0)
    assert prober.stop() == [], "two primaries in one round"
    print(f"\nttl {ttl}s; {x.name} refused {len(gaps) + 1} times, gaps "
          f"{', '.join(f'{g:.2f}' for g in gaps)}s; /cluster on {viewer.name} said {reason!r}")


def test_fenced_primary_gets_on_stop(make_cluster):
    """The primary loses its quorum (both other pgwardens frozen): its lease
    runs out, it fences PostgreSQL itself, and on_stop primary runs for that
    stop as for any other. After SIGCONT the cluster heals."""
    c = make_cluster(n=3, start=False)
    hooks = Hooks(c)
    c.start()
    p = c.wait_healthy(timeout=90)
    others = [n.pgwarden_pid() for n in c.nodes if n is not p]
    t0 = time.time()
    signal_pids(others, signal.SIGSTOP)
    try:
        ev = hooks.wait(p, "on_stop", "primary", after=t0, timeout=30)
        assert "FENCING" in p.log()
        assert hooks.events(p, "before_stop", after=t0) == []  # a fence waits for nothing
    finally:
        signal_pids(others, signal.SIGCONT)
    print(f"\non_stop primary on the fenced {p.name} {ev[0] - t0:.2f}s after quorum was lost")
    c.wait_healthy(timeout=90)


def test_keeper_fence_gets_on_stop(make_cluster):
    """Only the primary's pgwarden is frozen: its fence keeper kills
    PostgreSQL when the lease runs out. After SIGCONT pgwarden learns the
    keeper did it, says FENCING, and on_stop primary runs for that stop as
    for its own fence; PostgreSQL then starts again (as the primary when no
    failover happened meanwhile, else as a replica)."""
    c = make_cluster(n=3, start=False)
    hooks = Hooks(c)
    c.start()
    p = c.wait_healthy(timeout=90)
    pid = p.pgwarden_pid()
    t0 = time.time()
    signal_pids([pid], signal.SIGSTOP)
    try:
        wait_for(lambda: "pgwarden did not fence: killed every process of PostgreSQL" in p.log(), 30,
                 what=f"{p.name}: the fence keeper killing PostgreSQL")
        assert hooks.events(p, "on_stop", after=t0) == []  # nothing ran while frozen
    finally:
        signal_pids([pid], signal.SIGCONT)
    ev = hooks.wait(p, "on_stop", "primary", after=t0, timeout=30)
    assert "FENCING: the fence keeper killed PostgreSQL" in p.log()
    print(f"\non_stop primary on {p.name} {ev[0] - t0:.2f}s after its pgwarden was frozen")
    c.wait_healthy(timeout=90)
    hooks.wait(p, "on_start", after=ev[0], timeout=60)
