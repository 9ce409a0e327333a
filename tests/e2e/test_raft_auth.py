"""Raft transport authentication (issue 10): with raft.password set, every
connection on the Raft port proves the secret with an HMAC-SHA256
challenge/response (raft/transport_auth.h) before libraft sees a byte.

Three witness-mode nodes (no PostgreSQL) with a shared secret. Checked:
the cluster forms and commits; processes without the secret (no auth, a
wrong MAC, garbage, an oversized hello, a silent peer) are dropped and
logged with their address while the leader stays; a node restarted with a
wrong password cannot reach the others (the cluster keeps its leader) and
gets back in with the right one; a node without a password is refused; a
client that knows the secret is answered (probe), which shows the refusals
come from the secret and not from a broken handshake; the secret appears in
no log."""
import hashlib
import hmac
import json
import os
import socket
import struct
import time

import pytest

from pgw_harness import Cluster, wait_for
from test_raft import (WITNESSES, closed_by_peer, patch_config, raft_view, stop_all_and_check,
                       wait_converged, wait_named_voters)

SECRET = "raft-Secr3t-e2e-7f1c"


def hello2(kind, scope, rid, addr, nonce):
    s, a = scope.encode(), addr.encode()
    return b"PGWR" + bytes([2, kind]) + struct.pack(">HQH", len(s), rid, len(a)) + s + a + nonce


def hello1(kind, scope, rid, addr):
    s, a = scope.encode(), addr.encode()
    return b"PGWR" + bytes([1, kind]) + struct.pack(">HQH", len(s), rid, len(a)) + s + a


def macs(secret, hello, nc, ns):
    t = hashlib.sha256(hello + nc + ns).digest()
    srv = hmac.new(secret.encode(), b"pgwarden raft server" + t, hashlib.sha256).digest()
    cli = hmac.new(secret.encode(), b"pgwarden raft client" + t, hashlib.sha256).digest()
    return srv, cli


def recv_exact(s, n, timeout=3.0):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def probe(port, scope, secret):
    """Authenticated probe: returns (server MAC valid, answer JSON or None)."""
    nc = os.urandom(16)
    h = hello1(2, scope, 0, "")
    h = h[:4] + b"\x02" + h[5:]
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        s.sendall(h + nc)
        chal = recv_exact(s, 52)
        assert chal[:4] == b"PGWA", chal
        ns, their = chal[4:20], chal[20:52]
        srv, cli = macs(secret, h, nc, ns)
        ok = hmac.compare_digest(their, srv)
        s.sendall(cli)
        head = recv_exact(s, 4)
        if len(head) < 4:
            return ok, None
        n = struct.unpack(">I", head)[0]
        return ok, json.loads(recv_exact(s, n))
    finally:
        s.close()


@pytest.fixture
def cluster(request):
    c = Cluster(n=3, witnesses=WITNESSES,
                node_opts={n: {"extra": {"raft": {"password": SECRET}}} for n in WITNESSES})
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


