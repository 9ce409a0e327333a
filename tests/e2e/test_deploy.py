"""Offline checks of deploy/ (no cloud account, no Terraform binary here).

- shellcheck on every shell script we ship or run (deploy/gcp, deploy/debian,
  scripts/);
- every deploy/gcp/*.tf parsed by HashiCorp's HCL parser (@cdktf/hcl2json,
  installed by `make deploy-deps` into deploy/gcp/node_modules), then the
  resources checked: health checks, load balancers, firewall sources, three
  VMs in three zones, the plan's shape (data disks apart from the boot
  disks and protected, snapshots, nodes as for_each, nothing that replaces
  or stops every node at once; each check proven able to fail on a mutated
  copy), and `terraform fmt`'s layout (approximated);
- startup.sh's data disk step against a disk image (format once, never
  again, refuse what it must not touch);
- gcloud.sh --dry-run produces the same resources;
- the metadata startup.sh reads is what Terraform and gcloud.sh provide;
- render-config.sh for three fake nodes: each output passes
  `pgwarden validate` and lists the two other nodes, never itself;
- the systemd unit and the example configuration of the Debian package.

The local rehearsal of the whole deployment in network namespaces belongs to
the chaos suite (tests/chaos)."""
import copy
import ipaddress
import json
import os
import pathlib
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
GCP = REPO / "deploy" / "gcp"
DEBIAN = REPO / "deploy" / "debian"
PGW_BIN = os.environ.get("PGW_BIN")
HEALTH_CHECK_RANGES = {"35.191.0.0/16", "130.211.0.0/22"}
VM_TAG = "${var.network_tag}"

needs_bin = pytest.mark.skipif(
    not PGW_BIN, reason="PGW_BIN is not set: point it at a built pgwarden binary (make e2e does)")


def shell_scripts():
    files = sorted(GCP.glob("*.sh")) + sorted((REPO / "scripts").glob("*.sh"))
    files += sorted(DEBIAN.glob("*.sh")) + [DEBIAN / n for n in ("postinst", "prerm", "postrm")]
    return files


def test_shellcheck_clean():
    files = shell_scripts()
    names = {f.name for f in files}
    assert {"startup.sh", "gcloud.sh", "render-config.sh", "postinst"} <= names, names
    r = subprocess.run(["shellcheck", "--severity=style", *map(str, files)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# --- Terraform ------------------------------------------------------------------


def tf_files():
    return sorted(GCP.glob("*.tf"))


def parse_tf(paths):
    node_modules = GCP / "node_modules" / "@cdktf" / "hcl2json"
    assert node_modules.is_dir(), "deploy/gcp/node_modules is missing: run `make deploy-deps` (npm ci)"
    r = subprocess.run(["node", str(GCP / "tf2json.js"), *map(str, paths)], capture_output=True,
                       text=True, timeout=120, cwd=GCP)
    return r


@pytest.fixture(scope="module")
def tf():
    r = parse_tf(tf_files())
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)
    merged = {}
    for tree in files.values():
        for kind, body in tree.items():
            if kind in ("resource", "data"):  # {type: {name: [attrs]}}
                for rtype, named in body.items():
                    merged.setdefault(kind, {}).setdefault(rtype, {}).update(named)
            elif kind == "locals":  # [{name: value}]
                for item in body:
                    merged.setdefault(kind, {}).update(item)
            else:  # variable, output, terraform, provider: {name: [attrs]}
                merged.setdefault(kind, {}).update(body)
    return merged


def res(tf, rtype):
    """{name: attributes} of every resource of this type."""
    return {name: blocks[0] for name, blocks in tf["resource"].get(rtype, {}).items()}


def test_every_tf_file_is_there_and_parses():
    names = {p.name for p in tf_files()}
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names, names
    r = parse_tf(tf_files())
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) == names


def test_parser_rejects_broken_hcl():
    """The check above could not pass on a broken file: prove the parser says so."""
    text = (GCP / "main.tf").read_text()
    broken = text.replace("resource \"google_compute_firewall\" \"cluster\" {",
                          "resource \"google_compute_firewall\" \"cluster\" {\n  ports = [", 1)
    assert broken != text
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "main.tf"
        p.write_text(broken)
        r = parse_tf([p])
    assert r.returncode == 1
    assert re.search(r"main\.tf:\d+,\d+", r.stderr), r.stderr


def test_health_checks(tf):
    hcs = res(tf, "google_compute_region_health_check")
    assert set(hcs) == {"primary", "replica"}
    for name, hc in hcs.items():
        http = hc["http_health_check"][0]
        assert http["request_path"] == f"/{name}"
        assert http["port"] == 8008
        assert hc["check_interval_sec"] == 1
        assert hc["timeout_sec"] == 1
        assert hc["healthy_threshold"] == 1
        assert hc["unhealthy_threshold"] <= 2


def test_load_balancers(tf):
    bes = res(tf, "google_compute_region_backend_service")
    frs = res(tf, "google_compute_forwarding_rule")
    assert set(bes) == {"writer", "reader"} and set(frs) == {"writer", "reader"}
    hc_of = {"writer": "primary", "reader": "replica"}
    for lb in ("writer", "reader"):
        be, fr = bes[lb], frs[lb]
        assert be["load_balancing_scheme"] == "INTERNAL" and be["protocol"] == "TCP"
        assert be["health_checks"] == [f"${{google_compute_region_health_check.{hc_of[lb]}.id}}"]
        # one backend per node's instance group, whatever the nodes are
        backend = be["dynamic"]["backend"][0]
        assert backend["for_each"] == "${google_compute_instance_group.node}"
        assert backend["content"][0]["group"] == "${backend.value.id}"
        assert fr["load_balancing_scheme"] == "INTERNAL" and fr["ip_protocol"] == "TCP"
        assert fr["ports"] == ["5432"]
        assert fr["backend_service"] == f"${{google_compute_region_backend_service.{lb}.id}}"
        assert fr["ip_address"] == f"${{google_compute_address.{lb}.address}}"
    # a writer session must not stay on a node that stopped answering /primary
    ctp = bes["writer"]["connection_tracking_policy"][0]
    assert ctp["connection_persistence_on_unhealthy_backends"] == "NEVER_PERSIST"


def resolve(tf, v):
    """A bare reference to a local (\"${local.x}\") replaced by its value."""
    m = re.fullmatch(r"\$\{local\.([a-z_]+)\}", v) if isinstance(v, str) else None
    return tf["locals"][m.group(1)] if m else v


def firewall_rules(tf):
    rules = res(tf, "google_compute_firewall")
    out = {}
    for name, r in rules.items():
        ports = set()
        for a in r["allow"]:
            assert a["protocol"] == "tcp", (name, a)
            ports |= set(a["ports"])
        out[name] = (r, ports)
    return out


def test_firewall_sources(tf):
    rules = firewall_rules(tf)
    raft_port = "${tostring(var.raft_port)}"
    seen = {"8008-hc": False, "8008-vms": False, "raft": False, "5432-vms": False}
    for name, (r, ports) in rules.items():
        assert r["direction"] == "INGRESS", name
        assert r["target_tags"] == [VM_TAG], name
        ranges = resolve(tf, r.get("source_ranges"))
        tags = r.get("source_tags")
        assert ranges != ["0.0.0.0/0"], name
        if "8008" in ports:
            assert ports == {"8008"}, (name, ports)
            if ranges is not None:
                assert set(ranges) == HEALTH_CHECK_RANGES and tags is None, name
                seen["8008-hc"] = True
            else:
                assert tags == [VM_TAG], name
                seen["8008-vms"] = True
        if raft_port in ports:
            # Raft only between the VMs (5432 may share the rule)
            assert tags == [VM_TAG] and ranges is None, name
            assert ports <= {raft_port, "5432"}, (name, ports)
            seen["raft"] = True
            seen["5432-vms"] |= "5432" in ports
        elif "5432" in ports:
            # the only other 5432 rule: the clients the operator names
            assert name == "pg_clients", name
            assert tags == "${var.client_source_tags}" and ranges == "${var.client_source_ranges}"
            assert ports == {"5432"}
        if "22" in ports:
            assert ranges == ["35.235.240.0/20"], name
    assert all(seen.values()), seen
    default_ranges = tf["variable"]["client_source_ranges"][0]["default"]
    assert default_ranges == [], "clients from no range unless the operator says so"


def test_three_vms_in_three_zones(tf):
    vms = res(tf, "google_compute_instance")
    assert list(vms) == ["node"]
    vm = vms["node"]
    assert vm["for_each"] == "${local.nodes}"
    assert vm["zone"] == "${each.value.zone}" and vm["name"] == "${each.key}"
    assert vm["tags"] == [VM_TAG]
    # three nodes, node i in zone i
    nodes = tf["locals"]["nodes"]
    assert "for i in range(3) :" in nodes and "zone = var.zones[i]" in nodes, nodes
    zones = tf["variable"]["zones"][0]
    assert len(zones["default"]) == 3 and len(set(zones["default"])) == 3
    assert "length(distinct(var.zones)) == 3" in zones["validation"][0]["condition"]
    igs = res(tf, "google_compute_instance_group")["node"]
    assert igs["for_each"] == "${local.nodes}" and igs["zone"] == "${each.value.zone}"
    assert igs["instances"] == ["${google_compute_instance.node[each.key].self_link}"]
    for v in ("region", "zones", "machine_type", "boot_disk_size_gb", "data_disk_size_gb",
              "data_disk_type", "postgres_version", "image", "pgwarden_deb_url", "subnetwork"):
        assert v in tf["variable"], v


def tf_metadata_keys(tf):
    md = res(tf, "google_compute_instance")["node"]["metadata"]
    return {k for k in md if k.startswith("pgwarden-")}


def startup_attrs():
    """The attributes startup.sh reads (attr: required, attr_opt: may be
    missing in an older configuration)."""
    text = (GCP / "startup.sh").read_text()
    return set(re.findall(r"\battr(?:_opt)? (pgwarden-[a-z-]+)", text))


def test_startup_reads_what_terraform_provides(tf):
    keys = tf_metadata_keys(tf)
    assert startup_attrs() == keys, (startup_attrs(), keys)
    md = res(tf, "google_compute_instance")["node"]["metadata"]
    assert md["startup-script"] == '${file("${path.module}/startup.sh")}'
    assert md["pgwarden-render-config"] == '${file("${path.module}/render-config.sh")}'
    assert "if k != each.key" in md["pgwarden-partner-ips"]
    assert md["pgwarden-data-device"] == "${local.data_device}"
    assert md["pgwarden-ops-agent-config"] == \
        '${var.enable_ops_agent ? file("${path.module}/ops-agent.yaml") : ""}'


