"""Configurations from the wild (issue 17 item 4): Patroni users' files run
by pgwarden with only the DCS section replaced by `raft:`, end to end, three
nodes on 127.0.0.1. Each cluster bootstraps, fails over when the primary's
whole node (pgwarden and PostgreSQL) is killed -9 (a new primary is promoted,
never a `nofailover` node), and the old primary rejoins as a streaming
replica on the new timeline; a prober checks that no two nodes ever answer
200 on /primary at once.

Besides the DCS section, each case changes only what three nodes on one
machine next to other test runs need (each case's docstring lists it):
the ports (free ones instead of 8008/5432...), and paths that would be shared
by the three nodes or lie outside the test's scratch directory.

The fixtures are in configs/patroni/ (origin and licence in its README)."""
import os
import shutil
import ssl
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
import base64
import json

import psycopg2
import pytest
import yaml

from pgw_harness import managed_clusters, pid_alive

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "configs", "patroni")
PGVERSION = "15"


@pytest.fixture
def make_cluster(request):
    yield from managed_clusters(request)


# --- a small REST client: http or https (own CA), optional basic auth -------

class Api:
    def __init__(self, scheme="http", cafile=None, auth=None):
        self.scheme, self.auth = scheme, auth
        self.ctx = ssl.create_default_context(cafile=cafile) if scheme == "https" else None

    def url(self, node, path):
        return f"{self.scheme}://127.0.0.1:{node.api_port}{path}"

    def call(self, node, path, method="GET", auth=True, timeout=1.0, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(node, path), method=method, data=data)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth and self.auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(
                f"{self.auth[0]}:{self.auth[1]}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except Exception:
            return 0, None
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def view(self, node, path):
        s, b = self.call(node, path)
        return b if s in (200, 503) and isinstance(b, dict) else None


def wait(pred, timeout, what, cluster=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        dead = [n.name for n in (cluster.nodes if cluster else []) if n.expect_up and not n.alive()]
        if dead:
            raise AssertionError(f"pgwarden exited on {dead} while waiting for {what}\n"
                                 + cluster.dump_logs(tail=60))
        time.sleep(0.25)
    logs = cluster.dump_logs(tail=60) if cluster else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})\n{logs}")


class Prober(threading.Thread):
    """Invariant 1 through this case's client (TLS, auth): never two 200s."""

    def __init__(self, cluster, api):
        super().__init__(daemon=True)
        self.cluster, self.api = cluster, api
        self.stop_event = threading.Event()
        self.rounds, self.violations = 0, []

    def run(self):
        while not self.stop_event.is_set():
            ok = [n.name for n in self.cluster.nodes
                  if self.api.call(n, "/primary", timeout=0.5)[0] == 200]
            self.rounds += 1
            if len(ok) > 1:
                self.violations.append(ok)
            time.sleep(0.1)

    def stop(self):
        self.stop_event.set()
        self.join(10)
        assert self.rounds > 0, "the prober never probed"
        return self.violations


# --- the scenario every case runs -------------------------------------------

def set_configs(cluster, cfgs):
    """Give each node its configuration (a dict written as YAML by the
    harness, mode 0600, owned by postgres); the node's data_dir as PostgreSQL
    sees it (relative paths against the node's working directory)."""
    for n, cfg in zip(cluster.nodes, cfgs):
        n.name = cfg["name"]
        n.config = (lambda c=cfg: c)
        n.data_dir = os.path.join(n.dir, cfg["postgresql"]["data_dir"])


def raft_section(cluster, n):
    return {"self_addr": n.raft_addr,
            "partner_addrs": [m.raft_addr for m in cluster.nodes if m is not n],
            "data_dir": n.raft_dir}


def healthy(cluster, api):
    """The one primary when it has two streaming replicas on its timeline."""
    up = [n for n in cluster.nodes if n.alive() and api.call(n, "/primary")[0] == 200]
    if len(up) != 1:
        return None
    view = api.view(up[0], "/cluster")
    if not view:
        return None
    lead = [m for m in view["members"] if m["role"] == "leader"]
    if len(lead) != 1 or lead[0]["name"] != up[0].name:
        return None
    tl = lead[0].get("timeline")
    streaming = [m for m in view["members"] if m["role"] in ("replica", "sync_standby")
                 and m["state"] == "streaming" and m.get("timeline") == tl]
    return up[0] if len(streaming) == 2 else None


