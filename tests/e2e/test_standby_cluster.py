"""Standby cluster (issue 11): cluster B is a standby cluster of cluster A.
Its lease holder is a standby leader replicating from A's primary through a
permanent slot kept on A; B's other data node cascades from it; B answers
200 on /standby-leader (and /leader) there and on /primary nowhere. Rows
written on A reach both B nodes. `ctl promote-cluster` makes B's standby
leader a primary that takes writes while its replica follows it onto the new
timeline; `ctl demote-cluster` then turns B back into a standby cluster of A
(its primary is rewound and follows A again)."""
import os
import subprocess
import time

from pgw_harness import Cluster, wait_for, with_logs


def ctl(cluster, node, *args, timeout=150):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_")}
    env.update(cluster.sanitizer_env())
    p = subprocess.run([cluster.binary, "ctl", f"--endpoint={node.api}", *args],
                       capture_output=True, text=True, env=env, timeout=timeout)
    print(f"$ pgwarden ctl {' '.join(args)} -> {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def count(node, table="dr_t"):
    try:
        rows = node.query(f"SELECT count(*) FROM {table}")
    except Exception:
        return None
    return rows[0][0]


def b_state(b):
    """(standby leader node, [streaming cascading replicas]) of cluster B, or None."""
    leaders = [n for n in b.data_nodes() if n.alive() and n.status("/standby-leader") == 200]
    if len(leaders) != 1:
        return None
    view = b.cluster_view(leaders[0])
    if view is None:
        return None
    roles = {m["name"]: (m["role"], m["state"]) for m in view["members"]}
    if roles.get(leaders[0].name) != ("standby_leader", "running"):
        return None
    reps = [n for n in b.data_nodes() if n is not leaders[0] and
            roles.get(n.name) == ("replica", "streaming")]
    return leaders[0], reps


def test_standby_cluster_follows_then_promotes_then_demotes():
    a = Cluster(n=2, dcs={"slots": {"dr": {"type": "physical"}}})
    b = None
    try:
        a.start()
        pa = a.wait_healthy(timeout=120)
        pa.query("CREATE TABLE dr_t (x int)")
        pa.query("INSERT INTO dr_t SELECT generate_series(1, 50)")
        wait_for(lambda: ("dr",) in pa.query("SELECT slot_name FROM pg_replication_slots"), 20,
                 what="permanent slot dr on A's primary")

        b = Cluster(n=3, witnesses=("n3",),
                    dcs={"standby_cluster": {"host": "127.0.0.1", "port": pa.pg_port,
                                             "primary_slot_name": "dr"}})
        b.start()
        leader, reps = wait_for(lambda: (lambda s: s if s and len(s[1]) == 1 else None)(b_state(b)),
                                150, 0.5, "a standby leader and a cascading replica in B")
        rep = reps[0]
        for n in b.data_nodes():
            assert n.status("/primary") == 503, n.name
            assert n.query("SELECT pg_is_in_recovery()")[0][0] is True
        assert leader.status("/leader") == 200 and rep.status("/leader") == 503
        assert rep.status("/replica") == 200 and leader.status("/replica") == 503
        # the standby leader streams from A through the slot; the replica from the leader
        wait_for(lambda: pa.query("SELECT active FROM pg_replication_slots WHERE slot_name='dr'")
                 == [(True,)], 20, what="slot dr in use by B's standby leader")
        senders = leader.query("SELECT application_name FROM pg_stat_replication")
        assert (rep.name,) in senders, senders
        pa.query("INSERT INTO dr_t SELECT generate_series(51, 80)")
        for n in (leader, rep):
            wait_for(lambda: count(n) == 80, 30, what=f"A's rows on {n.name}")
        listing = ctl(b, leader, "list")
        assert listing.returncode == 0 and "Standby Leader" in listing.stdout, listing.stdout
        status, conf = leader.get("/config")
        assert conf["standby_cluster"]["port"] == pa.pg_port, conf

        # promote B
        r = ctl(b, leader, "promote-cluster", "--force")
        assert r.returncode == 0, r.stderr
        pb = b.wait_healthy(timeout=90)
        assert pb is leader, f"{pb.name} promoted, expected the standby leader {leader.name}"
        assert pb.status("/primary") == 200 and pb.status("/standby-leader") == 503
        pb.query("INSERT INTO dr_t VALUES (1000)")
        wait_for(lambda: count(rep) == 81, 30, what="B's own write on its replica")
        assert "standby_cluster" not in pb.get("/config")[1]

        # demote it again: B's primary stops, is rewound onto A's timeline and follows A
        pa.query("INSERT INTO dr_t SELECT generate_series(81, 90)")
        r = ctl(b, pb, "demote-cluster", "--host", "127.0.0.1", "--port", str(pa.pg_port),
                "--primary-slot-name", "dr", "--force")
        assert r.returncode == 0, r.stderr
        t_demote = time.monotonic()
        leader2, reps2 = with_logs(b, wait_for,
                                   lambda: (lambda s: s if s and len(s[1]) == 1 else None)(b_state(b)),
                                   150, 0.5, "B a standby cluster again")
        print(f"\n[demote-cluster] B a standby cluster again, its replica streaming, "
              f"{time.monotonic() - t_demote:.1f}s after the command")
        # A's rows, not B's divergent one, on every B node
        for n in (leader2, reps2[0]):
            wait_for(lambda: count(n) == 90, 60, what=f"A's history on {n.name}")
            assert n.query("SELECT count(*) FROM dr_t WHERE x = 1000")[0][0] == 0
        log = "".join(n.log() for n in b.nodes)
        assert "stopping the primary to run it as the standby leader" in log, log[-3000:]
    finally:
        try:
            if b is not None:
                b.cleanup()
        finally:
            a.cleanup()
