"""TLS on the Raft port (raft/tls_link.c): a 3-node PostgreSQL cluster whose
nodes set raft.certfile / raft.keyfile / raft.cafile (a CA made for the
test with the openssl CLI, one certificate per node; no extendedKeyUsage,
so each serves as TLS client and server) and raft.password, whose
challenge/response then runs inside TLS.

test_cluster_over_tls: the cluster forms (first-start discovery probes and
every libraft connection go through TLS), elects, fails over after kill -9
of the primary node with the prober watching invariant 1, and switches over
without losing an acknowledged commit; the Raft port answers a TLS client
holding a member certificate (the confirmation byte) and refuses plain TCP.
test_rogue_dropped: a process with a certificate from another CA (which
itself trusts our CA) is refused by every node, each logging the refusal
with the rogue's address and OpenSSL's reason, while the Raft leader and the
primary stay. test_sighup_rereads_files: SIGHUP re-reads the files; a
broken one is refused with its name and the running certificate stays.
Every node exits 0 on SIGTERM and the sanitizer build leaves no report."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from pgw_harness import Cluster, Prober, Writer, http, wait_for, with_logs
from test_raft import closed_by_peer, raft_view, stop_all_and_check

NAMES = ("n1", "n2", "n3")


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr}"


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", f"/CN=pgwarden raft e2e {name}", "-keyout", f"{name}.key",
            "-out", f"{name}.crt", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, name, ca, serial):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-set_serial", str(serial), "-days", "2", "-extfile", f"{name}.ext",
            "-out", f"{name}.crt", cwd=d)


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="pgw-rafttls-pki-", dir="/tmp")
    try:
        make_ca(d, "ca")
        for i, n in enumerate(NAMES):
            make_leaf(d, n, "ca", 10 + i)
        make_ca(d, "rogue_ca")
        make_leaf(d, "rogue", "rogue_ca", 99)
        with open(os.path.join(d, "rogue_trust.crt"), "w") as out:
            for f in ("ca.crt", "rogue_ca.crt"):
                with open(os.path.join(d, f)) as src:
                    out.write(src.read())
        # pgwarden runs as postgres: it must read its certificate and key
        import pwd
        pw = pwd.getpwnam("postgres")
        os.chmod(d, 0o755)
        for f in os.listdir(d):
            p = os.path.join(d, f)
            os.chown(p, pw.pw_uid, pw.pw_gid)
            os.chmod(p, 0o600 if f.endswith(".key") else 0o644)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(pki):
    # raft.password as well: its challenge/response then runs inside TLS
    opts = {n: {"extra": {"raft": {"certfile": os.path.join(pki, f"{n}.crt"),
                                   "keyfile": os.path.join(pki, f"{n}.key"),
                                   "cafile": os.path.join(pki, "ca.crt"),
                                   "password": "raft-tls-Secr3t-e2e"}}}
            for n in NAMES}
    c = Cluster(n=3, node_opts=opts)
    c.pki = pki
    try:
        yield c.start()
        stop_all_and_check(c)
    finally:
        c.cleanup()


def tls_client(port, cert, key, ca, timeout=5.0):
    """(socket, local address) after a TLS handshake with our certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # Raft peers are matched by CA, not by name
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    local = "%s:%d" % raw.getsockname()
    return ctx.wrap_socket(raw), local


