"""Embedded Raft end to end (issue 3): three witness-mode `pgwarden run`
processes on 127.0.0.1 (no PostgreSQL), driven through the REST API.

Covers election and agreement of GET /raft, failover after kill -9 of the
Raft leader within the documented timing (election timeout = ttl/10), catch
up of a restarted node, command submission through a follower, cold restart
of the whole cluster in random order, bad raft.data_dir handling (exit 1, no
restart loop, data left untouched), membership (join of a new node by
probing, removal, quorum-loss refusal), rejoin after a wiped data dir under a
fresh id, and stray TCP clients on the Raft port.

Every node is stopped with SIGTERM at the end of a test and must exit 0; the
sanitizer build must leave no report (Cluster.cleanup)."""
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import time

import pytest

from pgw_harness import Cluster, Node, http, wait_for

WITNESSES = ("n1", "n2", "n3")
# Documented timing (raft/cluster.c cluster_timing_from_ttl): election timeout
# ttl/10 (200 ms for the default ttl of 2 s), heartbeat a tenth of that.
# libraft randomizes the timeout in [et, 2*et]; with pre-vote a failover is
# detection (<= 2*et) + one pre-vote and one vote round trip + one commit.
# 2 s leaves room for the sanitizer build on a busy 2-core machine.
FAILOVER_BUDGET_S = 2.0


# --- helpers ------------------------------------------------------------------

def raft_view(node, timeout=1.0):
    status, body = node.get("/raft", timeout=timeout)
    return body if status == 200 and isinstance(body, dict) else None


def converged(nodes):
    """(leader node, views) when every node answers GET /raft with the same
    term and leader (id, name, address), and that leader is one of `nodes`
    reporting state leader; else None."""
    views = [raft_view(n) for n in nodes]
    if any(v is None for v in views):
        return None
    keys = {(v["term"], v["leader"]["id"], v["leader"]["name"], v["leader"]["address"])
            for v in views}
    if len(keys) != 1:
        return None
    term, lid, lname, laddr = keys.pop()
    if not lid or not lname:
        return None
    leaders = [(n, v) for n, v in zip(nodes, views) if v["state"] == "leader"]
    if len(leaders) != 1:
        return None
    ln, lv = leaders[0]
    if lv["id"] != lid or ln.name != lname or ln.raft_addr != laddr:
        return None
    return ln, views


def wait_converged(nodes, timeout=20, what="GET /raft agreement"):
    return wait_for(lambda: converged(nodes), timeout, 0.1, what)


def voters(view):
    """{name: id} of the voters in a /raft view (None names kept as None keys)."""
    return {s["name"]: s["id"] for s in view["configuration"] if s["role"] == "voter"}


def conf_tuple(view):
    return sorted((s["id"], s["address"], s["role"], s["name"]) for s in view["configuration"])


def wait_named_voters(nodes, names, timeout=20):
    """Converged, and every node's configuration lists exactly `names` as
    voters (names come from the FSM member records), identically."""
    names = set(names)

    def pred():
        r = converged(nodes)
        if r is None:
            return None
        leader, views = r
        confs = {tuple(conf_tuple(v)) for v in views}
        if len(confs) != 1:
            return None
        v = views[0]
        if set(voters(v)) != names or len(v["configuration"]) != len(names):
            return None
        return leader, views
    return wait_for(pred, timeout, 0.1, f"voters {sorted(names)} named on every node")


def patch_config(node, body, timeout=6.0):
    return http(node.api + "/config", "PATCH", body, timeout=timeout)


def config_of(node):
    status, body = node.get("/config")
    return body if status == 200 else None


def members_of(node):
    status, body = node.get("/cluster")
    if status != 200:
        return None
    return sorted((m["name"], m.get("raft_id"), m["role"]) for m in body["members"])


def expected_initial_ids(nodes):
    """Initial ids are positions (1-based) in the sorted list of Raft addresses."""
    addrs = sorted(n.raft_addr for n in nodes)
    return {n.name: addrs.index(n.raft_addr) + 1 for n in nodes}


