"""The e2e harness's invariant checkers can fail (issue 19, item 4): each is
run here on an input that breaks its rule, without any pgwarden, and must
say so. A checker that cannot fail would let every test that relies on it
pass without testing."""
import http.server
import threading
import time
import types

import pytest

import pgw_harness
from pgw_harness import Prober, RecordingProber, Writer


class Answer(http.server.BaseHTTPRequestHandler):
    code = 200

    def do_GET(self):
        body = b"{}"
        self.send_response(self.server.code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_cluster():
    """Three fake members on 127.0.0.1 whose /primary answers the code
    each server is told."""
    servers = []
    for _ in range(3):
        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        s.code = 503
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    nodes = [types.SimpleNamespace(name=f"n{i + 1}", api=f"http://127.0.0.1:{s.server_address[1]}")
             for i, s in enumerate(servers)]
    yield types.SimpleNamespace(nodes=nodes), servers
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("cls", [Prober, RecordingProber])
def test_prober_reports_two_primaries(fake_cluster, cls):
    cluster, servers = fake_cluster
    servers[0].code = 200
    p = cls(cluster)
    p.start()
    time.sleep(1.0)
    assert p.violations == [], "one node answering 200 is no violation"
    servers[2].code = 200
    time.sleep(1.0)
    v = p.stop()
    assert v and all(sorted(names) == ["n1", "n3"] for _, names in v), v


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("cls", [Prober, RecordingProber])
def test_prober_that_did_not_probe_has_no_verdict(fake_cluster, cls, monkeypatch):
    cluster, _ = fake_cluster

    def broken(*args, **kwargs):
        raise RuntimeError("the probe itself failed")
    monkeypatch.setattr(pgw_harness, "http", broken)
    p = cls(cluster)
    p.start()
    time.sleep(2.5)
    with pytest.raises(AssertionError, match="its verdict is void"):
        p.stop()


def test_writer_reports_a_lost_commit():
    w = Writer(types.SimpleNamespace(nodes=[]))
    w.acked = [(1, 0.0, "n1"), (2, 0.1, "n1"), (3, 0.2, "n2")]
    final = types.SimpleNamespace(query=lambda sql: [(1,), (3,)])
    assert w.lost(final) == [2]
    final_all = types.SimpleNamespace(query=lambda sql: [(1,), (2,), (3,), (4,)])
    assert w.lost(final_all) == []


def test_writer_that_wrote_nothing_has_no_verdict():
    w = Writer(types.SimpleNamespace(nodes=[]))
    final = types.SimpleNamespace(query=lambda sql: [])
    with pytest.raises(AssertionError, match="no verdict"):
        w.lost(final)
