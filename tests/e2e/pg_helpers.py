"""Helpers for the pg/ end-to-end tests: a scratch directory the postgres
user owns, the pgtool driver copied into it, one YAML configuration per
node on free ports, and cleanup that kills (by pid) every postmaster the
test started.

pgtool is taken from $PGW_BUILD (a CMake build dir, default build/test)."""
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import yaml

from ports import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PGW_BUILD", os.path.join(REPO, "build", "test"))
PGBIN = os.environ.get("PGW_PGBIN", "/usr/lib/postgresql/15/bin")
PGUSER = "postgres"
SU_PASSWORD = "su:pass\\word"  # ':' and '\' exercise the pgpass escaping
REPL_PASSWORD = "rep-secret"
REWIND_PASSWORD = "rw-secret"


def pg_uid():
    return pwd.getpwnam(PGUSER).pw_uid, pwd.getpwnam(PGUSER).pw_gid


def as_postgres(args, timeout=120, check=False, **kw):
    return subprocess.run(["runuser", "-u", PGUSER, "--"] + list(args), capture_output=True,
                          text=True, timeout=timeout, check=check, **kw)


class Node:
    def __init__(self, env, name, port, data_dir, cfg_path, cfg):
        self.env, self.name, self.port = env, name, port
        self.data_dir, self.cfg_path, self.cfg = data_dir, cfg_path, cfg

    def tool(self, op, *args, timeout=180):
        return self.env.tool(op, self.cfg_path, *args, timeout=timeout)

    def ok(self, op, *args, timeout=180):
        rc, out, err = self.tool(op, *args, timeout=timeout)
        assert rc == 0 and out.get("ok"), f"pgtool {op} {args} failed: {out}\n{err[-3000:]}"
        return out

    def pid(self):
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def connect(self, dbname="postgres", user="postgres", password=SU_PASSWORD):
        import psycopg2
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                                dbname=dbname, connect_timeout=5)
        conn.autocommit = True
        return conn

    def sql(self, query, args=None):
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None

    def status(self):
        return self.ok("status")["pg"]

    def write_cfg(self):
        with open(self.cfg_path, "w") as f:
            yaml.safe_dump(self.cfg, f)
        os.chown(self.cfg_path, *pg_uid())
        os.chmod(self.cfg_path, 0o600)  # it holds passwords: pgwarden refuses it otherwise


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pgw-e2e-pg-")
        os.chown(self.dir, *pg_uid())
        os.chmod(self.dir, 0o755)
        src = os.path.join(BUILD, "pgtool")
        if not os.path.exists(src):
            raise RuntimeError(f"{src} not found: build it (cmake --build {BUILD} --target pgtool) "
                               "or set PGW_BUILD")
        self.pgtool = os.path.join(self.dir, "pgtool")
        shutil.copy(src, self.pgtool)
        os.chmod(self.pgtool, 0o755)
        self.nodes = []
        self.stopped_pids = set()

    def tool(self, op, cfg_path, *args, timeout=180):
        p = as_postgres([self.pgtool, op, cfg_path] + [str(a) for a in args], timeout=timeout,
                        cwd=self.dir)
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert marker not in p.stderr, f"pgtool {op}: sanitizer report:\n{p.stderr[-6000:]}"
        out = None
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if lines:
            out = json.loads(lines[-1])
        return p.returncode, out or {}, p.stderr

    def node(self, name, **over):
        port = free_port()
        data_dir = os.path.join(self.dir, name)
        cfg = {
            "scope": "e2e",
            "name": name,
            "restapi": {"listen": f"127.0.0.1:{free_port()}"},
            "raft": {"self_addr": f"127.0.0.1:{free_port()}", "data_dir": os.path.join(self.dir, "raft-" + name)},
            "bootstrap": {
                "dcs": {"postgresql": {"parameters": {"max_connections": 60, "max_wal_senders": 8}}},
                "initdb": ["data-checksums", {"encoding": "UTF8"}, {"locale": "C"}],
                "pg_hba": ["host replication replicator 127.0.0.1/32 scram-sha-256"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{port}",
                "data_dir": data_dir,
                "bin_dir": PGBIN,
                "pgpass": os.path.join(self.dir, "pgpass-" + name),
                "pg_ctl_timeout": 60,
                "authentication": {
                    "superuser": {"username": "postgres", "password": SU_PASSWORD},
                    "replication": {"username": "replicator", "password": REPL_PASSWORD},
                    "rewind": {"username": "rewinder", "password": REWIND_PASSWORD},
                },
                "parameters": {"unix_socket_directories": self.dir, "shared_buffers": "16MB",
                               "max_connections": 999, "fsync": "off"},
                "pg_hba": [
                    "local all all peer",
                    "host all all 127.0.0.1/32 scram-sha-256",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                ],
            },
        }
        for k, v in over.items():
            cfg["postgresql"][k] = v
        os.makedirs(cfg["raft"]["data_dir"], exist_ok=True)
        os.chown(cfg["raft"]["data_dir"], *pg_uid())
        n = Node(self, name, port, data_dir, os.path.join(self.dir, name + ".yml"), cfg)
        n.write_cfg()
        self.nodes.append(n)
        return n

    def cleanup(self):
        for n in self.nodes:
            pid = n.pid()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
        # backends notice the postmaster's death on their own; give them a moment
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            busy = subprocess.run(["pgrep", "-u", PGUSER, "-f", self.dir], capture_output=True,
                                  text=True).stdout.split()
            if not busy:
                break
            for p in busy:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(p), signal.SIGKILL)
            time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(pred, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
