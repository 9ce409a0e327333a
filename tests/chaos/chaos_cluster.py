"""A pgwarden cluster in network namespaces with HAProxy in front, and the
four invariant checkers that run through every fault.

Built on tests/e2e/pgw_harness.py: NetNode and ChaosCluster subclass its
Node and Cluster (same YAML, sanitizer reports, logs, wait_healthy), with
each node's daemon started by `ip netns exec NS setpriv ... pgwarden run`
(both exec in place: the Popen pid is pgwarden's own, checked at start) and
every address the node's own 10.77.O.x. Each namespace has its own port
space, so every node uses the same fixed ports.

The checkers (all from the bridge namespace, like a client would be):
  (a) BucketProber: one thread per node asks /primary at every 100 ms tick
      (a tick is skipped for a node whose previous request is still out),
      so a round is "the requests started at tick k"; a round where two
      nodes answered 200 is a double-primary round.
  (b) FenceSession: a session opened on the primary (from inside its own
      namespace, over lo, so no network fault cuts it) before the fault,
      committing every 50 ms; we record send and ack time of each commit.
      Beside it, three busy sessions from the same place (tests/e2e/busy.py:
      a long INSERT ... SELECT, a COPY fed a row at a time, a libpq
      pipeline): none may have a commit acknowledged after the new
      primary's first write, nor (where the fault cuts every renewal) after
      the fence deadline.
  (c) LBWriter: inserts through HAProxy's writer port; its ledger of
      acknowledged ids is compared with the final primary's table.
  (d) convergence: after healing, one primary and N-1 streaming replicas on
      its timeline (pgw_harness.Cluster.wait_healthy) within CONVERGE_S.
"""
import collections
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

from pgw_harness import (SU_PASSWORD, Cluster, Node, continue_all, http,  # noqa: E402
                         pid_alive, wait_for)
from netlab import enter_netns, in_netns, pids_in_netns  # noqa: E402
from busy import create_busy_tables, start_busy_writers  # noqa: E402

API_PORT, RAFT_PORT, PG_PORT = 8008, 7000, 5433
LB_WRITE_PORT, LB_READ_PORT, LB_STATS_PORT = 5000, 5001, 7001
HAPROXY = "/usr/sbin/haproxy"
# invariant (d)'s bound; PGW_CHAOS_CONVERGE_S overrides it for diagnosis only
CONVERGE_S = float(os.environ.get("PGW_CHAOS_CONVERGE_S", "60"))
# Between the fence deadline and the last commit a client can see: the
# SIGQUIT, the keeper's SIGKILL 100 ms later, and scheduling on a loaded
# 2-core machine running the sanitizer build.
FENCE_SLACK = 0.5
DEFAULT_DCS = {"ttl": 2, "loop_wait": 0.5, "retry_timeout": 0.75,
               "maximum_lag_on_failover": 1048576}
TMPFS_PG = "384m"
# Busy sessions sized for the tmpfs and a shared 2-core machine: a long
# statement of ~25,000 rows, each an md5 of 20,000 copies of its number
# (about 4 s of one core, 1 MB), a COPY of 400 rows 10 ms apart, a pipeline
# of at most 500 transactions a second.
BUSY_ARGS = {"long-insert": ["25000", "20000"], "copy": ["400", "10"],
             "pipeline": ["16", "500"]}
TMPFS_RAFT = "64m"

REPORT = []          # one dict per scenario run (conftest prints the table)