# --- the plan's shape: the data survives the infrastructure -------------------------

# Resources with one instance per node: for_each over local.nodes (keyed by
# node name), so that one node is replaced at a time.
PER_NODE = [("google_compute_instance", "node"), ("google_compute_address", "node"),
            ("google_compute_instance_group", "node"), ("google_compute_disk", "data"),
            ("google_compute_disk_resource_policy_attachment", "data_snapshots")]


def lifecycle(r):
    return r.get("lifecycle", [{}])[0]


def plan_shape_problems(tf):
    """What in the parsed configuration could lose a node's data or take the
    nodes down together; [] when nothing. Each rule is proven able to fail by
    test_plan_shape_checker_can_fail."""
    out = []
    resources = tf.get("resource", {})

    def one(rtype, name):
        blocks = resources.get(rtype, {}).get(name)
        if not blocks:
            out.append(f"no resource {rtype}.{name}")
            return {}
        return blocks[0]

    # nodes as for_each, keyed by node name
    if '"${var.name_prefix}-${i + 1}" =>' not in tf.get("locals", {}).get("nodes", ""):
        out.append("local.nodes is not keyed by node name (<prefix>-N)")
    for rtype, name in PER_NODE:
        r = one(rtype, name)
        if "count" in r:
            out.append(f"{rtype}.{name} uses count: one node cannot be replaced alone")
        if r and r.get("for_each") != "${local.nodes}":
            out.append(f"{rtype}.{name} is not for_each = local.nodes")
    vm = one("google_compute_instance", "node")
    disk = one("google_compute_disk", "data")
    # the data disk: its own resource, attached by device name, protected
    attached = vm.get("attached_disk", [])
    if [a.get("source") for a in attached] != ["${google_compute_disk.data[each.key].self_link}"]:
        out.append(f"the VM does not attach its node's data disk: {attached}")
    elif attached[0].get("device_name") != "${local.data_device}" or \
            attached[0].get("mode", "READ_WRITE") != "READ_WRITE":
        out.append(f"the data disk is not attached read-write by device name: {attached[0]}")
    if tf.get("locals", {}).get("data_device") != "pgwarden-data":
        out.append("local.data_device is not pgwarden-data (startup.sh mounts google-<that>)")
    boot = vm.get("boot_disk", [{}])[0]
    if "source" in boot or "google_compute_disk.data" in json.dumps(boot):
        out.append("the data disk is the boot disk")
    if "initialize_params" not in boot:
        out.append("the boot disk is not created with the VM (initialize_params)")
    if lifecycle(disk).get("prevent_destroy") is not True:
        out.append("the data disks lack lifecycle.prevent_destroy = true")
    if disk.get("type") != "${var.data_disk_type}" or disk.get("size") != "${var.data_disk_size_gb}":
        out.append("data disk type/size are not the variables data_disk_type/data_disk_size_gb")
    if disk.get("zone") != "${each.value.zone}":
        out.append("a data disk is not in its node's zone")
    dtype = tf.get("variable", {}).get("data_disk_type", [{}])[0]
    cond = " ".join(v.get("condition", "") for v in dtype.get("validation", []))
    if dtype.get("default") not in ("pd-ssd", "pd-balanced") or \
            not ('"pd-ssd"' in cond and '"pd-balanced"' in cond):
        out.append("data_disk_type is not limited to pd-ssd / pd-balanced")
    # deletion protection on by default
    if vm.get("deletion_protection") != "${var.deletion_protection}" or \
            tf.get("variable", {}).get("deletion_protection", [{}])[0].get("default") is not True:
        out.append("the VMs' deletion_protection is not var.deletion_protection (default true)")
    # snapshots of every data disk
    pol = one("google_compute_resource_policy", "data_snapshots")
    ssp = pol.get("snapshot_schedule_policy", [{}])[0]
    ret = ssp.get("retention_policy", [{}])[0]
    if "schedule" not in ssp or ret.get("max_retention_days") != "${var.snapshot_retention_days}":
        out.append("no snapshot schedule with retention var.snapshot_retention_days")
    if ret.get("on_source_disk_delete") != "KEEP_AUTO_SNAPSHOTS":
        out.append("snapshots are deleted with their disk (on_source_disk_delete)")
    att = one("google_compute_disk_resource_policy_attachment", "data_snapshots")
    if att.get("disk") != "${google_compute_disk.data[each.key].name}" or \
            att.get("name") != "${google_compute_resource_policy.data_snapshots.name}":
        out.append(f"the snapshot policy is not attached to each data disk: {att}")
    # nothing that replaces or stops every node in one apply
    if vm.get("allow_stopping_for_update") not in (None, False, "${each.key == var.stoppable_node}"):
        out.append(f"allow_stopping_for_update = {vm.get('allow_stopping_for_update')!r} may stop "
                   "every node at once")
    if "metadata_startup_script" in vm:
        out.append("metadata_startup_script replaces every VM when the script changes")
    image = boot.get("initialize_params", [{}])[0].get("image", "")
    if "each.key" not in image:
        out.append(f"the image ({image}) has no per-node override: an image change hits every node")
    if "each.key" not in vm.get("machine_type", ""):
        out.append("the machine type has no per-node override")
    for k in ("name", "zone"):
        if "each." not in str(vm.get(k)):
            out.append(f"the VMs' {k} is not per node")
    if "[each.key]" not in vm.get("network_interface", [{}])[0].get("network_ip", ""):
        out.append("the VMs' address is not their own reserved address")
    return out


def test_plan_shape(tf):
    assert plan_shape_problems(tf) == []


def _set(path, value):
    def f(tf):
        *head, last = path
        d = tf
        for k in head:
            d = d[k]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return f


VM = ["resource", "google_compute_instance", "node", 0]
DISK = ["resource", "google_compute_disk", "data", 0]
ATT = ["resource", "google_compute_disk_resource_policy_attachment", "data_snapshots", 0]
POL = ["resource", "google_compute_resource_policy", "data_snapshots", 0, "snapshot_schedule_policy", 0]


@pytest.mark.parametrize("mutate,expect", [
    (_set(VM + ["count"], 3), "uses count"),
    (_set(DISK + ["for_each"], KeyError), "google_compute_disk.data is not for_each"),
    (_set(["locals", "nodes"], "${{for i in range(3) : i => {}}}"), "keyed by node name"),
    (_set(VM + ["attached_disk"], KeyError), "does not attach"),
    (_set(VM + ["attached_disk", 0, "device_name"], "data"), "by device name"),
    (_set(VM + ["boot_disk", 0], {"source": "${google_compute_disk.data[each.key].self_link}"}),
     "the data disk is the boot disk"),
    (_set(DISK + ["lifecycle"], KeyError), "prevent_destroy"),
    (_set(DISK + ["lifecycle", 0, "prevent_destroy"], False), "prevent_destroy"),
    (_set(DISK + ["type"], "pd-standard"), "data_disk_type"),
    (_set(["variable", "data_disk_type", 0, "validation"], []), "limited to pd-ssd"),
    (_set(VM + ["deletion_protection"], False), "deletion_protection"),
    (_set(["variable", "deletion_protection", 0, "default"], False), "deletion_protection"),
    (_set(POL + ["retention_policy", 0, "on_source_disk_delete"], "APPLY_RETENTION_POLICY"),
     "deleted with their disk"),
    (_set(POL + ["schedule"], KeyError), "no snapshot schedule"),
    (_set(ATT + ["disk"], "${google_compute_disk.data[\"pg-1\"].name}"), "not attached to each"),
    (_set(["resource", "google_compute_disk_resource_policy_attachment"], {}),
     "no resource google_compute_disk_resource_policy_attachment"),
    (_set(VM + ["allow_stopping_for_update"], True), "may stop every node"),
    (_set(VM + ["metadata_startup_script"], "${file(\"startup.sh\")}"), "metadata_startup_script"),
    (_set(VM + ["boot_disk", 0, "initialize_params", 0, "image"], "${var.image}"), "per-node override"),
    (_set(VM + ["machine_type"], "${var.machine_type}"), "machine type"),
    (_set(VM + ["network_interface", 0, "network_ip"], "${google_compute_address.node[0].address}"),
     "reserved address"),
])
def test_plan_shape_checker_can_fail(tf, mutate, expect):
    bad = copy.deepcopy(tf)
    mutate(bad)
    problems = plan_shape_problems(bad)
    assert any(expect in p for p in problems), problems


def test_no_shared_change_replaces_every_node(tf):
    """The guards behind the per-node overrides: a replacement needs deletion
    protection lifted (gcloud.sh roll does it for one node), a stop needs the
    node named in stoppable_node (one string: one node), and the overrides
    are keyed by node names the configuration checks."""
    vm = res(tf, "google_compute_instance")["node"]
    conds = " ".join(p["condition"] for p in lifecycle(vm)["precondition"])
    assert "contains(keys(local.nodes), k)" in conds and "keys(var.node_image)" in conds
    assert "keys(var.node_machine_type)" in conds and "var.stoppable_node" in conds
    assert tf["variable"]["stoppable_node"][0] == {**tf["variable"]["stoppable_node"][0],
                                                   "type": "${string}", "default": ""}
    for v in ("node_image", "node_machine_type"):
        assert tf["variable"][v][0]["default"] == {}, v


INDENT = re.compile(r"^( *)")
ASSIGN = re.compile(r"^( *)([A-Za-z_][A-Za-z0-9_-]*|\"[^\"]*\") *= ")


def fmt_problems(path):
    """What `terraform fmt` would change, approximately: two-space indents,
    no tabs or trailing blanks, one final newline, and the `=` of
    consecutive single-line assignments at one indentation aligned."""
    problems = []
    lines = path.read_text().split("\n")
    if lines[-1] != "" or (len(lines) > 1 and lines[-2] == ""):
        problems.append(f"{path.name}: must end with exactly one newline")
    run = []

    def flush():
        cols = {ln.index("=") for _, ln in run}
        if len(cols) > 1:
            problems.append(f"{path.name}:{run[0][0]}: '=' not aligned in lines "
                            f"{run[0][0]}-{run[-1][0]}")
        run.clear()

    for no, line in enumerate(lines, 1):
        if "\t" in line:
            problems.append(f"{path.name}:{no}: tab")
        if line != line.rstrip():
            problems.append(f"{path.name}:{no}: trailing blank")
        indent = len(INDENT.match(line).group(1))
        if indent % 2:
            problems.append(f"{path.name}:{no}: odd indentation")
        m = ASSIGN.match(line)
        single = m and line.count("{") == line.count("}") and line.count("[") == line.count("]") \
            and line.count("(") == line.count(")")
        if m and single and (not run or len(run[0][1]) - len(run[0][1].lstrip()) == indent):
            run.append((no, line))
            continue
        if run:
            flush()
        if m and single:
            run.append((no, line))
    if run:
        flush()
    return problems


