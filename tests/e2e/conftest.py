import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pgw_deadline import pytest_configure, pytest_runtest_call, pytest_runtest_setup  # noqa: E402,F401


def _terminated(signum, frame):
    # `timeout` and CI cancellation send SIGTERM: turn it into an exception so
    # that every fixture's finally block runs and the clusters a test started
    # are stopped (by PID) instead of being left running.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _terminated)


import pytest  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that fails on a module-scoped `cluster` shows the nodes' logs
    in its own report: the fixture's teardown dump lands in whichever test
    ends the module, and a passing test's output is never shown (CI saw a
    test_ctl failure with no log to explain it)."""
    outcome = yield
    report = outcome.get_result()
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.when == "call" and report.failed and hasattr(cluster, "dump_logs"):
        try:
            report.sections.append(("node logs at the failure", cluster.dump_logs(tail=150)))
        except Exception as e:  # the dump must never hide the failure itself
            report.sections.append(("node logs at the failure", f"(could not read them: {e})"))
