"""Free TCP ports for test daemons on 127.0.0.1.

Asking the kernel for port 0 and closing the socket is racy twice over: the
kernel may hand the same port to the next such request (two nodes of one
cluster once got the same REST port that way), and any outgoing connection may
take it as its source port before the daemon binds it. So ports come from below
the kernel's ephemeral range, which outgoing connections never use, and this
process never hands out the same port twice while it has others to give."""

import random
import socket

_handed_out = set()


def _range():
    lo, hi = 10000, 32767
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
        if eph_lo - 1 - lo >= 2000:
            hi = eph_lo - 1
    except (OSError, ValueError, IndexError):
        pass
    return lo, hi


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n):
    lo, hi = _range()
    if len(_handed_out) > (hi - lo) // 2:
        _handed_out.clear()  # a long session: the oldest tests' daemons are long gone
    ports = []
    for _ in range(200 * n):
        if len(ports) == n:
            break
        p = random.randint(lo, hi)
        if p == 5432 or p in _handed_out or not _bindable(p):
            continue
        _handed_out.add(p)
        ports.append(p)
    if len(ports) < n:
        raise AssertionError(f"found only {len(ports)} of {n} free ports in {lo}-{hi}")
    return ports


def free_port():
    return free_ports(1)[0]
