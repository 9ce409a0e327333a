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

from ports import free_ports  # noqa: F401 (tests import it from here)

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


# Waits for something that must eventually happen get at least this long: a
# loaded 2-core CI machine running the sanitizer build is several times
# slower than a quiet one, and how fast things happen is bench/'s business.
# Limits that are the property under test pass floor=False.
WAIT_FLOOR = float(os.environ.get("PGW_WAIT_FLOOR", "20"))


def wait_for(pred, timeout, interval=0.1, what="condition", floor=True):
    if floor:
        timeout = max(timeout, WAIT_FLOOR)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def with_logs(cluster, fn, *args, **kw):
    """fn(...), with the nodes' logs added to a timeout's message."""
    try:
        return fn(*args, **kw)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{cluster.dump_logs()}") from None


class Node:
    def __init__(self, cluster, name, witness=False, tags=None, pg_params=None, extra=None,
                 rewind=True):
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
        # False: no postgresql.authentication.rewind section (as in many
        # Patroni configurations): pg_rewind then connects as the superuser
        self.rewind = rewind
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
            auth = {
                "superuser": {"username": "postgres", "password": SU_PASSWORD},
                "replication": {"username": "replicator", "password": REPL_PASSWORD},
            }
            if self.rewind:
                auth["rewind"] = {"username": "rewind_user", "password": REWIND_PASSWORD}
            c["postgresql"] = {
                "listen": f"127.0.0.1:{self.pg_port}",
                "data_dir": self.data_dir,
                "bin_dir": PGBIN,
                "authentication": auth,
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

    # --- added for the fault tests (test_ha_*.py) ---

    def pgwarden_pid(self):
        return self.proc.pid if self.alive() else None

    def pg_pids(self):
        """The postmaster and every process it started (backends, walsenders...)."""
        return process_tree(self.postmaster_pid())

    def pg_process(self, title):
        """pid of the instance's process whose command line (its title:
        "postgres: walreceiver", "postgres: archiver") contains `title`."""
        for pid in instance_pids(self.data_dir):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if title.encode() in f.read():
                        return pid
            except OSError:
                continue
        return None

    def node_pids(self):
        """Everything of this node: pgwarden (and its children) and PostgreSQL."""
        pids = process_tree(self.pgwarden_pid())
        return pids + [p for p in self.pg_pids() if p not in pids]

    def stop_all(self):
        """SIGSTOP the whole node (pgwarden and PostgreSQL); returns the pids to
        SIGCONT later."""
        return signal_pids(self.node_pids(), signal.SIGSTOP)

    def kill_all(self, timeout=10):
        """kill -9 the whole node (pgwarden and its fence keeper, postmaster,
        every postgres child: a stopped child would otherwise linger) and wait
        until it is gone."""
        pg = self.node_pids()
        if self.alive():
            self.kill(signal.SIGKILL)
        pg += [p for p in self.node_pids() if p not in pg]
        signal_pids(pg, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (any(pid_alive(p) for p in pg) or
                                               self.postmaster_alive()):
            time.sleep(0.02)
        assert not any(pid_alive(p) for p in pg), f"{self.name}: postgres processes survived kill -9"

    def postmaster_alive(self):
        """The pid in postmaster.pid is a live process (a killed postmaster
        stays a zombie until init reaps it: postmaster_pid() still finds it)."""
        pid = self.postmaster_pid()
        return pid if pid and pid_alive(pid) else None

    def walsender_pid(self, member):
        """pid of the walsender on this node that serves `member`."""
        rows = self.query("SELECT pid FROM pg_stat_replication WHERE application_name = %s", (member,))
        return rows[0][0] if rows else None

    def view(self, path, timeout=1.0):
        status, body = self.get(path, timeout=timeout)
        return body if status in (200, 503) and isinstance(body, dict) else None

    def is_streaming_replica(self):
        """This node's own view: PostgreSQL running in recovery and streaming."""
        body = self.view("/patroni", timeout=0.5)
        return bool(body and body.get("role") == "replica" and
                    body.get("replication_state") == "streaming")


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

    def wait_healthy(self, replicas=None, timeout=90, unless=None):
        """One primary and `replicas` streaming replicas, all on the primary's
        timeline. unless(): a condition that ends the wait early; its truthy
        value is then returned instead of the primary."""
        want = replicas if replicas is not None else len(self.data_nodes()) - 1

        def pred():
            if unless is not None:
                u = unless()
                if u:
                    return u
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
            streaming = [m for m in view["members"] if m["role"] in ("replica", "sync_standby", "quorum_standby")
                         and m["state"] == "streaming" and m.get("timeline") == tl]
            return p if len(streaming) >= want else None
        return wait_for(pred, timeout, interval=0.25, what=f"a primary and {want} streaming replicas")

    def cleanup(self):
        problems = []
        for n in self.nodes:
            # pgwarden and its children: the fence keeper (a session of its
            # own) would otherwise guard the lease alone until it ran out
            tree = process_tree(n.pgwarden_pid())
            if n.alive():
                n.kill(signal.SIGKILL)
            signal_pids(tree, signal.SIGKILL)
        # every process of each instance, not only the postmaster: a backend
        # outlives a killed postmaster until it next waits for its client
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [p for n in self.data_nodes() for p in instance_pids(n.data_dir)]
            if not left and not any(n.postmaster_pid() for n in self.nodes):
                break
            signal_pids(left, signal.SIGKILL)
            for n in self.nodes:
                pid = n.postmaster_pid()
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.1)
        reports = os.listdir(self.san_dir) if os.path.isdir(self.san_dir) else []
        for r in reports:
            with open(os.path.join(self.san_dir, r), errors="replace") as f:
                problems.append(f"sanitizer report {r}:\n" + f.read()[-4000:])
        problems += self.leaked_secrets()
        if os.environ.get("PGW_KEEP_TMP"):
            print(f"keeping {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            raise AssertionError("\n".join(problems))

    def secrets(self):
        """Every password the test gave to pgwarden: the harness's PostgreSQL
        ones and any `password` value in a node's extra config."""
        found = {SU_PASSWORD, REPL_PASSWORD, REWIND_PASSWORD}

        def walk(v):
            if isinstance(v, dict):
                for k, x in v.items():
                    if k == "password" and isinstance(x, str) and len(x) >= 6:
                        found.add(x)
                    else:
                        walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
        for n in self.nodes:
            walk(n.extra)
        return found | set(getattr(self, "extra_secrets", ()))

    def leaked_secrets(self):
        """Issue 10: no password in any log (pgwarden's, PostgreSQL's, hooks'
        output) of this cluster. Returns problem descriptions."""
        secrets = self.secrets()
        problems = []
        for root, _, files in os.walk(self.dir):
            for name in files:
                if not (name.endswith(".log") or os.path.basename(root) == "log"):
                    continue
                p = os.path.join(root, name)
                try:
                    with open(p, "rb") as f:
                        text = f.read()
                except OSError:
                    continue
                for sec in secrets:
                    if sec.encode() in text:
                        problems.append(f"a test password appears in {p}")
        return problems

    def dump_logs(self, tail=120):
        out = []
        for n in self.nodes:
            lines = n.log().splitlines()[-tail:]
            out.append(f"----- {n.name} -----\n" + "\n".join(lines))
        return "\n".join(out)

    # --- added for the fault tests (test_ha_*.py) ---

    def live_nodes(self):
        """Nodes whose pgwarden runs and is not stopped (SIGSTOP) by a test."""
        return [n for n in self.nodes if n.alive() and n.proc.pid not in STOPPED]

    def primary_record(self, node=None):
        """(member, epoch, state) of the replicated primary record, from `node`
        or any live node; None if nobody answers."""
        for n in ([node] if node else self.live_nodes()):
            v = n.view("/cluster")
            if v and "primary" in v:
                p = v["primary"]
                return p.get("member"), p.get("epoch"), p.get("state")
        return None

    def raft_leader(self):
        """Name of the Raft leader as a live node sees it (None if unknown)."""
        for n in self.live_nodes():
            status, body = n.get("/raft", timeout=1.0)
            if status == 200 and isinstance(body, dict):
                name = (body.get("leader") or {}).get("name")
                if name:
                    return name
        return None

    def leader_view(self):
        """/cluster from the Raft leader (it holds the controller's per-member
        reasons); falls back to any live node."""
        name = self.raft_leader()
        if name:
            v = self.node(name).view("/cluster")
            if v:
                return v
        return self.cluster_view()


class Prober(threading.Thread):
    """Invariant 1: at most one node answers 200 on /primary in any round."""

    def __init__(self, cluster, path="/primary"):
        super().__init__(daemon=True)
        self.cluster, self.path = cluster, path
        self.stop_event = threading.Event()
        self.rounds = 0
        self.violations = []
        self.started = self.stopped = None
        self.pool = concurrent.futures.ThreadPoolExecutor(len(cluster.nodes))

    def start(self):
        self.started = time.monotonic()
        super().start()

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
        """The violations seen; raises if the prober did not probe: a round
        takes at most one HTTP timeout (0.3 s) plus the pause, so fewer than
        one round per second of its life means it stalled or died, and an
        empty list would then prove nothing."""
        if not self.stop_event.is_set():
            self.stopped = time.monotonic()
        self.stop_event.set()
        self.join(10)
        self.pool.shutdown(wait=False)
        lived = self.stopped - self.started if self.started is not None else 0.0
        if self.rounds < max(1, int(lived)):
            raise AssertionError(f"the prober ran {self.rounds} rounds in {lived:.1f} s "
                                 f"(expected one every {PROBE_MS} ms): its verdict is void")
        return self.violations


def cut_session(conn):
    """Shut the socket of a psycopg2 connection down from another thread."""
    try:
        socket.socket(fileno=os.dup(conn.fileno())).shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg2.Error):
        pass


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
                # ids are never retried: a commit whose acknowledgement was
                # lost may exist anyway (a synchronous standby that had it is
                # promoted), and retrying its id would fail on the duplicate
                # key for ever; it stays unknown, never in the ledger
                self.next_id += 1
                # A frozen server never answers: cut the session after 2 s,
                # as a load balancer's on-marked-down shutdown-sessions does.
                guard = threading.Timer(2.0, cut_session, (conn,))
                guard.start()
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"INSERT INTO {self.table}(id) VALUES (%s)", (i,))
                    self.acked.append((i, time.monotonic(), self.conn_node.name))
                except psycopg2.Error:
                    self.errors += 1
                    self._close()
                finally:
                    guard.cancel()
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
        """Acknowledged ids missing on `node` (the final primary). Raises when
        nothing was acknowledged at all: "nothing lost" would then prove
        nothing."""
        # the ledger is read BEFORE the table: a commit acknowledged while the
        # query runs is not in its snapshot and must not count as lost
        acked = list(self.acked)
        if not acked:
            raise AssertionError(f"the writer acknowledged no commit ({self.errors} errors): "
                                 "no verdict on lost commits")
        rows = node.query(f"SELECT id FROM {self.table}")
        present = {r[0] for r in rows}
        return sorted(i for i, _, _ in acked if i not in present)


