"""A private test network made of Linux network namespaces.

Layout (TAG is random per lab, O a random octet):

    pgwc-br-TAG   a bridge `br0` with 10.77.O.1/24; the test's client side
                  (prober, writer, checks) runs here
    pgwc-nI-TAG   node I: `eth0` (veth to the bridge) with 10.77.O.(10+I)/24
    pgwc-lb-TAG   HAProxy: `eth0` with 10.77.O.250/24

The addresses exist only inside these namespaces: nothing here touches the
host's own interfaces, addresses or routes (every `ip` command names a
namespace). A Python thread enters a namespace with setns(2), which changes
the network namespace of that thread only (threads it starts inherit it), so
the test's threads talk to the nodes without a helper process.

Cleanup: the lab kills every process it started (by pid) and every process
still living in one of its namespaces (by pid, found through
/proc/PID/ns/net), lazily unmounts the tmpfs it mounted, deletes its
namespaces and its owner file. It runs from close(), from the context
manager and from atexit, so a failed test or an interrupted run leaves
nothing. An owner file /run/pgwc/TAG.json records the creating pid (and its
start time, against pid reuse), the namespaces and the mounts BEFORE they
are created; sweep() at start removes only labs whose creator is dead."""
import atexit
import contextlib
import ctypes
import json
import os
import random
import signal
import subprocess
import threading
import time

PREFIX = "pgwc-"
OWNER_DIR = "/run/pgwc"
CLONE_NEWNET = 0x40000000
NODE_HOST_BASE = 10
LB_HOST = 250
BRIDGE_HOST = 1

_libc = ctypes.CDLL(None, use_errno=True)