class NetNode(Node):
    def __init__(self, cluster, name, ns, ip, **kw):
        super().__init__(cluster, name, **kw)
        self.ns, self.ip = ns, ip
        self.api_port, self.raft_port, self.pg_port = API_PORT, RAFT_PORT, PG_PORT
        self.sock_dir = os.path.join(self.dir, "sock")
        os.makedirs(self.sock_dir)
        cluster.chown(self.sock_dir)
        self.pgfs = os.path.join(self.dir, "pgfs")
        self.data_dir = os.path.join(self.pgfs, "data")

    @property
    def api(self):
        return f"http://{self.ip}:{API_PORT}"

    @property
    def raft_addr(self):
        return f"{self.ip}:{RAFT_PORT}"

    def config(self):
        c = super().config()
        c["restapi"]["listen"] = f"{self.ip}:{API_PORT}"
        if "postgresql" in c:
            c["postgresql"]["listen"] = f"{self.ip}:{PG_PORT}"
            c["postgresql"]["parameters"]["unix_socket_directories"] = self.sock_dir
        return c

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.write_config()
        env = dict(os.environ)
        env.update(self.cluster.sanitizer_env())
        env.update(self.cluster.extra_env)
        with open(self.log_path, "ab") as log:
            self.proc = self.cluster.lab.popen(
                self.ns, ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                          self.cluster.binary, "run", "-c", self.cfg_path],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                start_new_session=True)
        # ip netns exec and setpriv both exec in place: the pid is pgwarden's
        want = os.path.realpath(self.cluster.binary)
        wait_for(lambda: self.proc.poll() is not None or _exe(self.proc.pid) == want, 5,
                 interval=0.01, what=f"{self.name}: pid {self.proc.pid} running pgwarden")
        return self

    def connect(self, timeout=2):
        return psycopg2.connect(host=self.ip, port=PG_PORT, user="postgres", password=SU_PASSWORD,
                                dbname="postgres", connect_timeout=timeout)

    def kill_everything(self):
        """kill -9 pgwarden, its keeper and all of PostgreSQL (by pid)."""
        pids = self.node_pids()
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        pids += [p for p in self.node_pids() if p not in pids]
        for p in pids:
            try:
                os.kill(p, signal.SIGCONT)
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (any(pid_alive(p) for p in pids)
                                               or self.postmaster_alive()):
            time.sleep(0.02)


def _exe(pid):
    try:
        return os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        return None


class ChaosCluster(Cluster):
    def __init__(self, lab, n=3, dcs=None, env=None):
        super().__init__(n=0, dcs=dict(DEFAULT_DCS, **(dcs or {})))
        self.lab = lab
        self.extra_env = dict(env or {})
        os.makedirs(os.path.join(self.dir, "lb"))
        for i in range(n):
            node = NetNode(self, f"n{i + 1}", lab.node_ns[i], lab.node_ip(i))
            self.nodes.append(node)
            # every data dir and Raft dir on its own small tmpfs, so that a
            # test can fill it (ENOSPC) without touching the host's disk
            lab.mount_tmpfs(node.pgfs, TMPFS_PG, self.uid, self.gid)
            lab.mount_tmpfs(node.raft_dir, TMPFS_RAFT, self.uid, self.gid)

    def by_ip(self, ip):
        return next((n for n in self.nodes if n.ip == ip), None)

    def others(self, node):
        return [n for n in self.nodes if n is not node]

    def ttl(self):
        return float(self.dcs["ttl"])

    def retry_timeout(self):
        return float(self.dcs["retry_timeout"])

    def cleanup(self):
        for n in self.nodes:
            try:
                n.kill_everything()
            except Exception:
                pass
        self.lab.kill_all()
        self.lab.umount_all()
        super().cleanup()


class LoadBalancer:
    """HAProxy in its own namespace with Patroni's check settings."""

    def __init__(self, lab, cluster):
        self.lab, self.cluster = lab, cluster
        self.cfg = os.path.join(cluster.dir, "lb", "haproxy.cfg")
        self.log = os.path.join(cluster.dir, "lb", "haproxy.log")
        with open(self.cfg, "w") as f:
            f.write(self.config())
        with open(self.log, "wb") as err:
            self.proc = lab.popen(lab.lb_ns, [HAPROXY, "-f", self.cfg, "-db"],
                                  stdout=subprocess.DEVNULL, stderr=err)

    def config(self):
        servers = "\n".join(f"    server {n.name} {n.ip}:{PG_PORT} check port {API_PORT}"
                            for n in self.cluster.nodes)
        ip = self.lab.lb_ip
        return f"""global
    maxconn 200
defaults
    mode tcp
    timeout connect 1s
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen stats
    mode http
    bind {ip}:{LB_STATS_PORT}
    stats enable
    stats uri /
listen primary
    bind {ip}:{LB_WRITE_PORT}
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 1s fall 1 rise 1 on-marked-down shutdown-sessions
{servers}
listen replicas
    bind {ip}:{LB_READ_PORT}
    balance roundrobin
    option httpchk OPTIONS /replica
    http-check expect status 200
    default-server inter 1s fall 1 rise 1 on-marked-down shutdown-sessions
{servers}
"""

    def up_servers(self, backend="primary"):
        status, text = http(f"http://{self.lab.lb_ip}:{LB_STATS_PORT}/;csv", timeout=1.0)
        if status != 200 or not isinstance(text, str):
            return None
        rows = [line.split(",") for line in text.splitlines() if line and not line.startswith("#")]
        return sorted(r[1] for r in rows if len(r) > 17 and r[0] == backend
                      and r[1] not in ("FRONTEND", "BACKEND") and r[17].startswith("UP"))


