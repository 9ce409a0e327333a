"""Smoke checks of the benchmark tools in tests/tools (they have no unit
tests: they are programs, not modules).

http_load (open-loop, fixed-rate HTTP load for bench/http_probe) against
http_bench_server on a free port: the counts it reports must add up, the rate
must be the one asked for, the percentiles must be ordered; bad URLs must be
refused with exit code 2 and a message naming the problem. cpu_stall (how
often the machine stops running a process, printed by bench/probe_flood)
must report one consistent line per CPU and refuse bad arguments.

Tools are taken from $PGW_BUILD (a CMake build dir, default build/test), as
in pg_helpers.py. Nothing here needs the postgres user: both programs run as
the invoking user and only talk to 127.0.0.1."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PGW_BUILD", os.path.join(REPO, "build", "test"))
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def tool(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: build it (cmake --build {BUILD} --target {name}) "
                    "or set PGW_BUILD")
    return path


def no_sanitizer_report(what, stderr):
    for marker in SANITIZER_MARKERS:
        assert marker not in stderr, f"{what}: sanitizer report:\n{stderr[-6000:]}"


@pytest.fixture
def bench_server():
    """http_bench_server on a kernel-chosen port; yields the port, stops it by PID."""
    proc = subprocess.Popen([tool("http_bench_server")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 10
        # readline blocks until the port line or EOF (the server exited).
        while time.monotonic() < deadline and not line:
            line = proc.stdout.readline().strip()
            if not line and proc.poll() is not None:
                break
        assert line.isdigit(), f"http_bench_server printed no port: {proc.stderr.read()}"
        yield int(line)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            pytest.fail(f"http_bench_server did not stop on SIGTERM: {err[-3000:]}")
    no_sanitizer_report("http_bench_server", err)
    assert proc.returncode == 0, f"http_bench_server exited {proc.returncode}: {err[-3000:]}"


def run_load(*args, timeout=60):
    return subprocess.run([tool("http_load")] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout)


def field(out, name):
    m = re.search(r"\b" + re.escape(name) + r" (\d+)\b", out)
    assert m, f"no '{name} N' in http_load's output:\n{out}"
    return int(m.group(1))


def test_http_load_fixed_rate(bench_server):
    url = f"http://127.0.0.1:{bench_server}/liveness"
    p = run_load(url, 8, 500, 2)
    no_sanitizer_report("http_load", p.stderr)
    assert p.returncode == 0, f"http_load exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    out = p.stdout
    assert out.startswith(f"http_load: {url}  connections 8  target 500 req/s  duration 2 s"), out

    sent, completed = field(out, "sent"), field(out, "completed")
    assert completed == sent, out
    assert 900 <= completed <= 1100, out  # 500 req/s for 2 s, within 10 %
    assert field(out, "non-2xx") == 0, out
    assert field(out, "errors") == 0, out
    achieved = field(out, "achieved")
    assert 450 <= achieved <= 550, out

    lat = re.search(r"latency us  min (\d+)  p50 (\d+)  p90 (\d+)  p99 (\d+)  p99\.9 (\d+)"
                    r"  max (\d+)", out)
    assert lat, f"no latency line:\n{out}"
    lo, p50, p90, p99, p999, hi = (int(v) for v in lat.groups())
    assert all(v > 0 for v in (lo, p50, p90, p99, p999, hi)), out
    assert lo <= p50 <= p90 <= p99 <= p999 <= hi, out
    # Fixed rate: 1000 requests are spread over ~2 s, not sent in a burst.
    assert hi < 2_000_000, out

    # Service time runs from the actual send, which is never before the
    # intended time: each of its percentiles is at most the latency's.
    svc = re.search(r"service us  min (\d+)  p50 (\d+)  p90 (\d+)  p99 (\d+)  p99\.9 (\d+)"
                    r"  max (\d+)", out)
    assert svc, f"no service line:\n{out}"
    svc = [int(v) for v in svc.groups()]
    assert all(v > 0 for v in svc) and svc == sorted(svc), out
    assert all(s <= l for s, l in zip(svc, (lo, p50, p90, p99, p999, hi))), out


def test_http_load_counts_non_2xx(bench_server):
    p = run_load(f"http://127.0.0.1:{bench_server}/no-such-path", 2, 50, 1)
    no_sanitizer_report("http_load", p.stderr)
    assert p.returncode == 1, f"http_load exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    assert field(p.stdout, "completed") == 50, p.stdout
    assert field(p.stdout, "non-2xx") == 50, p.stdout


def test_http_load_connection_refused():
    # A port bound but not listening refuses connections, and stays ours
    # (nobody else can start listening on it) while http_load runs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        p = run_load(f"http://127.0.0.1:{port}/liveness", 2, 10, 1)
    no_sanitizer_report("http_load", p.stderr)
    assert p.returncode == 1, p.stderr
    assert "cannot connect" in p.stderr and "refused" in p.stderr, p.stderr


class CannedServer:
    """Answers every request on 127.0.0.1 with one fixed byte string (for
    responses http_bench_server never sends); a thread, stopped on exit."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        conns = []
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            conns.append(c)
            c.settimeout(5)
            try:
                if c.recv(4096):
                    c.sendall(self.reply)
            except OSError:
                pass
        for c in conns:
            c.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "chunked"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok", "no Content-Length"),
    (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nok", "after the end of a response"),
])
def test_http_load_refuses_undelimited_responses(reply, message):
    with CannedServer(reply) as srv:
        p = run_load(f"http://127.0.0.1:{srv.port}/", 1, 10, 1, timeout=20)
    no_sanitizer_report("http_load", p.stderr)
    assert p.returncode == 1, f"exit {p.returncode}: {p.stdout}{p.stderr}"
    assert message in p.stderr, p.stderr


