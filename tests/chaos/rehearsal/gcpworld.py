"""The world of the GCP deployment's local rehearsal (tests/chaos/test_rehearsal.py).

Compute Engine, played in the chaos suite's test network (netlab.NetLab):

  VM pg-N        network namespace pgwc-nN-TAG (10.77.O.1N) + a root prefix
                 ROOT (PGW_STARTUP_ROOT) under which startup.sh writes what it
                 writes under / on a VM; ROOT/var/lib/postgresql and
                 ROOT/var/lib/pgwarden are small tmpfs mounts ("the disk")
  metadata       FakeGcp: one HTTP server on the bridge address that serves
                 each VM its own instance metadata (chosen by the source
                 address, Metadata-Flavor: Google required) and records what
                 was read; the same server is the service manager the
                 systemctl shim calls (POST /rehearsal/systemctl)
  systemd        VmNode.systemctl(): enable, is-active, start, stop, reload,
                 restart of the unit file the package installed under ROOT
                 (User=, StateDirectory=, ExecStartPre=, ExecStart= with
                 Type=notify: READY=1 on a NOTIFY_SOCKET, KillMode=process)
  the .deb       a package built from the test binary and the real unit
                 file, in a fake bucket the gcloud shim copies from
  load balancers GcpLoadBalancer: HAProxy in the lb namespace, writer and
                 reader on two addresses, with main.tf's health checks (path,
                 port, interval, timeout, thresholds) read from main.tf
  shims          rehearsal/bin: apt-get, apt-cache, dpkg-query, gcloud,
                 systemctl, sudo, terraform, google_metadata_script_runner,
                 copied to a directory first on PATH; each records its calls

Everything the world starts is recorded for cleanup (netlab pids, the
cluster's processes by pid, tmpfs mounts, the HTTP server); close() is
idempotent and runs from the test fixture whatever happened.
"""
import http.server as httpserver
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
CHAOS = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(CHAOS))
sys.path.insert(0, CHAOS)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

from chaos_cluster import LB_STATS_PORT, ChaosCluster, LoadBalancer, NetNode  # noqa: E402
from netlab import pids_in_netns  # noqa: E402
from pgw_harness import SU_PASSWORD, Cluster, pid_alive, wait_for  # noqa: E402

GCP = os.path.join(REPO, "deploy", "gcp")
UNIT_FILE = os.path.join(REPO, "deploy", "debian", "pgwarden.service")
SHIMS = os.path.join(HERE, "bin")
READER_HOST = 251            # the reader LB's address: 10.77.O.251 (writer: netlab's lb_ip)
TMPFS_PG = "512m"
TMPFS_STATE = "64m"
START_LIMIT_S = 60           # below the unit's TimeoutStartSec (90): the test's own bound
PROJECT = "pgw-rehearsal"
BUCKET = "pgw-rehearsal-debs"


# --- Terraform and the runbook, read from the files -------------------------------

def hcl_block(text, kind, *labels):
    """Body of `kind "l1" "l2" { ... }` (braces matched; main.tf's strings
    such as "${var.x}" hold balanced braces)."""
    head = r"^\s*" + re.escape(kind) + "".join(r'\s+"' + re.escape(lb) + '"' for lb in labels) + r"\s*\{"
    m = re.search(head, text, re.M)
    assert m, f"no {kind} {' '.join(labels)} block"
    return _braced(text, m.end() - 1)


def _braced(text, open_at):
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i]
    raise AssertionError("unbalanced braces")


def hcl_attr(block, key):
    """A literal attribute: number, string or list, as JSON reads it."""
    m = re.search(r"^\s*" + re.escape(key) + r"\s*=\s*(.+?)\s*$", block, re.M)
    assert m, f"no attribute {key}"
    return json.loads(m.group(1))


def hcl_nested(block, name):
    m = re.search(r"^\s*" + re.escape(name) + r"\s*(=\s*)?\{", block, re.M)
    assert m, f"no nested block {name}"
    return _braced(block, m.end() - 1)


