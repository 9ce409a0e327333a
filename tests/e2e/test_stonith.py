"""Fencing from outside (STONITH) on 127.0.0.1: deploy/gcp/stonith-reset.sh as
postgresql.pre_promote against a fake Compute Engine API and metadata server.

The fake (one HTTP server on a free port of 127.0.0.1, in this process)
serves what the script asks of a GCE VM's metadata server (an access token,
the project id, the pgwarden-stonith-map attribute, each only with
`Metadata-Flavor: Google`) and the two Compute API calls it makes: POST
.../instances/I/reset (with the token; answers a RUNNING zone operation) and
GET .../operations/OP (RUNNING for OP_DELAY_S, then DONE). It records every
reset and when it first answered DONE. Modes: "ok", "500" (every reset
refused with HTTP 500) and "hang" (a reset never answers: the script's
timeout ends it).

- the primary's node dies: exactly one reset, of the old primary's instance
  in its zone, and the new primary answers 200 on /primary only after the
  reset's operation was DONE;
- the fake API fails (500, or hangs): nobody is promoted while it fails,
  and pgwarden logs the refusal ("pre_promote failed: exit 1: not
  promoting", with the script's reason); once the API works again, the
  failover completes with a reset of the old primary."""
import json
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pgw_harness import managed_clusters, start_prober, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "deploy", "gcp", "stonith-reset.sh")
PROJECT = "pgw-test-project"
TOKEN = "ya29.fake-token"
ZONES = {"n1": "europe-west1-b", "n2": "europe-west1-c", "n3": "europe-west1-d"}
OP_DELAY_S = 2.0


class FakeGCP:
    def __init__(self):
        self.lock = threading.Lock()
        self.mode = "ok"
        self.resets = []        # (monotonic, zone, instance, answered code)
        self.ops = {}           # name -> {"created", "zone", "instance", "done_at"}
        self.bad_requests = []  # what the script asked that a GCE VM would refuse
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code, body, ctype="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.get(self)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                fake.post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api(self):
        return f"http://127.0.0.1:{self.port}/compute/v1"

    @property
    def metadata(self):
        return f"http://127.0.0.1:{self.port}/computeMetadata/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _authorized(self, h):
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.bad_requests.append((h.command, h.path, "no bearer token"))
            h.reply(401, {"error": {"code": 401, "message": "unauthenticated"}})
            return False
        return True

    def get(self, h):
        path = h.path
        if path.startswith("/computeMetadata/v1/"):
            if h.headers.get("Metadata-Flavor") != "Google":
                self.bad_requests.append(("GET", path, "no Metadata-Flavor"))
                return h.reply(403, "Missing Metadata-Flavor:Google header.", "text/html")
            key = path[len("/computeMetadata/v1/"):]
            if key == "instance/service-accounts/default/token":
                return h.reply(200, {"access_token": TOKEN, "expires_in": 3599,
                                     "token_type": "Bearer"})
            if key == "project/project-id":
                return h.reply(200, PROJECT, "application/text")
            if key == "instance/attributes/pgwarden-stonith-map":
                return h.reply(200, "".join(f"{m} {z}\n" for m, z in ZONES.items()),
                               "application/text")
            return h.reply(404, "not found", "text/html")
        parts = path.split("/")
        # /compute/v1/projects/P/zones/Z/operations/OP
        if len(parts) == 9 and parts[1:4] == ["compute", "v1", "projects"] and parts[7] == "operations":
            if not self._authorized(h):
                return
            with self.lock:
                op = self.ops.get(parts[8])
                if op is None or parts[4] != PROJECT or parts[6] != op["zone"]:
                    return h.reply(404, {"error": {"code": 404, "message": "no such operation"}})
                done = time.monotonic() - op["created"] >= OP_DELAY_S
                if done and op["done_at"] is None:
                    op["done_at"] = time.monotonic()
            return h.reply(200, self.operation(parts[8], op, "DONE" if done else "RUNNING"))
        return h.reply(404, {"error": {"code": 404, "message": "unknown path"}})

    def post(self, h):
        parts = h.path.split("/")
        # /compute/v1/projects/P/zones/Z/instances/I/reset
        if not (len(parts) == 10 and parts[1:4] == ["compute", "v1", "projects"]
                and parts[5] == "zones" and parts[7] == "instances" and parts[9] == "reset"):
            return h.reply(404, {"error": {"code": 404, "message": "unknown path"}})
        if not self._authorized(h):
            return
        zone, inst = parts[6], parts[8]
        mode = self.mode
        if mode == "hang":
            with self.lock:
                self.resets.append((time.monotonic(), zone, inst, None))
            time.sleep(30)   # longer than the script's --timeout
            return
        if mode == "500":
            with self.lock:
                self.resets.append((time.monotonic(), zone, inst, 500))
            return h.reply(500, {"error": {"code": 500, "message": "backendError"}})
        if parts[4] != PROJECT or ZONES.get(inst) != zone:
            with self.lock:
                self.resets.append((time.monotonic(), zone, inst, 404))
            return h.reply(404, {"error": {"code": 404, "message": f"instance {inst} not in {zone}"}})
        with self.lock:
            name = f"operation-{len(self.ops) + 1}-reset"
            self.ops[name] = {"created": time.monotonic(), "zone": zone, "instance": inst,
                              "done_at": None}
            self.resets.append((time.monotonic(), zone, inst, 200))
            op = self.ops[name]
        return h.reply(200, self.operation(name, op, "RUNNING"))

    def operation(self, name, op, status):
        return {"kind": "compute#operation", "id": "1234", "name": name, "zone": op["zone"],
                "operationType": "reset", "status": status, "progress": 100 if status == "DONE" else 0,
                "targetLink": f"{self.api}/projects/{PROJECT}/zones/{op['zone']}/instances/"
                              f"{op['instance']}"}


