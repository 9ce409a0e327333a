"""Per-test deadline for the e2e and chaos suites (no pytest-timeout in the
dependency list): SIGALRM raises in the main thread, so a hung test fails
with a traceback and its fixtures still stop the clusters it started,
instead of the whole run hitting CI's limit. Default 300 s per phase;
@pytest.mark.deadline(N) overrides it, PGW_TEST_DEADLINE scales it."""
import os
import signal

import pytest

DEFAULT_SECONDS = 300


class DeadlineExceeded(Exception):
    pass


def _seconds(item):
    mark = item.get_closest_marker("deadline")
    base = mark.args[0] if mark else DEFAULT_SECONDS
    try:
        scale = float(os.environ.get("PGW_TEST_DEADLINE_SCALE", "1"))
    except ValueError:
        scale = 1.0
    return max(1, int(base * scale))


def _expired(limit, phase):
    def handler(signum, frame):
        raise DeadlineExceeded(f"test {phase} still running after {limit} s")
    return handler


def _guard(item, phase):
    limit = _seconds(item)
    old = signal.signal(signal.SIGALRM, _expired(limit, phase))
    signal.alarm(limit)
    return old


def _release(old):
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    old = _guard(item, "setup")
    try:
        yield
    finally:
        _release(old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    old = _guard(item, "body")
    try:
        yield
    finally:
        _release(old)


def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): per-phase time limit for this test")