class BucketProber:
    """Invariant (a). answers[name] = [(tick, start, end, code), ...]."""

    def __init__(self, cluster, ns, period=0.1, timeout=0.5, max_s=1800):
        self.cluster, self.ns, self.period, self.timeout = cluster, ns, period, timeout
        self.stop_event = threading.Event()
        self.t0 = time.monotonic()
        self.max_s = max_s
        self.answers = {n.name: [] for n in cluster.nodes}
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in cluster.nodes]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, node):
        enter_netns(self.ns)
        out = self.answers[node.name]
        k = 0
        while not self.stop_event.is_set() and time.monotonic() - self.t0 < self.max_s:
            k = max(k + 1, math.ceil((time.monotonic() - self.t0) / self.period))
            delay = self.t0 + k * self.period - time.monotonic()
            if delay > 0 and self.stop_event.wait(delay):
                break
            s = time.monotonic()
            code = http(node.api + "/primary", timeout=self.timeout)[0]
            out.append((k, s, time.monotonic(), code))

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(5)

    def rounds(self):
        return max((a[-1][0] for a in self.answers.values() if a), default=0)

    def double_rounds(self, after=None):
        """[(tick, sorted names)] of rounds in which two nodes answered 200."""
        by_tick = collections.defaultdict(set)
        for name, recs in self.answers.items():
            for k, s, _, code in list(recs):
                if code == 200 and (after is None or s >= after):
                    by_tick[k].add(name)
        return sorted((k, sorted(v)) for k, v in by_tick.items() if len(v) > 1)

    def first_200(self, names, after):
        """(start, end, name) of the earliest 200 from one of `names` whose
        request started at or after `after`; None if none."""
        best = None
        for name in names:
            for _, s, e, code in list(self.answers[name]):
                if code == 200 and s >= after and (best is None or s < best[0]):
                    best = (s, e, name)
                    break
        return best

    def served(self, name, t_from, t_to):
        return any(code == 200 and t_from <= s <= t_to
                   for _, s, _, code in list(self.answers[name]))


class LBWriter(threading.Thread):
    """Invariant (c): inserts one row every `interval` through HAProxy's
    writer port and keeps the ledger of acknowledged ids."""

    def __init__(self, cluster, lab, table="ledger", interval=0.02, max_s=1800):
        super().__init__(daemon=True)
        self.cluster, self.lab, self.table, self.interval = cluster, lab, table, interval
        self.stop_event = threading.Event()
        self.acked = []          # (id, monotonic ack time, node name)
        self.errors = 0
        self.next_id = 1
        self.conn = None
        self.conn_node = None
        self.max_s = max_s

    def _connect(self):
        try:
            conn = psycopg2.connect(host=self.lab.lb_ip, port=LB_WRITE_PORT, user="postgres",
                                    password=SU_PASSWORD, dbname="postgres", connect_timeout=1)
        except psycopg2.Error:
            return None
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT host(inet_server_addr())")
                ip = cur.fetchone()[0]
        except psycopg2.Error:
            _close(conn)
            return None
        self.conn_node = self.cluster.by_ip(ip)
        return conn

    def run(self):
        enter_netns(self.lab.bridge_ns)
        t_end = time.monotonic() + self.max_s
        while not self.stop_event.is_set() and time.monotonic() < t_end:
            if self.conn is None:
                self.conn = self._connect()
            if self.conn is not None:
                i = self.next_id
                # ids are never retried: a commit whose ack was lost stays
                # unknown (not in the ledger) instead of blocking the writer
                self.next_id += 1
                guard = threading.Timer(2.0, _cut, (self.conn,))
                guard.start()
                try:
                    with self.conn.cursor() as cur:
                        cur.execute(f"INSERT INTO {self.table}(id) VALUES (%s)", (i,))
                    self.acked.append((i, time.monotonic(), self.conn_node.name
                                       if self.conn_node else "?"))
                except psycopg2.Error:
                    self.errors += 1
                    _close(self.conn)
                    self.conn = None
                finally:
                    guard.cancel()
            self.stop_event.wait(self.interval)
        if self.conn is not None:
            _close(self.conn)

    def stop(self):
        self.stop_event.set()
        self.join(15)

    def max_gap(self, after):
        ts = [t for _, t, _ in list(self.acked) if t >= after]
        return max((b - a for a, b in zip(ts, ts[1:])), default=None)

    def lost(self, node):
        acked = list(self.acked)
        present = {r[0] for r in node.query(f"SELECT id FROM {self.table}")}
        return sorted(i for i, _, _ in acked if i not in present)