@pytest.fixture
def fake_gcp():
    f = FakeGCP()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def make_cluster(request):
    yield from managed_clusters(request)


def stonith_cluster(make_cluster, fake, timeout_s=20):
    c = make_cluster(n=3, start=False)
    hook_dir = os.path.join(c.dir, "stonith")
    os.makedirs(hook_dir)
    script = os.path.join(hook_dir, "stonith-reset.sh")
    shutil.copy2(SCRIPT, script)
    for p in (hook_dir, script):
        c.chown(p)
        os.chmod(p, 0o755)
    for n in c.data_nodes():
        n.extra = {"postgresql": {
            "pre_promote": f"{script} --api {fake.api} --metadata {fake.metadata} "
                           f"--timeout {timeout_s}"}}
    c.start()
    return c


def first_200(prober, names, after):
    return min((t[0] for name in names for t in [prober.seen.get(name)] if t and t[0] >= after),
               default=None)


def test_stonith_reset_before_promotion(make_cluster, fake_gcp):
    c = stonith_cluster(make_cluster, fake_gcp)
    old = c.wait_healthy(timeout=90)
    assert fake_gcp.resets == [], "founding the cluster ran pre_promote"
    prober = start_prober(c, recording=True)
    t_kill = time.monotonic()
    old.kill_all()
    new = c.wait_primary(timeout=60, exclude=old)
    wait_for(lambda: prober.first_200(new.name, t_kill, end=True), 10, what="the prober seeing it")
    assert prober.stop() == [], "two primaries in one round"
    with fake_gcp.lock:
        resets = list(fake_gcp.resets)
        ops = list(fake_gcp.ops.values())
    assert [(z, i, code) for _, z, i, code in resets] == [(ZONES[old.name], old.name, 200)], resets
    assert fake_gcp.bad_requests == []
    assert resets[0][0] > t_kill
    done_at = ops[0]["done_at"]
    assert done_at is not None, "the script did not wait for the operation"
    # both on the monotonic clock; the round that first saw the new primary
    # answer 200 ended after the fake first answered DONE, and in the new
    # primary's log the reset was done before pre_promote succeeded and
    # before PostgreSQL was promoted
    t_new = prober.first_200(new.name, t_kill, end=True)
    assert t_new is not None and t_new > done_at, \
        f"{new.name} answered 200 at {t_new} before the reset was DONE at {done_at}"
    log = new.log()
    assert f"stonith: resetting {old.name} (member {old.name}, zone {ZONES[old.name]}" in log
    i_done = log.index(f"stonith: reset of {old.name} done")
    i_ok = log.index("pre_promote succeeded", i_done)
    assert "): promoting" in log[i_ok:], log[i_ok:i_ok + 2000]
    assert f"former primary {old.name}" in log
    print(f"\nreset of {old.name} at +{resets[0][0] - t_kill:.2f}s, DONE at "
          f"+{done_at - t_kill:.2f}s, {new.name} primary at +{t_new - t_kill:.2f}s")


@pytest.mark.parametrize("mode", ["500", "hang"])
def test_stonith_api_failing_means_no_promotion(make_cluster, fake_gcp, mode):
    c = stonith_cluster(make_cluster, fake_gcp, timeout_s=3)
    old = c.wait_healthy(timeout=90)
    fake_gcp.mode = mode
    prober = start_prober(c, recording=True)
    t_kill = time.monotonic()
    old.kill_all()
    others = [n for n in c.data_nodes() if n is not old]
    # while the API fails: attempts are made, every one refused, nobody promoted
    wait_for(lambda: sum(1 for n in others if "pre_promote failed: exit 1: not promoting" in n.log())
             >= 1, 60, what="a refused promotion logged")
    hold_until = time.monotonic() + 8
    while time.monotonic() < hold_until:
        assert c.primaries(timeout=0.5) == [], "a node was promoted while the reset failed"
        time.sleep(0.25)
    refused_logs = [n.log() for n in others]
    why = " refused: HTTP 500" if mode == "500" else ": request failed"
    assert any(f"stonith: reset of {old.name}{why}" in lg for lg in refused_logs), why
    with fake_gcp.lock:
        tried = [(z, i) for _, z, i, _ in fake_gcp.resets]
    assert tried and set(tried) == {(ZONES[old.name], old.name)}, tried
    assert not any(n.name in prober.seen for n in others), prober.seen
    # the API recovers: the failover completes, after a reset that was DONE
    fake_gcp.mode = "ok"
    t_ok = time.monotonic()
    new = c.wait_primary(timeout=90, exclude=old)
    wait_for(lambda: prober.first_200(new.name, t_ok, end=True), 10, what="the prober seeing it")
    assert prober.stop() == [], "two primaries in one round"
    with fake_gcp.lock:
        done = [op["done_at"] for op in fake_gcp.ops.values() if op["done_at"] is not None]
    assert done, "promoted without a completed reset"
    t_new = prober.first_200(new.name, t_ok, end=True)
    assert t_new is not None and t_new > min(done)
    print(f"\n{mode}: {len(tried)} refused resets in {t_ok - t_kill:.1f}s, none promoted; "
          f"{new.name} primary {t_new - t_ok:.2f}s after the API recovered")