def run(argv, check=True, timeout=20, input=None):
    """Run a short command; raise with its stderr when check and it fails."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def ns_exec(ns, argv, **kw):
    return run(["ip", "netns", "exec", ns] + list(argv), **kw)


def _setns_path(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({path}): {os.strerror(e)}")
    finally:
        os.close(fd)


def enter_netns(ns):
    """Move the calling thread (only) into network namespace `ns`."""
    _setns_path(f"/run/netns/{ns}")


@contextlib.contextmanager
def in_netns(ns):
    """Run the body with the calling thread in `ns`, then go back."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter_netns(ns)
        try:
            yield
        finally:
            if _libc.setns(back, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original namespace")
    finally:
        os.close(back)


def _proc_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return int(s[s.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(rec):
    st = _proc_start_time(rec.get("pid", -1))
    return st is not None and st == rec.get("start")


def _netns_inode(ns):
    try:
        return os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return None


def pids_in_netns(ns):
    """Pids of processes whose network namespace is `ns` (bounded scan)."""
    ino = _netns_inode(ns)
    if ino is None:
        return []
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{d}/ns/net").st_ino == ino:
                out.append(int(d))
        except OSError:
            continue
    return out


def _kill_pids(pids, timeout=10):
    for p in pids:
        try:
            os.kill(p, signal.SIGCONT)
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    for p in pids:
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{p}/stat") as f:
                    s = f.read()
                if s[s.rindex(")") + 2] == "Z":
                    break
            except (OSError, ValueError, IndexError):
                break
            time.sleep(0.02)


def _destroy(rec):
    """Tear down what an owner record describes (ours or a dead run's)."""
    for ns in rec.get("namespaces", []):
        _kill_pids(pids_in_netns(ns))
    for m in reversed(rec.get("mounts", [])):
        run(["umount", "-l", m], check=False)
    for ns in rec.get("namespaces", []):
        if _netns_inode(ns) is not None:
            run(["ip", "netns", "del", ns], check=False)


def sweep():
    """Remove labs left behind by dead runs (only ours: prefix + owner file
    whose creator is gone). Returns the namespaces removed."""
    removed = []
    if not os.path.isdir(OWNER_DIR):
        return removed
    for f in sorted(os.listdir(OWNER_DIR)):
        path = os.path.join(OWNER_DIR, f)
        try:
            with open(path) as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        if _owner_alive(rec):
            continue
        _destroy(rec)
        removed += [n for n in rec.get("namespaces", []) if n.startswith(PREFIX)]
        try:
            os.unlink(path)
        except OSError:
            pass
    return removed


def _used_octets():
    used = set()
    if os.path.isdir(OWNER_DIR):
        for f in os.listdir(OWNER_DIR):
            try:
                with open(os.path.join(OWNER_DIR, f)) as fh:
                    used.add(json.load(fh).get("octet"))
            except (OSError, ValueError):
                pass
    return used


class NetLab:
    """n node namespaces + a load-balancer namespace on one bridge."""

    def __init__(self, n):
        if os.geteuid() != 0:
            raise PermissionError("the chaos suite needs root (network namespaces)")
        sweep()
        os.makedirs(OWNER_DIR, exist_ok=True)
        self.tag = "%06x" % random.getrandbits(24)
        free = [o for o in range(2, 255) if o not in _used_octets()]
        self.octet = random.choice(free)
        self.net = f"10.77.{self.octet}"
        self.bridge_ns = f"{PREFIX}br-{self.tag}"
        self.lb_ns = f"{PREFIX}lb-{self.tag}"
        self.node_ns = [f"{PREFIX}n{i + 1}-{self.tag}" for i in range(n)]
        self.pids = []
        self.mounts = []
        self.closed = False
        self.lock = threading.Lock()
        self.owner_path = os.path.join(OWNER_DIR, f"{self.tag}.json")
        self._write_owner()
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # --- bookkeeping ---

    def namespaces(self):
        return [self.bridge_ns] + self.node_ns + [self.lb_ns]

    def _write_owner(self):
        rec = {"pid": os.getpid(), "start": _proc_start_time(os.getpid()), "octet": self.octet,
               "namespaces": self.namespaces(), "mounts": list(self.mounts)}
        tmp = self.owner_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, self.owner_path)

    # --- construction ---

    def _build(self):
        b = self.bridge_ns
        run(["ip", "netns", "add", b])
        run(["ip", "-n", b, "link", "set", "lo", "up"])
        run(["ip", "-n", b, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", b, "addr", "add", f"{self.net}.{BRIDGE_HOST}/24", "dev", "br0"])
        run(["ip", "-n", b, "link", "set", "br0", "up"])
        for i, ns in enumerate(self.node_ns):
            self._attach(ns, f"vn{i + 1}", self.node_ip(i))
        self._attach(self.lb_ns, "vlb", self.lb_ip)

    def _attach(self, ns, port, ip):
        b = self.bridge_ns
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # both ends are created directly inside their namespaces
        run(["ip", "link", "add", port, "netns", b, "type", "veth", "peer", "name", "eth0",
             "netns", ns])
        run(["ip", "-n", b, "link", "set", port, "master", "br0"])
        run(["ip", "-n", b, "link", "set", port, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    # --- addresses ---

    def node_ip(self, i):
        return f"{self.net}.{NODE_HOST_BASE + 1 + i}"

    @property
    def lb_ip(self):
        return f"{self.net}.{LB_HOST}"

    @property
    def client_ip(self):
        return f"{self.net}.{BRIDGE_HOST}"

    # --- processes and mounts ---

    def popen(self, ns, argv, **kw):
        """Start argv inside ns (ip netns exec execs in place, so the pid is
        argv's own); recorded for cleanup."""
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(argv), **kw)
        with self.lock:
            self.pids.append(p.pid)
        return p

    def track_pid(self, pid):
        with self.lock:
            self.pids.append(pid)

    def mount_tmpfs(self, path, size, uid, gid):
        """A size-limited tmpfs at path (created), owned by uid:gid, 0700."""
        os.makedirs(path, exist_ok=True)
        with self.lock:
            self.mounts.append(path)
            self._write_owner()  # recorded before it exists: a crash cannot leak it
        run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700,uid={uid},gid={gid}",
             "pgwc-tmpfs", path])

    def umount_all(self):
        with self.lock:
            mounts, self.mounts = list(self.mounts), []
        for m in reversed(mounts):
            run(["umount", "-l", m], check=False)
        if not self.closed:
            self._write_owner()

    # --- teardown ---

    def kill_all(self):
        with self.lock:
            pids, self.pids = list(self.pids), []
        _kill_pids(pids)
        for ns in self.namespaces():
            _kill_pids(pids_in_netns(ns))

    def close(self):
        if self.closed:
            return
        self.kill_all()
        self.umount_all()
        self.closed = True
        _destroy({"namespaces": self.namespaces(), "mounts": []})
        try:
            os.unlink(self.owner_path)
        except OSError:
            pass
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def leftover_namespaces():
    """Our-prefixed namespaces that exist right now (for tests of cleanup)."""
    r = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines()
            if line.strip() and line.split()[0].startswith(PREFIX)]