def test_http_load_accepts_204_without_length():
    with CannedServer(b"HTTP/1.1 204 No Content\r\n\r\n") as srv:
        p = run_load(f"http://127.0.0.1:{srv.port}/", 1, 1, 1, timeout=20)
    no_sanitizer_report("http_load", p.stderr)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stdout}{p.stderr}"
    assert field(p.stdout, "completed") == 1, p.stdout


@pytest.mark.parametrize("args, rc, message", [
    (["https://127.0.0.1:8008/liveness", 8, 500, 2], 2, "https is not supported"),
    (["http://127.0.0.1/liveness", 8, 500, 2], 2, "no port"),
    (["http://localhost:8008/liveness", 8, 500, 2], 2, "numeric IPv4"),
    (["ftp://127.0.0.1:21/", 8, 500, 2], 2, "must start with http://"),
    (["http://127.0.0.1:99999/", 8, 500, 2], 2, "port must be a number in 1..65535"),
    (["http://127.0.0.1:8008/", 0, 500, 2], 2, "connections must be an integer in 1..10000"),
    (["http://127.0.0.1:8008/", 8, "5x", 2], 2, "rate must be an integer in 1..1000000"),
    (["http://127.0.0.1:8008/", 8, 500, 3601], 2, "seconds must be an integer in 1..3600"),
    (["http://127.0.0.1:8008/", 8, 500], 2, "expected 4 arguments"),
])
def test_http_load_bad_arguments(args, rc, message):
    p = run_load(*args, timeout=10)
    no_sanitizer_report("http_load", p.stderr)
    assert p.returncode == rc, f"exit {p.returncode}: {p.stderr}"
    assert message in p.stderr, p.stderr
    assert p.stdout == "", p.stdout


CPU_LINE = re.compile(r"^cpu (\d+): (\d+) s, gaps > 0\.1 ms (\d+), > 1 ms (\d+) \([\d.]+/s\), "
                      r"> 5 ms (\d+), > 10 ms (\d+); longest ([\d.]+) ms; lost ([\d.]+) ms "
                      r"\(([\d.]+) %\); (steal \d+ ms|steal n/a)$")


def test_cpu_stall_reports_each_cpu():
    """cpu_stall (the platform's own stalls, printed by bench/probe_flood):
    one line per CPU asked for, the gap counts nested (> 10 ms is a subset of
    > 5 ms of > 1 ms of > 0.1 ms), the lost time within the measured time."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    p = subprocess.run([tool("cpu_stall"), "1", str(cpu)], capture_output=True, text=True,
                       timeout=30)
    no_sanitizer_report("cpu_stall", p.stderr)
    assert p.returncode == 0, f"cpu_stall exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout
    m = CPU_LINE.match(lines[0])
    assert m, f"unexpected line: {lines[0]!r}"
    assert int(m.group(1)) == cpu and int(m.group(2)) == 1
    g01, g1, g5, g10 = (int(m.group(i)) for i in (3, 4, 5, 6))
    assert g01 >= g1 >= g5 >= g10 >= 0
    longest, lost, pct = float(m.group(7)), float(m.group(8)), float(m.group(9))
    assert longest <= lost + 0.01 and lost < 1000.0 and pct < 100.0
    if g01 == 0:
        assert longest == 0.0 and lost == 0.0


@pytest.mark.parametrize("args,why", [
    ([], "usage: cpu_stall SECONDS"),
    (["0"], "got 0"),
    (["2x"], "got 2x"),
    (["1", "-1"], "-1 is not a CPU this process may run on"),
    (["1", "99999"], "99999 is not a CPU this process may run on"),
])
def test_cpu_stall_bad_arguments(args, why):
    p = subprocess.run([tool("cpu_stall")] + args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, f"cpu_stall {args} exited {p.returncode}: {p.stdout}{p.stderr}"
    assert why in p.stderr and p.stdout == ""