def _close(conn):
    try:
        conn.close()
    except psycopg2.Error:
        pass


def _cut(conn):
    import socket
    try:
        socket.socket(fileno=os.dup(conn.fileno())).shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg2.Error):
        pass


class FenceSession(threading.Thread):
    """Invariant (b): a session opened on `node` before the fault, from
    inside the node's own namespace; never reconnects."""

    def __init__(self, node, table="fence_probe", interval=0.05, max_s=1800):
        super().__init__(daemon=True)
        self.node, self.table, self.interval = node, table, interval
        self.stop_event = threading.Event()
        self.commits = []        # (send time, ack time)
        self.errors = []         # (time, first line)
        self.max_s = max_s
        with in_netns(node.ns):
            node.query(f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, "
                       "t timestamptz DEFAULT clock_timestamp())")
            self.conn = node.connect(timeout=2)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SET statement_timeout = '1s'")

    def run(self):
        t_end = time.monotonic() + self.max_s
        while not self.stop_event.is_set() and time.monotonic() < t_end:
            s = time.monotonic()
            try:
                with self.conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} DEFAULT VALUES")
                self.commits.append((s, time.monotonic()))
            except psycopg2.Error as e:
                self.errors.append((time.monotonic(), (str(e).strip().splitlines() or ["?"])[0]))
                if self.conn.closed:
                    break
            self.stop_event.wait(self.interval)
        _close(self.conn)

    def stop(self):
        self.stop_event.set()
        self.join(10)


def wal_bytes_per_row(node, table, rows=200):
    """WAL written per writer-style insert (one autocommit insert of one
    row), measured on the primary: converts lost rows to lost bytes."""
    conn = node.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS walprobe (id bigint PRIMARY KEY, "
                        "t timestamptz DEFAULT clock_timestamp())")
            cur.execute("SELECT pg_current_wal_lsn()")
            a = cur.fetchone()[0]
            for i in range(rows):
                cur.execute("INSERT INTO walprobe(id) VALUES (%s)", (i,))
            cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (a,))
            return float(cur.fetchone()[0]) / rows
    finally:
        conn.close()


