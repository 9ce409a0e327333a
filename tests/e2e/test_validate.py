"""`pgwarden validate` on realistic configuration files.

Each file in configs/bad/ states on its first line where the error must be
reported: `# expect: LINE:COL [key.path]`. The binary must exit 1 and print
exactly one `pgwarden: ` error line naming that position (and key path).
Files in configs/good/ must be accepted silently (exit 0, no output).
They describe other machines, so they are checked with --offline.

Runs the binary named by $PGW_BIN (make e2e sets it).
"""
import os
import pathlib
import re
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONFIGS = HERE / "configs"
PGW_BIN = os.environ.get("PGW_BIN")

pytestmark = pytest.mark.skipif(
    not PGW_BIN, reason="PGW_BIN is not set: point it at a built pgwarden binary (make e2e does)"
)

BAD = sorted((CONFIGS / "bad").glob("*.yml"))
GOOD = sorted((CONFIGS / "good").glob("*.yml"))
EXPECT = re.compile(rb"^# expect: (\d+):(\d+)(?: (\S+))?\s*$")


def clean_env(**extra):
    """The environment without PGWARDEN_* overrides (they would change results)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_")}
    env.update(extra)
    return env


def run(*args, env=None, offline=True):
    """The fixture files describe other machines (/var/lib/pgwarden, 10.0.0.x):
    they are checked --offline, as a file alone; what validate checks of
    this machine is test_startup_errors.py's subject."""
    if offline and any(a in ("-c", "--config") or a.startswith("--config=") for a in args):
        args = ("--offline", *args)
    return subprocess.run(
        [PGW_BIN, "validate", *args],
        capture_output=True,
        env=env if env is not None else clean_env(),
        timeout=30,
        check=False,
    )


def error_lines(stderr):
    lines = stderr.decode("utf-8", "replace").splitlines()
    return [
        line for line in lines
        if line.startswith("pgwarden: ") and not line.startswith("pgwarden: warning: ")
    ]


def test_fixture_sets_are_there():
    assert len(BAD) >= 12, BAD
    assert len(GOOD) >= 3, GOOD


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_config(path):
    first = path.read_bytes().split(b"\n", 1)[0]
    m = EXPECT.match(first)
    assert m, f"{path.name}: first line must be '# expect: LINE:COL [key.path]'"
    line, col, key = m.group(1).decode(), m.group(2).decode(), m.group(3)
    r = run("-c", str(path))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stdout == b""
    errors = error_lines(r.stderr)
    assert len(errors) == 1, r.stderr
    err = errors[0]
    assert f"{path}:{line}:{col}: " in err, err
    if key is not None:
        assert f":{line}:{col}: {key.decode()}: " in err, err


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_config(path):
    os.chmod(path, 0o600)  # some hold passwords: see test_secrets_in_readable_file
    r = run("-c", str(path))
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    r = run(f"--config={path}")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_warnings_do_not_fail(tmp_path):
    good = (CONFIGS / "good" / "witness.yml").read_text()
    f = tmp_path / "warn.yml"
    f.write_text(good + "namespace: /service/\n")
    lines = good.count("\n")
    r = run("--config", str(f))
    assert r.returncode == 0
    assert r.stderr.decode() == (
        f"pgwarden: warning: {f}:{lines + 1}:1: unknown key namespace (ignored)\n"
    )


def test_environment_overrides(tmp_path):
    f = tmp_path / "env.yml"
    f.write_text("scope: orders\nname: pg-node-1\n")
    # the environment supplies the required Raft keys
    env = clean_env(PGWARDEN_RAFT_SELF_ADDR="10.0.0.1:5010", PGWARDEN_RAFT_DATA_DIR="/r")
    r = run("-c", str(f), env=env)
    assert (r.returncode, r.stderr) == (0, b"")
    # and a bad one is named in the error
    env["PGWARDEN_RAFT_SELF_ADDR"] = "x"
    r = run("-c", str(f), env=env)
    assert r.returncode == 1
    assert error_lines(r.stderr) == [
        'pgwarden: PGWARDEN_RAFT_SELF_ADDR: expected a.b.c.d:port, got "x" '
        "(a host name is not accepted: libraft accepts only IPv4 addresses)"
    ]


def test_secrets_never_printed(tmp_path):
    f = tmp_path / "secret.yml"
    f.write_text(
        "scope: orders\nname: n1\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n"
        "restapi:\n  authentication:\n    username: u\n    password: {v: hunter2}\n"
    )
    r = run("-c", str(f))
    assert r.returncode == 1
    assert b"hunter2" not in r.stderr
    assert error_lines(r.stderr) == [
        f"pgwarden: {f}:9:15: restapi.authentication.password: expected a string, got a mapping"
    ]


def test_secrets_in_readable_file(tmp_path):
    """Issue 10: a file holding passwords that every user can read is refused
    (the message names the key, never the value); group-readable is a warning;
    the same secret from the environment is fine in a readable file."""
    text = (CONFIGS / "good" / "node1.yml").read_text()
    assert "password" in text
    f = tmp_path / "node.yml"
    f.write_text(text)
    os.chmod(f, 0o644)
    r = run("-c", str(f))
    assert r.returncode == 1, r.stderr
    [err] = error_lines(r.stderr)
    assert "holds secrets (" in err and "every user can read it (mode 0644)" in err, err
    assert "chmod 600" in err
    os.chmod(f, 0o640)
    r = run("-c", str(f))
    assert r.returncode == 0, r.stderr
    assert b"pgwarden: warning: " in r.stderr and b"its group can read it (mode 0640)" in r.stderr
    g = tmp_path / "nosecret.yml"
    g.write_text("scope: orders\nname: n1\nraft:\n  self_addr: 10.0.0.1:5010\n  data_dir: /r\n")
    os.chmod(g, 0o644)
    r = run("-c", str(g), env=clean_env(PGWARDEN_RAFT_PASSWORD="from-env-secret"))
    assert (r.returncode, r.stderr) == (0, b"")


def test_usage():
    assert run().returncode == 2
    assert run("-c").returncode == 2
    assert run("--bogus").returncode == 2
    assert run("-c", "a.yml", "-c", "b.yml").returncode == 2
    r = run("--help")
    assert r.returncode == 0 and b"Usage: pgwarden validate" in r.stdout
    r = run("-c", "/nonexistent/pgwarden.yml")
    assert r.returncode == 1
    assert error_lines(r.stderr) == [
        "pgwarden: /nonexistent/pgwarden.yml: cannot open: No such file or directory"
    ]


def test_print_reference_is_the_docs():
    r = run("--print-reference")
    assert r.returncode == 0 and r.stderr == b""
    docs = (REPO / "docs" / "configuration.md").read_bytes()
    assert r.stdout == docs, (
        "docs/configuration.md is stale: pgwarden validate --print-reference > docs/configuration.md"
    )


def test_good_config_checked_on_this_machine(tmp_path):
    """Without --offline the same good file is checked against this machine:
    its raft.data_dir (/var/lib/pgwarden/raft) cannot be created here."""
    path = CONFIGS / "good" / "witness.yml"
    if os.path.exists("/var/lib/pgwarden"):
        pytest.skip("/var/lib/pgwarden exists on this machine")
    r = run("-c", str(path), offline=False)
    assert r.returncode == 1, r.stderr
    [err] = error_lines(r.stderr)
    assert f"pgwarden: {path}: raft.data_dir /var/lib/pgwarden/raft does not exist and " \
        "cannot be created" in err, err