def fail_over_and_rejoin(cluster, api, nofailover=(), start=None, budget=90):
    """Bootstrap, kill -9 the primary's node, wait for a new primary (never
    one of `nofailover`), restart the old one and wait until it streams from
    the new primary on the new timeline. Returns the timings."""
    start_node = start or (lambda n: n.start())

    def start(n):
        start_node(n)
        n.expect_up = True
    for n in cluster.nodes:
        n.expect_up = False
    t0 = time.monotonic()
    for n in cluster.nodes:
        start(n)
    old = wait(lambda: healthy(cluster, api), budget, "a primary and 2 streaming replicas", cluster)
    t_boot = time.monotonic() - t0
    tl_old = api.view(old, "/patroni")["timeline"]

    prober = Prober(cluster, api)
    prober.start()
    try:
        t1 = time.monotonic()
        old.expect_up = False
        old.kill_all()

        def promoted():
            up = [n for n in cluster.nodes if n is not old
                  and api.call(n, "/primary")[0] == 200]
            return up[0] if len(up) == 1 else None
        new = wait(promoted, budget, "a new primary", cluster)
        t_failover = time.monotonic() - t1
        assert new.name not in nofailover, f"{new.name} is tagged nofailover and was promoted"
        tl_new = api.view(new, "/patroni")["timeline"]
        assert tl_new > tl_old

        t2 = time.monotonic()
        start(old)

        def rejoined():
            b = api.view(old, "/patroni")
            return (b and b.get("role") == "replica" and b.get("replication_state") == "streaming"
                    and b.get("timeline") == tl_new)
        wait(rejoined, budget, f"{old.name} streaming on timeline {tl_new}", cluster)
        t_rejoin = time.monotonic() - t2
        assert healthy(cluster, api) is new or wait(lambda: healthy(cluster, api) is new, 30,
                                                   "the cluster healthy again", cluster)
    finally:
        violations = prober.stop()
    assert not violations, f"two nodes answered 200 on /primary: {violations}"
    timings = {"bootstrap": round(t_boot, 1), "failover": round(t_failover, 1),
               "rejoin": round(t_rejoin, 1), "old": old.name, "new": new.name}
    print(f"\n{cluster.scope}: {timings}")
    return timings


# --- 1. Patroni's own examples ----------------------------------------------

def test_patroni_examples(make_cluster):
    """postgres0.yml, postgres1.yml, postgres2.yml as Patroni 3.0.2 ships
    them (ttl 30, loop_wait 10, retry_timeout 10; pg_rewind with a rewind
    user; postgres2 with restapi authentication and `replicatefrom:
    postgres1`, a member that does not exist: the example names its nodes
    postgresql0..2). Changed besides `etcd:` -> `raft:`: restapi.listen and
    connect_address, postgresql.listen and connect_address (free ports
    instead of 8008-8010 and 5432-5434, which other runs on this machine may
    hold), and postgresql.pgpass (/tmp/pgpassN is shared by every run on the
    machine: a path in the node's directory). data_dir (data/postgresqlN)
    and unix_socket_directories ('..') are relative paths and stay as they
    are: each node runs in its own working directory."""
    c = make_cluster(n=3, start=False, scope="batman")
    cfgs = []
    for i, n in enumerate(c.nodes):
        with open(os.path.join(FIXTURES, f"postgres{i}.yml")) as f:
            cfg = yaml.safe_load(f)
        del cfg["etcd"]
        cfg["raft"] = raft_section(c, n)
        cfg["restapi"]["listen"] = cfg["restapi"]["connect_address"] = f"127.0.0.1:{n.api_port}"
        cfg["postgresql"]["listen"] = cfg["postgresql"]["connect_address"] = \
            f"127.0.0.1:{n.pg_port}"
        cfg["postgresql"]["pgpass"] = os.path.join(n.dir, "pgpass")
        cfgs.append(cfg)
    c.extra_secrets = {"zalando", "rep-pass", "rewind_password", "admin%", "password"} - {"password"}
    set_configs(c, cfgs)
    fail_over_and_rejoin(c, Api())
    check_bootstrap_users(c, Api())


