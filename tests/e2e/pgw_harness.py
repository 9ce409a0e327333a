"""Harness for end-to-end tests of pgwarden clusters on 127.0.0.1.

A Cluster owns a scratch directory the postgres user owns, a copy of the
pgwarden binary there (the repository may not be readable by that user),
one YAML file per node on free ports, and every process it starts: each
pgwarden runs as the postgres user (subprocess user=), so its pid is the
daemon's own and it is ended by pid; postmasters are found through their
postmaster.pid and ended by pid as well. Sanitizer reports of the test build
go to files in the scratch dir; cleanup() fails the test if any appeared.

The Prober asks every node's /primary every PROBE_MS and records any round
in which two nodes answered 200 (invariant 1). The Writer inserts a row
every WRITE_MS through a connection to the node that answers 200 on
/primary (re-probed like a load balancer) and keeps the ledger of
acknowledged commits, so a test can check which survived."""
import concurrent.futures
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg2
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PGBIN = os.environ.get("PGW_PGBIN", "/usr/lib/postgresql/15/bin")
SU_PASSWORD = "su-Secret-1"
REPL_PASSWORD = "repl-Secret-2"
REWIND_PASSWORD = "rewind-Secret-3"
PROBE_MS = 80
WRITE_MS = 20


def pgw_binary():
    path = os.environ.get("PGW_BIN")
    if not path:
        import pytest
        pytest.skip("PGW_BIN (the pgwarden binary to test) is not set; run through `make test`")
    return path


def free_ports(n):
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
            socks.append(s)
            if p != 5432:
                ports.append(p)
    finally:
        for s in socks:
            s.close()
    return ports