# --- fault-injection helpers (added for tests/e2e/test_ha_*.py) -------------
#
# Processes are always addressed by pid. Every pid a test SIGSTOPs is kept in
# STOPPED so a fixture can SIGCONT it whatever happened (continue_all()).

STOPPED = set()


def _ppid_map():
    """{ppid: [pid, ...]} for every process visible in /proc now."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    return children


def process_tree(root):
    """root and its descendants, alive now ([] if root is gone)."""
    if not root or not pid_alive(root):
        return []
    children = _ppid_map()
    out, todo = [], [root]
    while todo and len(out) < 10000:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def instance_pids(data_dir):
    """Every live process whose working directory is data_dir: the postmaster
    and all its children (each of which calls setsid(), so neither its
    process group nor its session names the instance), and any backend left
    running after its postmaster died."""
    want = os.path.realpath(data_dir)
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/cwd") == want and pid_alive(int(d)):
                out.append(int(d))
        except OSError:
            continue
    return out


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def signal_pids(pids, sig):
    """Send sig to each pid (ignoring the ones already gone); returns the pids
    signalled. SIGSTOP/SIGCONT keep STOPPED up to date."""
    done = []
    for p in pids:
        try:
            os.kill(p, sig)
            done.append(p)
        except OSError:
            continue
        if sig == signal.SIGSTOP:
            STOPPED.add(p)
        elif sig in (signal.SIGCONT, signal.SIGKILL):
            STOPPED.discard(p)
    return done


def continue_all():
    """SIGCONT every process a test stopped and has not continued."""
    for p in list(STOPPED):
        try:
            os.kill(p, signal.SIGCONT)
        except OSError:
            pass
        STOPPED.discard(p)


class RecordingProber(Prober):
    """A Prober that also remembers who answered 200 and when: `seen` maps a
    name to [first, last] monotonic time of a 200, `changes` lists (round
    start, names answering 200, round end) each time that set changed: a 200
    came between the start and the end of its round."""

    def __init__(self, cluster, path="/primary"):
        super().__init__(cluster, path)
        self.seen = {}
        self.changes = []

    def run(self):
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            futs = [self.pool.submit(http, n.api + self.path, "GET", None, 0.3)
                    for n in self.cluster.nodes]
            codes = [f.result()[0] for f in futs]
            self.rounds += 1
            ok = [n.name for n, c in zip(self.cluster.nodes, codes) if c == 200]
            for name in ok:
                self.seen.setdefault(name, [t0, t0])[1] = t0
            if not self.changes or self.changes[-1][1] != tuple(ok):
                self.changes.append((t0, tuple(ok), time.monotonic()))
            if len(ok) > 1:
                self.violations.append((time.time(), ok))
            time.sleep(max(0, PROBE_MS / 1000 - (time.monotonic() - t0)))

    def first_200(self, name, after, end=False):
        """When the round that first saw `name` answer 200 at or after
        `after` started (ended, with end=True); None if never."""
        return next((t1 if end else t for t, ok, t1 in self.changes if t >= after and name in ok),
                    None)


class Session(threading.Thread):
    """One PostgreSQL session opened on `node` now (before any fault) that
    tries to commit an insert every `interval` s and records when each commit
    was acknowledged. It never reconnects: it is the client a fence must cut."""

    def __init__(self, node, table="fence_probe", interval=0.05):
        super().__init__(daemon=True)
        self.node, self.table, self.interval = node, table, interval
        self.stop_event = threading.Event()
        self.ok = []             # monotonic times of acknowledged commits
        self.errors = []         # (monotonic time, message)
        node.query(f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, "
                   "t timestamptz DEFAULT clock_timestamp())")
        self.conn = node.connect(timeout=2)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SET statement_timeout = '1s'")

    def run(self):
        deadline = time.monotonic() + 600
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                with self.conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} DEFAULT VALUES")
                self.ok.append(time.monotonic())
            except psycopg2.Error as e:
                self.errors.append((time.monotonic(), str(e).strip().splitlines()[0] if str(e) else
                                    type(e).__name__))
            time.sleep(self.interval)
        try:
            self.conn.close()
        except psycopg2.Error:
            pass

    def stop(self):
        self.stop_event.set()
        self.join(10)

    def last_ok(self):
        return self.ok[-1] if self.ok else None


class FencingViolation(AssertionError):
    """A session opened on an old primary committed after it should have been
    fenced (DESIGN.md invariant 2). Its own type so that a test can be marked
    xfail for exactly this failure and no other."""


def managed_clusters(request):
    """Body of a pytest fixture: yields make(start=True, **Cluster kwargs) ->
    a Cluster (started unless start=False). Whatever happens, every process a test stopped is continued,
    every cluster cleaned up (which fails the test on sanitizer reports), and
    the node logs are printed when the test failed."""
    made = []
    failed_before = request.session.testsfailed

    def make(start=True, **kw):
        c = Cluster(**kw)
        made.append(c)
        return c.start() if start else c

    try:
        yield make
    finally:
        continue_all()
        problems = []
        for c in made:
            for t in getattr(c, "fault_threads", []):
                try:
                    t.stop()
                except AssertionError as e:
                    problems.append(str(e))
        for c in made:
            if request.session.testsfailed > failed_before:
                print(c.dump_logs(tail=150))
            try:
                c.cleanup()
            except AssertionError as e:
                problems.append(str(e))
        if problems:
            raise AssertionError("\n".join(problems))


def start_prober(cluster, recording=False):
    """A started Prober (RecordingProber) that managed_clusters stops."""
    p = (RecordingProber if recording else Prober)(cluster)
    cluster.__dict__.setdefault("fault_threads", []).append(p)
    p.start()
    return p


def start_writer(cluster):
    """A started Writer (table created) that managed_clusters stops."""
    w = Writer(cluster).setup()
    cluster.__dict__.setdefault("fault_threads", []).append(w)
    w.start()
    return w


def start_session(node, **kw):
    """A started Session on node that managed_clusters stops."""
    s = Session(node, **kw)
    node.cluster.__dict__.setdefault("fault_threads", []).append(s)
    s.start()
    return s


def served_after(prober, node, t0, timeout=3.0, end=False):
    """Seconds from t0 until the start (end=True: the end) of the first
    RecordingProber round that saw node answer 200 (waiting a little: that
    round may end after the caller saw the 200 itself)."""
    t = wait_for(lambda: prober.first_200(node.name, t0, end), timeout, interval=0.05,
                 what=f"the prober seeing {node.name} answer 200")
    return t - t0


def watch_rejoin(node, want_timeline=None, timeout=90, every=0.05):
    """Probe node's /primary every `every` s until it reports itself a
    streaming replica (on want_timeline if given). Returns (seconds it took,
    [(t, body) of every 200 answer seen meanwhile])."""
    t0 = time.monotonic()
    bad = []
    last = None
    while time.monotonic() - t0 < timeout:
        code, body = http(node.api + "/primary", timeout=0.5)
        if code == 200:
            bad.append((round(time.monotonic() - t0, 3), body))
        if isinstance(body, dict):
            last = body
            if (body.get("role") == "replica" and body.get("replication_state") == "streaming"
                    and (want_timeline is None or body.get("timeline") == want_timeline)):
                return time.monotonic() - t0, bad
        time.sleep(every)
    raise AssertionError(f"{node.name} did not become a streaming replica within {timeout}s "
                         f"(last status {last!r}); 200 answers meanwhile: {bad}")


def node_timeline(node):
    body = node.view("/patroni")
    return body.get("timeline") if body else None


def write_wal(node, mbytes, table="walfill"):
    """Generate about `mbytes` MB of WAL on the primary `node`."""
    node.query(f"CREATE TABLE IF NOT EXISTS {table} (id bigint, pad text)")
    rows = int(mbytes * 1024 * 1024 / 1100)
    node.query(f"INSERT INTO {table} SELECT g, repeat(md5(g::text), 32) "
               f"FROM generate_series(1, {rows}) g")


def hold_no_promotion(cluster, record, seconds, every=0.2, old=None, grace=1.0):
    """For `seconds`: the primary record keeps (member, epoch) and no node
    answers 200 on /primary, except `old` (the primary whose PostgreSQL just
    died) during its first `grace` seconds: the health endpoints answer from
    the status of the last monitor tick (loop_wait). Returns the last record
    seen."""
    t0 = time.monotonic()
    deadline = t0 + seconds
    last = record
    while time.monotonic() < deadline:
        rec = cluster.primary_record()
        if rec is not None:
            last = rec
            assert rec[:2] == record[:2], f"primary record changed from {record} to {rec}"
        up = cluster.primaries(timeout=0.5)
        late = time.monotonic() - t0
        assert all(n is old and late < grace for n in up), \
            f"{[n.name for n in up]} answered 200 on /primary {late:.2f}s into the hold"
        time.sleep(every)
    return last