def log_since(node, offset):
    return node.log()[offset:]


def stop_all_and_check(c):
    """SIGTERM every running node (each must exit 0), then turn any sanitizer
    report into a failure of the current phase and remove it (so that a test
    expected to fail does not also error in teardown)."""
    problems = []
    for n in c.nodes:
        if n.alive():
            try:
                rc = n.stop(timeout=15)
            except AssertionError as e:
                problems.append(str(e))
                continue
            if rc != 0:
                problems.append(f"{n.name}: exit code {rc} after SIGTERM")
        elif n.proc is not None and n.proc.returncode not in (0, -signal.SIGKILL) and \
                not getattr(n, "death_reported", False):
            n.death_reported = True
            problems.append(f"{n.name}: died with exit code {n.proc.returncode}")
    if os.path.isdir(c.san_dir):
        for r in sorted(os.listdir(c.san_dir)):
            p = os.path.join(c.san_dir, r)
            with open(p, errors="replace") as f:
                problems.append(f"sanitizer report {r}:\n" + f.read()[-4000:])
            os.unlink(p)
    if problems:
        print(c.dump_logs(tail=80))
        raise AssertionError("\n".join(problems))


@pytest.fixture
def cluster(request):
    c = Cluster(n=3, witnesses=WITNESSES)
    failed_before = request.session.testsfailed
    try:
        yield c
    finally:
        try:
            if request.session.testsfailed > failed_before:
                print(c.dump_logs(tail=80))
            stop_all_and_check(c)
        finally:
            c.cleanup()


# --- 1. election ----------------------------------------------------------------

def test_elect_and_agree(cluster):
    t0 = time.monotonic()
    cluster.start()
    leader, views = wait_named_voters(cluster.nodes, WITNESSES, timeout=20)
    print(f"elected and registered after {time.monotonic() - t0:.2f}s: leader {leader.name}")
    ids = expected_initial_ids(cluster.nodes)
    for n, v in zip(cluster.nodes, views):
        assert v["name"] == n.name and v["id"] == ids[n.name], (n.name, v, ids)
        assert v["state"] == ("leader" if n is leader else "follower"), v
        assert v["term"] >= 1 and v["commit_index"] >= 1, v
        assert v["applied_index"] <= v["commit_index"] <= v["last_index"], v
    conf = views[0]["configuration"]
    assert sorted((s["name"], s["id"], s["address"]) for s in conf) == \
        sorted((n.name, ids[n.name], n.raft_addr) for n in cluster.nodes), conf
    # timing derived from the cluster's ttl as documented
    ttl_s = config_of(leader)["ttl"]
    for v in views:
        assert v["election_timeout_ms"] == int(ttl_s * 1000) // 10, v
        assert v["heartbeat_ms"] == v["election_timeout_ms"] // 10, v
    # stable: no spurious election while everyone is up
    term = views[0]["term"]
    time.sleep(1.5)
    leader2, views2 = wait_converged(cluster.nodes, 5)
    assert leader2 is leader and {v["term"] for v in views2} == {term}, views2
    # /cluster lists the three witnesses with their Raft ids
    assert members_of(leader) == sorted((n.name, ids[n.name], "witness") for n in cluster.nodes)


# --- 2. kill -9 the leader ---------------------------------------------------------

def failover_once(cluster, leader, value, budget=10.0):
    """kill -9 `leader`, then PATCH /config through a random survivor until it
    returns 200. Returns (seconds from kill to commit, survivor)."""
    survivors = [n for n in cluster.nodes if n is not leader and n.alive()]
    target = random.choice(survivors)
    leader.kill(signal.SIGKILL)
    t_kill = time.monotonic()
    deadline = t_kill + budget
    last = None
    while time.monotonic() < deadline:
        last = patch_config(target, {"maximum_lag_on_failover": value},
                            timeout=max(0.5, deadline - time.monotonic()))
        if last[0] == 200:
            return time.monotonic() - t_kill, target
        time.sleep(0.02)
    raise AssertionError(f"no write committed through {target.name} within {budget}s: {last}")