def check_bootstrap_users(c, api):
    """bootstrap.users as Patroni 3.0.2 creates them after its bootstrap:
    the example's `admin: {password: admin%, options: [createrole, createdb]}`
    exists on every node (created on the first primary, replicated), with
    those attributes and LOGIN added, its password works over TCP (the
    example's pg_hba: `host all all 0.0.0.0/0 md5`), and the password is in
    no log: pgwarden's, nor PostgreSQL's (<data_dir>.startup.log)."""
    for n in c.nodes:
        conn = psycopg2.connect(host="127.0.0.1", port=n.pg_port, user="postgres",
                                password="zalando", dbname="postgres", connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT rolcreaterole, rolcreatedb, rolcanlogin, rolsuper, "
                            "rolreplication FROM pg_catalog.pg_roles WHERE rolname = 'admin'")
                rows = cur.fetchall()
        finally:
            conn.close()
        assert rows == [(True, True, True, False, False)], (n.name, rows)
    primary = healthy(c, api) or wait(lambda: healthy(c, api), 30, "a healthy cluster", c)
    conn = psycopg2.connect(host="127.0.0.1", port=primary.pg_port, user="admin",
                            password="admin%", dbname="postgres", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == ("admin",)
    finally:
        conn.close()
    assert not any("unknown key bootstrap.users" in n.log() for n in c.nodes)
    # by the node that ran initdb only: the replicas get the role by streaming
    created = [n.name for n in c.nodes if "creating the 1 role(s) of bootstrap.users" in n.log()]
    assert len(created) == 1, created
    pg_logs = []
    for n in c.nodes:
        assert "admin%" not in n.log(), f"the bootstrap.users password is in {n.log_path}"
        pg_log = n.data_dir + ".startup.log"
        if os.path.exists(pg_log):
            pg_logs.append(pg_log)
            with open(pg_log, errors="replace") as f:
                assert "admin%" not in f.read(), f"the bootstrap.users password is in {pg_log}"
    assert pg_logs, "no PostgreSQL log found to check"


# --- 2. Debian's template, as pg_createconfig_patroni renders it ------------

def render_debian(template, subst):
    """What pg_createconfig_patroni's sed does to /etc/patroni/config.yml.in."""
    out = template
    for k, v in subst.items():
        out = out.replace(f"@{k}@", v)
    return out


def test_debian_template(make_cluster):
    """Debian's /etc/patroni/config.yml.in rendered as pg_createconfig_patroni
    15 CLUSTER renders it (the script's sed substitutions are reproduced
    here: the script itself writes into /etc/patroni as root), with
    @DCS_CONFIG@ (the contents of /etc/patroni/dcs.yml) being the raft
    section. Template variables given per node: @HOSTNAME@ (the node's name,
    three machines have three host names), @HOSTIP@ 127.0.0.1, @PORT@ and
    @API_PORT@ free ports, @DATADIR_BASE@ the node's directory, @NETWORK@
    127.0.0.0/8. Changed besides: config_dir, pgpass and
    parameters.log_directory (literal /etc/postgresql/15/CLUSTER,
    /var/lib/postgresql and /var/log/postgresql: shared by three nodes on one
    machine, and outside the scratch dir): the node's directory; and
    PG_CLUSTER_CONF_ROOT is set for pgwarden so that the template's
    pg_createcluster/pg_clonecluster scripts write config_dir there."""
    c = make_cluster(n=3, start=False)
    cluster_name = c.scope
    with open(os.path.join(FIXTURES, "debian-config.yml.in")) as f:
        template = f.read()
    cfgs = []
    for n in c.nodes:
        dcs = yaml.safe_dump({"raft": raft_section(c, n)}, sort_keys=False)
        text = render_debian(template, {
            "VERSION": PGVERSION, "CLUSTER": cluster_name, "HOSTNAME": n.name,
            "HOSTIP": "127.0.0.1", "LISTEN_VIP": "", "DATADIR_BASE": n.dir,
            "NETWORK": "127.0.0.0/8", "API_PORT": str(n.api_port), "PORT": str(n.pg_port),
            "DCS_CONFIG": dcs})
        cfg = yaml.safe_load(text)
        pg = cfg["postgresql"]
        pg["config_dir"] = os.path.join(n.dir, "etc", PGVERSION, cluster_name)
        pg["pgpass"] = os.path.join(n.dir, f"{PGVERSION}-{cluster_name}.pgpass")
        pg["parameters"]["log_directory"] = os.path.join(n.dir, "pglog")
        cfgs.append(cfg)
    set_configs(c, cfgs)

    def start(n):
        old = os.environ.get("PG_CLUSTER_CONF_ROOT")
        os.environ["PG_CLUSTER_CONF_ROOT"] = os.path.join(n.dir, "etc")
        try:
            n.start()
        finally:
            if old is None:
                del os.environ["PG_CLUSTER_CONF_ROOT"]
            else:
                os.environ["PG_CLUSTER_CONF_ROOT"] = old
    # pg_createcluster touches its default log file even with logging_collector
    stray = f"/var/log/postgresql/postgresql-{PGVERSION}-{cluster_name}.log"
    try:
        fail_over_and_rejoin(c, Api(), start=start)
    finally:
        if os.path.exists(stray):
            os.unlink(stray)


# --- 3. a production-style file ---------------------------------------------

CALLBACK = """#!/bin/sh
echo "$(date +%s.%N) $*" >> {log}
"""


def make_tls(d):
    """A CA and a server certificate for 127.0.0.1 (openssl)."""
    os.makedirs(d)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=60, cwd=d)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=pgw-test-ca", "-keyout", "ca.key", "-out", "ca.crt")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "server.crt")
    os.chmod(os.path.join(d, "server.key"), 0o600)
    return d


