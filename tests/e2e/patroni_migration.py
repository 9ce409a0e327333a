"""A real Patroni 3.0 + etcd cluster on 127.0.0.1, and the steps of
docs/runbooks.md "Migrate from Patroni + etcd" (and its rollback), scripted.

The step functions are the runbook's steps one for one, so an operator can
read what the test does; on real machines `systemctl stop patroni` /
`systemctl start pgwarden` stand where these functions signal or start a
process by its pid. Debian's packages (scripts/deps.sh): patroni 3.0.2,
etcd-server 3.4. Every Patroni, PostgreSQL and pgwarden process runs as the
postgres user; etcd too (it needs no privilege). Processes are ended by pid."""
import os
import signal
import subprocess
import time

import psycopg2
import yaml

from pg_helpers import as_postgres
from pgw_harness import (PGBIN, REPL_PASSWORD, REWIND_PASSWORD, SU_PASSWORD, Cluster, Node,
                         free_ports, http, wait_for)

PATRONI = "/usr/bin/patroni"
PATRONICTL = "/usr/bin/patronictl"
ETCD = "/usr/bin/etcd"
# Patroni's smallest accepted timing (its validator: ttl >= 20, loop_wait >= 1,
# retry_timeout >= 3): Patroni reacts quickly, the test stays short.
PATRONI_DCS = {"ttl": 20, "loop_wait": 1, "retry_timeout": 3,
               "maximum_lag_on_failover": 1048576,
               "postgresql": {"use_pg_rewind": True, "use_slots": True,
                              "parameters": {"wal_log_hints": "on", "max_wal_senders": 10,
                                             "max_replication_slots": 10}}}
HBA = ["local all all trust",
       "host all all 127.0.0.0/8 scram-sha-256",
       "host replication replicator 127.0.0.0/8 scram-sha-256"]


class MigNode(Node):
    """A harness node whose pgwarden configuration is the converted Patroni
    file (written by step 1), never the harness's own."""

    def __init__(self, cluster, name, host):
        super().__init__(cluster, name)
        # a loopback address per node, as real nodes have an address each:
        # the converter then reads three distinct hosts from Patroni's
        # /cluster and gives every node the same Raft port
        self.host = host
        self.raft_port = cluster.raft_port
        self.patroni_cfg = os.path.join(self.dir, "patroni.yml")
        self.patroni_log = os.path.join(self.dir, "patroni.log")
        self.patroni = None

    @property
    def api(self):
        return f"http://{self.host}:{self.api_port}"

    @property
    def raft_addr(self):
        return f"{self.host}:{self.raft_port}"

    def connect(self, timeout=2):
        return psycopg2.connect(host=self.host, port=self.pg_port, user="postgres",
                                password=SU_PASSWORD, dbname="postgres", connect_timeout=timeout)

    def write_config(self):
        assert os.path.exists(self.cfg_path), f"{self.name}: not converted yet (step 1)"

    def patroni_config(self):
        c = self.cluster
        return {
            "scope": c.scope,
            "name": self.name,
            "restapi": {"listen": f"{self.host}:{self.api_port}",
                        "connect_address": f"{self.host}:{self.api_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{c.etcd_port}"]},
            "bootstrap": {"dcs": PATRONI_DCS,
                          "initdb": [{"encoding": "UTF8"}, "data-checksums"]},
            "postgresql": {
                "listen": f"{self.host}:{self.pg_port}",
                "connect_address": f"{self.host}:{self.pg_port}",
                "data_dir": self.data_dir,
                "bin_dir": PGBIN,
                "pgpass": os.path.join(self.dir, "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": SU_PASSWORD},
                    "replication": {"username": "replicator", "password": REPL_PASSWORD},
                    "rewind": {"username": "rewind_user", "password": REWIND_PASSWORD},
                },
                "parameters": {"unix_socket_directories": c.dir, "fsync": "off",
                               "shared_buffers": "16MB", "max_wal_size": "64MB"},
                "pg_hba": HBA,
            },
            "watchdog": {"mode": "off"},
            "log": {"level": "INFO"},
        }

    def start_patroni(self):
        assert self.patroni is None or self.patroni.poll() is not None
        with open(self.patroni_cfg, "w") as f:
            yaml.safe_dump(self.patroni_config(), f, sort_keys=False)
        self.cluster.chown(self.patroni_cfg)
        os.chmod(self.patroni_cfg, 0o600)
        log = open(self.patroni_log, "ab")
        self.patroni = subprocess.Popen([PATRONI, self.patroni_cfg], stdout=log,
                                        stderr=subprocess.STDOUT, user="postgres",
                                        group="postgres", extra_groups=[], cwd=self.dir,
                                        start_new_session=True)
        log.close()

    def stop_patroni(self, timeout=60):
        """`systemctl stop patroni`: SIGTERM, wait for the exit."""
        if self.patroni is None or self.patroni.poll() is not None:
            return
        os.kill(self.patroni.pid, signal.SIGTERM)
        try:
            self.patroni.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.patroni.pid, signal.SIGKILL)
            self.patroni.wait(10)
            raise AssertionError(f"{self.name}: Patroni did not stop within {timeout}s")

    def patroni_log_text(self, tail=60):
        try:
            with open(self.patroni_log, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-tail:])
        except OSError:
            return ""

    def postmaster_start(self):
        """(postmaster pid, pg_postmaster_start_time()) right now."""
        row = self.query("SELECT pg_postmaster_start_time()::text")
        return self.postmaster_pid(), row[0][0]


