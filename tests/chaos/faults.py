"""Faults applied inside one node's network namespace (or to its processes
and files). Every fault has a matching heal; heal_all() undoes whatever is
still applied and is safe to call twice.

Network: nftables table `inet pgwc` in the node's namespace (input and
output chains, so a single node's rules cut both directions). Rules match
on eth0 or on peer addresses only, so a session on the node's own address
(over lo) is never cut.

Latency/loss: this kernel has no sch_netem (nor the prio qdisc), so `tc
netem` cannot be used; instead iptables sends the node's outgoing Raft-port
packets (to or from the port) to an NFQUEUE served by nfq_delay.py in the
same namespace, which delays each one by D ± J and drops a fraction L —
netem's model, per packet, on every node that has the fault."""
import errno
import os
import signal
import subprocess
import sys
import time

from netlab import ns_exec

HERE = os.path.dirname(os.path.abspath(__file__))
NFQ_DELAY = os.path.join(HERE, "nfq_delay.py")
TABLE = "pgwc"


def _nft(ns, script):
    ns_exec(ns, ["nft", "-f", "-"], input=script)


def _set(addrs):
    return "{ " + ", ".join(addrs) + " }"


class Faults:
    def __init__(self, lab):
        self.lab = lab
        self.nft_ns = set()
        self.delayers = {}       # ns -> (Popen, [iptables rule args])
        self.fillers = []        # paths of filler files
        self.stopped = []        # pids we SIGSTOPped

    # --- nftables ---

    def _rules(self, ns, rules_in, rules_out):
        """Replace the node's pgwc table by these input/output drop rules."""
        self.heal_net(ns)
        body = [f"table inet {TABLE} {{",
                "  chain input { type filter hook input priority -10; policy accept;"]
        body += [f"    {r}" for r in rules_in]
        body += ["  }", "  chain output { type filter hook output priority -10; policy accept;"]
        body += [f"    {r}" for r in rules_out]
        body += ["  }", "}"]
        _nft(ns, "\n".join(body) + "\n")
        self.nft_ns.add(ns)

    def isolate(self, ns):
        """Cut every packet on the node's link (peers, load balancer, clients)."""
        self._rules(ns, ['iifname "eth0" drop'], ['oifname "eth0" drop'])

    def cut_peers(self, ns, peer_ips):
        """Cut the node from these peers only (clients still reach it)."""
        self._rules(ns, [f"ip saddr {_set(peer_ips)} drop"], [f"ip daddr {_set(peer_ips)} drop"])

    def cut_port(self, ns, peer_ips, port):
        """Cut TCP `port` (as source or destination) between the node and
        these peers; everything else flows."""
        s = _set(peer_ips)
        self._rules(ns,
                    [f"ip saddr {s} tcp dport {port} drop", f"ip saddr {s} tcp sport {port} drop"],
                    [f"ip daddr {s} tcp dport {port} drop", f"ip daddr {s} tcp sport {port} drop"])

    def heal_net(self, ns):
        ns_exec(ns, ["nft", "delete", "table", "inet", TABLE], check=False)
        self.nft_ns.discard(ns)

    # --- latency and loss on one TCP port ---

    def degrade_port(self, ns, port, queue, delay=0.3, jitter=0.1, loss=0.1, duration=120):
        """netem-like delay/jitter/loss of the node's outgoing packets to or
        from TCP `port` on eth0."""
        self.heal_delay(ns)
        p = self.lab.popen(ns, [sys.executable, NFQ_DELAY, "--queue", str(queue),
                                "--delay", str(delay), "--jitter", str(jitter),
                                "--loss", str(loss), "--duration", str(duration)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = p.stdout.readline()
        if "ready" not in line:
            p.kill()
            p.wait(5)
            raise RuntimeError(f"nfq_delay in {ns} did not start: {line}{p.stdout.read()}")
        rules = [["OUTPUT", "-o", "eth0", "-p", "tcp", "--dport", str(port)],
                 ["OUTPUT", "-o", "eth0", "-p", "tcp", "--sport", str(port)]]
        self.delayers[ns] = (p, [])
        for r in rules:
            ns_exec(ns, ["iptables", "-A"] + r + ["-j", "NFQUEUE", "--queue-num", str(queue),
                                                   "--queue-bypass"])
            self.delayers[ns][1].append(r + ["-j", "NFQUEUE", "--queue-num", str(queue),
                                             "--queue-bypass"])

    def heal_delay(self, ns):
        """Remove the rules first (packets flow again), then stop the
        delayer (it releases what it holds). Returns its summary line."""
        entry = self.delayers.pop(ns, None)
        if entry is None:
            return None
        p, rules = entry
        for r in rules:
            ns_exec(ns, ["iptables", "-D"] + r, check=False)
        out = ""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate(timeout=5)
        return (out or "").strip().splitlines()[-1:] or None

    # --- disk ---

    def fill(self, dirpath, name=".pgwc-filler"):
        """Fill the filesystem holding dirpath until ENOSPC; returns bytes written."""
        path = os.path.join(dirpath, name)
        self.fillers.append(path)
        written = 0
        chunk = 1 << 20
        buf = b"\0" * chunk
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for _ in range(1 << 16):          # bounded: 64 GiB at most
                try:
                    written += os.write(fd, buf[:chunk])
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    if chunk <= 512:
                        break
                    chunk //= 8
        finally:
            os.close(fd)
        return written

    def unfill(self):
        for p in self.fillers:
            try:
                os.unlink(p)
            except OSError:
                pass
        self.fillers = []

    # --- processes ---

    def stop(self, pids):
        for p in pids:
            try:
                os.kill(p, signal.SIGSTOP)
                self.stopped.append(p)
            except OSError:
                pass

    def cont(self, pids=None):
        for p in list(self.stopped if pids is None else pids):
            try:
                os.kill(p, signal.SIGCONT)
            except OSError:
                pass
            if p in self.stopped:
                self.stopped.remove(p)

    def stop_pg_group(self, postmaster_pid):
        """SIGSTOP the postmaster's process group (postmaster and backends)."""
        pgid = os.getpgid(postmaster_pid)
        os.killpg(pgid, signal.SIGSTOP)
        return pgid

    def cont_pg_group(self, pgid):
        os.killpg(pgid, signal.SIGCONT)

    # --- everything ---

    def heal_all(self):
        for ns in list(self.delayers):
            self.heal_delay(ns)
        for ns in list(self.nft_ns):
            self.heal_net(ns)
        self.unfill()
        self.cont()


def flap(faults, ns, apply, period_range=(1.0, 2.0), duration=15.0, rng=None):
    """Apply/heal every 1-2 s for `duration` s (ends healed). Returns the
    (start, end) intervals during which the fault was applied."""
    import random
    rng = rng or random.Random()
    t_end = time.monotonic() + duration
    intervals = []
    for _ in range(1000):
        if time.monotonic() >= t_end:
            break
        t0 = time.monotonic()
        apply()
        time.sleep(rng.uniform(*period_range))
        faults.heal_net(ns)
        intervals.append((t0, time.monotonic()))
        time.sleep(rng.uniform(*period_range))
    return intervals
