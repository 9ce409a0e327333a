"""Local rehearsal of the GCP deployment (deploy/gcp, issue 9 item 3).

The real deploy/gcp/startup.sh boots three "VMs" (network namespaces of the
chaos suite's test network, each with its own root prefix) against a fake
metadata server serving what main.tf gives the VMs, with shims for what
needs Google or would change the host (rehearsal/bin: apt-get, apt-cache,
dpkg-query, gcloud, systemctl, sudo, terraform, google_metadata_script_runner;
each records its calls). HAProxy stands in for the two internal TCP load
balancers with main.tf's health checks (read from main.tf). Then the
runbook's own commands, read from deploy/gcp/README.md, are run against it:

  step 5   ctl list on a VM, get-health of both load balancers
  step 6   psql through the writer (primary) and the reader (a replica)
  step 8   the startup script again with unchanged metadata: no restart,
           no reload
  step 7   the write loop through the writer, a reset of the primary's VM
           (every process of its namespace killed by pid): the writer moves
           to a new primary (the seconds from the reset to the first write
           acknowledged by the new primary are printed); the VM boots again
           (its startup script starts pgwarden through systemctl) and rejoins
           as a streaming replica behind the reader; ctl history lists the
           failover

rehearsal/gcpworld.py builds the world; the README's "Local rehearsal"
section lists what stands in for what."""
import filecmp
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "rehearsal"))

from gcpworld import (BUCKET, GCP, PROJECT, READER_HOST, SHIMS, FakeGcp,  # noqa: E402
                      GcpLoadBalancer, RehearsalCluster, build_deb, lb_health, lb_spec,
                      project_version, runbook_section, sh_blocks, tf_default, tf_metadata_keys)
from chaos_cluster import LB_STATS_PORT  # noqa: E402
from netlab import NetLab, in_netns, pids_in_netns  # noqa: E402
from pgw_harness import REPL_PASSWORD, REWIND_PASSWORD, SU_PASSWORD, wait_for  # noqa: E402

MAIN_TF = os.path.join(GCP, "main.tf")
VARIABLES_TF = os.path.join(GCP, "variables.tf")
README = os.path.join(GCP, "README.md")
SECRETS = ("superuser", "replication", "rewind", "restapi", "raft")
IPV4 = r"\d+\.\d+\.\d+\.\d+"
# besides the chaos suite's (conftest.TOOLS)
TOOLS = ("bash", "curl", "dpkg-deb", "psql", "runuser", "shellcheck")