PROD_TAGS = {"n1": {"clonefrom": True, "nofailover": False},
             "n2": {"noloadbalance": True},
             "n3": {"nofailover": True, "noloadbalance": True}}


def production_yaml(c, n, tls):
    return f"""\
scope: {c.scope}
namespace: /service/
name: {n.name}

log:
  level: INFO
  dir: {n.dir}/log
  format: '%(asctime)s %(levelname)s: %(message)s'
  dateformat: '%Y-%m-%d %H:%M:%S'
  file_num: 10
  file_size: 26214400

restapi:
  listen: 127.0.0.1:{n.api_port}
  connect_address: 127.0.0.1:{n.api_port}
  certfile: {tls}/server.crt
  keyfile: {tls}/server.key
  cafile: {tls}/ca.crt
  authentication:
    username: patroni
    password: api-Secret-9

ctl:
  cacert: {tls}/ca.crt

etcd3:
  hosts:
  - 10.0.0.11:2379
  - 10.0.0.12:2379
  - 10.0.0.13:2379

bootstrap:
  dcs:
    ttl: 20
    loop_wait: 5
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_connections: 100
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: "on"
        password_encryption: scram-sha-256
  initdb:
  - encoding: UTF8
  - data-checksums
  pg_hba:
  - local all all peer
  - host replication replicator 127.0.0.1/32 scram-sha-256
  - host all all 127.0.0.1/32 scram-sha-256

postgresql:
  listen: 127.0.0.1:{n.pg_port}
  connect_address: 127.0.0.1:{n.pg_port}
  data_dir: {n.dir}/data
  bin_dir: /usr/lib/postgresql/{PGVERSION}/bin
  pgpass: {n.dir}/pgpass
  authentication:
    superuser:
      username: postgres
      password: prod-Su-Secret-7
    replication:
      username: replicator
      password: prod-Repl-Secret-8
  callbacks:
    on_start: {n.dir}/callback.sh
    on_stop: {n.dir}/callback.sh
    on_role_change: {n.dir}/callback.sh
  parameters:
    unix_socket_directories: {n.dir}
    shared_buffers: 16MB

watchdog:
  mode: automatic
  device: {n.dir}/no-such-watchdog
  safety_margin: 5

tags:
{yaml.safe_dump(PROD_TAGS[n.name], default_flow_style=False).rstrip().replace(chr(10), chr(10) + '  ').join(['  ', ''])}
"""