def lb_spec(main_tf):
    """{backend service: what its load balancer does}, from main.tf: the
    health check it uses (path, port, interval, timeout, thresholds), the
    forwarding rule's port and whether sessions leave an unhealthy backend."""
    text = open(main_tf).read()
    out = {}
    for be in ("writer", "reader"):
        b = hcl_block(text, "resource", "google_compute_region_backend_service", be)
        m = re.search(r"health_checks\s*=\s*\[google_compute_region_health_check\.(\w+)\.id\]", b)
        assert m, f"backend service {be}: no health check"
        hc = hcl_block(text, "resource", "google_compute_region_health_check", m.group(1))
        probe = hcl_nested(hc, "http_health_check")
        ports = hcl_attr(hcl_block(text, "resource", "google_compute_forwarding_rule", be), "ports")
        assert len(ports) == 1, ports
        ctp = re.search(r'connection_persistence_on_unhealthy_backends\s*=\s*"(\w+)"', b)
        out[be] = {"health_check": m.group(1), "path": hcl_attr(probe, "request_path"),
                   "port": hcl_attr(probe, "port"), "interval": hcl_attr(hc, "check_interval_sec"),
                   "timeout": hcl_attr(hc, "timeout_sec"), "rise": hcl_attr(hc, "healthy_threshold"),
                   "fall": hcl_attr(hc, "unhealthy_threshold"), "lb_port": int(ports[0]),
                   "never_persist": bool(ctp and ctp.group(1) == "NEVER_PERSIST")}
    return out


def tf_metadata_keys(main_tf):
    vm = hcl_block(open(main_tf).read(), "resource", "google_compute_instance", "node")
    return set(re.findall(r"^\s*([a-z][a-z-]*)\s*=", hcl_nested(vm, "metadata"), re.M))


def tf_default(variables_tf, name):
    return hcl_attr(hcl_block(open(variables_tf).read(), "variable", name), "default")


def runbook_section(readme, heading):
    """Text of the runbook section whose heading starts with `heading`
    (e.g. "### 7.")."""
    text = open(readme).read()
    m = re.search(r"^" + re.escape(heading) + r".*$", text, re.M)
    assert m, f"no section {heading!r} in {readme}"
    end = re.search(r"^#{2,3} ", text[m.end():], re.M)
    return text[m.end(): m.end() + end.start() if end else len(text)]


def sh_blocks(section):
    return re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S)


def project_version():
    with open(os.path.join(REPO, "CMakeLists.txt")) as f:
        m = re.search(r"project\(pgwarden VERSION ([0-9.]+)", f.read())
    assert m, "no project version in CMakeLists.txt"
    return m.group(1)


# --- the VMs ----------------------------------------------------------------------------

