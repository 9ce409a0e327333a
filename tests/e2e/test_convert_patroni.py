"""`pgwarden convert-patroni`: a Patroni file becomes a pgwarden file that
passes `pgwarden validate`, each change named on stderr; bad input is
refused with exit 1 and a message naming what was wrong. (The conversion of
a running Patroni cluster, --members-from included, is exercised for real by
test_migrate_patroni.py.)"""
import http.server
import json
import os
import subprocess
import tempfile
import threading

import pytest
import yaml

from pgw_harness import pgw_binary
from ports import free_port

PATRONI_YML = """\
scope: batman
namespace: /service/
name: postgresql0
restapi:
  listen: :8008
  connect_address: 127.0.0.1:8008
  allowlist: [127.0.0.1/32, db1.example.com]
log:
  level: FATAL
  format: '%(asctime)s %(levelname)s: %(message)s'
etcd3:
  hosts: 127.0.0.1:2379
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 15
    master_start_timeout: 300
    primary_start_timeout: 300
  initdb:
  - encoding: UTF8
  - username: admin
  users:
    admin: {password: admin%, options: [createrole]}
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/postgresql/15/main
  authentication:
    replication: {username: replicator, password: rep-pass}
    superuser: {username: postgres, password: zalando}
    rewind: {password: rewind_password}
  parameters:
    port: 5432
  basebackup: [verbose, {format: tar}]
tags:
  nostream: true
watchdog:
  mode: auto
"""


def run(*args, cwd=None):
    return subprocess.run([pgw_binary(), "convert-patroni"] + list(args), capture_output=True,
                          text=True, timeout=30, cwd=cwd)


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="pgw-convert-") as d:
        yield d


def write(d, name, text):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def test_converts_what_pgwarden_refuses_and_names_every_change(tmp):
    src = write(tmp, "patroni.yml", PATRONI_YML)
    out = os.path.join(tmp, "pgwarden.yml")
    r = run(src, "--partners", "10.0.0.12:5010,10.0.0.13:5010", "-o", out)
    assert r.returncode == 0, r.stderr
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o600)
    v = subprocess.run([pgw_binary(), "validate", "--offline", "-c", out], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    with open(out) as f:
        cfg = yaml.safe_load(f)
    assert "etcd3" not in cfg and "namespace" not in cfg
    assert cfg["raft"] == {"self_addr": "127.0.0.1:5010",
                           "partner_addrs": ["10.0.0.12:5010", "10.0.0.13:5010"],
                           "data_dir": "/var/lib/postgresql/15/pgwarden-raft"}
    assert cfg["restapi"]["listen"] == "0.0.0.0:8008"
    assert cfg["restapi"]["allowlist"] == ["127.0.0.1/32"]
    assert cfg["log"] == {"level": "CRITICAL"}
    assert cfg["bootstrap"]["dcs"]["retry_timeout"] == 10  # (30 - 10) / 2
    assert "master_start_timeout" not in cfg["bootstrap"]["dcs"]
    assert cfg["bootstrap"]["initdb"] == [{"encoding": "UTF8"}]
    assert "users" not in cfg["bootstrap"]
    assert "port" not in cfg["postgresql"]["parameters"]
    assert cfg["postgresql"]["basebackup"] == ["verbose"]
    assert "rewind" not in cfg["postgresql"]["authentication"]
    assert "nostream" not in cfg.get("tags", {})
    assert cfg["watchdog"]["mode"] == "automatic"
    assert cfg["postgresql"]["authentication"]["superuser"]["password"] == "zalando"
    # one line per change, naming the key (and its line in the Patroni file)
    for key in ("etcd3", "namespace", "raft", "restapi.listen", "restapi.allowlist", "log.format",
                "log.level", "bootstrap.dcs.retry_timeout", "bootstrap.dcs.master_start_timeout",
                "bootstrap.initdb", "bootstrap.users", "postgresql.parameters.port",
                "postgresql.basebackup", "postgresql.authentication.rewind", "tags.nostream",
                "watchdog.mode"):
        assert any(f": {key}: " in line for line in r.stderr.splitlines()), (key, r.stderr)
    assert f"{src}:11: etcd3: removed" in r.stderr  # the line of etcd3:
    # stdout holds nothing when -o is given; without it, the file
    r2 = run(src, "--partners", "10.0.0.12:5010,10.0.0.13:5010")
    assert r2.returncode == 0 and yaml.safe_load(r2.stdout) == cfg


def test_missing_file(tmp):
    r = run(os.path.join(tmp, "nope.yml"), "--partners", "10.0.0.2:5010")
    assert r.returncode == 1
    assert "nope.yml: cannot open: No such file or directory" in r.stderr


def test_not_yaml(tmp):
    src = write(tmp, "bad.yml", "scope: [unclosed\nname: x\n")
    r = run(src, "--partners", "10.0.0.2:5010")
    assert r.returncode == 1
    assert "bad.yml:" in r.stderr and "not a YAML file" in r.stderr
    src = write(tmp, "list.yml", "- a\n- b\n")
    r = run(src, "--partners", "10.0.0.2:5010")
    assert r.returncode == 1 and "expected a mapping of Patroni settings" in r.stderr


def test_no_name(tmp):
    src = write(tmp, "noname.yml", PATRONI_YML.replace("name: postgresql0\n", ""))
    r = run(src, "--partners", "10.0.0.2:5010")
    assert r.returncode == 1
    assert "no name" in r.stderr and "PATRONI_NAME" in r.stderr
    src = write(tmp, "badname.yml", PATRONI_YML.replace("name: postgresql0", "name: pg node 1"))
    r = run(src, "--partners", "10.0.0.2:5010")
    assert r.returncode == 1 and 'name: "pg node 1" cannot be converted' in r.stderr


def test_no_partners(tmp):
    src = write(tmp, "patroni.yml", PATRONI_YML)
    r = run(src)
    assert r.returncode == 1 and "--members-from URL" in r.stderr and "--partners" in r.stderr


def test_members_url_unreachable(tmp):
    src = write(tmp, "patroni.yml", PATRONI_YML)
    out = os.path.join(tmp, "out.yml")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = run(src, "--members-from", url, "-o", out)
    assert r.returncode == 1
    assert f"--members-from: GET {url}/cluster:" in r.stderr
    assert not os.path.exists(out)


class _NotPatroni(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"hello": "world"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class _Patroni(_NotPatroni):
    def do_GET(self):
        if self.path == "/cluster":
            doc = {"members": [{"name": "postgresql0", "host": "127.0.0.11"},
                               {"name": "postgresql1", "host": "db2.example.com"}]}
        else:
            doc = {"ttl": 30}
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("handler,expect", [
    (_NotPatroni, 'no "members" list in the answer'),
    (_Patroni, 'member postgresql1 has host "db2.example.com", not an IPv4 address')])
def test_members_url_answers_something_else(tmp, handler, expect):
    srv = http.server.HTTPServer(("127.0.0.1", free_port()), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        src = write(tmp, "patroni.yml", PATRONI_YML)
        r = run(src, "--members-from", f"http://127.0.0.1:{srv.server_port}")
        assert r.returncode == 1 and expect in r.stderr, r.stderr
    finally:
        srv.shutdown()
        srv.server_close()
