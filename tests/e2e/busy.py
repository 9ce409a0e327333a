"""Busy sessions for the fencing tests: a fence must stop a session in the
middle of its work, not only one idling between short INSERTs.

BusyWriter runs tests/tools/busy_writer (one libpq session, never
reconnecting) in one of three modes and records every commit the client saw
acknowledged, on the clock of time.monotonic():
  long-insert  INSERT ... SELECT, long and busy on the CPU
  copy         COPY FROM STDIN fed a row at a time
  pipeline     libpq pipeline mode, INSERT + Sync after INSERT + Sync
The e2e suite runs them on 127.0.0.1, the chaos suite on a node's address in
its network namespace."""
import os
import subprocess
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PGW_BUILD", os.path.join(REPO, "build", "test"))
MODES = ("long-insert", "copy", "pipeline")

# A long statement lasts about 4 s on an idle 2-core VM (250,000 rows, each
# with an md5 of 2,000 copies of its number: busy on the CPU, modest WAL), a
# COPY as long (400 rows 10 ms apart): a fault a second into one finds it
# busy until well after any fence deadline.
# The pipeline sends at most 1,000 transactions a second, 16 in flight.
MODE_ARGS = {"long-insert": ["250000", "2000"], "copy": ["400", "10"],
             "pipeline": ["16", "1000"]}


def busy_writer_binary():
    path = os.path.join(BUILD, "busy_writer")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} not found: build it (cmake --build {BUILD} --target "
                           "busy_writer) or set PGW_BUILD")
    return path


def create_busy_tables(query):
    """query(sql): runs one statement on the primary."""
    for t in ("busy_long", "busy_copy", "busy_pipe"):
        query(f"CREATE TABLE IF NOT EXISTS {t} (id bigserial PRIMARY KEY, v bigint, "
              "t timestamptz DEFAULT clock_timestamp())")


class BusyWriter(threading.Thread):
    """One busy session; `acks` is [(monotonic time, rows)], `ended` is None
    while it runs, then ("err", t, message) or ("end", t, "")."""

    def __init__(self, conninfo, mode, seconds=300, args=None, netns=None):
        super().__init__(daemon=True)
        assert mode in MODES, mode
        self.mode = mode
        self.acks = []
        self.ready = None
        self.ended = None
        self.lines = []
        # in a node's namespace the client talks to it over lo: no network
        # fault cuts it (ip netns exec execs in place: the pid is the tool's)
        pre = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(pre + [busy_writer_binary(), conninfo, mode, str(seconds)] +
                                     (args or {}).get(mode, MODE_ARGS[mode]), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def run(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            parts = line.split(" ", 2)
            try:
                t = float(parts[1])
            except (IndexError, ValueError):
                continue
            if parts[0] == "ack":
                self.acks.append((t, int(parts[2])))
            elif parts[0] == "ready":
                self.ready = t
            elif parts[0] in ("err", "end"):
                self.ended = (parts[0], t, parts[2].strip() if len(parts) > 2 else "")
        self.proc.wait()

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while self.ready is None and self.ended is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.ready is not None, f"busy {self.mode} session did not start: {self.lines}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.join(10)

    def acks_after(self, t):
        return [a for a in self.acks if a[0] > t]

    def describe(self, t0):
        end = f"{self.ended[0]} at {self.ended[1] - t0:+.2f}s: {self.ended[2]}" if self.ended \
            else "still running"
        last = f"{self.acks[-1][0] - t0:+.2f}s" if self.acks else "none"
        return f"{self.mode}: {len(self.acks)} acks, last {last}; {end}"


def start_busy_writers(conninfo, modes=MODES, seconds=300, args=None, netns=None):
    """One started BusyWriter per mode, each connected (ready); args: per
    mode, arguments in place of MODE_ARGS."""
    ws = [BusyWriter(conninfo, m, seconds, args, netns) for m in modes]
    for w in ws:
        w.start()
    for w in ws:
        w.wait_ready()
    return ws