def test_production_style(make_cluster):
    """Callbacks, tags, watchdog automatic without a device (Patroni's
    default mode: a node without /dev/watchdog runs without one, and a test
    cannot load softdog), restapi authentication and TLS (openssl certs made
    here), Patroni log settings, no rewind section. pgwarden refuses the
    Patroni log.format string with a clear error, so the file goes through
    `pgwarden convert-patroni` (which also replaces etcd3: with raft:)."""
    c = make_cluster(n=3, start=False)
    tls = make_tls(os.path.join(c.dir, "tls"))
    for root, dirs, files in os.walk(tls):
        for f in files + dirs:
            c.chown(os.path.join(root, f))
    c.chown(tls)
    cfgs, changes = [], {}
    for n in c.nodes:
        os.makedirs(os.path.join(n.dir, "log"))
        c.chown(os.path.join(n.dir, "log"))
        cb = os.path.join(n.dir, "callback.sh")
        with open(cb, "w") as f:
            f.write(CALLBACK.format(log=os.path.join(n.dir, "callbacks.log")))
        os.chmod(cb, 0o755)
        src = os.path.join(n.dir, "patroni.yml")
        with open(src, "w") as f:
            f.write(production_yaml(c, n, tls))
        # as written, pgwarden refuses it
        r = subprocess.run([c.binary, "validate", "--offline", "-c", src], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1 and "log.format" in r.stderr, r.stderr
        out = os.path.join(n.dir, "converted.yml")
        r = subprocess.run([c.binary, "convert-patroni", src, "--self-addr", n.raft_addr,
                            "--partners", ",".join(m.raft_addr for m in c.nodes if m is not n),
                            "--raft-data-dir", n.raft_dir, "-o", out],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        changes[n.name] = r.stderr
        with open(out) as f:
            cfgs.append(yaml.safe_load(f))
    print("\nconvert-patroni:\n" + changes["n1"])
    c.extra_secrets = {"api-Secret-9", "prod-Su-Secret-7", "prod-Repl-Secret-8"}
    set_configs(c, cfgs)
    api = Api("https", cafile=os.path.join(tls, "ca.crt"), auth=("patroni", "api-Secret-9"))
    t = fail_over_and_rejoin(c, api, nofailover=("n3",))
    assert t["old"] != "n3"

    # restapi authentication: a write without credentials is refused
    new = c.node(t["new"])
    assert api.call(new, "/restart", method="POST", auth=False, body={})[0] == 401
    # the watchdog: automatic, no device, the node runs without one
    assert any("without a watchdog" in n.log() or "watchdog" in n.log() for n in c.nodes)
    # callbacks: each node started; the new primary got on_role_change primary;
    # the old one on_start/on_role_change replica when it came back
    def calls(n):
        try:
            with open(os.path.join(n.dir, "callbacks.log")) as f:
                return [line.split()[1:] for line in f]
        except OSError:
            return []
    wait(lambda: ["on_role_change", "primary", c.scope] in calls(new), 20,
         "on_role_change primary on the new primary", c)
    for n in c.nodes:
        assert any(x[0] == "on_start" and x[2] == c.scope for x in calls(n)), (n.name, calls(n))
    old = c.node(t["old"])
    assert any(x[:2] in (["on_start", "replica"], ["on_role_change", "replica"])
               for x in calls(old)), calls(old)
    # tags published as configured
    view = api.view(new, "/cluster")
    tags = {m["name"]: m.get("tags", {}) for m in view["members"]}
    assert tags["n3"].get("nofailover") is True and tags["n3"].get("noloadbalance") is True, tags
    assert tags["n1"].get("clonefrom") is True, tags
    # log settings: pgwarden writes to log.dir/pgwarden.log
    assert os.path.getsize(os.path.join(c.nodes[0].dir, "log", "pgwarden.log")) > 0