class PatroniCluster(Cluster):
    """Harness Cluster (scratch dir, ports, pgwarden copy, cleanup by pid)
    plus one etcd member and a Patroni per node."""

    def __init__(self, n=3):
        self.etcd = None
        self.etcd_port, self.etcd_peer, self.raft_port = free_ports(3)
        super().__init__(n=0)
        self.nodes = [MigNode(self, f"n{i + 1}", f"127.0.0.{i + 1}") for i in range(n)]
        self.etcd_dir = os.path.join(self.dir, "etcd")
        os.makedirs(self.etcd_dir, mode=0o700)
        self.chown(self.etcd_dir)

    def start_etcd(self):
        log = open(os.path.join(self.dir, "etcd.log"), "ab")
        peer = f"http://127.0.0.1:{self.etcd_peer}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = subprocess.Popen(
            [ETCD, "--name", "e1", "--data-dir", self.etcd_dir,
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"e1={peer}", "--initial-cluster-state", "new"],
            stdout=log, stderr=subprocess.STDOUT, user="postgres", group="postgres",
            extra_groups=[], cwd=self.etcd_dir, start_new_session=True)
        log.close()
        wait_for(lambda: http(client + "/health")[0] == 200, 30, what="etcd healthy")

    def patroni_view(self, node=None):
        for n in [node] if node else self.nodes:
            status, body = http(n.api + "/cluster", timeout=1.0)
            if status == 200 and isinstance(body, dict) and "members" in body:
                return body
        return None

    def wait_patroni_healthy(self, timeout=120):
        """Patroni's own /cluster: one leader and every other member a
        running replica (streaming where Patroni 3.0 says so)."""
        def pred():
            v = self.patroni_view()
            if v is None:
                return None
            lead = [m for m in v["members"] if m.get("role") == "leader"
                    and m.get("state") == "running"]
            reps = [m for m in v["members"] if m.get("role") == "replica"
                    and m.get("state") in ("running", "streaming")]
            if len(lead) == 1 and len(reps) == len(self.nodes) - 1:
                return self.node(lead[0]["name"])
            return None
        return wait_for(pred, timeout, interval=0.5, what="a Patroni leader and running replicas")

    def patronictl(self, *args, timeout=60):
        n = self.nodes[0]
        return as_postgres([PATRONICTL, "-c", n.patroni_cfg] + list(args), timeout=timeout)

    def pwctl(self, *args, timeout=90):
        eps = ",".join(n.api for n in self.nodes)
        env = dict(os.environ, PGWARDEN_CTL_ENDPOINT=eps)
        return subprocess.run([self.binary, "ctl"] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=env)

    def dump_logs(self, tail=60):
        out = [super().dump_logs(tail)]
        for n in self.nodes:
            out.append(f"----- {n.name} patroni -----\n{n.patroni_log_text(tail)}")
        return "\n".join(out)

    def cleanup(self):
        for n in self.nodes:
            if n.patroni is not None and n.patroni.poll() is None:
                os.kill(n.patroni.pid, signal.SIGKILL)
                n.patroni.wait(10)
        try:
            super().cleanup()  # pgwarden trees and every PostgreSQL process, by pid
        finally:
            if self.etcd is not None and self.etcd.poll() is None:
                os.kill(self.etcd.pid, signal.SIGKILL)
                self.etcd.wait(10)


