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