def test_terraform_fmt_layout():
    problems = [p for f in tf_files() for p in fmt_problems(f)]
    assert problems == []
    # the checker itself finds a misaligned block
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "x.tf"
        p.write_text('resource "a" "b" {\n  name = "x"\n  region   = "y"\n}\n')
        assert any("not aligned" in m for m in fmt_problems(p))


# --- startup.sh: the data disk ---------------------------------------------------------

SHIM = """#!/bin/bash
echo "$(basename "$0") $*" >>"$SHIM_LOG"
"""
DISK_SHIMS = {
    # mounts are recorded, not made: mountpoint answers from that record
    "mount": SHIM + 'echo "${@: -1}" >>"$SHIM_MOUNTED"\n',
    "mountpoint": SHIM + 'grep -qxF "${@: -1}" "$SHIM_MOUNTED" 2>/dev/null\n',
    "systemctl": SHIM,
    "resize2fs": SHIM,
    # the real ones, counted
    "mkfs.ext4": SHIM + 'exec /sbin/mkfs.ext4 "$@"\n',
}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown/install -o postgres need root")


class DataDiskVm:
    """A VM's root prefix (PGW_STARTUP_ROOT) with a disk image as the
    attached data disk, and startup.sh's data_disk run against it."""

    def __init__(self, d, disk):
        self.root = pathlib.Path(d) / "root"
        (self.root / "etc").mkdir(parents=True)
        (self.root / "etc" / "fstab").write_text("# /etc/fstab\nUUID=1234 / ext4 defaults 0 1\n")
        byid = self.root / "dev" / "disk" / "by-id"
        byid.mkdir(parents=True)
        (byid / "google-pgwarden-data").symlink_to(disk)
        (self.root / "var" / "lib" / "postgresql").mkdir(parents=True)
        self.bin = pathlib.Path(d) / "bin"
        self.bin.mkdir()
        for name, text in DISK_SHIMS.items():
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.log = pathlib.Path(d) / "calls.log"
        self.mounted = pathlib.Path(d) / "mounted"

    def run(self):
        env = {"PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "PGW_STARTUP_ROOT": str(self.root),
               "SHIM_LOG": str(self.log), "SHIM_MOUNTED": str(self.mounted),
               "PGW_DATA_DISK_WAIT_S": "2", "LANG": "C.UTF-8"}
        self.log.write_text("")
        return subprocess.run(["bash", "-c", f'. "{GCP / "startup.sh"}"; data_disk pgwarden-data'],
                              capture_output=True, text=True, env=env, timeout=120)

    def calls(self, cmd):
        return [ln.split(" ", 1)[1] if " " in ln else "" for ln in self.log.read_text().splitlines()
                if ln.split(" ", 1)[0] == cmd]


def disk_image(d, size_mb=64):
    p = pathlib.Path(d) / "disk.img"
    with open(p, "wb") as f:
        f.truncate(size_mb << 20)
    return p


def fs_uuid(disk):
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", str(disk)], capture_output=True,
                          text=True, timeout=30).stdout.strip()


FSTAB_LINE = "/dev/disk/by-id/google-pgwarden-data /var/lib/postgresql ext4 defaults,discard,nofail 0 2"


@needs_root
def test_data_disk_formatted_once_then_only_mounted():
    with tempfile.TemporaryDirectory() as d:
        disk = disk_image(d)
        os.makedirs(f"{d}/vm1")
        vm = DataDiskVm(f"{d}/vm1", disk)
        r = vm.run()
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(vm.calls("mkfs.ext4")) == 1, vm.calls("mkfs.ext4")
        uuid = fs_uuid(disk)
        assert uuid, "no filesystem made"
        fstab = (vm.root / "etc" / "fstab").read_text().splitlines()
        assert fstab[-1] == FSTAB_LINE and "UUID=1234 / ext4 defaults 0 1" in fstab
        dropin = (vm.root / "etc/systemd/system/pgwarden.service.d/data-disk.conf").read_text()
        assert "RequiresMountsFor=/var/lib/postgresql" in dropin.splitlines()
        assert vm.calls("systemctl") == ["daemon-reload"]
        assert vm.calls("mount") == [f"-t ext4 -o defaults,discard {vm.root}/dev/disk/by-id/"
                                     f"google-pgwarden-data {vm.root}/var/lib/postgresql"]
        raft_parent = vm.root / "var/lib/postgresql/pgwarden"
        st = raft_parent.stat()
        assert (st.st_uid, oct(st.st_mode & 0o777)) == (pwd.getpwnam("postgres").pw_uid, "0o700")
        # the same boot again, disk already mounted: nothing changes
        r = vm.run()
        assert r.returncode == 0, r.stderr
        assert vm.calls("mkfs.ext4") == [] and vm.calls("mount") == [] and vm.calls("systemctl") == []
        assert (vm.root / "etc" / "fstab").read_text().count(FSTAB_LINE) == 1
        # a replacement VM (new boot disk, same data disk): mounted, never formatted
        os.makedirs(f"{d}/vm2")
        vm2 = DataDiskVm(f"{d}/vm2", disk)
        r = vm2.run()
        assert r.returncode == 0, r.stderr
        assert vm2.calls("mkfs.ext4") == [] and len(vm2.calls("mount")) == 1
        assert fs_uuid(disk) == uuid
        assert (vm2.root / "etc" / "fstab").read_text().splitlines()[-1] == FSTAB_LINE


def _refused(prepare, message):
    with tempfile.TemporaryDirectory() as d:
        disk = disk_image(d)
        os.makedirs(f"{d}/vm")
        vm = DataDiskVm(f"{d}/vm", disk)
        prepare(vm, disk)
        before = disk.read_bytes()
        r = vm.run()
        assert r.returncode != 0 and message in r.stderr, r.stdout + r.stderr
        assert vm.calls("mkfs.ext4") == [] and vm.calls("mount") == []
        assert disk.read_bytes() == before, "the disk was written to"


def _scribble(vm, disk):
    with open(disk, "r+b") as f:
        f.seek(3 << 20)
        f.write(b"someone's data")


def _swap(vm, disk):
    subprocess.run(["mkswap", str(disk)], check=True, capture_output=True, timeout=30)


def _pgdata_on_boot_disk(vm, disk):
    p = vm.root / "var/lib/postgresql/15/main"
    p.mkdir(parents=True)
    (p / "PG_VERSION").write_text("15\n")


def _no_disk(vm, disk):
    (vm.root / "dev/disk/by-id/google-pgwarden-data").unlink()


@needs_root
@pytest.mark.parametrize("prepare,message", [
    (_scribble, "is not blank: not formatting it"),
    (_swap, "holds a swap filesystem"),
    (_pgdata_on_boot_disk, "is on the boot disk"),
    (_no_disk, "no data disk"),
])
def test_data_disk_refuses(prepare, message):
    """What data_disk must never format or mount over, and a missing disk."""
    _refused(prepare, message)


# --- gcloud.sh ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcloud_dry_run():
    with tempfile.TemporaryDirectory() as d:
        # a gcloud that fails the test if the dry run ever calls it
        fake = pathlib.Path(d) / "gcloud"
        fake.write_text("#!/bin/sh\necho 'gcloud was called during --dry-run' >&2\nexit 99\n")
        fake.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGW_", "PGWARDEN_"))}
        env.update(PATH=f"{d}:/usr/bin:/bin", PROJECT="proj-1",
                   DEB_URL="gs://pkgs/pgwarden_0.1.0_amd64.deb")
        for k in ("ZONES", "NODE_IPS", "REGION", "PREFIX", "SUBNET", "CLIENT_TAGS", "CLIENT_RANGES"):
            env.pop(k, None)
        r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", "up"], capture_output=True,
                           text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    cmds = []
    for line in r.stdout.splitlines():
        if line.startswith("printf %s '<generated>' | "):
            line = line.split(" | ", 1)[1]
        argv = shlex.split(line)
        assert argv[0] == "gcloud", line
        cmds.append(argv[3:] if argv[1].startswith("--project=") else argv[1:])
    return cmds


def flags(argv):
    out = {}
    for a in argv:
        if a.startswith("--"):
            k, _, v = a[2:].partition("=")
            out[k] = v
    return out


def pick(cmds, *prefix):
    return [c for c in cmds if c[:len(prefix)] == list(prefix)]


def test_gcloud_health_checks(gcloud_dry_run):
    hcs = pick(gcloud_dry_run, "compute", "health-checks", "create", "http")
    assert sorted(c[4] for c in hcs) == ["pg-primary", "pg-replica"]
    for c in hcs:
        f = flags(c)
        assert f["request-path"] == "/" + c[4].split("-", 1)[1]
        assert f["port"] == "8008" and f["check-interval"] == "1s" and f["timeout"] == "1s"
        assert f["healthy-threshold"] == "1" and f["unhealthy-threshold"] == "2"
        assert f["region"] == "europe-west1"


def test_gcloud_load_balancers(gcloud_dry_run):
    bes = {c[3]: flags(c) for c in pick(gcloud_dry_run, "compute", "backend-services", "create")}
    assert bes["pg-writer"]["health-checks"] == "pg-primary"
    assert bes["pg-reader"]["health-checks"] == "pg-replica"
    for f in bes.values():
        assert f["load-balancing-scheme"] == "INTERNAL" and f["protocol"] == "TCP"
    assert bes["pg-writer"]["connection-persistence-on-unhealthy-backends"] == "NEVER_PERSIST"
    adds = pick(gcloud_dry_run, "compute", "backend-services", "add-backend")
    for lb in ("pg-writer", "pg-reader"):
        groups = sorted(flags(c)["instance-group"] for c in adds if c[3] == lb)
        assert groups == ["pg-1-ig", "pg-2-ig", "pg-3-ig"], groups
    frs = {c[3]: flags(c) for c in pick(gcloud_dry_run, "compute", "forwarding-rules", "create")}
    assert set(frs) == {"pg-writer", "pg-reader"}
    for name, f in frs.items():
        assert f["ports"] == "5432" and f["ip-protocol"] == "TCP"
        assert f["load-balancing-scheme"] == "INTERNAL" and f["backend-service"] == name