class Chaos:
    """One scenario's world: namespaces, cluster, HAProxy, prober, writer.
    Use: ctx = Chaos(...).setup(); p = ctx.begin(); ...; ctx.mark_fault();
    ...; ctx.mark_heal(); res = ctx.finish(...); ctx.assert_invariants(res)."""

    def __init__(self, lab, name, run=1, n=3, dcs=None, env=None, session=True):
        self.lab, self.name, self.run = lab, name, run
        self.cluster = ChaosCluster(lab, n=n, dcs=dcs, env=env)
        self.want_session = session
        self.busy = []
        self.lb = self.prober = self.writer = self.session = None
        self.t_fault = self.t_heal = None
        self.notes = {}
        self.closed = False

    @property
    def sync(self):
        return bool(self.cluster.dcs.get("synchronous_mode"))

    def setup(self):
        c = self.cluster
        c.start()
        self.p0 = c.wait_healthy(timeout=120)
        if self.sync:
            wait_for(lambda: any(m["role"] in ("sync_standby", "quorum_standby")
                                 for m in (c.cluster_view(self.p0) or {}).get("members", [])),
                     30, what="a synchronous standby")
        self.p0.query("CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY, "
                      "t timestamptz DEFAULT clock_timestamp())")
        self.row_bytes = wal_bytes_per_row(self.p0, "walprobe")
        self.lb = LoadBalancer(self.lab, c)
        wait_for(lambda: self.lb.up_servers("primary") == [self.p0.name], 30,
                 what="HAProxy routing writers to the primary only")
        self.prober = BucketProber(c, self.lab.bridge_ns).start()
        self.writer = LBWriter(c, self.lab)
        self.writer.start()
        wait_for(lambda: len(self.writer.acked) >= 20, 20, what="writes through HAProxy")
        return self

    def begin(self):
        """The primary before the fault, with a session opened on it."""
        p = self.cluster.wait_healthy(timeout=60)
        self.p0 = p
        self.rec0 = self.cluster.primary_record(p)
        if self.want_session:
            self.session = FenceSession(p)
            self.session.start()
            wait_for(lambda: len(self.session.commits) >= 5, 10, what="the session committing")
            create_busy_tables(p.query)
            self.busy = start_busy_writers(
                f"host={p.ip} port={PG_PORT} user=postgres password={SU_PASSWORD} "
                "dbname=postgres connect_timeout=5", args=BUSY_ARGS, netns=p.ns)
        time.sleep(1.0)
        return p

    def mark_fault(self):
        self.t_fault = time.monotonic()
        return self.t_fault

    def mark_heal(self):
        self.t_heal = time.monotonic()
        return self.t_heal

    def wait_new_primary(self, timeout=30):
        """A node other than p0 answering 200 on /primary (whatever p0
        answers: a double primary is for the prober to count, not a reason
        to stop the scenario)."""
        c = self.cluster

        def other():
            return next((n for n in c.primaries(timeout=0.5) if n is not self.p0), None)
        return wait_for(other, timeout, what=f"a node other than {self.p0.name} answering 200")

    def hold(self, seconds):
        time.sleep(seconds)

    def converged(self):
        """Invariant (d), judged from fresh sources, not from the replicated
        member reports (an unreachable node's last report stays
        "streaming"): exactly one node answers 200 on /primary, the
        replicated view agrees (Cluster.wait_healthy's test), its
        pg_stat_replication shows every other node streaming, and each other
        node says itself it is a streaming replica on the primary's
        timeline. Returns the primary or None."""
        c = self.cluster
        p = c.primary()
        if p is None:
            return None
        view = c.cluster_view(p)
        if not view:
            return None
        lead = [m for m in view.get("members", []) if m["role"] == "leader"]
        if len(lead) != 1 or lead[0]["name"] != p.name:
            return None
        tl = lead[0].get("timeline")
        try:
            lsn = p.query("SELECT pg_current_wal_lsn()")[0][0]
            rows = p.query("SELECT application_name, pg_wal_lsn_diff(flush_lsn, %s) >= 0 "
                           "FROM pg_stat_replication WHERE state = 'streaming'",
                           (self._mark[1] if self._mark and self._mark[0] == p.name else lsn,))
        except psycopg2.Error:
            return None
        # a stalled connection still says "streaming": each replica must have
        # flushed WAL the primary wrote at an earlier poll after the heal
        fresh = self._mark is not None and self._mark[0] == p.name
        if not fresh:
            self._mark = (p.name, lsn)
        caught_up = {r[0] for r in rows if r[1]}
        for n in c.others(p):
            if not fresh or n.name not in caught_up:
                return None
            body = n.view("/patroni", timeout=0.5)
            if not (body and body.get("role") == "replica"
                    and body.get("replication_state") == "streaming"
                    and body.get("timeline") == tl):
                return None
        return p

    def finish(self, lease_cut=False, selftest=False, converge_limit=CONVERGE_S):
        """Converge, stop the workload, measure, record; returns the result
        dict (with its list of invariant violations under "violations")."""
        c = self.cluster
        v = []
        if self.t_heal is None:
            self.mark_heal()
        final = None
        self._mark = None
        try:
            final = wait_for(self.converged, max(1.0, self.t_heal + converge_limit - time.monotonic()),
                             interval=0.25, what="one primary and N-1 streaming replicas",
                             floor=False)
            converge = time.monotonic() - self.t_heal
        except AssertionError as e:
            converge = None
            v.append(f"(d) no convergence within {converge_limit:.0f}s of healing: {e}")
        if final is not None:
            t_conv = time.monotonic()
            try:
                wait_for(lambda: any(t > t_conv and n == final.name
                                     for _, t, n in self.writer.acked[-50:]), 20,
                         what=f"writes through HAProxy landing on {final.name}")
            except AssertionError as e:
                v.append(f"writer: {e}")
            time.sleep(0.3)
        self.writer.stop()
        if self.session is not None:
            self.session.stop()
        for w in self.busy:
            w.stop()
        self.prober.stop()
        res = {"scenario": self.name, "run": self.run, "sync": self.sync,
               "p0": self.p0.name, "final": final.name if final else None,
               "failover": bool(final and final is not self.p0),
               "converge_s": converge, "rounds": self.prober.rounds(),
               "writer_acked": len(self.writer.acked), "writer_errors": self.writer.errors}
        # (a)
        doubles = self.prober.double_rounds()
        res["double_rounds"] = len(doubles)
        if doubles:
            v.append(f"(a) {len(doubles)} probe rounds with two nodes answering 200 on /primary,"
                     f" first: tick {doubles[0][0]} {doubles[0][1]}")
        # (b)
        res.update(self._check_session(lease_cut, v))
        # (c)
        gap = self.writer.max_gap(self.t_fault - 1.0) if self.t_fault else None
        res["write_gap_s"] = gap
        if final is not None:
            lost = self.writer.lost(final)
            res["lost"] = len(lost)
            res["lost_bytes"] = int(len(lost) * self.row_bytes)
            res["row_bytes"] = round(self.row_bytes, 1)
            if lost and self.sync:
                v.append(f"(c) {len(lost)} acknowledged commits lost with synchronous_mode on: "
                         f"{lost[:10]}")
            limit = int(c.dcs.get("maximum_lag_on_failover", 1048576))
            if lost and not self.sync and res["lost_bytes"] > limit:
                v.append(f"(c) lost {len(lost)} commits ≈ {res['lost_bytes']} bytes of WAL, more "
                         f"than maximum_lag_on_failover {limit}")
        else:
            res["lost"] = None
        res.update(self.notes)
        res["violations"] = v
        res["selftest"] = selftest
        REPORT.append(res)
        if not selftest:
            _write_report_line(res)
        print(f"\n[chaos] {json.dumps(res, default=str)}")
        return res

    def _check_session(self, lease_cut, v):
        out = {}
        s = self.session
        if s is None or self.t_fault is None:
            return out
        commits = list(s.commits)
        after = [(a, b) for a, b in commits if b >= self.t_fault]
        others = [n.name for n in self.cluster.others(self.p0)]
        first_other = self.prober.first_200(others, self.t_fault)
        if first_other is not None:
            out["new_primary_200_s"] = round(first_other[0] - self.t_fault, 3)
            late = [(a, b) for a, b in after if a > first_other[1]]
            if late:
                v.append(f"(b) the session opened on {self.p0.name} before the fault committed "
                         f"{len(late)} times after {first_other[2]} answered 200 on /primary "
                         f"(first sent {late[0][0] - self.t_fault:.2f}s after the fault)")
            out["late_commits"] = len(late)
        self._check_busy(first_other, lease_cut, v, out)
        last = after[-1] if after else None
        out["session_last_commit_s"] = round(last[1] - self.t_fault, 3) if last else None
        out["session_last_sent_s"] = round(last[0] - self.t_fault, 3) if last else None
        if lease_cut:
            bound = self.cluster.ttl() - self.cluster.retry_timeout()
            out["fence_deadline_s"] = bound
            if last is not None and last[0] - self.t_fault > bound + FENCE_SLACK:
                v.append(f"(b) the session on {self.p0.name} committed {last[0] - self.t_fault:.2f}s "
                         f"after its last possible renewal; the fence deadline is ttl - "
                         f"retry_timeout = {bound:.2f}s (+{FENCE_SLACK}s slack)")
        return out

    def new_primary_first_write(self, first_other):
        """When a node other than p0 first took a write after the fault: the
        writer's first acknowledgement there, or, if it has none, the start
        of the first probe round that saw the node answer 200."""
        acks = [t for _, t, n in list(self.writer.acked) if t > self.t_fault and n != self.p0.name]
        if acks:
            return min(acks)
        return first_other[0] if first_other else None

    def _check_busy(self, first_other, lease_cut, v, out):
        """(b) for the busy sessions: no commit acknowledged on the old
        primary after the new primary's first write, nor after the fence
        deadline when the fault cut every renewal."""
        if not self.busy:
            return
        t_new = self.new_primary_first_write(first_other)
        bound = self.cluster.ttl() - self.cluster.retry_timeout()
        late_total, last_ack = 0, None
        for w in self.busy:
            acks = [t for t, _ in list(w.acks) if t >= self.t_fault]
            if acks:
                last_ack = max(last_ack or acks[-1], acks[-1])
            if t_new is not None:
                late = [t for t in acks if t > t_new]
                late_total += len(late)
                if late:
                    v.append(f"(b) the busy {w.mode} session on {self.p0.name} had {len(late)} "
                             f"commits acknowledged after the new primary's first write "
                             f"(+{t_new - self.t_fault:.2f}s), the last "
                             f"{late[-1] - self.t_fault:+.2f}s after the fault")
            if lease_cut:
                beyond = [t for t in acks if t - self.t_fault > bound + FENCE_SLACK]
                if beyond:
                    v.append(f"(b) the busy {w.mode} session on {self.p0.name} had a commit "
                             f"acknowledged {beyond[-1] - self.t_fault:.2f}s after the fault, "
                             f"past the fence deadline {bound:.2f}s (+{FENCE_SLACK}s slack)")
        out["busy_late_commits"] = late_total if t_new is not None else None
        out["busy_last_ack_s"] = round(last_ack - self.t_fault, 3) if last_ack else None
        out["busy_sessions"] = {w.mode: w.describe(self.t_fault) for w in self.busy}

    def process_listing(self):
        """Every process in each node's namespace (pid, ppid, state, cwd,
        command line): what was still running when a scenario failed."""
        out = []
        for n in self.cluster.nodes:
            out.append(f"----- processes in {n.ns} ({n.name}) -----")
            for pid in sorted(pids_in_netns(n.ns)):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        st = f.read()
                    rest = st[st.rindex(")") + 2:].split()
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    try:
                        cwd = os.readlink(f"/proc/{pid}/cwd")
                    except OSError:
                        cwd = "?"
                    out.append(f"{pid:>7} ppid {rest[1]:>7} {rest[0]} cwd={cwd} {cmd[:160]}")
                except (OSError, ValueError, IndexError):
                    continue
        return "\n".join(out)

    def close(self, failed=False):
        if self.closed:
            return
        self.closed = True
        for t in (self.writer, self.session):
            if t is not None and t.is_alive():
                t.stop()
        for w in self.busy:
            w.stop()
        if self.prober is not None:
            self.prober.stop()
        continue_all()
        if failed:
            print(self.cluster.dump_logs(tail=150))
            print(self.process_listing())
            try:
                with open(self.lb.log, errors="replace") as f:
                    print("----- haproxy -----\n" + f.read()[-3000:])
            except (OSError, AttributeError):
                pass
        self.cluster.cleanup()