def first_byte(sock, timeout=5.0):
    """The server's first application byte, b'' on EOF, or the TLS error."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return e


def raft_leader(cluster):
    def pred():
        views = [raft_view(n) for n in cluster.nodes if n.alive()]
        if not views or any(v is None for v in views):
            return None
        keys = {(v["term"], v["leader"]["id"]) for v in views}
        return keys.pop() if len(keys) == 1 and views[0]["leader"]["id"] else None
    return wait_for(pred, 30, what="agreement on the Raft leader")


def test_cluster_over_tls(cluster):
    old = with_logs(cluster, cluster.wait_healthy, timeout=120)
    for n in cluster.nodes:
        text = n.log()
        assert "raft TLS on" in text, text[-2000:]
        # members accept each other (a slow handshake on a busy machine may
        # time out and be retried; a refusal may not happen)
        assert "verify failed" not in text and "alert" not in text, text[-3000:]
    raft_leader(cluster)

    # The Raft port speaks TLS: a member certificate gets the confirmation
    # byte, plain TCP (our own hello) is dropped without an answer.
    node = cluster.nodes[0]
    pki = cluster.pki
    s, _ = tls_client(node.raft_port, os.path.join(pki, "n2.crt"), os.path.join(pki, "n2.key"),
                      os.path.join(pki, "ca.crt"))
    assert first_byte(s) == b"\x01"
    s.close()
    plain = socket.create_connection(("127.0.0.1", node.raft_port), timeout=5)
    plain.sendall(b"PGWR\x01\x02" + b"\x00" * 12)
    assert closed_by_peer(plain, 5.0)
    plain.close()

    # Failover after the whole primary node is killed.
    writer = Writer(cluster).setup()
    prober = Prober(cluster)
    prober.start()
    writer.start()
    time.sleep(1)
    t_kill = time.monotonic()
    old.kill_all()
    new = with_logs(cluster, cluster.wait_primary, timeout=30, exclude=old)
    took = time.monotonic() - t_kill
    wait_for(lambda: any(t > t_kill and n == new.name for _, t, n in writer.acked), 15,
             what="writes resuming on the new primary")

    # Switchover between the two survivors, under load, losing nothing.
    with_logs(cluster, cluster.wait_healthy, replicas=1, timeout=120)
    cand = next(n for n in cluster.nodes if n is not new and n is not old)
    t0 = time.monotonic()
    status, body = http(new.api + "/switchover", "POST",
                        {"leader": new.name, "candidate": cand.name}, timeout=70)
    assert status == 200, (status, body, cluster.dump_logs())
    assert with_logs(cluster, cluster.wait_healthy, replicas=1, timeout=90) is cand
    switch = time.monotonic() - t0
    time.sleep(0.5)
    writer.stop()
    violations = prober.stop()
    assert violations == [], f"two primaries at once: {violations}"
    assert writer.lost(cand) == [], "a switchover must not lose an acknowledged commit"
    print(f"raft TLS: failover to {new.name} after {took:.2f}s, switchover to {cand.name} "
          f"in {switch:.2f}s")
    assert took < 15


def test_rogue_dropped(cluster):
    live = [n for n in cluster.nodes if n.alive()]
    term, lid = raft_leader(cluster)
    primary = cluster.wait_primary(timeout=30)
    pki = cluster.pki
    offsets = {n.name: len(n.log()) for n in live}
    locals_ = {}
    for n in live:
        # The rogue trusts our CA (so it gets as far as presenting its own
        # certificate); the node must refuse it.
        try:
            s, local = tls_client(n.raft_port, os.path.join(pki, "rogue.crt"),
                                  os.path.join(pki, "rogue.key"), os.path.join(pki, "rogue_trust.crt"))
        except (ssl.SSLError, ConnectionResetError) as e:  # refused inside the handshake (TLS 1.2)
            print(f"{n.name}: handshake refused: {e}")
            continue
        got = first_byte(s)
        s.close()
        assert got != b"\x01", f"{n.name} accepted a certificate from another CA"
        locals_[n.name] = local

    def logged():
        for n in live:
            text = n.log()[offsets[n.name]:]
            if "dropped connection: TLS handshake with 127.0.0.1:" not in text or \
                    "certificate verify failed" not in text:
                return None
            if n.name in locals_ and locals_[n.name] not in text:
                return None
        return True
    wait_for(logged, 10, what="each node logging the rogue's refusal with its address")

    # The leader and the primary stayed.
    time.sleep(1.0)
    assert raft_leader(cluster) == (term, lid)
    assert cluster.primary() is primary


def test_sighup_rereads_files(cluster):
    """SIGHUP re-reads the running node's raft TLS files; a broken file keeps
    the running certificate (the reload is refused, with the file named) and
    the node stays in the cluster."""
    node = next(n for n in cluster.nodes if n.alive())
    term, lid = raft_leader(cluster)
    crt = os.path.join(cluster.pki, f"{node.name}.crt")
    with open(crt) as f:
        good = f.read()
    offset = len(node.log())
    os.kill(node.proc.pid, signal.SIGHUP)
    wait_for(lambda: "raft TLS files re-read" in node.log()[offset:], 10,
             what="the reload re-reading the raft TLS files")
    offset = len(node.log())
    try:
        with open(crt, "w") as f:
            f.write("not a certificate\n")
        os.kill(node.proc.pid, signal.SIGHUP)
        wait_for(lambda: "keeping the running configuration and certificate: raft TLS: "
                 f"certificate file {crt}" in node.log()[offset:], 10,
                 what="the refused reload naming the broken file")
    finally:
        with open(crt, "w") as f:
            f.write(good)
    # still a member: new TLS connections to it work with the old certificate
    s, _ = tls_client(node.raft_port, os.path.join(cluster.pki, "n3.crt"),
                      os.path.join(cluster.pki, "n3.key"), os.path.join(cluster.pki, "ca.crt"))
    assert first_byte(s) == b"\x01"
    s.close()
    assert raft_leader(cluster) == (term, lid)