def test_gcloud_firewall(gcloud_dry_run):
    rules = {c[3]: flags(c) for c in pick(gcloud_dry_run, "compute", "firewall-rules", "create")}
    for name, f in rules.items():
        assert f["target-tags"] == "pgwarden", name
        allow = set(f["allow"].split(","))
        if "tcp:8008" in allow:
            assert allow == {"tcp:8008"}
            assert (set(f.get("source-ranges", "").split(",")) == HEALTH_CHECK_RANGES
                    and "source-tags" not in f) or \
                   (f.get("source-tags") == "pgwarden" and "source-ranges" not in f), name
        if "tcp:5010" in allow:
            assert f.get("source-tags") == "pgwarden" and "source-ranges" not in f, name
        elif "tcp:5432" in allow:
            assert name == "pg-pg-clients" and f.get("source-tags") == "pg-client", name
            assert "source-ranges" not in f
    assert rules["pg-cluster"]["allow"] == "tcp:5010,tcp:5432"


def test_gcloud_three_vms_and_metadata(gcloud_dry_run):
    vms = pick(gcloud_dry_run, "compute", "instances", "create")
    assert [c[3] for c in vms] == ["pg-1", "pg-2", "pg-3"]
    zones = [flags(c)["zone"] for c in vms]
    assert len(set(zones)) == 3, zones
    ips = [flags(c)["private-network-ip"] for c in vms]
    for c, ip in zip(vms, ips):
        f = flags(c)
        assert "no-address" in f
        md = f["metadata"]
        assert md.startswith("^|^")
        items = dict(kv.split("=", 1) for kv in md[3:].split("|"))
        files = dict(kv.split("=", 1) for kv in f["metadata-from-file"].split(","))
        assert pathlib.Path(files["startup-script"]) == GCP / "startup.sh"
        assert pathlib.Path(files["pgwarden-render-config"]) == GCP / "render-config.sh"
        given = {k for k in list(items) + list(files) if k.startswith("pgwarden-")}
        assert given == startup_attrs()
        assert items["pgwarden-self-ip"] == ip
        assert sorted(items["pgwarden-partner-ips"].split(",")) == sorted(i for i in ips if i != ip)
    igs = pick(gcloud_dry_run, "compute", "instance-groups", "unmanaged", "add-instances")
    assert [(c[4], flags(c)["instances"]) for c in igs] == \
        [("pg-1-ig", "pg-1"), ("pg-2-ig", "pg-2"), ("pg-3-ig", "pg-3")]


def test_gcloud_refuses_bad_input():
    env = {"PATH": "/usr/bin:/bin", "PROJECT": "p", "DEB_URL": "ftp://x/y.deb"}
    r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", "up"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and "DEB_URL must be" in r.stderr
    env.update(DEB_URL="gs://b/p.deb", ZONES="a b")
    r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", "up"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and "three zones" in r.stderr


# --- render-config.sh -----------------------------------------------------------

NODES = [("pg-1", "10.20.0.11"), ("pg-2", "10.20.0.12"), ("pg-3", "10.20.0.13")]
SECRETS = {
    "PGW_SUPERUSER_PASSWORD": "su 'quoted' # not a comment",
    "PGW_REPLICATION_PASSWORD": "repl:colon",
    "PGW_REWIND_PASSWORD": "rew\"ind",
    "PGW_RESTAPI_PASSWORD": "api-secret",
    "PGW_RAFT_PASSWORD": "raft-secret",
}