def assert_invariants(res):
    assert not res["violations"], f"{res['scenario']}: " + "; ".join(res["violations"])


def _write_report_line(res):
    path = os.environ.get("PGW_CHAOS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(res, default=str) + "\n")


def _fmt(xs, digits=2):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return "/".join(f"{x:.{digits}f}" for x in (min(xs), statistics.median(xs), max(xs)))


def report_table(rows):
    """The table `make chaos` prints: one line per scenario over its runs."""
    by = collections.OrderedDict()
    for r in rows:
        by.setdefault(r["scenario"] + (" [sync]" if r.get("sync") else ""), []).append(r)
    head = ("scenario", "runs", "ok", "write gap s min/med/max", "lost commits",
            "double-primary rounds", "converge s min/med/max", "fence s max",
            "busy late commits")
    lines = [head]
    for name, rs in by.items():
        lost = [r.get("lost") for r in rs]
        fence = [r.get("session_last_commit_s") for r in rs if "fence_deadline_s" in r]
        fence = [f for f in fence if f is not None]
        lines.append((name, str(len(rs)), str(sum(1 for r in rs if not r["violations"])),
                      _fmt([r.get("write_gap_s") for r in rs]),
                      ",".join("?" if x is None else str(x) for x in lost),
                      str(sum(r.get("double_rounds", 0) for r in rs)),
                      _fmt([r.get("converge_s") for r in rs], 1),
                      f"{max(fence):.2f}" if fence else "-",
                      ",".join("-" if r.get("busy_late_commits") is None
                               else str(r["busy_late_commits"]) for r in rs)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for j, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)

