"""HTTPS on the REST API, and TLS plus raft.password on the Raft port, of a
3-node cluster on 127.0.0.1.

Certificates come from the openssl CLI at the start of the module: one CA
shared by the nodes (each node's certificate has IP:127.0.0.1 and both
serverAuth and clientAuth, since with verify_client a node presents it when
it calls another member), a client certificate for ctl, and a second CA with
its own client certificate that nobody trusts. Every node runs HTTPS with
restapi.verify_client: optional and restapi.health_listen on plain HTTP: the
harness's probes (Cluster.primaries, the Prober) go to the plain listener,
everything else to HTTPS. The cluster must form (registration, command
forwarding to the Raft leader, the controller's status fetches all go over
https with the node certificates), fail over after kill -9 of the primary
and switch over through `pgwarden ctl --cacert ... --endpoint https://...`.
Writes without a client certificate get 403, with one from the other CA
the handshake is refused; after a SIGHUP to verify_client: required, even
reads need one; a renewed certificate is served after a SIGHUP."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from pgw_harness import Cluster, Node, Prober, free_ports, http, wait_for

PROBES = ("/", "/primary", "/master", "/read-write", "/leader", "/replica", "/read-only",
          "/sync", "/synchronous", "/async", "/asynchronous", "/health", "/liveness",
          "/readiness", "/standby-leader", "/read-only-sync")


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr}"


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", f"/CN=pgwarden e2e {name}", "-keyout", f"{name}.key",
            "-out", f"{name}.crt", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, name, ca, eku, san=None, serial=1):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                f"extendedKeyUsage={eku}\n")
        if san:
            f.write(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-set_serial", str(serial), "-days", "2", "-extfile", ext, "-out", f"{name}.crt",
            cwd=d)


class TLSNode(Node):
    """A node whose REST API speaks HTTPS; probes use its plain health listener."""

    @property
    def api(self):  # the harness probes /primary etc. here
        return f"http://127.0.0.1:{self.health_port}"

    @property
    def api_tls(self):
        return f"https://127.0.0.1:{self.api_port}"

    def get(self, path, timeout=2.0):
        if path.split("?")[0] in PROBES:
            return http(self.api + path, timeout=timeout)
        return https(self.api_tls + path, ca=self.cluster.pki("ca.crt"), timeout=timeout)


def https(url, method="GET", body=None, ca=None, cert=None, timeout=3.0):
    """(status, JSON or text); (0, the error) when the request failed."""
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert + ".crt", cert + ".key")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except Exception as e:  # handshake refused, reset, timeout
        return 0, repr(e)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def run_ctl(cluster, *args, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_CTL_")}
    env.update(cluster.sanitizer_env())
    p = subprocess.run([cluster.binary, "ctl", *args], capture_output=True, text=True, env=env,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    print(f"$ pgwarden ctl {' '.join(args)}  -> {p.returncode}\n{p.stdout}{p.stderr}")
    return p


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(n=3)
    pki = os.path.join(c.dir, "pki")
    os.makedirs(pki)
    c.pki = lambda name: os.path.join(pki, name)
    make_ca(pki, "ca")
    make_ca(pki, "otherca")
    for i, n in enumerate(c.nodes):
        make_leaf(pki, n.name, "ca", "serverAuth,clientAuth", san="IP:127.0.0.1,DNS:localhost",
                  serial=10 + i)
    make_leaf(pki, "operator", "ca", "clientAuth", serial=20)
    make_leaf(pki, "intruder", "otherca", "clientAuth", serial=21)
    for f in os.listdir(pki):
        c.chown(os.path.join(pki, f))
        os.chmod(os.path.join(pki, f), 0o600 if f.endswith(".key") else 0o644)
    c.chown(pki)
    for n in c.nodes:
        n.__class__ = TLSNode
        n.health_port = free_ports(1)[0]
        n.extra = {"restapi": {
            "certfile": c.pki(f"{n.name}.crt"), "keyfile": c.pki(f"{n.name}.key"),
            "cafile": c.pki("ca.crt"), "verify_client": "optional",
            "health_listen": f"127.0.0.1:{n.health_port}"},
            # issue 10's acceptance: TLS on the Raft port too, with the
            # same certificates, and the HMAC handshake inside it
            "raft": {"certfile": c.pki(f"{n.name}.crt"), "keyfile": c.pki(f"{n.name}.key"),
                     "cafile": c.pki("ca.crt"), "password": "tls-raft-Secr3t-e2e"}}
    try:
        c.start()
        c.wait_healthy(timeout=120)
        yield c
    finally:
        c.cleanup()


def ctl_tls(cluster, node, *args, cert="operator"):
    extra = ["--certfile", cluster.pki(f"{cert}.crt"), "--keyfile", cluster.pki(f"{cert}.key")] \
        if cert else []
    return run_ctl(cluster, "--cacert", cluster.pki("ca.crt"), *extra,
                   f"--endpoint={node.api_tls}", *args)


def test_cluster_forms_over_https(cluster):
    p = cluster.wait_healthy()
    view = cluster.cluster_view()
    assert sorted(m["api_url"] for m in view["members"]) == \
        sorted(n.api_tls for n in cluster.nodes), view
    roles = sorted(m["role"] for m in view["members"])
    assert roles == ["leader", "replica", "replica"], view
    # the Raft port speaks TLS only: a plain hello is dropped unanswered
    raw = socket.create_connection(("127.0.0.1", p.raft_port), timeout=3)
    s_, a_ = cluster.scope.encode(), b"127.0.0.1:9"
    import struct
    raw.sendall(b"PGWR\x01\x01" + struct.pack(">HQH", len(s_), 9, len(a_)) + s_ + a_)
    raw.settimeout(5)
    try:
        got = raw.recv(64)
    except (ConnectionResetError, socket.timeout) as e:
        got = repr(e).encode()
    raw.close()
    # closed, reset, or a TLS alert record (content type 21): never an answer
    assert got == b"" or got.startswith(b"\x15\x03") or b"Reset" in got, got
    # the probes answer on both listeners, with the same status
    ca = cluster.pki("ca.crt")
    for n in cluster.nodes:
        for path in ("/primary", "/replica", "/health", "/liveness"):
            assert https(n.api_tls + path, ca=ca)[0] == http(n.api + path)[0], (n.name, path)
    assert http(p.api + "/primary")[0] == 200 and https(p.api_tls + "/primary", ca=ca)[0] == 200
    # the plain listener serves nothing else, and only the probe methods
    # (an unknown GET is a failed health check with the status document, as
    # in Patroni; an unknown write path 501)
    status, body = http(p.api + "/cluster")
    assert status == 503 and "members" not in body and "patroni" in body, body
    assert http(p.api + "/switchover", method="POST", body={})[0] == 501
    assert http(p.api + "/primary", method="POST", body={})[0] == 405
    # plain HTTP on the HTTPS port is told to use https
    status, body = http(f"http://127.0.0.1:{p.api_port}/primary")
    assert status == 400 and "https://" in body["error"], body
    # a node's certificate is not trusted without our CA
    status, err = https(p.api_tls + "/cluster", ca=cluster.pki("otherca.crt"))
    assert status == 0 and "CERTIFICATE_VERIFY_FAILED" in err, err
    # forwarding: a write sent to a replica is carried out through the leader over https
    r = next(n for n in cluster.nodes if n is not p)
    status, body = https(r.api_tls + "/config", method="PATCH", body={"maximum_lag_on_failover": 2097152}, ca=ca,
                         cert=cluster.pki("operator"))
    assert status == 200, body
    wait_for(lambda: all((n.get("/config")[1] or {}).get("maximum_lag_on_failover") == 2097152
                         for n in cluster.nodes),
             10, what="the forwarded PATCH /config applied everywhere")


def test_client_certificates_for_writes(cluster):
    p = cluster.wait_healthy()
    ca = cluster.pki("ca.crt")
    # reads need no client certificate with verify_client: optional
    assert https(p.api_tls + "/patroni", ca=ca)[0] == 200
    # writes do
    status, body = https(p.api_tls + "/reload", method="POST", body={}, ca=ca)
    assert status == 403 and "client certificate required" in body["error"], body
    status, body = https(p.api_tls + "/reload", method="POST", body={}, ca=ca,
                         cert=cluster.pki("operator"))
    assert status in (200, 202), body
    # a certificate from a CA the node does not trust is refused in the handshake
    status, err = https(p.api_tls + "/reload", method="POST", body={}, ca=ca,
                        cert=cluster.pki("intruder"))
    # the server's alert, or (TLS 1.3 checks the client's certificate after the
    # client considers the handshake done) the close that follows it when it
    # reaches the client first; the server's log says which handshake it refused
    assert status == 0 and ("UNKNOWN_CA" in err.upper() or "unknown ca" in err or
                            "EOF occurred" in err), err
    wait_for(lambda: "TLS handshake with 127.0.0.1 failed" in p.log(), 5,
             what="the refused handshake in the log")
    status, text = https(p.api_tls + "/metrics", ca=ca)
    line = next(l for l in text.splitlines()
                if l.startswith("pgwarden_http_tls_handshake_failures_total{"))
    assert float(line.split()[-1]) >= 1, line
    # ctl: refused without a certificate, with the server's reason
    r = ctl_tls(cluster, p, "reload", p.name, cert=None)
    assert r.returncode == 1 and "client certificate required" in r.stderr
    r = ctl_tls(cluster, p, "reload", p.name)
    assert r.returncode == 0 and f"Success: reload on member {p.name}" in r.stdout, r.stderr


def test_ctl_cacert_and_insecure(cluster):
    n = cluster.nodes[1]
    r = run_ctl(cluster, f"--endpoint={n.api_tls}", "list", "-f", "json")
    assert r.returncode == 1 and "certificate verify failed" in r.stderr, r.stderr
    r = run_ctl(cluster, "--cacert", cluster.pki("otherca.crt"), f"--endpoint={n.api_tls}", "list")
    assert r.returncode == 1 and "certificate verify failed" in r.stderr, r.stderr
    r = run_ctl(cluster, "--insecure", f"--endpoint={n.api_tls}", "list", "-f", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3, r.stderr
    r = run_ctl(cluster, "-k", f"--endpoint={n.api_tls}", "list", "-f", "json")
    assert r.returncode == 0, r.stderr
    r = run_ctl(cluster, "--cacert", cluster.pki("ca.crt"), f"--endpoint={n.api_tls}", "list",
                "-f", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3, r.stderr
    # -c: https (restapi.certfile is set) and ctl.cacert defaults to restapi.cafile
    r = run_ctl(cluster, "-c", n.cfg_path, "list", "-f", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3, r.stderr
    # http:// to an HTTPS endpoint is a clear failure
    r = run_ctl(cluster, f"--endpoint=http://127.0.0.1:{n.api_port}", "list")
    assert r.returncode == 1 and "https://" in r.stderr, r.stderr


def test_failover_after_kill9(cluster):
    old = cluster.wait_healthy()
    prober = Prober(cluster)  # over the plain health listeners
    prober.start()
    t0 = time.monotonic()
    old.kill()
    old.kill_postmaster()
    new = cluster.wait_primary(timeout=30, exclude=old)
    took = time.monotonic() - t0
    old.start()
    cluster.wait_healthy(timeout=120)
    violations = prober.stop()
    assert violations == [], f"two primaries at once: {violations}"
    print(f"failover over HTTPS: {new.name} primary after {took:.2f}s")
    assert took < 20


def test_switchover_with_ctl(cluster):
    old = cluster.wait_healthy()
    target = next(n for n in cluster.nodes if n is not old)
    via = next(n for n in cluster.nodes if n is not old and n is not target)
    r = ctl_tls(cluster, via, "switchover", "--candidate", target.name, "--force")
    assert r.returncode == 0 and f"Successfully switched over to {target.name}" in r.stdout, r.stderr
    assert cluster.wait_primary(timeout=30) is target
    cluster.wait_healthy(timeout=90)


def sighup_all(cluster):
    for n in cluster.nodes:
        os.kill(n.proc.pid, signal.SIGHUP)


def test_reload_renewed_certificate_and_required(cluster):
    p = cluster.wait_healthy()
    ca = cluster.pki("ca.crt")
    n = cluster.nodes[0]
    before = ssl.get_server_certificate(("127.0.0.1", n.api_port))
    # renew n1's certificate in place (same CA, new serial), then SIGHUP
    pki = os.path.dirname(ca)
    make_leaf(pki, "renewed", "ca", "serverAuth,clientAuth", san="IP:127.0.0.1", serial=99)
    for ext in ("crt", "key"):
        shutil.copyfile(cluster.pki(f"renewed.{ext}"), cluster.pki(f"{n.name}.{ext}"))
    os.kill(n.proc.pid, signal.SIGHUP)
    wait_for(lambda: ssl.get_server_certificate(("127.0.0.1", n.api_port)) != before, 10,
             what="the renewed certificate served")
    with open(cluster.pki("renewed.crt")) as f:
        assert ssl.get_server_certificate(("127.0.0.1", n.api_port)).strip() == f.read().strip()
    assert "TLS settings reloaded" in n.log()
    # verify_client: required on every node, by SIGHUP
    for node in cluster.nodes:
        node.extra["restapi"]["verify_client"] = "required"
        node.write_config()
    sighup_all(cluster)
    wait_for(lambda: https(p.api_tls + "/patroni", ca=ca)[0] == 0, 10,
             what="reads refused without a client certificate")
    assert https(p.api_tls + "/patroni", ca=ca, cert=cluster.pki("operator"))[0] == 200
    # the probes on the plain listener are unaffected
    assert http(p.api + "/primary")[0] == 200
    # the members still reach each other (they present their certificates):
    # a switchover through a replica needs forwarding and status fetches
    target = next(x for x in cluster.nodes if x is not p)
    r = ctl_tls(cluster, target, "switchover", "--candidate", target.name, "--force")
    assert r.returncode == 0, r.stderr
    assert cluster.wait_primary(timeout=30) is target
    r = ctl_tls(cluster, target, "list", cert=None)
    assert r.returncode == 1
    # a broken certificate file on reload keeps the running one
    with open(cluster.pki(f"{n.name}.key"), "w") as f:
        f.write("not a key\n")
    os.kill(n.proc.pid, signal.SIGHUP)
    wait_for(lambda: "keeping the running configuration and certificate" in n.log(), 10,
             what="the bad key refused on reload")
    assert https(n.api_tls + "/patroni", ca=ca, cert=cluster.pki("operator"))[0] == 200
    # the cluster harness talks plain to probes and https to the rest: restore optional
    for node in cluster.nodes:
        node.extra["restapi"]["verify_client"] = "optional"
        node.write_config()
    shutil.copyfile(cluster.pki("renewed.key"), cluster.pki(f"{n.name}.key"))
    sighup_all(cluster)
    wait_for(lambda: https(p.api_tls + "/patroni", ca=ca)[0] == 200, 10,
             what="verify_client optional again")


def test_secrets_not_logged(cluster):
    """Private keys never reach the logs."""
    for n in cluster.nodes:
        log = n.log()
        assert "PRIVATE KEY" not in log
        with open(cluster.pki(f"{n.name}.key")) as f:
            body = "".join(l for l in f.read().splitlines() if not l.startswith("-----"))
        assert body[:40] not in log


def test_validate_refuses_incomplete_tls(tmp_path):
    from pgw_harness import pgw_binary
    base = {"scope": "v", "name": "n1",
            "raft": {"self_addr": "127.0.0.1:7001", "data_dir": str(tmp_path / "raft")}}
    cases = [({"certfile": "/x.crt"}, "restapi.keyfile"),
             ({"certfile": "/x.crt", "keyfile": "/x.key", "verify_client": "required"},
              "needs HTTPS (restapi.certfile and keyfile) and restapi.cafile"),
             ({"verify_client": "optional", "cafile": "/ca.crt"}, "needs HTTPS")]
    for restapi, msg in cases:
        cfg = dict(base, restapi=restapi)
        path = tmp_path / "c.yml"
        path.write_text(yaml.safe_dump(cfg))
        p = subprocess.run([pgw_binary(), "validate", "-c", str(path)], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode != 0 and msg in p.stderr, (restapi, p.stderr)
