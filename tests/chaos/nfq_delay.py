"""Packet delay and loss through NFQUEUE: what `tc qdisc ... netem delay D J
loss L` would do, for kernels built without sch_netem (this one: no
CONFIG_NET_SCH_NETEM, no prio qdisc).

Run inside a node's network namespace; an iptables rule there sends the
packets to queue Q (`-j NFQUEUE --queue-num Q --queue-bypass`, so packets
pass untouched whenever this program is not running). Each queued packet is
dropped with probability LOSS, else accepted after a delay drawn uniformly
from [D - J, D + J] (like netem with jitter, packets may be reordered).

Talks nfnetlink_queue directly (no library): bind the queue for AF_INET,
ask for metadata only, and answer each packet id with a verdict. Stops by
itself after --duration seconds or on SIGTERM, accepting every packet still
held so none is lost to the stop. Prints one line of counts at the end."""
import argparse
import heapq
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_DROP, NF_ACCEPT = 0, 1


class Queue:
    def __init__(self, num):
        self.num = num
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, 0))
        self._config(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))
        self._config(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))

    @staticmethod
    def _attr(kind, payload):
        n = 4 + len(payload)
        return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)

    def _send(self, msg, attrs, flags=NLM_F_REQUEST):
        self.seq += 1
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(self.num)) + attrs
        hdr = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags,
                          self.seq, 0)
        self.sock.send(hdr + body)

    def _config(self, kind, payload):
        self._send(NFQNL_MSG_CONFIG, self._attr(kind, payload), NLM_F_REQUEST | NLM_F_ACK)
        r, _, _ = select.select([self.sock], [], [], 2.0)
        if not r:
            raise RuntimeError("no answer from nfnetlink_queue")
        data = self.sock.recv(65536)
        _, kind_, _, _, _ = struct.unpack_from("=IHHII", data, 0)
        if kind_ == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, 16)[0]
            if code != 0:
                raise OSError(-code, f"nfnetlink_queue config: error {code}")

    def verdict(self, pid, v):
        self._send(NFQNL_MSG_VERDICT, self._attr(NFQA_VERDICT_HDR, struct.pack("!II", v, pid)))

    def packets(self, data):
        """Packet ids in one recv() buffer."""
        off = 0
        while off + 16 <= len(data):
            length, kind, _, _, _ = struct.unpack_from("=IHHII", data, off)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                a = off + 20
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype & 0x7fff == NFQA_PACKET_HDR:
                        yield struct.unpack_from("!I", data, a + 4)[0]
                    a += (alen + 3) & ~3
            off += (length + 3) & ~3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--delay", type=float, default=0.3)
    ap.add_argument("--jitter", type=float, default=0.1)
    ap.add_argument("--loss", type=float, default=0.1)
    ap.add_argument("--duration", type=float, default=120)
    a = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    q = Queue(a.queue)
    print("ready", flush=True)
    held = []
    seen = dropped = 0
    end = time.monotonic() + a.duration
    while not stop and time.monotonic() < end:
        now = time.monotonic()
        while held and held[0][0] <= now:
            q.verdict(heapq.heappop(held)[1], NF_ACCEPT)
        wait = min(0.02, max(0.0, held[0][0] - now)) if held else 0.02
        try:
            r, _, _ = select.select([q.sock], [], [], wait)
        except InterruptedError:
            continue
        if not r:
            continue
        try:
            data = q.sock.recv(1 << 20)
        except OSError:          # ENOBUFS: the kernel dropped some; go on
            continue
        for pid in q.packets(data):
            seen += 1
            if random.random() < a.loss:
                dropped += 1
                q.verdict(pid, NF_DROP)
            else:
                d = max(0.0, random.uniform(a.delay - a.jitter, a.delay + a.jitter))
                heapq.heappush(held, (time.monotonic() + d, pid))
    for _, pid in held:
        q.verdict(pid, NF_ACCEPT)
    print(f"packets {seen} dropped {dropped} released-at-stop {len(held)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