class VmNode(NetNode):
    """One VM: pgwarden's member of the same name, its namespace, its root
    prefix and its service manager."""

    def __init__(self, cluster, name, ns, ip, zone, pg_version):
        super().__init__(cluster, name, ns, ip)
        self.zone, self.pg_version = zone, pg_version
        self.root = os.path.join(self.dir, "root")
        os.makedirs(self.root, mode=0o755)
        for d in ("run", "root", "var/lib/dpkg"):
            os.makedirs(os.path.join(self.root, d), mode=0o755)
        # the API and PostgreSQL on render-config.sh's defaults: what the VMs use
        self.api_port, self.pg_port = 8008, 5432
        self.data_dir = self.path(f"/var/lib/postgresql/{pg_version}/main")
        self.raft_dir = self.path("/var/lib/pgwarden/raft")
        self.cfg_path = self.path("/etc/pgwarden/pgwarden.yml")
        self.sock_dir = self.path("/run/postgresql")
        self.calls_log = os.path.join(self.dir, "calls.log")
        self.metadata = {}
        self.md_reads = []
        self.unit_lock = threading.Lock()
        self.enabled = False
        self.notify_path = os.path.join(self.dir, "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        os.chmod(self.notify_path, 0o666)   # pgwarden runs as postgres

    def manager_log(self, text):
        with open(os.path.join(self.dir, "manager.log"), "a") as f:
            f.write(text.rstrip("\n") + "\n")

    def path(self, p):
        """A VM path (absolute) as seen from the host."""
        return self.root + p

    @property
    def api(self):
        return f"http://{self.ip}:{self.api_port}"

    def connect(self, timeout=2):
        import psycopg2
        return psycopg2.connect(host=self.ip, port=self.pg_port, user="postgres",
                                password=SU_PASSWORD, dbname="postgres", connect_timeout=timeout)

    def write_config(self):
        raise AssertionError("a VM's configuration is rendered by its startup script")

    def start(self):
        raise AssertionError("a VM's pgwarden is started by systemctl (the startup script)")

    # --- the environment of everything that runs "on the VM" ---

    def env(self, world):
        e = {"PATH": f"{world.bin}:{self.path('/usr/bin')}:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": self.path("/root"), "LANG": "C.UTF-8",
             "PGW_METADATA_URL": f"{world.gcp.url}/computeMetadata/v1",
             "PGW_STARTUP_ROOT": self.root,
             # render-config.sh's overrides: the VM's paths under its root
             "PGW_PG_DATA_DIR": self.data_dir, "PGW_RAFT_DATA_DIR": self.raft_dir,
             "PGW_PG_SOCKET_DIR": self.sock_dir,
             # not 25% of this machine's RAM for each of the three VMs
             "PGW_SHARED_BUFFERS": "128MB",
             # the shims
             "PGW_REHEARSAL_LOG": self.calls_log,
             "PGW_REHEARSAL_SYSTEMD": f"{world.gcp.url}/rehearsal/systemctl",
             "PGW_REHEARSAL_SECRETS": world.secrets_dir,
             "PGW_REHEARSAL_BUCKETS": world.buckets_dir,
             "PGW_REHEARSAL_PROJECT": PROJECT}
        e.update(self.cluster.sanitizer_env())
        return e

    def calls(self):
        """Every shim call made on this VM so far: [[command, arg, ...]]."""
        try:
            with open(self.calls_log) as f:
                return [line.rstrip("\n").split("\t") for line in f if line.strip()]
        except FileNotFoundError:
            return []

    # --- the service manager ---

    def unit(self):
        """{section: {key: [values]}} of the unit file the package installed."""
        out, sec = {}, None
        with open(self.path("/lib/systemd/system/pgwarden.service")) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("["):
                    sec = out.setdefault(line.strip("[]"), {})
                    continue
                k, _, v = line.partition("=")
                sec.setdefault(k.strip(), []).append(v.strip())
        return out

    def map_argv(self, argv):
        """An Exec line's words with the VM's files under its root prefix."""
        return [self.path(a) if a.startswith("/") and os.path.exists(self.path(a)) else a
                for a in argv]

    def active(self):
        return self.proc is not None and self.proc.poll() is None

    def systemctl(self, args):
        """The exit status systemctl would give for `args` on this VM."""
        words = [a for a in args if not a.startswith("-")]
        if not words:
            return 1
        verb, units = words[0], words[1:]
        if [u for u in units if u not in ("pgwarden", "pgwarden.service")] or not units:
            return 5                                  # unit not found
        with self.unit_lock:
            if not os.path.exists(self.path("/lib/systemd/system/pgwarden.service")):
                return 5
            if verb == "enable":
                self.enabled = True
                return 0
            if verb == "is-active":            # (its output is not relayed: --quiet or not)
                return 0 if self.active() else 3
            if verb == "start":
                return self._start()
            if verb == "stop":
                return self._stop()
            if verb == "restart":
                rc = self._stop()
                return rc if rc else self._start()
            if verb == "reload":
                reload = self.unit()["Service"].get("ExecReload", [""])[0].split()
                if reload != ["/bin/kill", "-HUP", "$MAINPID"]:
                    self.manager_log(f"ExecReload {reload} is not rehearsed")
                    return 1
                if not self.active():
                    return 1
                os.kill(self.proc.pid, signal.SIGHUP)
                return 0
        return 1

    def _run_as(self, user, group, argv, env, timeout):
        return subprocess.run(["ip", "netns", "exec", self.ns, "setpriv", f"--reuid={user}",
                               f"--regid={group}", "--init-groups"] + argv, env=env,
                              cwd="/", capture_output=True, text=True, timeout=timeout)

    def _start(self):
        if self.active():
            return 0
        unit = self.unit()
        svc, head = unit.get("Service", {}), unit.get("Unit", {})
        assert svc.get("Type") == ["notify"], svc.get("Type")
        for cond in head.get("ConditionPathExists", []):
            if not os.path.exists(self.path(cond)):
                return 0                     # systemd: condition failed, unit stays inactive
        user, group = svc["User"][0], svc["Group"][0]
        uid, gid = self.cluster.uid, self.cluster.gid
        assert user == "postgres" and group == "postgres", (user, group)
        for sd in svc.get("StateDirectory", []):
            d = self.path("/var/lib/" + sd)
            os.makedirs(d, exist_ok=True)
            os.chown(d, uid, gid)
            os.chmod(d, int(svc.get("StateDirectoryMode", ["0755"])[0], 8))
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": self.path("/var/lib/postgresql"), "USER": user, "LOGNAME": user,
               "LANG": "C.UTF-8"}
        env.update(self.cluster.sanitizer_env())
        for pre in svc.get("ExecStartPre", []):
            r = self._run_as(user, group, self.map_argv(shlex.split(pre)), env, 60)
            with open(self.log_path, "a") as log:
                log.write(r.stdout + r.stderr)
            if r.returncode != 0:
                return 1
        argv = self.map_argv(shlex.split(svc["ExecStart"][0]))
        self.notify.setblocking(False)
        for _ in range(100000):              # what an earlier run left
            try:
                self.notify.recv(4096)
            except BlockingIOError:
                break
        env["NOTIFY_SOCKET"] = self.notify_path
        with open(self.log_path, "ab") as log:
            self.proc = self.cluster.lab.popen(
                self.ns, ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups"] + argv,
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/", start_new_session=True)
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return 1
            self.notify.settimeout(0.2)
            try:
                msg = self.notify.recv(4096).decode(errors="replace")
            except socket.timeout:
                continue
            if "READY=1" in msg.split("\n"):
                # ip netns exec and setpriv exec in place: the pid is pgwarden's
                want = os.path.realpath(argv[0])
                if _exe(self.proc.pid) != want:
                    self.manager_log(f"pid {self.proc.pid} is not {want}")
                    return 1
                return 0
        self._kill_main()
        return 1

    def _kill_main(self):
        if self.active():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def _stop(self):
        """SIGTERM to pgwarden (KillMode=process) or to everything the
        service started (any other KillMode), SIGKILL to pgwarden after
        TimeoutStopSec."""
        if not self.active():
            return 0
        svc = self.unit()["Service"]
        limit = float(svc.get("TimeoutStopSec", ["90"])[0])
        targets = [self.proc.pid] if svc.get("KillMode") == ["process"] else self.node_pids()
        for pid in targets:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        try:
            self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self._kill_main()
        return 0

    # --- power ---

    def power_off(self):
        """Every process of the VM's namespace killed by pid (what a reset
        does to them); returns the pids."""
        pids = pids_in_netns(self.ns)
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
        wait_for(lambda: not any(pid_alive(p) for p in pids) and not self.postmaster_alive(), 10,
                 interval=0.02, what=f"{self.name}: every process gone")
        return pids

    def boot(self, world, timeout=180):
        """What Compute Engine does at boot: /run empty, then the guest
        agent runs the startup script. Returns the CompletedProcess."""
        assert not pids_in_netns(self.ns), f"{self.name} is still running"
        run = self.path("/run")
        for e in os.listdir(run):
            p = os.path.join(run, e)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
        os.makedirs(self.sock_dir)                 # postgresql-common's tmpfiles.d entry
        os.chown(self.sock_dir, self.cluster.uid, self.cluster.gid)
        os.chmod(self.sock_dir, 0o2775)
        return self.run_startup(world, timeout)

    def run_startup(self, world, timeout=180):
        """`google_metadata_script_runner startup` in the VM (as at boot, or
        by hand: runbook step 8)."""
        n = len([f for f in os.listdir(self.dir) if f.startswith("startup-")]) + 1
        log = os.path.join(self.dir, f"startup-{n}.log")
        env = self.env(world)
        r = subprocess.run(["ip", "netns", "exec", self.ns, "env", "-i"]
                           + [f"{k}={v}" for k, v in env.items()]
                           + ["google_metadata_script_runner", "startup"],
                           capture_output=True, text=True, timeout=timeout)
        with open(log, "w") as f:
            f.write(r.stdout + r.stderr)
        return r


def _exe(pid):
    try:
        return os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        return None


class RehearsalCluster(ChaosCluster):
    """The three VMs as a pgw_harness Cluster (wait_healthy, primaries,
    cleanup with the sanitizer and leaked-password checks)."""

    def __init__(self, lab, names, zones, scope, pg_version):
        Cluster.__init__(self, n=0, scope=scope)
        self.lab = lab
        self.extra_env = {}
        os.makedirs(os.path.join(self.dir, "lb"))
        for i, name in enumerate(names):
            node = VmNode(self, name, lab.node_ns[i], lab.node_ip(i), zones[i], pg_version)
            self.nodes.append(node)
            lab.mount_tmpfs(node.path("/var/lib/postgresql"), TMPFS_PG, self.uid, self.gid)
            lab.mount_tmpfs(node.path("/var/lib/pgwarden"), TMPFS_STATE, self.uid, self.gid)
            os.chmod(node.path("/var/lib/postgresql"), 0o755)

    def by_name(self, name):
        return next(n for n in self.nodes if n.name == name)

    def cleanup(self):
        for n in self.nodes:
            try:
                n.notify.close()
            except OSError:
                pass
        super().cleanup()


# --- metadata server and service manager ------------------------------------------------

class FakeGcp:
    """The metadata server (by source address) and the systemctl shim's
    service manager, on the bridge address. Create it from the bridge
    namespace."""

    def __init__(self, ip, cluster):
        self.cluster = cluster
        self.by_ip = {n.ip: n for n in cluster.nodes}
        self.project = PROJECT
        self.refused = []            # requests without Metadata-Flavor: Google
        world = self

        class Handler(httpserver.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code, body, flavor=True):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(code)
                if flavor:
                    self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", "application/text")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                vm = world.by_ip.get(self.client_address[0])
                prefix = "/computeMetadata/v1/"
                if vm is None or not self.path.startswith(prefix):
                    return self.reply(404, "not found\n")
                if self.headers.get("Metadata-Flavor") != "Google":
                    world.refused.append((vm.name, self.path))
                    return self.reply(403, "Missing Metadata-Flavor:Google header.\n", False)
                rel = self.path[len(prefix):]
                vm.md_reads.append(rel)
                if rel == "project/project-id":
                    return self.reply(200, world.project)
                key = rel[len("instance/attributes/"):] if rel.startswith("instance/attributes/") else None
                if key is None or key not in vm.metadata:
                    return self.reply(404, "not found\n")
                return self.reply(200, vm.metadata[key])

            def do_POST(self):
                vm = world.by_ip.get(self.client_address[0])
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n).decode()
                if vm is None or self.path != "/rehearsal/systemctl":
                    return self.reply(404, "not found\n", False)
                args = [a for a in body.split("\n") if a]
                try:
                    rc = vm.systemctl(args)
                except Exception:
                    vm.manager_log(f"systemctl {args}:\n{traceback.format_exc()}")
                    rc = 1
                vm.manager_log(f"systemctl {' '.join(args)} -> {rc}")
                return self.reply(200, str(rc), False)

        self.server = httpserver.ThreadingHTTPServer((ip, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{ip}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


# --- the load balancers -------------------------------------------------------------------

class GcpLoadBalancer(LoadBalancer):
    """HAProxy configured like the two internal passthrough TCP load
    balancers: proxies named after the backend services, one address each,
    main.tf's health checks. HAProxy 2.6 starts a server as UP before its
    first probe (GCP: unhealthy until `healthy_threshold` probes pass):
    callers wait for the expected set."""

    def __init__(self, lab, cluster, spec, prefix, reader_ip):
        self.spec, self.prefix, self.reader_ip = spec, prefix, reader_ip
        super().__init__(lab, cluster)

    def address(self, be):
        return self.lab.lb_ip if be == "writer" else self.reader_ip

    def config(self):
        out = [f"""global
    maxconn 400
defaults
    mode tcp
    timeout connect 1s
    timeout client 30m
    timeout server 30m
listen stats
    mode http
    bind {self.lab.lb_ip}:{LB_STATS_PORT}
    stats enable
    stats uri /
"""]
        for be, s in self.spec.items():
            extra = " on-marked-down shutdown-sessions" if s["never_persist"] else ""
            out.append(f"""listen {self.prefix}-{be}
    bind {self.address(be)}:{s['lb_port']}
    balance roundrobin
    timeout check {s['timeout']}s
    option httpchk GET {s['path']}
    http-check expect status 200
    default-server inter {s['interval']}s rise {s['rise']} fall {s['fall']}{extra}
""")
            for n in self.cluster.nodes:
                out.append(f"    server {n.name} {n.ip}:{s['lb_port']} check port {s['port']}\n")
        return "".join(out)

    def up(self, be):
        return self.up_servers(f"{self.prefix}-{be}")


def build_deb(cluster, version, out_dir):
    """pgwarden_<version>_amd64.deb with what startup.sh and the unit need:
    /usr/bin/pgwarden (the binary under test), the real unit file and
    /etc/pgwarden."""
    pkg = os.path.join(cluster.dir, "deb-build")
    for d in ("DEBIAN", "usr/bin", "lib/systemd/system", "etc/pgwarden"):
        os.makedirs(os.path.join(pkg, d), mode=0o755)
    with open(os.path.join(pkg, "DEBIAN", "control"), "w") as f:
        f.write(f"Package: pgwarden\nVersion: {version}\nArchitecture: amd64\n"
                "Maintainer: pgwarden rehearsal <pgwarden@localhost>\n"
                "Description: pgwarden (local rehearsal of deploy/gcp)\n")
    shutil.copy2(cluster.binary, os.path.join(pkg, "usr", "bin", "pgwarden"))
    os.chmod(os.path.join(pkg, "usr", "bin", "pgwarden"), 0o755)
    shutil.copy2(UNIT_FILE, os.path.join(pkg, "lib", "systemd", "system", "pgwarden.service"))
    os.makedirs(out_dir, exist_ok=True)
    deb = os.path.join(out_dir, f"pgwarden_{version}_amd64.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", pkg, deb],
                   check=True, capture_output=True, timeout=120)
    shutil.rmtree(pkg)
    return deb


def lb_health(status_text):
    """[(instance name, healthState)] from `gcloud ... get-health` output."""
    import yaml
    out = []
    for doc in yaml.safe_load_all(status_text):
        if not doc:
            continue
        for h in doc["status"]["healthStatus"]:
            out.append((h["instance"].rsplit("/", 1)[1], h["healthState"]))
    return out


__all__ = ["FakeGcp", "GcpLoadBalancer", "RehearsalCluster", "VmNode", "build_deb",
           "lb_health", "lb_spec", "project_version", "runbook_section", "sh_blocks",
           "tf_default", "tf_metadata_keys", "READER_HOST", "PROJECT", "BUCKET", "GCP", "SHIMS",
           "REPO"]