def test_kill_leader_then_catch_up(cluster):
    cluster.start()
    leader, views = wait_named_voters(cluster.nodes, WITNESSES)
    old_term, old_id = views[0]["term"], views[0]["leader"]["id"]
    value = random.randint(2_000_000, 9_000_000)
    elapsed, via = failover_once(cluster, leader, value)
    print(f"kill -9 {leader.name}: a write through {via.name} committed after {elapsed * 1000:.0f} ms")
    assert elapsed < FAILOVER_BUDGET_S, f"failover took {elapsed:.2f}s"
    survivors = [n for n in cluster.nodes if n is not leader]
    new_leader, sviews = wait_converged(survivors, 5)
    assert new_leader is not leader and sviews[0]["term"] > old_term, sviews
    assert sviews[0]["leader"]["id"] != old_id
    for n in survivors:
        wait_for(lambda: (config_of(n) or {}).get("maximum_lag_on_failover") == value, 5,
                 what=f"new value on {n.name}")
    target_index = raft_view(new_leader)["commit_index"]

    # restart the killed node: same id, catches up to the leader's commit index
    leader.start()
    def caught_up():
        v = raft_view(leader)
        if v is None or v["applied_index"] < target_index:
            return None
        c = config_of(leader)
        return v if c is not None and c.get("maximum_lag_on_failover") == value else None
    t0 = time.monotonic()
    v = wait_for(caught_up, 20, what=f"{leader.name} catching up to index {target_index}")
    print(f"{leader.name} caught up to {v['applied_index']} (target {target_index}) "
          f"{time.monotonic() - t0:.2f}s after restart")
    assert v["id"] == old_id, v
    # pre-vote: the returning node does not disrupt the new leader's term
    final_leader, fviews = wait_converged(cluster.nodes, 10)
    assert final_leader is new_leader and fviews[0]["term"] == sviews[0]["term"], (sviews, fviews)
    assert leader.log().count("bootstrapped a new cluster") == 1


# --- 3. submit through a follower ---------------------------------------------------

def test_initial_server_started_after_the_leader_died_can_vote(cluster):
    """Two of the three initial servers form the cluster; the leader dies
    before the third ever started. The third starts with an empty log: it
    must bootstrap the same initial configuration (libraft does not vote
    while its configuration does not list it as a voter), so that it and
    the survivor elect a leader and commit."""
    n1, n2, n3 = cluster.nodes
    n1.start()
    n2.start()
    leader, _ = wait_converged([n1, n2], 30, "a leader of the two first servers")
    survivor = n2 if leader is n1 else n1
    leader.kill(signal.SIGKILL)
    n3.start()
    wait_for(lambda: "with the initial configuration it was bootstrapped with" in n3.log(), 20,
             what="n3 bootstrapping the initial configuration")
    wait_converged([survivor, n3], 30, "a leader elected by the survivor and n3")
    status, body = patch_config(n3, {"maximum_lag_on_failover": 3333333})
    assert status == 200, body
    assert raft_view(n3)["id"] == expected_initial_ids(cluster.nodes)["n3"]
    leader.start()
    wait_named_voters(cluster.nodes, WITNESSES, timeout=30)