class World:
    """Everything one rehearsal starts; close() ends it all, whatever state
    it is in."""

    def __init__(self):
        self.lab = self.cluster = self.gcp = self.lb = self._ns = None
        self.background = []

    def setup(self):
        self.lab = NetLab(3)
        ns = in_netns(self.lab.bridge_ns)
        ns.__enter__()
        self._ns = ns
        self.prefix = tf_default(VARIABLES_TF, "name_prefix")
        self.zones = tf_default(VARIABLES_TF, "zones")
        self.region = tf_default(VARIABLES_TF, "region")
        self.pg_version = tf_default(VARIABLES_TF, "postgres_version")
        names = [f"{self.prefix}-{i + 1}" for i in range(3)]
        c = self.cluster = RehearsalCluster(self.lab, names, self.zones,
                                            tf_default(VARIABLES_TF, "scope"), self.pg_version)
        d = c.dir
        self.bin = os.path.join(d, "shims")
        os.makedirs(self.bin, mode=0o755)
        for f in os.listdir(SHIMS):
            dst = os.path.join(self.bin, f)
            with open(os.path.join(SHIMS, f)) as src, open(dst, "w") as out:
                out.write(src.read())
            os.chmod(dst, 0o755)
        # Secret Manager
        self.secrets_dir = os.path.join(d, "secrets")
        os.makedirs(self.secrets_dir, mode=0o700)
        self.passwords = {"superuser": SU_PASSWORD, "replication": REPL_PASSWORD,
                          "rewind": REWIND_PASSWORD, "restapi": "api-" + os.urandom(9).hex(),
                          "raft": "raft-" + os.urandom(9).hex()}
        c.extra_secrets = {self.passwords["restapi"], self.passwords["raft"]}
        for k, v in self.passwords.items():
            with open(os.path.join(self.secrets_dir, f"{self.prefix}-{k}-password"), "w") as f:
                f.write(v)
        # the package in its bucket
        self.buckets_dir = os.path.join(d, "buckets")
        self.version = project_version()
        self.deb = build_deb(c, self.version, os.path.join(self.buckets_dir, BUCKET))
        self.deb_url = f"gs://{BUCKET}/{os.path.basename(self.deb)}"
        # metadata (as main.tf's google_compute_instance.node sets it)
        self.gcp = FakeGcp(self.lab.client_ip, c)
        self.startup_sh = open(os.path.join(GCP, "startup.sh")).read()
        render = open(os.path.join(GCP, "render-config.sh")).read()
        raft_port = tf_default(VARIABLES_TF, "raft_port")
        for i, n in enumerate(c.nodes):
            n.metadata = {
                "enable-oslogin": "TRUE", "startup-script": self.startup_sh,
                "pgwarden-render-config": render, "pgwarden-name": n.name,
                "pgwarden-scope": c.scope, "pgwarden-self-ip": n.ip,
                "pgwarden-partner-ips": ",".join(m.ip for m in c.nodes if m is not n),
                "pgwarden-raft-port": str(raft_port), "pgwarden-pg-version": self.pg_version,
                "pgwarden-deb-url": self.deb_url, "pgwarden-secret-prefix": self.prefix,
                "pgwarden-subnet-cidr": f"{self.lab.net}.0/24",
                "pgwarden-client-cidrs": ",".join(tf_default(VARIABLES_TF, "pg_hba_client_cidrs")),
                "pgwarden-zone": n.zone,
                # no data disk, no Ops Agent, no backup bucket, no STONITH here:
                # startup.sh's boot-disk path, the attributes empty as Terraform
                # sets them when the features are off
                "pgwarden-data-device": "", "pgwarden-ops-agent-config": "",
                "pgwarden-backup-bucket": "", "pgwarden-stonith-script": "",
                "pgwarden-stonith-map": ""}
        # Compute Engine's view of the VMs, for the gcloud shim
        self.vms_dir = os.path.join(d, "vms")
        for n in c.nodes:
            vd = os.path.join(self.vms_dir, n.name)
            os.makedirs(vd)
            for k, v in (("ns", n.ns), ("zone", n.zone), ("ip", n.ip)):
                with open(os.path.join(vd, k), "w") as f:
                    f.write(v)
            with open(os.path.join(vd, "env"), "w") as f:
                f.write("".join(f"{k}={v}\0" for k, v in n.env(self).items()))
        # the load balancers
        self.spec = lb_spec(MAIN_TF)
        self.reader_ip = f"{self.lab.net}.{READER_HOST}"
        subprocess.run(["ip", "-n", self.lab.lb_ns, "addr", "add", f"{self.reader_ip}/24", "dev",
                        "eth0"], check=True, capture_output=True, timeout=20)
        self.lb = GcpLoadBalancer(self.lab, c, self.spec, self.prefix, self.reader_ip)
        self.tf_out = os.path.join(d, "tf-outputs")
        os.makedirs(self.tf_out)
        for k, v in (("writer_ip", self.lab.lb_ip), ("reader_ip", self.reader_ip)):
            with open(os.path.join(self.tf_out, k), "w") as f:
                f.write(v)
        # the operator's machine (a client VM on the subnet: the bridge namespace)
        home = os.path.join(d, "client")
        os.makedirs(home)
        self.client_log = os.path.join(d, "client-calls.log")
        self.client_env = {
            "PATH": f"{self.bin}:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
            "PROJECT": PROJECT, "REGION": self.region, "BUCKET": BUCKET,
            "PGW_REHEARSAL_LOG": self.client_log, "PGW_REHEARSAL_VMS": self.vms_dir,
            "PGW_REHEARSAL_LB_STATS": f"http://{self.lab.lb_ip}:{LB_STATS_PORT}",
            "PGW_REHEARSAL_TF_OUTPUTS": self.tf_out, "PGW_REHEARSAL_SECRETS": self.secrets_dir,
            "PGW_REHEARSAL_PROJECT": PROJECT}

    # --- the operator's shell ---

    def sh(self, script, timeout=60, check=True):
        r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], env=self.client_env,
                           capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"{script!r} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r

    def sh_background(self, script):
        """A script running until stopped; .lines gets (monotonic time, line)."""
        p = subprocess.Popen(["bash", "-c", "set -euo pipefail\n" + script], env=self.client_env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.lab.track_pid(p.pid)
        p.lines = []

        def read():
            for line in p.stdout:
                p.lines.append((time.monotonic(), line.rstrip("\n")))
        p.reader = threading.Thread(target=read, daemon=True)
        p.reader.start()
        self.background.append(p)
        return p

    def stop_background(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)   # its own session: bash and its psql
            except OSError:
                pass
        p.wait(10)
        p.reader.join(5)

    def boot_all(self):
        """First boot of the three VMs, in parallel as Compute Engine does."""
        res = {}

        def boot(n):
            res[n.name] = n.boot(self)
        ts = [threading.Thread(target=boot, args=(n,)) for n in self.cluster.nodes]
        for t in ts:
            t.start()
        for t in ts:
            t.join(200)
        return res

    def dump(self):
        out = []
        for n in self.cluster.nodes:
            for f in sorted(os.listdir(n.dir)):
                if f.startswith("startup-") or f in ("calls.log", "manager.log"):
                    with open(os.path.join(n.dir, f), errors="replace") as fh:
                        out.append(f"----- {n.name} {f} -----\n{fh.read()[-4000:]}")
        print("\n".join(out))
        print(self.cluster.dump_logs(tail=80))
        try:
            with open(self.lb.log, errors="replace") as f:
                print("----- haproxy -----\n" + f.read()[-2000:])
        except (OSError, AttributeError):
            pass

    def close(self, failed):
        try:
            for p in self.background:
                self.stop_background(p)
            if failed and self.cluster is not None:
                self.dump()
            if self.gcp is not None:
                self.gcp.close()
            if self.cluster is not None:
                self.cluster.cleanup()
        finally:
            try:
                if self._ns is not None:
                    self._ns.__exit__(None, None, None)
            finally:
                if self.lab is not None:
                    self.lab.close()


@pytest.fixture
def world(request):
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools for the rehearsal: {missing}")
    failed_before = request.session.testsfailed
    w = World()
    try:
        w.setup()
        yield w
    finally:
        w.close(failed=request.session.testsfailed > failed_before)


# --- reading the runbook --------------------------------------------------------------------

def commands(block):
    """The block's commands, one string each (continuation lines joined)."""
    out, cur = [], ""
    for line in block.splitlines():
        cur += line
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        if cur.strip() and not cur.lstrip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


def block_with(section, needle):
    blocks = [b for b in sh_blocks(runbook_section(README, section)) if needle in b]
    assert len(blocks) == 1, f"runbook {section}: {len(blocks)} blocks with {needle!r}"
    return blocks[0]


def command_with(section, needle):
    cmds = [c for b in sh_blocks(runbook_section(README, section)) for c in commands(b)
            if needle in c]
    assert cmds, f"runbook {section}: no command with {needle!r}"
    return cmds


def retarget(cmd, avoid, others):
    """The runbook's `ssh pg-N --zone=Z` aimed at another VM when pg-N is
    `avoid` (the VM that was reset)."""
    m = re.search(r"ssh (\S+) --zone=(\S+)", cmd)
    assert m, cmd
    if m.group(1) != avoid.name:
        return cmd
    o = others[0]
    return cmd.replace(m.group(0), f"ssh {o.name} --zone={o.zone}")


def pg_rows(text):
    """[(address, in recovery)] of psql's aligned `inet_server_addr |
    pg_is_in_recovery` rows."""
    return [(m.group(1), m.group(2) == "t")
            for m in re.finditer(rf"^\s*({IPV4})\s*\|\s*([tf])\s*$", text, re.M)]


# --- what the shims recorded ---------------------------------------------------------------

def calls_since(node, mark):
    return node.calls()[mark:]


def of(calls, cmd):
    return [c[1:] for c in calls if c[0] == cmd]


def check_first_boot(w, n, calls):
    root = n.root
    sysd = of(calls, "systemctl")
    assert n.enabled and n.active()
    assert sysd == [["enable", "pgwarden.service"], ["is-active", "--quiet", "pgwarden.service"],
                    ["start", "pgwarden.service"]], sysd
    apt = of(calls, "apt-get")
    assert ["update", "-q"] in apt, apt
    installs = [a for a in apt if a[:1] == ["install"]]
    assert any(f"postgresql-{w.pg_version}" in a for a in installs), apt
    deb = root + "/var/cache/pgwarden/" + os.path.basename(w.deb)
    assert installs[-1][-1] == deb, apt
    secrets = sorted(a for a in of(calls, "gcloud") if a[:3] == ["secrets", "versions", "access"])
    assert secrets == sorted(["secrets", "versions", "access", "latest",
                              f"--secret={w.prefix}-{k}-password", f"--project={PROJECT}"]
                             for k in SECRETS), secrets
    assert ["storage", "cp", w.deb_url, deb + ".part", "--quiet"] in of(calls, "gcloud")
    # the package and PostgreSQL's packaging as startup.sh left them
    with open(n.path("/etc/postgresql-common/createcluster.conf")) as f:
        assert re.search(r"^create_main_cluster = false$", f.read(), re.M)
    assert filecmp.cmp(n.path("/usr/bin/pgwarden"), w.cluster.binary, shallow=False)
    st = os.stat(n.cfg_path)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (w.cluster.uid, 0o600), st
    st = os.stat(n.path("/etc/pgwarden"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, w.cluster.gid, 0o750), st
    with open(n.cfg_path) as f:
        cfg = yaml.safe_load(f)
    assert cfg["name"] == n.name and cfg["scope"] == w.cluster.scope
    assert cfg["raft"]["self_addr"] == n.metadata["pgwarden-self-ip"] + ":" + n.metadata[
        "pgwarden-raft-port"]
    assert sorted(cfg["raft"]["partner_addrs"]) == sorted(
        f"{m.ip}:{n.metadata['pgwarden-raft-port']}" for m in w.cluster.nodes if m is not n)
    assert cfg["restapi"]["connect_address"] == f"{n.ip}:{n.api_port}"
    assert cfg["postgresql"]["connect_address"] == f"{n.ip}:{n.pg_port}"
    assert cfg["postgresql"]["data_dir"] == n.data_dir
    assert cfg["tags"]["zone"] == n.zone
    # every attribute main.tf sets for startup.sh was read, with the header
    wanted = {k for k in n.metadata if k.startswith("pgwarden-")} | {"startup-script"}
    read = {r[len("instance/attributes/"):] for r in n.md_reads
            if r.startswith("instance/attributes/")}
    assert wanted <= read, wanted - read
    assert "project/project-id" in n.md_reads
    # systemctl start ran the unit's ExecStart in the VM: pgwarden as postgres,
    # in the VM's namespace, with the rendered configuration
    pid = n.proc.pid
    with open(f"/proc/{pid}/status") as f:
        uids = next(line.split()[1:] for line in f if line.startswith("Uid:"))
    assert uids == [str(w.cluster.uid)] * 4, uids
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{n.ns}").st_ino
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().rstrip(b"\0").decode().split("\0")
    assert argv == [n.path("/usr/bin/pgwarden"), "run", "-c", n.cfg_path], argv


def test_gcp_deployment_rehearsal(world):
    w = world
    c = w.cluster
    t_start = time.monotonic()
    print(f"\n[rehearsal] load balancers from main.tf: {w.spec}")
    # the metadata server answers a VM that sends Metadata-Flavor: Google, only
    md = f"{w.gcp.url}/computeMetadata/v1/instance/attributes/pgwarden-name"
    n1 = c.nodes[0]
    for hdr, want in (([], "403"), (["-H", "Metadata-Flavor: Google"], "200")):
        r = subprocess.run(["ip", "netns", "exec", n1.ns, "curl", "-s", "-o", "/dev/null", "-w",
                            "%{http_code}", *hdr, md], capture_output=True, text=True, timeout=20)
        assert r.stdout == want, (hdr, r.stdout, r.stderr)
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                        "Metadata-Flavor: Google", md], capture_output=True, text=True, timeout=20)
    assert r.stdout == "404", "the metadata server answered a machine that is no VM"
    assert w.gcp.refused == [(n1.name, md[len(w.gcp.url):])]
    w.gcp.refused.clear()
    n1.md_reads.clear()
    # the rehearsal serves exactly the metadata Terraform sets
    assert set(c.nodes[0].metadata) == tf_metadata_keys(MAIN_TF)
    # main.tf: the writer follows /primary, the reader /replica; HAProxy's
    # proxy for each probes what main.tf says, on the port the VMs listen on
    hap = open(w.lb.cfg).read()
    for be, s in w.spec.items():
        assert s["health_check"] == {"writer": "primary", "reader": "replica"}[be], s
        sec = hap.split(f"listen {w.prefix}-{be}\n", 1)[1].split("\nlisten ", 1)[0]
        assert f"option httpchk GET {s['path']}" in sec and f"timeout check {s['timeout']}s" in sec
        assert f"inter {s['interval']}s rise {s['rise']} fall {s['fall']}" in sec, sec
        assert all(f"check port {s['port']}" in line for line in sec.splitlines()
                   if line.strip().startswith("server ")), sec
        assert s["port"] == c.nodes[0].api_port and s["lb_port"] == c.nodes[0].pg_port, s

    # --- first boot of the three VMs ---
    res = w.boot_all()
    for n in c.nodes:
        r = res.get(n.name)
        assert r is not None and r.returncode == 0, \
            f"{n.name}: first boot failed:\n{r.stdout if r else ''}\n{r.stderr if r else ''}"
        assert f"pgwarden-startup: done: pgwarden {w.version}" in r.stdout, r.stdout
        check_first_boot(w, n, n.calls())
    assert w.gcp.refused == []
    t_booted = time.monotonic()
    p = c.wait_healthy(timeout=120)
    replicas = c.others(p)
    t_healthy = time.monotonic()
    want_rows = sorted((r.name, "streaming") for r in replicas)
    wait_for(lambda: sorted(p.query("SELECT application_name, state FROM pg_stat_replication"))
             == want_rows, 30, what=f"{p.name}'s walsenders streaming to both replicas")
    wait_for(lambda: w.lb.up("writer") == [p.name] and
             w.lb.up("reader") == sorted(r.name for r in replicas), 30,
             what="HAProxy: the primary behind the writer, the replicas behind the reader")

    # --- runbook step 5: the cluster and the load balancers ---
    for cmd in commands(block_with("### 5.", "get-health")):
        out = w.sh(cmd).stdout
        if "ctl" in cmd:
            for n in c.nodes:
                assert n.name in out, out
            assert re.search(rf"{re.escape(p.name)}\s*\|\s*{re.escape(p.ip)}\S*\s*\|\s*Leader", out), out
        else:
            be = "writer" if f"{w.prefix}-writer" in cmd else "reader"
            healthy = sorted(name for name, st in lb_health(out) if st == "HEALTHY")
            want = [p.name] if be == "writer" else sorted(r.name for r in replicas)
            assert healthy == want, f"{cmd}:\n{out}"

    # --- runbook step 6: through the writer to the primary, the reader to a replica ---
    out = w.sh(block_with("### 6.", "READER_IP")).stdout
    got = pg_rows(out)
    assert len(got) == 2, out
    assert got[0] == (p.ip, False), out
    assert got[1][0] in [r.ip for r in replicas] and got[1][1] is True, out

    # --- runbook step 8 with unchanged metadata: no restart, no reload ---
    rerun = command_with("### 8.", "google_metadata_script_runner startup")[0]
    m = re.search(r"ssh (\S+) --zone=", rerun)
    targets = [c.by_name(m.group(1))] + ([p] if m.group(1) != p.name else [])
    for n in targets:
        cmd = rerun if n.name == m.group(1) else retarget(rerun, c.by_name(m.group(1)), [n])
        mark, pid = len(n.calls()), n.proc.pid
        cfg_ino = os.stat(n.cfg_path).st_ino
        out = w.sh(cmd, timeout=180).stdout
        calls = calls_since(n, mark)
        assert of(calls, "systemctl") == [["enable", "pgwarden.service"],
                                          ["is-active", "--quiet", "pgwarden.service"]], calls
        assert not [a for a in of(calls, "apt-get") if a[:1] == ["install"]], calls
        assert "wrote " not in out and "pgwarden-startup: done" in out, out
        assert n.proc.pid == pid and n.active(), f"{n.name}: pgwarden was restarted"
        assert os.stat(n.cfg_path).st_ino == cfg_ino
    assert c.wait_healthy(timeout=30) is p

    # --- runbook step 7: the write loop, then a reset of the primary's VM ---
    # in the operator's session, step 6 set WRITER_IP and PGPASSWORD
    loop = w.sh_background(block_with("### 6.", "READER_IP") + block_with("### 7.", "while true"))
    line_re = re.compile(rf"\|({IPV4})$")

    def writes(after, ips):
        """[(time, address)] of the loop's acknowledged writes."""
        return [(t, mm.group(1)) for t, line in list(loop.lines)
                if t > after and (mm := line_re.search(line)) and mm.group(1) in ips]
    wait_for(lambda: len(writes(0, [p.ip])) >= 3, 30, what="the runbook's loop writing to the primary")
    reset = commands(block_with("### 7.", "instances reset"))
    assert len(reset) == 3 and reset[1].startswith("VM="), reset
    health = w.sh(reset[0]).stdout
    assert [name for name, st in lb_health(health) if st == "HEALTHY"] == [p.name], health
    old_pids = pids_in_netns(p.ns)
    assert p.proc.pid in old_pids
    t_reset = time.monotonic()
    w.sh(f"VM={p.name} ZONE={p.zone}\n{reset[2]}")
    t_dead = time.monotonic()
    assert pids_in_netns(p.ns) == [] and not p.active()
    ips = [r.ip for r in replicas]
    first, first_ip = wait_for(lambda: writes(t_reset, ips), 60, interval=0.05,
                               what="a write through the writer acknowledged by a new primary")[0]
    failover_s = first - t_reset
    new = c.wait_primary(timeout=30, exclude=p)
    assert new in replicas and first_ip == new.ip, (new.name, first_ip)
    assert not writes(first, [r.ip for r in replicas if r is not new]), "writes went to two nodes"
    wait_for(lambda: w.lb.up("writer") == [new.name], 20, what=f"HAProxy: only {new.name} behind the writer")
    failed = [t for t, line in list(loop.lines) if t > t_reset and "write failed" in line]
    w.stop_background(loop)
    others = [n for n in c.nodes if n is not p]
    watch = retarget(command_with("### 7.", "ctl -c /etc/pgwarden/pgwarden.yml list")[0], p, others)
    out = w.sh(watch).stdout
    print(f"[rehearsal] {watch}\n{out}")
    assert re.search(rf"{re.escape(new.name)}\s*\|\s*{re.escape(new.ip)}\S*\s*\|\s*Leader", out), out

    # --- the reset VM boots again: its startup script starts pgwarden ---
    mark = len(p.calls())
    t_boot = time.monotonic()
    r = p.boot(w)
    assert r.returncode == 0, f"reboot of {p.name} failed:\n{r.stdout}\n{r.stderr}"
    calls = calls_since(p, mark)
    assert of(calls, "systemctl") == [["enable", "pgwarden.service"],
                                      ["is-active", "--quiet", "pgwarden.service"],
                                      ["start", "pgwarden.service"]], calls
    assert not [a for a in of(calls, "apt-get") if a[:1] == ["install"]], calls
    t_rebooted = time.monotonic()
    assert c.wait_healthy(timeout=90) is new
    wait_for(p.is_streaming_replica, 30, what=f"{p.name} streaming from {new.name}")
    t_rejoined = time.monotonic()
    want_readers = sorted(n.name for n in c.nodes if n is not new)
    wait_for(lambda: w.lb.up("reader") == want_readers, 20,
             what=f"HAProxy: {want_readers} behind the reader")
    after = block_with("### 7.", "history")
    for cmd in commands(after):
        out = w.sh(retarget(cmd, p, others) if "ssh" in cmd else cmd).stdout
        if "get-health" in cmd:
            healthy = sorted(name for name, st in lb_health(out) if st == "HEALTHY")
            assert healthy == want_readers, out
        else:
            print(f"[rehearsal] {cmd}\n{out}")
            assert new.name in out and p.name in out, f"ctl history does not list the failover:\n{out}"
    # the operator's gcloud calls went where the runbook says
    client = [line.split("\t") for line in open(w.client_log).read().splitlines()]
    assert any(cl[1:4] == ["compute", "instances", "reset"] and cl[4] == p.name for cl in client)

    # acknowledged writes of the old primary that the new one does not have
    # (asynchronous replication: bounded by maximum_lag_on_failover)
    acked = {line.split("|")[0] for _, line in list(loop.lines)
             if (mm := line_re.search(line)) and mm.group(1) == p.ip}
    kept = {r[0] for r in new.query("SELECT at::text FROM ha_probe WHERE node = %s::inet", (p.ip,))}
    lost = sorted(acked - kept)

    total = time.monotonic() - t_start
    print(f"[rehearsal] first boot of the 3 VMs {t_booted - t_start:.1f}s, cluster healthy after "
          f"{t_healthy - t_start:.1f}s; reset of the primary {p.name}: {len(old_pids)} processes "
          f"killed in {t_dead - t_reset:.2f}s; first write through the writer LB acknowledged by "
          f"the new primary {new.name} {failover_s:.2f}s after the reset ({len(failed)} failed "
          f"writes meanwhile; {len(lost)} of {len(acked)} acknowledged writes to {p.name} lost); "
          f"reboot of {p.name} (startup script) {t_rebooted - t_boot:.1f}s, streaming replica "
          f"{t_rejoined - t_rebooted:.1f}s later; total {total:.1f}s")
    assert len(acked) >= 3


def test_rehearsal_shims_shellcheck_clean():
    shims = [os.path.join(SHIMS, f) for f in sorted(os.listdir(SHIMS))]
    assert len(shims) >= 9, shims
    r = subprocess.run(["shellcheck", "--severity=style", "-x", *shims], capture_output=True,
                       text=True, timeout=120, cwd=SHIMS)
    assert r.returncode == 0, r.stdout + r.stderr
