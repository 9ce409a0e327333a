"""bench/vm_pause works (the program, not its figures): one short run of it
in the chaos network -- the primary's whole node frozen for 0.25 s and for
4 s under the default timing -- must exit 0 (no acknowledged commit lost, no
double-primary round), print its table, and report what cannot be otherwise:
every row froze several processes (pgwarden, its keeper, PostgreSQL) for at
least the pause; after 4 s, longer than the lease the primary counts on
(ttl - retry_timeout = 1.25 s after its last renewal), the primary fenced
itself and writes through HAProxy stopped for more than a second. A bench
that froze nothing, missed the fence or measured no gap fails here."""
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench", "vm_pause")


def test_vm_pause_bench_runs(tmp_path):
    out = tmp_path / "rows.json"
    env = dict(os.environ)
    r = subprocess.run([sys.executable, BENCH, "--profiles", "default", "--targets", "primary",
                        "--pauses", "0.25,4", "--no-rerun", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, env=env)
    print(r.stdout[-4000:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "failover fenced restarted write gap" in r.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["pause_s"] for row in rows] == [0.25, 4.0], rows
    for row in rows:
        assert row["lost"] == 0 and row["double_rounds"] == 0, row
        assert row["frozen_pids"] >= 3, row          # pgwarden, keeper, postmaster, ...
        assert row["pause_real_s"] >= row["pause_s"], row
        assert row["frozen"].startswith(row["old_primary"] + " (primary"), row
        assert re.search(rf"^default +primary +{row['pause_s']:.2f} ", r.stdout, re.M), r.stdout
    long = rows[1]
    assert long["fenced"] is True, long
    assert long["write_gap_s"] is not None and long["write_gap_s"] > 1.0, long


def test_vm_pause_bench_refuses_bad_arguments():
    for args, why in ((["--pauses", "0"], "pause outside"), (["--profiles", "nope"], "unknown profile"),
                      (["--pauses", "x"], "bad pause list")):
        r = subprocess.run([sys.executable, BENCH] + args, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r)
        assert why in (r.stdout + r.stderr), (args, r.stderr)