def test_submit_on_follower(cluster):
    cluster.start()
    leader, views = wait_named_voters(cluster.nodes, WITNESSES)
    term = views[0]["term"]
    followers = [n for n in cluster.nodes if n is not leader]
    before = raft_view(leader)["commit_index"]
    for i, f in enumerate(followers):
        value = random.randint(10_000, 999_999) * 10 + i
        status, body = patch_config(f, {"maximum_lag_on_failover": value})
        assert status == 200, (f.name, status, body)
        assert body["maximum_lag_on_failover"] == value, body
        for n in cluster.nodes:
            wait_for(lambda: (config_of(n) or {}).get("maximum_lag_on_failover") == value, 5,
                     what=f"value {value} submitted on {f.name} visible on {n.name}")
    lv = raft_view(leader)
    assert lv["state"] == "leader" and lv["term"] == term, lv
    assert lv["commit_index"] >= before + len(followers), (before, lv)
    # a malformed change is refused on the submitting follower, nothing changes
    cur = config_of(leader)
    status, body = patch_config(followers[0], {"ttl": "not a number"})
    assert status == 400, (status, body)
    assert all(config_of(n) == cur for n in cluster.nodes)


# --- 4. whole-cluster cold restart ----------------------------------------------------

def cluster_state(nodes):
    """What must survive a restart, as seen by every node; None until all agree."""
    got = []
    for n in nodes:
        v, c, m = raft_view(n), config_of(n), members_of(n)
        if v is None or c is None or m is None:
            return None
        got.append((c, m, conf_tuple(v)))
    first = got[0]
    return first if all(g == first for g in got) else None


def test_cold_restart_random_order(cluster):
    cluster.start()
    leader, views = wait_named_voters(cluster.nodes, WITNESSES)
    value = random.randint(10_000_000, 20_000_000)
    # a non-default dynamic config, including a ttl that moves the election timeout
    status, body = patch_config(random.choice(cluster.nodes), {"maximum_lag_on_failover": value,
                                                               "loop_wait": 0.4, "ttl": 3})
    assert status == 200, body
    before = wait_for(lambda: cluster_state(cluster.nodes), 10, what="identical state everywhere")
    ids = {n.name: raft_view(n)["id"] for n in cluster.nodes}
    assert before[0]["maximum_lag_on_failover"] == value and before[0]["loop_wait"] == 0.4
    wait_for(lambda: all((raft_view(n) or {}).get("election_timeout_ms") == 300
                         for n in cluster.nodes), 5, what="election timeout ttl/10 = 300 ms")

    for how in (signal.SIGTERM, signal.SIGKILL):
        order = random.sample(cluster.nodes, len(cluster.nodes))
        for n in order:
            if how == signal.SIGTERM:
                assert n.stop(timeout=15) == 0, f"{n.name} did not exit 0 on SIGTERM"
            else:
                n.kill(signal.SIGKILL)
        order = random.sample(cluster.nodes, len(cluster.nodes))
        print(f"after {how.name}: restart order {[n.name for n in order]}")
        for n in order:
            n.start()
            time.sleep(random.uniform(0, 0.7))
        wait_named_voters(cluster.nodes, WITNESSES, timeout=20)
        after = wait_for(lambda: cluster_state(cluster.nodes), 10,
                         what="identical state everywhere after the restart")
        assert after == before, (before, after)
        assert {n.name: raft_view(n)["id"] for n in cluster.nodes} == ids
        wait_for(lambda: all((raft_view(n) or {}).get("election_timeout_ms") == 300
                             for n in cluster.nodes), 5,
                 what="election timeout from the replicated ttl after the restart")
    for n in cluster.nodes:
        assert n.log().count("bootstrapped a new cluster") <= 1, n.name
    assert sum(n.log().count("bootstrapped a new cluster") for n in cluster.nodes) >= 1


# --- 5. bad raft.data_dir -------------------------------------------------------------

def tree_digest(path):
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            if f == "pgwarden.lock":
                continue
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def initialize_single(c, node):
    """Run `node` alone once so that its raft dir holds a real cluster."""
    node.start()
    wait_for(lambda: (raft_view(node) or {}).get("state") == "leader" and
             members_of(node) == [(node.name, 1, "witness")], 15, what="single node up")
    assert node.stop(timeout=15) == 0


