"""Chaos suite fixtures: root and tools check, PGW_CHAOS_RUNS repetitions
(each scenario is parametrized run1..runN), the `chaos` factory fixture
that builds a scenario's world and always tears it down, and the report
table printed at the end of the session."""
import contextlib
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

from chaos_cluster import REPORT, Chaos, report_table  # noqa: E402
from faults import Faults  # noqa: E402
from netlab import NetLab, in_netns  # noqa: E402
from pgw_deadline import pytest_configure, pytest_runtest_call, pytest_runtest_setup  # noqa: E402,F401

TOOLS = ("ip", "nft", "setpriv", "haproxy", "mount", "umount")


def runs():
    raw = os.environ.get("PGW_CHAOS_RUNS", "1")
    try:
        n = int(raw)
    except ValueError:
        raise pytest.UsageError(f"PGW_CHAOS_RUNS must be a whole number, got {raw!r}")
    if not 1 <= n <= 50:
        raise pytest.UsageError(f"PGW_CHAOS_RUNS must be between 1 and 50, got {n}")
    return n


def pytest_generate_tests(metafunc):
    if "run" in metafunc.fixturenames:
        n = 1 if metafunc.definition.get_closest_marker("once") else runs()
        metafunc.parametrize("run", range(1, n + 1), ids=[f"run{i}" for i in range(1, n + 1)])


@pytest.fixture(scope="session", autouse=True)
def _environment():
    if os.geteuid() != 0:
        pytest.skip("the chaos suite needs root (network namespaces, nftables, tmpfs)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools for the chaos suite: {missing} (make deps installs them)")


@pytest.fixture
def chaos(request, run):
    """chaos(name, n=3, dcs=None, env=None) -> a set-up Chaos context with
    .faults; the calling thread works from the bridge namespace until the
    test ends. Whatever happens: faults healed, processes continued and
    killed, cluster cleaned (sanitizer reports fail the test), namespaces
    and tmpfs removed; node logs printed when the test failed."""
    stack = contextlib.ExitStack()
    made = []
    failed_before = request.session.testsfailed

    def make(name, n=3, **kw):
        lab = NetLab(n)
        stack.callback(lab.close)
        stack.enter_context(in_netns(lab.bridge_ns))
        ctx = Chaos(lab, name, run=run, n=n, **kw)
        ctx.faults = Faults(lab)
        made.append(ctx)
        return ctx.setup()

    try:
        yield make
    finally:
        try:
            for ctx in made:
                ctx.faults.heal_all()
                ctx.close(failed=request.session.testsfailed > failed_before)
        finally:
            stack.close()


def pytest_terminal_summary(terminalreporter):
    rows = [r for r in REPORT if not r.get("selftest")]
    if not rows:
        return
    tr = terminalreporter
    tr.section("chaos report")
    tr.write_line(f"runs per scenario: PGW_CHAOS_RUNS={runs()}; gap = longest interval "
                  "between two acknowledged commits through HAProxy from 1 s before the fault; "
                  "lost = acknowledged commits missing on the final primary (per run); "
                  "converge = heal -> one primary + N-1 streaming replicas on its timeline; "
                  "fence = last commit of a pre-fault session on the old primary after its "
                  "last possible lease renewal; busy late commits = commits of the busy "
                  "sessions (long INSERT, COPY, pipeline) on the old primary acknowledged after "
                  "the new primary's first write (per run, - when there was no failover)")
    for line in report_table(rows).splitlines():
        tr.write_line(line)
    bad = [r for r in rows if r["violations"]]
    for r in bad:
        tr.write_line(f"VIOLATION {r['scenario']} run{r['run']}: {'; '.join(r['violations'])}")
