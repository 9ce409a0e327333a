"""The test network itself: built only inside our namespaces, torn down
completely (processes, namespaces, owner file), and a crashed run's
leftovers are swept while a live run's are left alone. Quick (no
PostgreSQL), so it runs in the quick subset."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from netlab import OWNER_DIR, NetLab, in_netns, leftover_namespaces, pids_in_netns, sweep
from netlab import run as sh

HERE = os.path.dirname(os.path.abspath(__file__))


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def test_lab_is_private_and_fully_removed():
    host_addrs = run_cmd(["ip", "-4", "addr"])
    with NetLab(2) as lab:
        assert lab.net not in host_addrs
        assert lab.net not in run_cmd(["ip", "-4", "addr"]), "a lab address leaked to the host"
        assert lab.net not in run_cmd(["ip", "route"])
        for ns in lab.namespaces():
            assert ns in leftover_namespaces()
        # a node reaches the bridge side over the veth, and only inside the lab
        srv = lab.popen(lab.node_ns[0], [sys.executable, "-c",
                                         "import socket,time;s=socket.socket();"
                                         f"s.bind(('{lab.node_ip(0)}',9));s.listen();"
                                         "print('up',flush=True);time.sleep(600)"],
                        stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline().strip() == "up"
        with in_netns(lab.bridge_ns):
            socket.create_connection((lab.node_ip(0), 9), timeout=2).close()
        # one process we track and one we do not (started behind our back)
        stray = subprocess.Popen(["ip", "netns", "exec", lab.node_ns[1], "sleep", "600"])
        time.sleep(0.2)
        assert stray.pid in pids_in_netns(lab.node_ns[1])
        names = lab.namespaces()
        owner = lab.owner_path
        assert os.path.exists(owner)
    stray.wait(10)
    srv.wait(10)
    assert not alive(srv.pid) and not alive(stray.pid)
    assert not any(n in leftover_namespaces() for n in names)
    assert not os.path.exists(owner)


def run_cmd(argv):
    return sh(argv).stdout


CHILD = f"""
import sys, time
sys.path.insert(0, {HERE!r})
from netlab import NetLab
lab = NetLab(1)
print(lab.tag, flush=True)
time.sleep(600)
"""


def test_sweep_removes_only_dead_runs():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    tag = child.stdout.readline().strip()
    assert tag, "the child lab did not start"
    with NetLab(1) as mine:
        dead_ns = [n for n in leftover_namespaces() if n.endswith("-" + tag)]
        assert len(dead_ns) == 3
        # its creator is alive: a sweep leaves it
        assert sweep() == []
        assert all(n in leftover_namespaces() for n in dead_ns)
        os.kill(child.pid, signal.SIGKILL)   # no atexit: a crashed run
        child.wait(10)
        removed = sweep()
        assert sorted(removed) == sorted(dead_ns)
        left = leftover_namespaces()
        assert not any(n in left for n in dead_ns)
        assert all(n in left for n in mine.namespaces()), "a live run's lab was swept"
        assert not os.path.exists(os.path.join(OWNER_DIR, tag + ".json"))


def test_thread_namespace_is_per_thread():
    with NetLab(1) as lab:
        seen = {}

        def worker():
            with in_netns(lab.node_ns[0]):
                seen["inside"] = os.stat("/proc/thread-self/ns/net").st_ino
        t = threading.Thread(target=worker)
        t.start()
        t.join(5)
        assert seen["inside"] == os.stat(f"/run/netns/{lab.node_ns[0]}").st_ino
        assert os.stat("/proc/thread-self/ns/net").st_ino != seen["inside"]