def render_env(name, ip, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGW_", "PGWARDEN_"))}
    env.update(SECRETS)
    env.update(PGW_NAME=name, PGW_SELF_IP=ip, PGW_SCOPE="main",
               PGW_PARTNER_IPS=",".join(i for _, i in NODES),  # every node, self included
               PGW_SUBNET_CIDR="10.20.0.0/24", PGW_CLIENT_CIDRS="10.0.0.0/8",
               PGW_ZONE="europe-west1-b")
    env.update(extra)
    return env


def render(env, *args):
    return subprocess.run([str(GCP / "render-config.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=30)


@needs_bin
def test_render_config_for_three_nodes():
    with tempfile.TemporaryDirectory() as d:
        for name, ip in NODES:
            path = pathlib.Path(d) / f"{name}.yml"
            r = render(render_env(name, ip), "-o", str(path))
            assert r.returncode == 0, r.stderr
            assert oct(path.stat().st_mode & 0o777) == "0o600"
            v = subprocess.run([PGW_BIN, "validate", "--offline", "-c", str(path)], capture_output=True, text=True,
                               timeout=30, env={k: x for k, x in os.environ.items()
                                                if not k.startswith("PGWARDEN_")})
            assert v.returncode == 0 and v.stderr == "", v.stderr
            c = yaml.safe_load(path.read_text())
            assert c["name"] == name
            assert c["raft"]["self_addr"] == f"{ip}:5010"
            partners = c["raft"]["partner_addrs"]
            assert f"{ip}:5010" not in partners
            assert sorted(partners) == sorted(f"{i}:5010" for n, i in NODES if n != name)
            assert c["restapi"]["connect_address"] == f"{ip}:8008"
            assert c["postgresql"]["connect_address"] == f"{ip}:5432"
            su = c["postgresql"]["authentication"]["superuser"]["password"]
            assert su == SECRETS["PGW_SUPERUSER_PASSWORD"]
            assert c["raft"]["password"] == SECRETS["PGW_RAFT_PASSWORD"]
            hba = c["postgresql"]["pg_hba"]
            assert "host replication replicator 10.20.0.0/24 scram-sha-256" in hba
            assert "host all all 10.0.0.0/8 scram-sha-256" in hba
            assert c["tags"]["zone"] == "europe-west1-b"


@needs_bin
def test_render_config_with_a_backup_bucket():
    """PGW_BACKUP_BUCKET (Terraform's backup_bucket) turns on pgBackRest on
    GCS with the VM's service account; without it there is no backup section."""
    env = render_env(*NODES[0])
    r = render(env)
    assert r.returncode == 0, r.stderr
    assert "backup" not in yaml.safe_load(r.stdout)
    env["PGW_BACKUP_BUCKET"] = "acme-pg-backups"
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "n.yml"
        r = render(env, "-o", str(path))
        assert r.returncode == 0, r.stderr
        v = subprocess.run([PGW_BIN, "validate", "--offline", "-c", str(path)], capture_output=True, text=True,
                           timeout=30, env={k: x for k, x in os.environ.items()
                                            if not k.startswith("PGWARDEN_")})
        assert v.returncode == 0 and v.stderr == "", v.stderr
        b = yaml.safe_load(path.read_text())["backup"]
    assert b["method"] == "pgbackrest"
    assert b["options"]["repo1-type"] == "gcs"
    assert b["options"]["repo1-gcs-bucket"] == "acme-pg-backups"
    assert b["options"]["repo1-gcs-key-type"] == "auto"
    env["PGW_BACKUP_BUCKET"] = "two\nlines"
    assert render(env).returncode == 2


def test_backup_bucket_terraform(tf):
    iam = res(tf, "google_storage_bucket_iam_member")["backup"]
    assert iam["count"] == '${var.backup_bucket == "" ? 0 : 1}'
    assert iam["role"] == "roles/storage.objectAdmin"
    assert tf["variable"]["backup_bucket"][0]["default"] == ""
    assert "attr_opt pgwarden-backup-bucket" in (GCP / "startup.sh").read_text()


@needs_bin
def test_render_config_ports_and_paths_for_a_rehearsal():
    """What a local rehearsal passes: explicit ports per partner, own paths."""
    env = render_env("n1", "10.0.0.1", PGW_PARTNER_IPS="10.0.0.2:6010 10.0.0.3:6010",
                     PGW_RAFT_PORT="6010", PGW_API_PORT="18008", PGW_PG_PORT="15432",
                     PGW_PG_DATA_DIR="/tmp/x/data", PGW_RAFT_DATA_DIR="/tmp/x/raft",
                     PGW_PG_BIN_DIR="/usr/lib/postgresql/15/bin", PGW_ZONE="")
    r = render(env)
    assert r.returncode == 0, r.stderr
    c = yaml.safe_load(r.stdout)
    assert c["raft"]["partner_addrs"] == ["10.0.0.2:6010", "10.0.0.3:6010"]
    assert c["restapi"]["listen"] == "0.0.0.0:18008"
    assert c["postgresql"]["listen"] == "0.0.0.0:15432"
    assert c["postgresql"]["data_dir"] == "/tmp/x/data" and c["raft"]["data_dir"] == "/tmp/x/raft"
    assert "tags" not in c
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        f.write(r.stdout)
        f.flush()
        v = subprocess.run([PGW_BIN, "validate", "--offline", "-c", f.name], capture_output=True, text=True,
                           timeout=30)
    assert v.returncode == 0, v.stderr


@pytest.mark.parametrize("change,message", [
    ({"PGW_RAFT_PASSWORD": ""}, "PGW_RAFT_PASSWORD is required"),
    ({"PGW_SUPERUSER_PASSWORD": "a\nb"}, "PGW_SUPERUSER_PASSWORD must be a single line"),
    ({"PGW_SELF_IP": "10.20.0.300"}, "PGW_SELF_IP: \"10.20.0.300\" is not an IPv4 address"),
    ({"PGW_PARTNER_IPS": "10.20.0.11"}, "names no node other than this one"),
    ({"PGW_PARTNER_IPS": "10.20.0.12,host-b"}, "\"host-b\" is not an IPv4 address"),
    ({"PGW_NAME": "pg 1"}, "PGW_NAME: \"pg 1\" may only contain"),
    ({"PGW_SUBNET_CIDR": "10.20.0.0"}, "is not an IPv4 CIDR"),
    ({"PGW_RAFT_PORT": "70000"}, "port \"70000\" is not 1-65535"),
])
def test_render_config_refuses_bad_input(change, message):
    r = render(render_env("pg-1", "10.20.0.11", **change))
    assert r.returncode == 2
    assert r.stdout == ""
    assert message in r.stderr, r.stderr


# --- Debian package sources -------------------------------------------------------


def unit_settings(path):
    sections, cur = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]"), {})
            continue
        k, _, v = line.partition("=")
        cur.setdefault(k, []).append(v)
    return sections


def test_systemd_unit():
    u = unit_settings(DEBIAN / "pgwarden.service")
    s = {k: v[-1] for k, v in u["Service"].items()}
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["User"] == "postgres" and s["KillMode"] == "process"
    assert s["Restart"] == "on-failure" and s["RestartSec"] == "2"
    assert int(s["WatchdogSec"]) >= 2
    assert int(s["TimeoutStopSec"]) >= 90
    assert int(s["LimitNOFILE"]) >= 65536
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert s["ExecStart"] == "/usr/bin/pgwarden run -c /etc/pgwarden/pgwarden.yml"
    assert u["Install"]["WantedBy"] == ["multi-user.target"]


# What the unit must keep and must not do, checked on its parsed settings
# (issue 18 item 4). A violation is a message; [] is a pass.
UNIT_HARDENING = {
    "ProtectSystem": {"full", "strict"}, "ProtectHome": {"yes", "read-only"},
    "PrivateTmp": {"yes"}, "ProtectKernelTunables": {"yes"}, "ProtectKernelModules": {"yes"},
    "ProtectKernelLogs": {"yes"}, "ProtectControlGroups": {"yes"}, "NoNewPrivileges": {"yes"},
    "RestrictNamespaces": {"yes"}, "LockPersonality": {"yes"}, "RestrictRealtime": {"yes"},
    "SystemCallArchitectures": {"native"},
}
# PostgreSQL's JIT writes the code it runs; in maintenance mode PostgreSQL
# outlives the unit with its shared memory; the watchdog is a device.
UNIT_FORBIDDEN = {"MemoryDenyWriteExecute": "yes", "RemoveIPC": "yes", "PrivateDevices": "yes",
                  "DynamicUser": "yes", "PrivateNetwork": "yes"}


def unit_problems(u):
    s = {k: v[-1] for k, v in u["Service"].items()}
    out = []
    for k, allowed in UNIT_HARDENING.items():
        if s.get(k) not in allowed:
            out.append(f"{k}={s.get(k)} (want one of {sorted(allowed)})")
    for k, bad in UNIT_FORBIDDEN.items():
        if s.get(k, "").lower() in (bad, "true", "on", "1"):
            out.append(f"{k}={s[k]} breaks PostgreSQL or pgwarden")
    fams = set(s.get("RestrictAddressFamilies", "").split())
    if fams != {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}:
        out.append(f"RestrictAddressFamilies={sorted(fams)}")
    # the postmaster is never the OOM killer's choice, its backends are
    if s.get("OOMScoreAdjust") != "-1000":
        out.append(f"OOMScoreAdjust={s.get('OOMScoreAdjust')}")
    env = " ".join(u["Service"].get("Environment", [])).split()
    for want in ("PG_OOM_ADJUST_FILE=/proc/self/oom_score_adj", "PG_OOM_ADJUST_VALUE=0"):
        if want not in env:
            out.append(f"Environment lacks {want}")
    if s.get("LimitMEMLOCK") != "infinity":
        out.append(f"LimitMEMLOCK={s.get('LimitMEMLOCK')} (the fence keeper locks its memory)")
    # a closed device policy must still let pgwarden open the watchdog
    if s.get("DevicePolicy") in ("closed", "strict"):
        allow = u["Service"].get("DeviceAllow", [])
        for dev in ("/dev/watchdog rw", "char-watchdog rw"):
            if dev not in allow:
                out.append(f"DevicePolicy={s['DevicePolicy']} without DeviceAllow={dev}")
    # a stop with Patroni-like timings outlasts a fixed TimeoutStopSec: the
    # unit keeps a floor, pgwarden extends it (EXTEND_TIMEOUT_USEC)
    if int(s.get("TimeoutStopSec", "0")) < 90:
        out.append(f"TimeoutStopSec={s.get('TimeoutStopSec')}")
    return out


def test_systemd_unit_hardening():
    u = unit_settings(DEBIAN / "pgwarden.service")
    assert unit_problems(u) == []


@pytest.mark.parametrize("mutate,expect", [
    (lambda s: s.__setitem__("MemoryDenyWriteExecute", ["yes"]), "MemoryDenyWriteExecute"),
    (lambda s: s.__setitem__("RemoveIPC", ["yes"]), "RemoveIPC"),
    (lambda s: s.pop("ProtectSystem"), "ProtectSystem"),
    (lambda s: s.__setitem__("OOMScoreAdjust", ["-900"]), "OOMScoreAdjust"),
    (lambda s: s.__setitem__("Environment", ["PG_OOM_ADJUST_VALUE=0"]), "PG_OOM_ADJUST_FILE"),
    (lambda s: s.pop("LimitMEMLOCK"), "LimitMEMLOCK"),
    (lambda s: s.__setitem__("DeviceAllow", ["char-watchdog rw"]), "/dev/watchdog rw"),
    (lambda s: s.__setitem__("RestrictAddressFamilies", ["AF_UNIX AF_INET"]), "RestrictAddressFamilies"),
    (lambda s: s.__setitem__("TimeoutStopSec", ["30"]), "TimeoutStopSec"),
])
def test_systemd_unit_hardening_checker_can_fail(mutate, expect):
    u = unit_settings(DEBIAN / "pgwarden.service")
    mutate(u["Service"])
    problems = unit_problems(u)
    assert any(expect in p for p in problems), problems


def security_score(path):
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_security_score():
    """systemd's own exposure score (0 safe .. 10 unsafe): 9.2 before the
    sandbox (issue 18), 1.9 with it; a regression above 2.5 fails."""
    score = security_score(DEBIAN / "pgwarden.service")
    print(f"systemd-analyze security pgwarden.service: {score}")
    assert score <= 2.5
    # the measurement sees the sandbox: without it the same unit scores high
    with tempfile.TemporaryDirectory() as d:
        bare = pathlib.Path(d) / "pgwarden.service"
        text = (DEBIAN / "pgwarden.service").read_text()
        bare.write_text(text.split("# Sandbox", 1)[0] + "\n[Install]\nWantedBy=multi-user.target\n")
        assert security_score(bare) > 8


def test_watchdog_udev_rule():
    rules = [ln for ln in (DEBIAN / "60-pgwarden-watchdog.rules").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    parsed = []
    for ln in rules:
        keys = dict(re.findall(r'([A-Z]+)(?:==|=)"([^"]*)"', ln))
        assert set(keys) == {"KERNEL", "SUBSYSTEM", "GROUP", "MODE"}, ln
        parsed.append(keys)
    # /dev/watchdog (misc) and /dev/watchdogN (watchdog class), group rw
    assert {(k["KERNEL"], k["SUBSYSTEM"]) for k in parsed} == {
        ("watchdog", "misc"), ("watchdog[0-9]*", "watchdog")}
    assert all(k["GROUP"] == "postgres" and k["MODE"] == "0660" for k in parsed)
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "deploy/debian/60-pgwarden-watchdog.rules DESTINATION /lib/udev/rules.d" in cmake


def test_logrotate_snippet():
    text = (DEBIAN / "pgwarden.logrotate").read_text()
    head = next(ln for ln in text.splitlines() if ln.endswith("{"))
    paths = head[:-1].split()
    # PostgreSQL's server log as pg_ctl -l writes it for the Debian data
    # directory layout (pg/pgctl.c: <data_dir>.startup.log), pgwarden's log.dir
    assert "/var/lib/postgresql/*/*.startup.log" in paths and "/var/log/pgwarden/*.log" in paths
    pgctl = (REPO / "pg" / "pgctl.c").read_text()
    assert '"%s.startup.log", c->data_dir' in pgctl
    body = text.split("{", 1)[1]
    for d in ("copytruncate", "missingok", "su postgres postgres"):
        assert d in body, d
    assert "/etc/logrotate.d/pgwarden" in (DEBIAN / "conffiles").read_text().split()


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_logrotate_parses_the_snippet():
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(["logrotate", "--debug", "--state", f"{d}/state",
                            str(DEBIAN / "pgwarden.logrotate")], capture_output=True, text=True, timeout=30)
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "error" not in out.lower(), out
        assert "rotating pattern: /var/lib/postgresql/*/*.startup.log" in out, out
        # and it does complain about a broken one
        bad = pathlib.Path(d) / "bad"
        bad.write_text((DEBIAN / "pgwarden.logrotate").read_text().replace("copytruncate", "copytrunc"))
        r = subprocess.run(["logrotate", "--debug", "--state", f"{d}/state", str(bad)],
                           capture_output=True, text=True, timeout=30)
        assert "error" in (r.stdout + r.stderr).lower()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies():
    """systemd's own parser: no line-numbered complaint (unknown key, bad
    value). Missing executables are expected: pgwarden is not installed here."""
    r = subprocess.run(["systemd-analyze", "verify", str(DEBIAN / "pgwarden.service")],
                       capture_output=True, text=True, timeout=60)
    complaints = [ln for ln in (r.stdout + r.stderr).splitlines()
                  if re.search(r"pgwarden\.service:\d+:", ln)]
    assert complaints == []
    # and the same check catches a mistake
    with tempfile.TemporaryDirectory() as d:
        bad = pathlib.Path(d) / "pgwarden.service"
        bad.write_text((DEBIAN / "pgwarden.service").read_text().replace("KillMode=process",
                                                                          "KillMode=proc"))
        r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True,
                           timeout=60)
        assert re.search(r"pgwarden\.service:\d+: Failed to parse kill mode", r.stdout + r.stderr)


@needs_bin
def test_example_config_is_valid():
    ex = DEBIAN / "pgwarden.yml.example"
    with tempfile.TemporaryDirectory() as d:
        # installed as the package and the runbook do: mode 0600
        copy = pathlib.Path(d) / "pgwarden.yml"
        shutil.copyfile(ex, copy)
        copy.chmod(0o600)
        r = subprocess.run([PGW_BIN, "validate", "--offline", "-c", str(copy)], capture_output=True, text=True,
                           timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    c = yaml.safe_load(ex.read_text())
    assert len(c["raft"]["partner_addrs"]) == 2
    assert c["raft"]["self_addr"] not in c["raft"]["partner_addrs"]
    ipaddress.ip_address(c["raft"]["self_addr"].split(":")[0])


# --- gcloud.sh: data disks, snapshots, deletion protection, telemetry roles ---------


def gcloud_dry(action, *args, **env_over):
    with tempfile.TemporaryDirectory() as d:
        fake = pathlib.Path(d) / "gcloud"
        fake.write_text("#!/bin/sh\necho 'gcloud was called during --dry-run' >&2\nexit 99\n")
        fake.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGW_", "PGWARDEN_"))}
        for k in ("ZONES", "NODE_IPS", "REGION", "PREFIX", "SUBNET", "CLIENT_TAGS", "CLIENT_RANGES",
                  "DISK_SIZE_GB", "DISK_TYPE", "DELETE_DATA", "OPS_AGENT", "CTL"):
            env.pop(k, None)
        env.update(PATH=f"{d}:/usr/bin:/bin", PROJECT="proj-1", DEB_URL="gs://pkgs/pgwarden_0.1.0_amd64.deb")
        env.update(env_over)
        r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", action, *args], capture_output=True,
                           text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return [parse_dry_line(ln) for ln in r.stdout.splitlines() if not ln.startswith("#")], r


def parse_dry_line(line):
    if line.startswith("printf %s '<generated>' | "):
        line = line.split(" | ", 1)[1]
    argv = shlex.split(line)
    assert argv[0] == "gcloud", line
    return argv[3:] if argv[1].startswith("--project=") else argv[1:]


def gcloud_data_problems(cmds):
    """The gcloud.sh counterpart of plan_shape_problems: every node's data on
    a disk of its own, attached by device name and kept with the VM, daily
    snapshots attached to each disk, VMs protected, telemetry roles."""
    out = []
    pol = [flags(c) | {"name": c[4]} for c in pick(cmds, "compute", "resource-policies", "create",
                                                     "snapshot-schedule")]
    if len(pol) != 1 or pol[0].get("on-source-disk-delete") != "keep-auto-snapshots" or \
            "daily-schedule" not in pol[0] or pol[0].get("max-retention-days") != "14":
        out.append(f"snapshot schedule: {pol}")
    pname = pol[0]["name"] if pol else None
    disks = {c[3]: flags(c) for c in pick(cmds, "compute", "disks", "create")}
    attached = {c[3]: flags(c) for c in pick(cmds, "compute", "disks", "add-resource-policies")}
    vms = {c[3]: flags(c) for c in pick(cmds, "compute", "instances", "create")}
    for vm, f in vms.items():
        disk = f"{vm}-data"
        if disk not in disks or disks[disk].get("type") not in ("pd-ssd", "pd-balanced") or \
                disks[disk].get("zone") != f.get("zone"):
            out.append(f"{vm}: no data disk {disk} of type pd-ssd/pd-balanced in its zone")
        if attached.get(disk, {}).get("resource-policies") != pname:
            out.append(f"{disk}: snapshot schedule not attached")
        want = {"name": disk, "device-name": "pgwarden-data", "mode": "rw", "boot": "no",
                "auto-delete": "no"}
        got = dict(kv.split("=", 1) for kv in f.get("disk", "").split(",") if "=" in kv)
        if got != want:
            out.append(f"{vm}: data disk attached as {got}, want {want}")
        if "deletion-protection" not in f:
            out.append(f"{vm}: no deletion protection")
        if "data-disk" in f.get("boot-disk-size", "") or "image" in f.get("disk", ""):
            out.append(f"{vm}: the data disk is the boot disk")
    if len(vms) != 3:
        out.append(f"{len(vms)} VMs")
    roles = {flags(c).get("role") for c in pick(cmds, "projects", "add-iam-policy-binding")}
    if not {"roles/logging.logWriter", "roles/monitoring.metricWriter"} <= roles:
        out.append(f"telemetry roles missing: {roles}")
    return out


def test_gcloud_data_disks(gcloud_dry_run):
    assert gcloud_data_problems(gcloud_dry_run) == []
    # a disk exists before the VM that attaches it, and before its snapshot policy attachment
    order = [(c[1], c[2], c[3]) for c in gcloud_dry_run if c[:1] == ["compute"]]
    for n in ("pg-1", "pg-2", "pg-3"):
        assert order.index(("disks", "create", f"{n}-data")) < order.index(("instances", "create", n))


def _drop(prefix):
    return lambda cmds: [c for c in cmds if c[:len(prefix)] != prefix]


def _edit_flag(prefix, flag, value):
    def f(cmds):
        out = []
        for c in cmds:
            if c[:len(prefix)] == prefix:
                c = [a for a in c if not a.startswith(f"--{flag}")]
                if value is not None:
                    c.append(f"--{flag}={value}" if value else f"--{flag}")
            out.append(c)
        return out
    return f


@pytest.mark.parametrize("mutate,expect", [
    (_drop(["compute", "disks", "create", "pg-2-data"]), "pg-2: no data disk"),
    (_drop(["compute", "disks", "add-resource-policies", "pg-3-data"]), "pg-3-data: snapshot"),
    (_drop(["compute", "resource-policies"]), "snapshot schedule"),
    (_edit_flag(["compute", "resource-policies"], "on-source-disk-delete", "apply-retention-policy"),
     "snapshot schedule"),
    (_edit_flag(["compute", "instances", "create", "pg-1"], "disk",
                "name=pg-1-data,device-name=pgwarden-data,mode=rw,boot=no,auto-delete=yes"),
     "pg-1: data disk attached as"),
    (_edit_flag(["compute", "instances", "create", "pg-2"], "deletion-protection", None),
     "pg-2: no deletion protection"),
    (_edit_flag(["compute", "disks", "create", "pg-1-data"], "type", "pd-standard"), "pg-1: no data disk"),
    (_drop(["projects", "add-iam-policy-binding"]), "telemetry roles"),
])
def test_gcloud_data_checker_can_fail(gcloud_dry_run, mutate, expect):
    problems = gcloud_data_problems(mutate(copy.deepcopy(gcloud_dry_run)))
    assert any(expect in p for p in problems), problems


def test_gcloud_down_keeps_the_data_unless_told():
    cmds, r = gcloud_dry("down")
    assert not pick(cmds, "compute", "disks", "delete")
    assert "kept: the data disks" in r.stderr
    for n in ("pg-1", "pg-2", "pg-3"):
        dels = [i for i, c in enumerate(cmds) if c[:4] == ["compute", "instances", "delete", n]]
        unprot = [i for i, c in enumerate(cmds) if c[:4] == ["compute", "instances", "update", n]
                  and "--no-deletion-protection" in c]
        assert len(dels) == 1 and unprot and unprot[0] < dels[0], n
        assert "--keep-disks=data" in cmds[dels[0]]
    cmds, _ = gcloud_dry("down", DELETE_DATA="yes")
    assert sorted(c[3] for c in pick(cmds, "compute", "disks", "delete")) == \
        ["pg-1-data", "pg-2-data", "pg-3-data"]


def test_gcloud_roll_needs_the_package_to_recreate_vms():
    env = {"PATH": "/usr/bin:/bin", "PROJECT": "p"}
    r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", "roll"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and "DEB_URL must be" in r.stderr
    env["ROLL_WITH"] = "ansible"
    r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", "roll"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and "ROLL_WITH must be gcloud or terraform" in r.stderr


def test_gcloud_refuses_old_disk_settings():
    env = {"PATH": "/usr/bin:/bin", "PROJECT": "p", "DEB_URL": "gs://b/p.deb", "DISK_SIZE_GB": "100"}
    r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", "up"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and "BOOT_DISK_SIZE_GB" in r.stderr and "DATA_DISK_SIZE_GB" in r.stderr


# --- gcloud.sh roll ------------------------------------------------------------------

# One fake for both `gcloud` and `pgwarden ctl` (CTL): a three-node cluster in
# a JSON file. It refuses what a roll must never do (delete a protected VM,
# the leader, or a VM while another node is not a healthy member) by
# recording a VIOLATION and failing; a recreated VM comes back "starting"
# for a few `ctl list` calls before it streams.
FAKE_CLUSTER = r'''#!/usr/bin/python3
import json, os, sys
state_path = os.environ["FAKE_STATE"]
st = json.load(open(state_path))
argv = sys.argv[1:]
me = os.path.basename(sys.argv[0])
def save():
    json.dump(st, open(state_path, "w"))
def event(*e):
    st["events"].append(" ".join(e)); save()
def violation(msg):
    st["events"].append("VIOLATION " + msg); save(); print(msg, file=sys.stderr); sys.exit(1)
def flag(name):
    for a in argv:
        if a.startswith("--" + name + "="):
            return a.split("=", 1)[1]
    return None
if me == "fakectl":
    if "list" in argv:
        rows = []
        for n, m in sorted(st["members"].items()):
            if not st["vms"][n]:
                continue
            if m["boot"] > 0:
                m["boot"] -= 1
                rows.append({"Member": n, "Role": "Replica", "State": "starting"})
            else:
                row = {"Member": n, "Role": m["role"], "State": "running" if m["role"] == "Leader" else "streaming"}
                if m["role"] != "Leader":
                    row["Replay Lag"] = 0
                rows.append(row)
        save()
        print(json.dumps(rows)); sys.exit(0)
    if "switchover" in argv:
        old = argv[argv.index("--leader") + 1]
        if st["members"][old]["role"] != "Leader":
            violation("switchover: " + old + " does not lead")
        new = sorted(n for n in st["members"] if n != old and st["vms"][n])[0]
        st["members"][old]["role"] = "Replica"; st["members"][new]["role"] = "Leader"
        event("switchover", old, new); sys.exit(0)
    sys.exit(2)
# gcloud: global flags first
args = [a for a in argv if not a.startswith(("--project=", "--quiet"))]
if args[:3] == ["compute", "instances", "describe"]:
    n = args[3]
    print("persistent-disk-0" if n in st.get("no_data_disk", []) else "persistent-disk-0;pgwarden-data")
    sys.exit(0)
if args[:3] == ["compute", "instances", "update"] and "--no-deletion-protection" in args:
    st["protected"][args[3]] = False; event("unprotect", args[3]); sys.exit(0)
if args[:3] == ["compute", "instances", "delete"]:
    n = args[3]
    if st["protected"][n]:
        violation("delete of protected " + n)
    if st["members"][n]["role"] == "Leader":
        violation("delete of the leader " + n)
    for o in st["members"]:
        if o != n and (not st["vms"][o] or st["members"][o]["boot"] > 0):
            violation("delete of " + n + " while " + o + " is not back")
    if "--keep-disks=data" not in args:
        violation("delete of " + n + " without --keep-disks=data")
    st["vms"][n] = False; st["groups"][n] = False; event("delete", n); sys.exit(0)
if args[:3] == ["compute", "instances", "create"]:
    n = args[3]
    want = "name=%s-data,device-name=pgwarden-data,mode=rw,boot=no,auto-delete=no" % n
    if flag("disk") != want:
        violation("create of " + n + " with --disk=" + str(flag("disk")))
    st["vms"][n] = True; st["protected"][n] = "--deletion-protection" in args
    st["members"][n] = {"role": "Replica", "boot": 3}; event("create", n); sys.exit(0)
if args[:4] == ["compute", "instance-groups", "unmanaged", "add-instances"]:
    n = flag("instances"); st["groups"][n] = True; event("add", n); sys.exit(0)
if args[:3] == ["compute", "backend-services", "get-health"]:
    print(json.dumps([{"status": {"healthStatus": [
        {"instance": "https://x/zones/z/instances/" + n,
         "healthState": "HEALTHY" if st["groups"][n] and st["vms"][n] and m["role"] != "Leader" and m["boot"] == 0
         else "UNHEALTHY"} for n, m in st["members"].items()]}}]))
    sys.exit(0)
violation("unexpected gcloud " + " ".join(args))
'''


def fake_cluster(d, leader="pg-1", **extra):
    d = pathlib.Path(d)
    for name in ("fakectl", "gcloud"):
        (d / name).write_text(FAKE_CLUSTER)
        (d / name).chmod(0o755)
    nodes = ("pg-1", "pg-2", "pg-3")
    state = {"members": {n: {"role": "Leader" if n == leader else "Replica", "boot": 0} for n in nodes},
             "vms": {n: True for n in nodes}, "protected": {n: True for n in nodes},
             "groups": {n: True for n in nodes}, "events": []}
    state.update(extra)
    (d / "state.json").write_text(json.dumps(state))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGW_", "PGWARDEN_"))}
    for k in ("ZONES", "NODE_IPS", "REGION", "PREFIX", "SUBNET", "DISK_SIZE_GB", "DISK_TYPE", "ROLL_WITH"):
        env.pop(k, None)
    env.update(PATH=f"{d}:/usr/bin:/bin", PROJECT="proj-1", DEB_URL="gs://pkgs/pgwarden_0.1.0_amd64.deb",
               CTL=str(d / "fakectl"), FAKE_STATE=str(d / "state.json"), ROLL_POLL_S="0.05",
               ROLL_TIMEOUT_S="20")
    return env, d / "state.json"


def test_gcloud_roll_one_node_at_a_time():
    with tempfile.TemporaryDirectory() as d:
        env, state = fake_cluster(d, leader="pg-2")
        r = subprocess.run([str(GCP / "gcloud.sh"), "roll"], capture_output=True, text=True, env=env,
                           timeout=120)
        st = json.loads(state.read_text())
    assert r.returncode == 0, r.stdout + r.stderr + "\n".join(st["events"])
    # the replicas first, the leader last after handing its role over; each
    # VM replaced only once the previous one streams again (the fake refuses
    # anything else, see VIOLATION)
    assert st["events"] == [
        "unprotect pg-1", "delete pg-1", "create pg-1", "add pg-1",
        "unprotect pg-3", "delete pg-3", "create pg-3", "add pg-3",
        "switchover pg-2 pg-1",
        "unprotect pg-2", "delete pg-2", "create pg-2", "add pg-2"], st["events"]
    assert all(st["protected"].values()) and all(st["groups"].values())
    assert "waiting until pg-1 streams again" in r.stderr
    assert r.stdout.strip().endswith("# rolled: pg-1 pg-3 pg-2")


def test_gcloud_roll_dry_run_changes_nothing():
    with tempfile.TemporaryDirectory() as d:
        env, state = fake_cluster(d, leader="pg-1")
        r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", "roll", "pg-1", "pg-3"],
                           capture_output=True, text=True, env=env, timeout=60)
        st = json.loads(state.read_text())
    assert r.returncode == 0, r.stderr
    assert st["events"] == [], "the dry run changed something"
    lines = r.stdout.splitlines()
    cmds = [ln for ln in lines if not ln.startswith("#")]
    # pg-3 (a replica) first, then pg-1 after a switchover printed, not run
    assert lines[0] == "# roll pg-3"
    sw = [i for i, ln in enumerate(lines) if "switchover --leader pg-1 --force" in ln]
    assert len(sw) == 1 and lines[sw[0]].startswith(str(pathlib.Path(d) / "fakectl"))
    deletes = [ln for ln in cmds if " compute instances delete " in ln]
    assert [parse_dry_line(ln)[3] for ln in deletes] == ["pg-3", "pg-1"]
    # per node: healthy before, back after, behind the reader; the leader also
    # waits for its switchover
    assert sum(ln.startswith("# wait") for ln in lines) == 7
    creates = [parse_dry_line(ln) for ln in cmds if " compute instances create " in ln]
    assert [c[3] for c in creates] == ["pg-3", "pg-1"]
    for c in creates:
        assert f"--disk=name={c[3]}-data,device-name=pgwarden-data,mode=rw,boot=no,auto-delete=no" in c


def test_gcloud_roll_with_terraform_replaces_by_target():
    with tempfile.TemporaryDirectory() as d:
        env, _ = fake_cluster(d, leader="pg-1")
        env.update(ROLL_WITH="terraform", TF_DIR="/srv/tf", TF_ARGS="-var-file=prod.tfvars")
        r = subprocess.run([str(GCP / "gcloud.sh"), "--dry-run", "roll", "pg-2"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    tf = [shlex.split(ln) for ln in r.stdout.splitlines() if ln.startswith("terraform ")]
    assert tf == [
        ["terraform", "-chdir=/srv/tf", "apply", "-auto-approve", "-var-file=prod.tfvars",
         '-replace=google_compute_instance.node["pg-2"]', '-target=google_compute_instance.node["pg-2"]'],
        ["terraform", "-chdir=/srv/tf", "apply", "-auto-approve", "-var-file=prod.tfvars",
         '-target=google_compute_instance_group.node["pg-2"]']]
    # deletion protection is lifted for that VM first; no gcloud delete/create
    assert "--no-deletion-protection" in r.stdout and " instances delete " not in r.stdout


def test_gcloud_roll_refuses_a_vm_without_data_disk():
    with tempfile.TemporaryDirectory() as d:
        env, state = fake_cluster(d, no_data_disk=["pg-3"])
        r = subprocess.run([str(GCP / "gcloud.sh"), "roll"], capture_output=True, text=True, env=env,
                           timeout=60)
        st = json.loads(state.read_text())
    assert r.returncode == 1 and "pg-3 has no disk pgwarden-data" in r.stderr, r.stderr
    assert st["events"] == []


def test_gcloud_roll_stops_when_a_node_does_not_come_back():
    """A replaced node that never streams again: the roll stops there, with
    the other two untouched."""
    with tempfile.TemporaryDirectory() as d:
        env, state = fake_cluster(d, leader="pg-1")
        env["ROLL_TIMEOUT_S"] = "2"
        st = json.loads(state.read_text())
        # every VM created stays "starting" far longer than the timeout
        text = (pathlib.Path(d) / "gcloud").read_text().replace('"boot": 3', '"boot": 10**6')
        (pathlib.Path(d) / "gcloud").write_text(text)
        r = subprocess.run([str(GCP / "gcloud.sh"), "roll"], capture_output=True, text=True, env=env,
                           timeout=60)
        st = json.loads(state.read_text())
    assert r.returncode == 1 and "not pg-2 streams again" in r.stderr, r.stderr
    assert st["events"] == ["unprotect pg-2", "delete pg-2", "create pg-2", "add pg-2"]


# --- observability: the Ops Agent, alert policies and dashboards ----------------------

DASHBOARDS = GCP / "dashboards"


def served_metrics(c_sources=None):
    """The metric names GET /metrics serves, read from the C source that
    renders it (every metric()/histogram() call of api/*.c; a histogram also
    serves its _bucket, _sum and _count series)."""
    if c_sources is None:
        c_sources = {p.name: p.read_text() for p in sorted((REPO / "api").glob("*.c"))}
    names = set()
    for text in c_sources.values():
        for kind, name in re.findall(r'\b(metric|histogram)\(\s*&?b\s*,\s*"([a-z_][a-z0-9_]*)"', text):
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                "unless", "offset", "inf", "nan"}


def promql_metrics(expr):
    """Metric names a PromQL expression selects: what is left once strings,
    label matchers, ranges, label lists, functions, keywords and numbers are
    set aside (Grafana's $variables sit inside matchers and ranges)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\[[^\[\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![0-9.$])\b[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        if e[m.end():].lstrip().startswith("(") or tok.lower() in PROMQL_WORDS:
            continue
        names.add(tok)
    return names


def grafana_queries(dash):
    out = []
    for i, p in enumerate(dash["panels"]):
        if p["type"] == "text":
            continue
        if not p.get("targets"):
            out.append((f"panel {p.get('title')}", ""))
        for t in p.get("targets", []):
            out.append((f"panel {p.get('title')}", t.get("expr", "")))
    for a in dash["annotations"]["list"]:
        out.append((f"annotation {a['name']}", a.get("expr", "")))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", q)
            out.append((f"variable {v['name']}", m.group(1) if m else q))
    return out


def cloud_monitoring_queries(dash):
    out = []

    def walk(x, where):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "prometheusQuery":
                    out.append((where, v))
                else:
                    walk(v, x.get("title", where) if isinstance(x.get("title"), str) else where)
        elif isinstance(x, list):
            for v in x:
                walk(v, where)
    walk(dash, "dashboard")
    return out


def alert_queries(tf):
    pols = tf["locals"]["alert_policies"]
    res_ = res(tf, "google_monitoring_alert_policy")["pgwarden"]
    cond = res_["conditions"][0]["condition_prometheus_query_language"][0]
    assert cond["query"] == "${each.value.query}"
    # as Terraform renders them: the scope's label matcher, then numbers
    assert tf["locals"]["scope_sel"] == 'scope=\"${var.scope}\"'
    return [(f"alert {k}", re.sub(r"\$\{[^}]*\}", "0", v["query"].replace("${local.scope_sel}",
                                                                          'scope="main"')))
            for k, v in pols.items()]


def unknown_metric_problems(queries, served):
    """Every query names at least one metric, and only metrics /metrics serves."""
    out = []
    for where, q in queries:
        names = promql_metrics(q)
        if not names:
            out.append(f"{where}: no metric in {q!r}")
        for n in sorted(names - served):
            out.append(f"{where}: {n} is not served by /metrics")
    return out


def test_served_metrics_are_read_from_the_source():
    served = served_metrics()
    # the checker below is only as good as this list: it must be the real one
    assert {"patroni_primary", "patroni_xlog_location", "pgwarden_fences_total",
            "pgwarden_ha_tick_delay_seconds_bucket", "pgwarden_lease_renewals_total"} <= served
    assert len(served) >= 40, sorted(served)
    assert all(n.startswith(("patroni_", "pgwarden_")) for n in served), sorted(served)


def test_dashboards_and_alerts_name_served_metrics(tf):
    served = served_metrics()
    graf = json.loads((DASHBOARDS / "pgwarden-grafana.json").read_text())
    cm = json.loads((DASHBOARDS / "pgwarden-cloud-monitoring.json").read_text())
    queries = {"grafana": grafana_queries(graf), "cloud monitoring": cloud_monitoring_queries(cm),
               "alerts": alert_queries(tf)}
    for what, qs in queries.items():
        assert len(qs) >= 4, (what, qs)
        assert unknown_metric_problems(qs, served) == [], what
    # what the issue asks to see: primary over time, lag per replica, lease
    # renewals and fences, failovers and switchovers as annotations
    used = set().union(*(promql_metrics(q) for _, q in queries["grafana"]))
    assert {"patroni_primary", "patroni_xlog_replayed_location", "pgwarden_lease_renewals_total",
            "pgwarden_fences_total"} <= used
    ann = " ".join(a["expr"] for a in graf["annotations"]["list"])
    assert "pgwarden_failovers_total" in ann and "pgwarden_switchovers_total" in ann
    used = set().union(*(promql_metrics(q) for _, q in queries["cloud monitoring"]))
    assert {"patroni_primary", "patroni_xlog_replayed_location", "pgwarden_lease_renewals_total",
            "pgwarden_fences_total", "pgwarden_failovers_total", "pgwarden_switchovers_total"} <= used
    assert set(tf["locals"]["alert_policies"]) == {"no_primary", "failover", "replica_lag", "fence",
                                                   "backup_age", "archive_failing"}
    # and backup age and WAL archive lag (issue 18, item 3), on both dashboards
    for what in ("grafana", "cloud monitoring"):
        used = set().union(*(promql_metrics(q) for _, q in queries[what]))
        assert {"pgwarden_backup_last_age_seconds", "pgwarden_archive_lag_bytes"} <= used, what


@pytest.mark.parametrize("expr,found", [
    ('max by (scope) (patroni_xlog_location{scope="$scope"}) - on (scope) group_right () '
     '(patroni_xlog_replayed_location{scope="$scope"} > 0)',
     {"patroni_xlog_location", "patroni_xlog_replayed_location"}),
    ("sum by (name) (rate(pgwarden_fences_total[$__rate_interval])) > 1e6", {"pgwarden_fences_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(pgwarden_ha_tick_delay_seconds_bucket[5m])))",
     {"pgwarden_ha_tick_delay_seconds_bucket"}),
    ("(time() - patroni_xlog_replayed_timestamp) and on (scope, name) (patroni_replica == 1)",
     {"patroni_xlog_replayed_timestamp", "patroni_replica"}),
    ("patroni_primary offset 5m", {"patroni_primary"}),
])
def test_promql_metric_extraction(expr, found):
    assert promql_metrics(expr) == found


def test_metric_name_checker_can_fail(tf):
    """Mutated copies: a misspelled metric in each source of queries, a query
    with no metric, and /metrics losing a metric a dashboard uses."""
    served = served_metrics()
    graf = json.loads((DASHBOARDS / "pgwarden-grafana.json").read_text())
    bad = copy.deepcopy(graf)
    bad["panels"][1]["targets"][0]["expr"] = bad["panels"][1]["targets"][0]["expr"].replace(
        "patroni_xlog_replayed_location", "patroni_replay_lsn")
    assert any("patroni_replay_lsn is not served" in p
               for p in unknown_metric_problems(grafana_queries(bad), served))
    bad = copy.deepcopy(graf)
    bad["annotations"]["list"][0]["expr"] = "sum(increase(pgwarden_failover_total[1m])) > 0"
    assert any("pgwarden_failover_total" in p for p in unknown_metric_problems(grafana_queries(bad), served))
    bad = copy.deepcopy(graf)
    bad["templating"]["list"][1]["query"]["query"] = "label_values(patroni_leader, scope)"
    assert any("patroni_leader" in p for p in unknown_metric_problems(grafana_queries(bad), served))
    bad = copy.deepcopy(graf)
    bad["panels"][0]["targets"][0]["expr"] = "vector(1)"
    assert any("no metric" in p for p in unknown_metric_problems(grafana_queries(bad), served))
    cm = json.loads((DASHBOARDS / "pgwarden-cloud-monitoring.json").read_text())
    bad = copy.deepcopy(cm)
    bad["mosaicLayout"]["tiles"][0]["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"][
        "prometheusQuery"] = "max by (name) (pgwarden_is_primary)"
    assert any("pgwarden_is_primary" in p
               for p in unknown_metric_problems(cloud_monitoring_queries(bad), served))
    bad = copy.deepcopy(tf)
    bad["locals"]["alert_policies"]["fence"]["query"] = "sum(increase(pgwarden_fenced_total[5m])) > 0"
    assert any("pgwarden_fenced_total" in p for p in unknown_metric_problems(alert_queries(bad), served))
    # /metrics stops serving one: the dashboards are then wrong, and seen so
    src = (REPO / "api" / "handlers_metrics.c").read_text()
    fewer = served_metrics({"handlers_metrics.c": re.sub(r'metric\(&b, "pgwarden_fences_total".*?;',
                                                         "", src, flags=re.S)})
    assert "pgwarden_fences_total" not in fewer and len(fewer) == len(served) - 1
    assert any("pgwarden_fences_total is not served" in p
               for p in unknown_metric_problems(grafana_queries(graf), fewer))


def test_alert_policies_and_dashboard_resources(tf):
    pol = res(tf, "google_monitoring_alert_policy")["pgwarden"]
    assert pol["for_each"] == "${var.enable_alert_policies ? local.alert_policies : {}}"
    assert pol["notification_channels"] == "${var.alert_notification_channels}"
    assert tf["variable"]["enable_alert_policies"][0]["default"] is False
    for k, v in tf["locals"]["alert_policies"].items():
        assert re.fullmatch(r"\d+s", v["duration"]) and v["doc"] and v["name"], k
        assert "${local.scope_sel}" in v["query"], k
    assert "${var.replica_lag_alert_bytes}" in tf["locals"]["alert_policies"]["replica_lag"]["query"]
    dash = res(tf, "google_monitoring_dashboard")["pgwarden"]
    assert dash["dashboard_json"] == '${file("${path.module}/dashboards/pgwarden-cloud-monitoring.json")}'
    assert dash["count"] == "${var.enable_dashboard ? 1 : 0}"
    roles = res(tf, "google_project_iam_member")["node_telemetry"]
    assert '"roles/logging.logWriter", "roles/monitoring.metricWriter"' in roles["for_each"]
    assert roles["for_each"].startswith("${var.enable_ops_agent ?")


def test_ops_agent_config():
    conf = yaml.safe_load((GCP / "ops-agent.yaml").read_text())
    for part in ("logging", "metrics"):
        recv, procs = conf[part]["receivers"], conf[part].get("processors", {})
        for name, pipe in conf[part]["service"]["pipelines"].items():
            assert set(pipe["receivers"]) <= set(recv), (part, name)
            assert set(pipe.get("processors", [])) <= set(procs), (part, name)
    logs = conf["logging"]["receivers"]
    assert logs["pgwarden_journal"]["type"] == "systemd_journald"
    only = conf["logging"]["processors"]["pgwarden_only"]
    assert only["type"] == "exclude_logs"
    assert only["match_any"] == ['jsonPayload._SYSTEMD_UNIT != "pgwarden.service"']
    # PostgreSQL's server log where pg_ctl -l puts it, as logrotate rotates it
    pg = logs["postgresql_server"]
    assert pg["type"] == "postgresql_general"
    lr_paths = next(ln for ln in (DEBIAN / "pgwarden.logrotate").read_text().splitlines()
                    if ln.endswith("{"))[:-1].split()
    assert pg["include_paths"] == ["/var/lib/postgresql/*/*.startup.log"]
    assert pg["include_paths"][0] in lr_paths
    # /metrics on the REST API's port as render-config.sh sets it
    prom = conf["metrics"]["receivers"]["pgwarden"]
    assert prom["type"] == "prometheus"
    sc = prom["config"]["scrape_configs"][0]
    assert sc["metrics_path"] == "/metrics" and sc["static_configs"][0]["targets"] == ["localhost:8008"]
    assert 'api_port=${PGW_API_PORT:-8008}' in (GCP / "render-config.sh").read_text()
    assert '{"/metrics", HTTP_M_GET' in (REPO / "api" / "handlers_metrics.c").read_text()


def promtool_check(queries):
    """promtool (Debian's prometheus package) parses each query as the
    expression of a recording rule: PromQL syntax errors, not metric names."""
    rules = {"groups": [{"name": "pgwarden_check", "rules": [
        {"record": f"check:q{i}", "expr": q.replace("$__rate_interval", "5m").replace("$scope", "main")}
        for i, (_, q) in enumerate(queries)]}]}
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "rules.yml"
        p.write_text(yaml.safe_dump(rules))
        return subprocess.run(["promtool", "check", "rules", str(p)], capture_output=True, text=True,
                              timeout=60)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus) not installed")
def test_queries_are_valid_promql(tf):
    graf = json.loads((DASHBOARDS / "pgwarden-grafana.json").read_text())
    cm = json.loads((DASHBOARDS / "pgwarden-cloud-monitoring.json").read_text())
    queries = [q for q in grafana_queries(graf) if not q[0].startswith("variable")]
    queries += cloud_monitoring_queries(cm) + alert_queries(tf)
    r = promtool_check(queries)
    assert r.returncode == 0 and f"SUCCESS: {len(queries)} rules found" in r.stdout, r.stdout + r.stderr
    # and promtool does see a broken one
    r = promtool_check(queries[:1] + [("broken", "sum by (scope (patroni_primary)")])
    assert r.returncode != 0


def test_startup_optional_attributes():
    """attr_opt: a missing attribute (404, metadata of an older configuration
    or the local rehearsal) reads as empty; any other failure stops the
    script, as a missing required attribute does. Against a metadata server
    on 127.0.0.1."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            code, body = {"/v1/instance/attributes/pgwarden-data-device": (200, b"pgwarden-data"),
                          "/v1/instance/attributes/broken": (403, b"denied")}.get(self.path, (404, b"nf"))
            if self.headers.get("Metadata-Flavor") != "Google":
                code, body = 403, b"no header"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        env = {"PATH": "/usr/bin:/bin", "PGW_METADATA_URL": f"http://127.0.0.1:{srv.server_address[1]}/v1"}

        def attr_opt(name):
            return subprocess.run(["bash", "-c", f'. "{GCP / "startup.sh"}"; v=$(attr_opt {name}); '
                                   'printf "<%s>" "$v"'], capture_output=True, text=True, env=env,
                                  timeout=60)
        r = attr_opt("pgwarden-data-device")
        assert r.returncode == 0 and r.stdout == "<pgwarden-data>", r.stderr
        r = attr_opt("pgwarden-ops-agent-config")
        assert r.returncode == 0 and r.stdout == "<>", r.stderr
        r = attr_opt("broken")
        assert r.returncode != 0 and "cannot read instance metadata attribute broken (HTTP 403)" in r.stderr
    finally:
        srv.shutdown()
        srv.server_close()