def http(url, method="GET", body=None, timeout=2.0, auth=None):
    """(status, parsed JSON or text); status 0 when the request failed."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth is not None:
        import base64
        req.add_header("Authorization", "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    except Exception:
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(pred, timeout, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Node:
    def __init__(self, cluster, name, witness=False, tags=None, pg_params=None, extra=None):
        self.cluster = cluster
        self.name = name
        self.witness = witness
        self.api_port, self.raft_port, self.pg_port = free_ports(3)
        self.dir = os.path.join(cluster.dir, name)
        self.data_dir = os.path.join(self.dir, "data")
        self.raft_dir = os.path.join(self.dir, "raft")
        self.cfg_path = os.path.join(self.dir, "pgwarden.yml")
        self.log_path = os.path.join(self.dir, "pgwarden.log")
        self.tags = tags or {}
        self.pg_params = pg_params or {}
        self.extra = extra or {}
        self.proc = None
        os.makedirs(self.dir)
        cluster.chown(self.dir)

    @property
    def api(self):
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def raft_addr(self):
        return f"127.0.0.1:{self.raft_port}"

    def config(self):
        c = {
            "scope": self.cluster.scope,
            "name": self.name,
            "restapi": {"listen": f"127.0.0.1:{self.api_port}"},
            "raft": {
                "self_addr": self.raft_addr,
                "partner_addrs": [n.raft_addr for n in self.cluster.nodes if n is not self],
                "data_dir": self.raft_dir,
            },
            "log": {"level": "info"},
            "bootstrap": {"dcs": dict(self.cluster.dcs)},
        }
        if self.tags:
            c["tags"] = dict(self.tags)
        if not self.witness:
            params = {"unix_socket_directories": self.cluster.dir, "fsync": "off",
                      "shared_buffers": "16MB", "max_wal_size": "64MB"}
            params.update(self.pg_params)
            c["postgresql"] = {
                "listen": f"127.0.0.1:{self.pg_port}",
                "data_dir": self.data_dir,
                "bin_dir": PGBIN,
                "authentication": {
                    "superuser": {"username": "postgres", "password": SU_PASSWORD},
                    "replication": {"username": "replicator", "password": REPL_PASSWORD},
                    "rewind": {"username": "rewind_user", "password": REWIND_PASSWORD},
                },
                "parameters": params,
            }
        for k, v in self.extra.items():
            if isinstance(v, dict) and isinstance(c.get(k), dict):
                c[k].update(v)
            else:
                c[k] = v
        return c

    def write_config(self):
        with open(self.cfg_path, "w") as f:
            yaml.safe_dump(self.config(), f, sort_keys=False)
        self.cluster.chown(self.cfg_path)
        os.chmod(self.cfg_path, 0o600)

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.write_config()
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.update(self.cluster.sanitizer_env())
        self.proc = subprocess.Popen([self.cluster.binary, "run", "-c", self.cfg_path],
                                     stdout=log, stderr=subprocess.STDOUT, env=env,
                                     user="postgres", group="postgres", extra_groups=[],
                                     cwd=self.dir, start_new_session=True)
        log.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            os.kill(self.proc.pid, sig)
            if sig == signal.SIGKILL:
                self.proc.wait(10)

    def stop(self, timeout=60):
        """SIGTERM and wait: returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"{self.name}: pgwarden did not stop within {timeout}s")

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def kill_postmaster(self, sig=signal.SIGKILL):
        pid = self.postmaster_pid()
        if pid:
            os.kill(pid, sig)
        return pid

    def get(self, path, timeout=2.0):
        return http(self.api + path, timeout=timeout)

    def status(self, path):
        return self.get(path, timeout=1.0)[0]

    def connect(self, timeout=2):
        return psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="postgres",
                                password=SU_PASSWORD, dbname="postgres", connect_timeout=timeout)

    def query(self, sql, args=None):
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Cluster:
    def __init__(self, n=3, scope=None, dcs=None, witnesses=(), node_opts=None):
        self.binary_src = pgw_binary()
        self.dir = tempfile.mkdtemp(prefix="pgw-e2e-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam("postgres")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.chown(self.dir)
        bindir = os.path.join(self.dir, "bin")
        os.makedirs(bindir)
        self.binary = os.path.join(bindir, "pgwarden")
        shutil.copy2(self.binary_src, self.binary)
        os.chmod(bindir, 0o755)
        os.chmod(self.binary, 0o755)
        self.san_dir = os.path.join(self.dir, "sanitizer")
        os.makedirs(self.san_dir)
        self.chown(self.san_dir)
        self.scope = scope or f"e2e{random.randint(1000, 9999)}"
        self.dcs = dcs or {}
        self.nodes = []
        node_opts = node_opts or {}
        for i in range(n):
            name = f"n{i + 1}"
            self.nodes.append(Node(self, name, witness=name in witnesses, **node_opts.get(name, {})))

    def chown(self, path):
        os.chown(path, self.uid, self.gid)

    def sanitizer_env(self):
        p = os.path.join(self.san_dir, "report")
        return {"ASAN_OPTIONS": f"log_path={p}:detect_leaks=1:abort_on_error=0",
                "UBSAN_OPTIONS": f"log_path={p}:print_stacktrace=1:halt_on_error=1"}

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def data_nodes(self):
        return [n for n in self.nodes if not n.witness]

    def start(self):
        for n in self.nodes:
            n.start()
        return self

    def primaries(self, timeout=1.0):
        """Nodes answering 200 on /primary right now."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as ex:
            codes = list(ex.map(lambda n: http(n.api + "/primary", timeout=timeout)[0], self.nodes))
        return [n for n, c in zip(self.nodes, codes) if c == 200]

    def primary(self):
        p = self.primaries()
        return p[0] if len(p) == 1 else None

    def wait_primary(self, timeout=60, exclude=None):
        def pred():
            p = self.primary()
            return p if p is not None and p is not exclude else None
        return wait_for(pred, timeout, what="exactly one node answering 200 on /primary")

    def cluster_view(self, node=None):
        for n in ([node] if node else self.nodes):
            status, body = n.get("/cluster")
            if status == 200:
                return body
        return None

    def wait_healthy(self, replicas=None, timeout=90):
        """One primary and `replicas` streaming replicas, all on the primary's timeline."""
        want = replicas if replicas is not None else len(self.data_nodes()) - 1

        def pred():
            p = self.primary()
            if p is None:
                return None
            view = self.cluster_view(p)
            if view is None:
                return None
            lead = [m for m in view["members"] if m["role"] == "leader"]
            if len(lead) != 1 or lead[0]["name"] != p.name:
                return None
            tl = lead[0].get("timeline")
            streaming = [m for m in view["members"] if m["role"] in ("replica", "sync_standby")
                         and m["state"] == "streaming" and m.get("timeline") == tl]
            return p if len(streaming) >= want else None
        return wait_for(pred, timeout, interval=0.25, what=f"a primary and {want} streaming replicas")

    def cleanup(self):
        problems = []
        for n in self.nodes:
            if n.alive():
                n.kill(signal.SIGKILL)
        for n in self.nodes:
            pid = n.postmaster_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(n.postmaster_pid() for n in self.nodes):
            time.sleep(0.1)
        reports = os.listdir(self.san_dir) if os.path.isdir(self.san_dir) else []
        for r in reports:
            with open(os.path.join(self.san_dir, r), errors="replace") as f:
                problems.append(f"sanitizer report {r}:\n" + f.read()[-4000:])
        if os.environ.get("PGW_KEEP_TMP"):
            print(f"keeping {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            raise AssertionError("\n".join(problems))

    def dump_logs(self, tail=120):
        out = []
        for n in self.nodes:
            lines = n.log().splitlines()[-tail:]
            out.append(f"----- {n.name} -----\n" + "\n".join(lines))
        return "\n".join(out)


class Prober(threading.Thread):
    """Invariant 1: at most one node answers 200 on /primary in any round."""

    def __init__(self, cluster, path="/primary"):
        super().__init__(daemon=True)
        self.cluster, self.path = cluster, path
        self.stop_event = threading.Event()
        self.rounds = 0
        self.violations = []
        self.pool = concurrent.futures.ThreadPoolExecutor(len(cluster.nodes))

    def run(self):
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            futs = [self.pool.submit(http, n.api + self.path, "GET", None, 0.3)
                    for n in self.cluster.nodes]
            codes = [f.result()[0] for f in futs]
            self.rounds += 1
            ok = [n.name for n, c in zip(self.cluster.nodes, codes) if c == 200]
            if len(ok) > 1:
                self.violations.append((time.time(), ok))
            time.sleep(max(0, PROBE_MS / 1000 - (time.monotonic() - t0)))

    def stop(self):
        self.stop_event.set()
        self.join(10)
        self.pool.shutdown(wait=False)
        return self.violations


class Writer(threading.Thread):
    """Inserts rows through the node answering 200 on /primary; keeps the
    ledger of acknowledged commits."""

    def __init__(self, cluster, table="ledger", interval_ms=WRITE_MS):
        super().__init__(daemon=True)
        self.cluster, self.table, self.interval = cluster, table, interval_ms / 1000
        self.stop_event = threading.Event()
        self.acked = []          # (id, monotonic time, node name)
        self.errors = 0
        self.next_id = 1
        self.conn = None
        self.conn_node = None
        self.last_probe = 0

    def setup(self):
        p = self.cluster.wait_primary()
        p.query(f"CREATE TABLE IF NOT EXISTS {self.table} (id bigint PRIMARY KEY, "
                "t timestamptz DEFAULT clock_timestamp())")
        return self

    def _primary(self):
        now = time.monotonic()
        if self.conn is not None and now - self.last_probe < 0.5:
            return self.conn
        self.last_probe = now
        p = self.cluster.primary()
        if p is None:
            return None
        if p is not self.conn_node or self.conn is None:
            self._close()
            try:
                self.conn = p.connect(timeout=1)
                self.conn.autocommit = True
                self.conn_node = p
            except psycopg2.Error:
                self.conn = None
        return self.conn

    def _close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
        self.conn, self.conn_node = None, None

    def run(self):
        while not self.stop_event.is_set():
            conn = self._primary()
            if conn is not None:
                i = self.next_id
                try:
                    with conn.cursor() as cur:
                        cur.execute("SET statement_timeout = '2s'")
                        cur.execute(f"INSERT INTO {self.table}(id) VALUES (%s)", (i,))
                    self.acked.append((i, time.monotonic(), self.conn_node.name))
                    self.next_id += 1
                except psycopg2.Error:
                    self.errors += 1
                    self._close()
            time.sleep(self.interval)
        self._close()

    def stop(self):
        self.stop_event.set()
        self.join(15)

    def max_gap(self, after=None):
        """Largest gap between consecutive acknowledged commits (seconds)."""
        ts = [t for _, t, _ in self.acked if after is None or t >= after]
        return max((b - a for a, b in zip(ts, ts[1:])), default=0.0)

    def lost(self, node):
        """Acknowledged ids missing on `node` (the final primary)."""
        rows = node.query(f"SELECT id FROM {self.table}")
        present = {r[0] for r in rows}
        return sorted(i for i, _, _ in self.acked if i not in present)