# --- the runbook's steps ------------------------------------------------------


def step1_convert(c, node, members_url, replica):
    """Write pgwarden.yml from patroni.yml; replicas get nofailover for now.
    Returns the converter's stderr (its list of changes)."""
    r = as_postgres([c.binary, "convert-patroni", node.patroni_cfg, "--members-from", members_url,
                     "--raft-port", str(c.raft_port), "--raft-data-dir", node.raft_dir,
                     "-o", node.cfg_path])
    assert r.returncode == 0, f"{node.name}: convert-patroni failed:\n{r.stderr}"
    if replica:
        with open(node.cfg_path) as f:
            cfg = yaml.safe_load(f)
        cfg.setdefault("tags", {})["nofailover"] = True
        with open(node.cfg_path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
    v = as_postgres([c.binary, "validate", "-c", node.cfg_path])
    assert v.returncode == 0, f"{node.name}: pgwarden validate: {v.stderr}"
    return r.stderr


def step2_pause(c):
    r = c.patronictl("pause", "--wait")
    assert r.returncode == 0, f"patronictl pause --wait: {r.stdout}{r.stderr}"


def step3_stop_patroni(c, nodes):
    for n in nodes:
        n.stop_patroni()


def step4_start_pgwarden(nodes):
    for n in nodes:
        n.start()


def step5_start_pgwarden_primary(c, primary, timeout=60):
    primary.start()
    wait_for(lambda: primary.status("/primary") == 200, timeout,
             what=f"pgwarden's /primary answering 200 on {primary.name}")


def step6_allow_failover(c, replicas):
    """Remove nofailover from the replicas' files and reload them."""
    for n in replicas:
        with open(n.cfg_path) as f:
            cfg = yaml.safe_load(f)
        cfg.get("tags", {}).pop("nofailover", None)
        if not cfg.get("tags"):
            cfg.pop("tags", None)
        with open(n.cfg_path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        os.kill(n.pgwarden_pid(), signal.SIGHUP)
    c.wait_healthy(timeout=90)


def migrate(c, primary, replicas, members_url):
    """Steps 1-6. Returns {step: seconds} for the report."""
    t = {}
    t0 = time.monotonic()
    for n in c.nodes:
        step1_convert(c, n, members_url, replica=n is not primary)
    t["1 convert"] = time.monotonic() - t0
    t0 = time.monotonic()
    step2_pause(c)
    t["2 pause"] = time.monotonic() - t0
    t0 = time.monotonic()
    step3_stop_patroni(c, replicas + [primary])
    t["3 stop patroni"] = time.monotonic() - t0
    t0 = time.monotonic()
    step4_start_pgwarden(replicas)
    t["4 pgwarden on replicas"] = time.monotonic() - t0
    t0 = time.monotonic()
    step5_start_pgwarden_primary(c, primary)
    t["5 pgwarden on primary"] = time.monotonic() - t0
    t0 = time.monotonic()
    step6_allow_failover(c, replicas)
    t["6 replicas eligible"] = time.monotonic() - t0
    return t


def rollback(c):
    """pgwarden -> Patroni: pause pgwarden, stop it everywhere (PostgreSQL
    keeps running), start Patroni again, resume it."""
    r = c.pwctl("pause", "--wait")
    assert r.returncode == 0, f"pgwarden ctl pause --wait: {r.stdout}{r.stderr}"
    for n in c.nodes:
        code = n.stop()
        assert code == 0, f"{n.name}: pgwarden exited {code} when stopped"
    for n in c.nodes:
        n.start_patroni()
    wait_for(lambda: c.patroni_view() is not None, 60, what="Patroni's REST API")
    r = c.patronictl("resume", "--wait")
    assert r.returncode == 0, f"patronictl resume --wait: {r.stdout}{r.stderr}"
    return c.wait_patroni_healthy()