def test_authenticated_cluster_drops_strangers(cluster):
    cluster.start()
    leader, views = wait_named_voters(cluster.nodes, WITNESSES)
    term, lid = views[0]["term"], views[0]["leader"]["id"]
    assert patch_config(leader, {"maximum_lag_on_failover": 4444})[0] == 200

    # someone who knows the secret gets a verified answer
    ok, answer = probe(leader.raft_port, cluster.scope, SECRET)
    assert ok, "the server's MAC does not verify with the shared secret"
    assert answer and answer["initialized"] is True and answer["scope"] == cluster.scope, answer
    # a wrong secret: the server's MAC does not verify, and ours is refused
    ok, answer = probe(leader.raft_port, cluster.scope, "not-the-secret")
    assert not ok and answer is None

    offset = len(leader.log())
    nc = os.urandom(16)
    cases = {
        "no_auth_raft": hello1(1, cluster.scope, 99, "127.0.0.1:9"),
        "no_auth_probe": hello1(2, cluster.scope, 0, ""),
        "garbage": os.urandom(200),
        "oversized_hello": b"PGWR\x02\x01\xff\xff" + struct.pack(">Q", 5) + b"\xff\xff" + b"A" * 4096,
        "silent": b"",
    }
    t0 = time.monotonic()
    socks = []
    for k, payload in cases.items():
        s = socket.create_connection(("127.0.0.1", leader.raft_port), timeout=2)
        if payload:
            s.sendall(payload)
        socks.append((k, s))
    # a valid-looking raft hello with a wrong MAC, then a raft message
    wrong = socket.create_connection(("127.0.0.1", leader.raft_port), timeout=2)
    h = hello1(1, cluster.scope, lid, leader.raft_addr)  # even impersonating a member
    h = h[:4] + b"\x02" + h[5:]
    wrong.sendall(h + nc)
    chal = recv_exact(wrong, 52)
    assert chal[:4] == b"PGWA"
    wrong.sendall(os.urandom(32) + struct.pack("<QQ", 1, 56) + b"\0" * 64)
    socks.append(("wrong_mac", wrong))
    try:
        for k, s in socks:
            left = 4.0 - (time.monotonic() - t0)
            assert closed_by_peer(s, max(0.2, left)), f"{k} connection not dropped"
    finally:
        for _, s in socks:
            s.close()
    log = leader.log()[offset:]
    for words in ("did not authenticate", "authentication failed (wrong raft.password?)",
                  "bad magic", "scope length", "handshake not completed in time"):
        assert words in log, (words, log[-3000:])
    assert "dropped connection from 127.0.0.1:" in log

    # nothing happened to the cluster
    leader2, views2 = wait_converged(cluster.nodes, 5)
    assert leader2 is leader and {(v["term"], v["leader"]["id"]) for v in views2} == {(term, lid)}
    assert patch_config(leader, {"maximum_lag_on_failover": 5555})[0] == 200


def test_wrong_or_missing_password_is_kept_out(cluster):
    cluster.start()
    leader, views = wait_named_voters(cluster.nodes, WITNESSES)
    victim = next(n for n in cluster.nodes if n is not leader)
    others = [n for n in cluster.nodes if n is not victim]

    last = None
    for i, wrong in enumerate(("a-wrong-password", None)):
        assert victim.stop(timeout=15) == 0
        victim.extra = {"raft": {"password": wrong}} if wrong else {}
        offsets = {n.name: len(n.log()) for n in others}
        voff = len(victim.log())
        victim.start()
        # the others log the refusal, keep their leader and commit without the victim
        words = "authentication failed" if wrong else "did not authenticate"
        wait_for(lambda: all(words in n.log()[offsets[n.name]:] for n in others), 15, 0.2,
                 f"'{words}' logged by both others")
        last = 6000 + i
        assert patch_config(leader, {"maximum_lag_on_failover": last})[0] == 200
        assert raft_view(leader)["state"] == "leader"
        st, body = victim.get("/config")
        assert not (st == 200 and body.get("maximum_lag_on_failover") == last), \
            "the victim got the new config without the secret"
        v = raft_view(victim)
        assert v is None or v["state"] != "leader", v
        if wrong:
            vlog = victim.log()[voff:]
            assert "refused: the peer failed authentication" in vlog or \
                "refused: the peer closed the connection during authentication" in vlog, vlog[-2000:]

    # with the right secret again it catches up
    assert victim.stop(timeout=15) == 0
    victim.extra = {"raft": {"password": SECRET}}
    victim.start()
    wait_named_voters(cluster.nodes, WITNESSES, timeout=20)

    def caught_up():
        st, body = victim.get("/config")
        return st == 200 and body.get("maximum_lag_on_failover") == last
    wait_for(caught_up, 15, 0.2, "victim caught up with the config")

    for n in cluster.nodes:
        assert SECRET not in n.log(), f"{n.name}: the raft secret is in the log"
        assert "a-wrong-password" not in n.log()