BAD_DIR_CASES = {
    # name: expected words in the error line
    "missing_parent": ["does not exist and cannot be created", "No such file or directory"],
    "not_writable": ["is not writable by this user", "Permission denied"],
    "is_a_file": ["is not a directory"],
    "corrupt_node_file": ["pgwarden-node.json is corrupted"],
    "other_cluster": ["belongs to member \"n1\" of cluster"],
    "corrupt_raft_metadata": ["metadata1"],
    "raft_files_without_node_file": ["holds Raft files but no pgwarden-node.json"],
}


@pytest.mark.parametrize("case", sorted(BAD_DIR_CASES))
def test_bad_data_dir(case):
    c = Cluster(n=1, witnesses=("n1",))
    node = c.nodes[0]
    try:
        before = None
        if case == "missing_parent":
            node.raft_dir = os.path.join(c.dir, "no-such-parent", "raft")
        elif case == "not_writable":
            os.makedirs(node.raft_dir)           # owned by root, 0755
            os.chmod(node.raft_dir, 0o755)
        elif case == "is_a_file":
            with open(node.raft_dir, "w") as f:
                f.write("not a directory\n")
            c.chown(node.raft_dir)
        else:
            initialize_single(c, node)
            nf = os.path.join(node.raft_dir, "pgwarden-node.json")
            if case == "corrupt_node_file":
                with open(nf, "r+") as f:
                    text = f.read()
                    f.seek(0)
                    f.truncate()
                    f.write(text[: len(text) // 2])
            elif case == "other_cluster":
                old_scope = c.scope
                c.scope = "other" + old_scope
                BAD_DIR_CASES[case] = [f"belongs to member \"n1\" of cluster \"{old_scope}\"",
                                       f"cluster \"{c.scope}\""]
            elif case == "corrupt_raft_metadata":
                for m in ("metadata1", "metadata2"):
                    p = os.path.join(node.raft_dir, m)
                    if os.path.exists(p):
                        with open(p, "r+b") as f:
                            f.write(os.urandom(os.path.getsize(p)))
            elif case == "raft_files_without_node_file":
                os.unlink(nf)
            before = tree_digest(node.raft_dir)
        if os.path.exists(node.log_path):
            os.rename(node.log_path, node.log_path + ".first")
        t0 = time.monotonic()
        node.start()
        try:
            rc = node.proc.wait(10)
        except Exception:
            node.kill(signal.SIGKILL)
            raise AssertionError(f"pgwarden still running 10s after start with a bad raft.data_dir "
                                 f"({case}):\n{node.log()[-3000:]}")
        elapsed = time.monotonic() - t0
        log = node.log()
        print(f"{case}: exit {rc} after {elapsed:.2f}s\n{log.strip()[-600:]}")
        assert rc == 1, (rc, log)
        assert elapsed < 5, elapsed
        # no restart loop; since validate and run share the start-up checks
        # (ha/preflight.c), most cases are refused before "starting: member"
        assert log.count("starting: member") <= 1, log
        errors = [ln for ln in log.splitlines() if "ERROR" in ln or ln.startswith("pgwarden: ")]
        assert errors, log
        err = "\n".join(errors)
        shown_dir = node.raft_dir
        assert shown_dir in err, (shown_dir, err)
        for words in BAD_DIR_CASES[case]:
            assert words in err, (words, err)
        if before is not None:
            assert tree_digest(node.raft_dir) == before, "the data dir was modified"
        assert not any(ln.startswith("AddressSanitizer") for ln in log.splitlines())
    finally:
        if node.alive():
            node.kill(signal.SIGKILL)
        if os.path.isdir(node.raft_dir):
            os.chmod(node.raft_dir, 0o755)
        c.cleanup()


# --- 6. membership --------------------------------------------------------------------

BUG_SPARE = (
    "raft/cluster.c maintain_membership promotes a RAFT_SPARE to voter only after it registered "
    "in the FSM, but libraft never replicates to spares (replication.c triggerAll skips "
    "RAFT_SPARE unless it is the promotee), so the new node never learns the leader's REST "
    "address or any entry and cannot register: it stays a spare forever (its log repeats "
    "'member registration failed: no Raft leader committed member_register in time')")


def test_membership_add_new_node(cluster):
    try:
        cluster.start()
        leader, views = wait_named_voters(cluster.nodes, WITNESSES)
        initial = voters(views[0])

        # a 4th node that nobody lists: its partners are the three running nodes
        n4 = Node(cluster, "n4", witness=True)
        cluster.nodes.append(n4)
        n4.start()
        wait_for(lambda: "added this node under id" in n4.log(), 10,
                 what="n4 discovering the cluster by probing and being added")
        assert "asking the leader" in n4.log(), n4.log()
        leader, views = wait_named_voters(cluster.nodes, WITNESSES + ("n4",), timeout=15)
        v4 = voters(views[0])
        new_id = v4["n4"]
        assert new_id not in initial.values() and new_id != 4, v4
        assert raft_view(n4)["id"] == new_id
        assert {k: v for k, v in v4.items() if k != "n4"} == initial
        assert ("n4", new_id, "witness") in members_of(leader)
        # the new member submits through whichever node leads
        status, body = patch_config(n4, {"maximum_lag_on_failover": 4444})
        assert status == 200, body
        for n in cluster.nodes:
            wait_for(lambda: (config_of(n) or {}).get("maximum_lag_on_failover") == 4444, 5,
                     what=f"value on {n.name}")

        # remove it (stopped first)
        assert n4.stop(timeout=15) == 0
        leader, _ = wait_converged(cluster.nodes[:3], 5)
        status, body = http(leader.api + "/raft/members/n4", "DELETE", timeout=6)
        assert status == 200 and body == {"removed": "n4"}, (status, body)
        cluster.nodes.remove(n4)
        leader, views = wait_named_voters(cluster.nodes, WITNESSES, timeout=10)
        assert voters(views[0]) == initial
        for n in cluster.nodes:
            wait_for(lambda: members_of(n) is not None and
                     all(m[0] != "n4" for m in members_of(n)), 5, what=f"n4 gone on {n.name}")
    finally:
        stop_all_and_check(cluster)


def test_membership_remove_and_quorum_guard(cluster):
    cluster.start()
    leader, views = wait_named_voters(cluster.nodes, WITNESSES)
    initial = voters(views[0])
    # unknown name, and the leader itself (transfer leadership first)
    status, body = http(leader.api + "/raft/members/nosuch", "DELETE")
    assert status == 404, (status, body)
    status, body = http(leader.api + "/raft/members/" + leader.name, "DELETE")
    assert status == 409 and "transfer leadership" in str(body), (status, body)
    # only the leader changes membership
    f0 = next(n for n in cluster.nodes if n is not leader)
    status, body = http(f0.api + "/raft/members/" + f0.name, "DELETE")
    assert status == 503, (status, body)

    # stop one follower: removing the other would leave 2 voters of which one
    # is down, no quorum -> refused with 412 and nothing changes
    down, other = [n for n in cluster.nodes if n is not leader]
    assert down.stop(timeout=15) == 0
    time.sleep(1.0)  # several election timeouts: the leader notices `down` is silent
    status, body = http(leader.api + "/raft/members/" + other.name, "DELETE", timeout=6)
    assert status == 412, (status, body)
    assert "quorum" in str(body), body
    lv = raft_view(leader)
    assert lv["state"] == "leader" and voters(lv) == initial, lv
    assert members_of(leader) == members_of(other)
    assert other.name in [m[0] for m in members_of(leader)]

    # removing the stopped one is fine: leader + `other` remain, both up
    status, body = http(leader.api + "/raft/members/" + down.name, "DELETE", timeout=6)
    assert status == 200 and body == {"removed": down.name}, (status, body)
    cluster.nodes.remove(down)
    remaining = {k: v for k, v in initial.items() if k != down.name}
    leader2, views2 = wait_named_voters(cluster.nodes, remaining, timeout=10)
    assert leader2 is leader and voters(views2[0]) == remaining
    for n in cluster.nodes:
        wait_for(lambda: members_of(n) is not None and
                 down.name not in [m[0] for m in members_of(n)], 5,
                 what=f"{down.name} gone from /cluster on {n.name}")
    # the two-voter cluster still commits
    assert patch_config(other, {"maximum_lag_on_failover": 5555})[0] == 200
    wait_for(lambda: all((config_of(n) or {}).get("maximum_lag_on_failover") == 5555
                         for n in cluster.nodes), 5, what="write on the two remaining voters")


def test_member_add_on_follower_is_refused_cleanly(cluster):
    try:
        cluster.start()
        leader, views = wait_named_voters(cluster.nodes, WITNESSES)
        f = next(n for n in cluster.nodes if n is not leader)
        status, body = http(f.api + "/raft/members", "POST",
                            {"name": "n9", "raft_addr": "127.0.0.1:9"}, timeout=3)
        assert status == 503, (status, body)
        assert "cannot add 127.0.0.1:9" in str(body), body
        time.sleep(0.3)
        assert f.alive()
        assert voters(raft_view(leader)) == voters(views[0])
    finally:
        stop_all_and_check(cluster)


# --- 7. wiped raft data dir ------------------------------------------------------------

@pytest.mark.parametrize("victim_role", ["follower", "leader"])
def test_wiped_data_dir_rejoins_under_new_id(cluster, victim_role):
    try:
        cluster.start()
        leader, views = wait_named_voters(cluster.nodes, WITNESSES)
        victim = leader if victim_role == "leader" else \
            random.choice([n for n in cluster.nodes if n is not leader])
        old = voters(views[0])
        old_id = old[victim.name]
        assert victim.stop(timeout=15) == 0
        shutil.rmtree(victim.raft_dir)
        offset = len(victim.log())
        victim.start()

        def rejoined():
            r = converged(cluster.nodes)
            if r is None:
                return None
            _, vs = r
            if len({tuple(conf_tuple(v)) for v in vs}) != 1:
                return None
            v = voters(vs[0])
            ids = [s["id"] for s in vs[0]["configuration"]]
            if set(v) != set(WITNESSES) or len(ids) != 3 or old_id in ids:
                return None
            return vs
        vs = wait_for(rejoined, 20, what=f"{victim.name} back as a voter under a new id")
        new = voters(vs[0])
        assert new[victim.name] != old_id, (old, new)
        assert {k: v for k, v in new.items() if k != victim.name} == \
            {k: v for k, v in old.items() if k != victim.name}
        assert raft_view(victim)["id"] == new[victim.name]
        log = log_since(victim, offset)
        assert "under a fresh id" in log, log
        for n in cluster.nodes:
            wait_for(lambda: (victim.name, new[victim.name], "witness") in (members_of(n) or []), 5,
                     what=f"member record of {victim.name} with its new id on {n.name}")
        # and it follows new commits
        assert patch_config(victim, {"maximum_lag_on_failover": 7777})[0] == 200
        wait_for(lambda: (config_of(victim) or {}).get("maximum_lag_on_failover") == 7777, 5,
                 what="write visible on the rejoined node")
    finally:
        stop_all_and_check(cluster)


# --- 8. stray TCP clients on the Raft port ----------------------------------------------

def hello(kind, scope, rid, addr):
    s, a = scope.encode(), addr.encode()
    return b"PGWR" + bytes([1, kind]) + struct.pack(">HQH", len(s), rid, len(a)) + s + a


def closed_by_peer(sock, timeout):
    """True when the server closes the connection within `timeout` without
    sending anything (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return data == b""


def test_stray_clients_on_raft_port(cluster):
    cluster.start()
    leader, views = wait_named_voters(cluster.nodes, WITNESSES)
    term, lid = views[0]["term"], views[0]["leader"]["id"]
    offsets = {n.name: len(n.log()) for n in cluster.nodes}
    other = "not-" + cluster.scope
    kinds = {
        "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(64),
        "other_scope_raft": hello(1, other, 99, "127.0.0.1:9"),
        "other_scope_probe": hello(2, other, 0, ""),
        "bad_lengths": b"PGWR\x01\x01\xff\xff" + b"\0" * 10,
        "silent": b"",
        "partial_hello": hello(1, cluster.scope, 99, "127.0.0.1:9")[:10],
    }
    socks = []
    t0 = time.monotonic()
    for n in cluster.nodes:
        for k, payload in kinds.items():
            s = socket.create_connection(("127.0.0.1", n.raft_port), timeout=2)
            if payload:
                s.sendall(payload)
            socks.append((n, k, s))
    # a pile of silent connections on the leader
    silent = [socket.create_connection(("127.0.0.1", leader.raft_port), timeout=2) for _ in range(30)]
    try:
        for n, k, s in socks:
            # silent/partial ones wait out the 2 s handshake deadline
            left = 4.0 - (time.monotonic() - t0)
            assert closed_by_peer(s, max(0.2, left)), f"{n.name}: {k} connection not dropped"
        for s in silent:
            assert closed_by_peer(s, max(0.2, 4.5 - (time.monotonic() - t0))), "silent not dropped"
    finally:
        for _, _, s in socks:
            s.close()
        for s in silent:
            s.close()
    print(f"all stray connections dropped after {time.monotonic() - t0:.2f}s")
    # a genuine probe of our own scope is still answered
    s = socket.create_connection(("127.0.0.1", leader.raft_port), timeout=2)
    s.sendall(hello(2, cluster.scope, 0, ""))
    s.settimeout(3)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    n = struct.unpack(">I", buf[:4])[0]
    answer = json.loads(buf[4:4 + n])
    assert answer["initialized"] is True and answer["scope"] == cluster.scope, answer
    # nothing happened to the cluster
    leader2, views2 = wait_converged(cluster.nodes, 5)
    assert leader2 is leader and {(v["term"], v["leader"]["id"]) for v in views2} == {(term, lid)}
    assert all(n.alive() for n in cluster.nodes)
    for n in cluster.nodes:
        log = log_since(n, offsets[n.name])
        for words in ("bad magic", f"peer belongs to cluster \"{other}\"",
                      "handshake not completed in time", "scope length"):
            assert words in log, (n.name, words, log[-2000:])
    assert patch_config(leader, {"maximum_lag_on_failover": 3333})[0] == 200


def test_own_scope_hello_then_malformed_raft_message():
    c = Cluster(n=3, witnesses=WITNESSES)
    try:
        c.start()
        leader, views = wait_named_voters(c.nodes, WITNESSES)
        term = views[0]["term"]
        # preamble (type 1 = AppendEntries, header length 56), header: term,
        # prev index, prev term, commit, n_entries = 1, then one entry header
        # with type 0xff (not COMMAND/BARRIER/CHANGE) and length 0.
        msg = struct.pack("<QQ", 1, 56) + struct.pack("<QQQQQ", 1, 0, 0, 0, 1) + \
            struct.pack("<QB3xI", 1, 0xFF, 0)
        s = socket.create_connection(("127.0.0.1", leader.raft_port), timeout=2)
        s.sendall(hello(1, c.scope, 77, "127.0.0.1:1") + msg)
        closed_by_peer(s, 3)
        s.close()
        time.sleep(0.5)
        assert leader.alive(), f"{leader.name} died: exit {leader.proc.returncode}"
        leader2, views2 = wait_converged(c.nodes, 5)
        assert leader2 is leader and views2[0]["term"] == term
    finally:
        for n in c.nodes:
            if n.alive():
                n.stop(timeout=15)
        c.cleanup()  # raises on the sanitizer report of the crashed node
