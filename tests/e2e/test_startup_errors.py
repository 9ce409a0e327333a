"""Every start-up failure of `pgwarden run` (issue 17 item 2): each module's
initialisation failing in turn, under the ASan/UBSan test build. Each case
expects exit status 1 and a message naming what was wrong, no sanitizer
report, no core file and no process of the binary left behind (the fence
keeper included); and asks `pgwarden validate` about the same file: exit 1
with the same message when the problem is visible in the file and on this
machine, exit 0 with a labelled warning when it holds only at this moment (a
busy port, a held lock).

Binaries run as the postgres user (pgwarden refuses root) from a copy in a
scratch directory that user owns, as in pgw_harness."""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import yaml

from pgw_harness import PGBIN, free_ports, pgw_binary

RUN_TIMEOUT = 30


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr}"


class Scratch:
    """A directory the postgres user owns, a copy of the binary, free ports."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pgw-startup-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam("postgres")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chown(self.dir, self.uid, self.gid)
        bindir = os.path.join(self.dir, "bin")
        os.makedirs(bindir)
        self.binary = os.path.join(bindir, "pgwarden")
        shutil.copy2(pgw_binary(), self.binary)
        os.chmod(bindir, 0o755)
        os.chmod(self.binary, 0o755)
        self.san_dir = self.mkdir("sanitizer")
        self.api_port, self.raft_port, self.pg_port = free_ports(3)
        self.raft_dir = os.path.join(self.dir, "raft")
        self.data_dir = os.path.join(self.dir, "pgdata", "data")
        self.mkdir("pgdata")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def chown(self, p):
        os.chown(p, self.uid, self.gid)

    def mkdir(self, *p, mode=0o755):
        d = self.path(*p)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, mode)
        self.chown(d)
        return d

    def write(self, name, text, mode=0o600):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        self.chown(p)
        return p

    def config(self, witness=False, **sections):
        c = {
            "scope": "startup",
            "name": "n1",
            "restapi": {"listen": f"127.0.0.1:{self.api_port}"},
            "raft": {"self_addr": f"127.0.0.1:{self.raft_port}", "data_dir": self.raft_dir},
            "bootstrap": {"dcs": {"ttl": 2}},
        }
        if not witness:
            c["postgresql"] = {
                "listen": f"127.0.0.1:{self.pg_port}",
                "data_dir": self.data_dir,
                "bin_dir": PGBIN,
                "authentication": {"superuser": {"username": "postgres"},
                                   "replication": {"username": "replicator"}},
                "parameters": {"unix_socket_directories": self.dir},
            }
        for k, v in sections.items():
            if isinstance(v, dict) and isinstance(c.get(k), dict):
                c[k].update(v)
            else:
                c[k] = v
        return c

    def write_config(self, cfg, name="pgwarden.yml"):
        return self.write(name, yaml.safe_dump(cfg, sort_keys=False))

    def env(self):
        p = os.path.join(self.san_dir, "report")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_")}
        env.update({"ASAN_OPTIONS": f"log_path={p}:detect_leaks=1:abort_on_error=0",
                    "UBSAN_OPTIONS": f"log_path={p}:print_stacktrace=1:halt_on_error=1"})
        return env

    def popen(self, *args, cwd=None):
        return subprocess.Popen([self.binary, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=self.env(), user="postgres",
                                group="postgres", extra_groups=[], cwd=cwd or self.dir,
                                start_new_session=True)

    def run(self, cfg_path, cwd=None):
        """`pgwarden run`: (exit status, output). A daemon still running after
        RUN_TIMEOUT is killed and the test fails: it should have refused."""
        p = self.popen("run", "-c", cfg_path, cwd=cwd)
        try:
            out, _ = p.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill_all()
            out, _ = p.communicate()
            pytest.fail(f"pgwarden run did not exit (it should have refused to start):\n"
                        f"{out.decode(errors='replace')[-3000:]}")
        return p.returncode, out.decode(errors="replace")

    def validate(self, cfg_path, cwd=None):
        p = subprocess.run([self.binary, "validate", "-c", cfg_path], capture_output=True,
                           env=self.env(), user="postgres", group="postgres", extra_groups=[],
                           cwd=cwd or self.dir, timeout=60, check=False)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def our_pids(self):
        """Every live process running this scratch copy of the binary."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{d}/exe") != self.binary:
                    continue
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                if s[s.rindex(")") + 2] != "Z":
                    out.append(int(d))
            except (OSError, ValueError):
                continue
        return out

    def kill_all(self):
        for pid in self.our_pids():
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def assert_clean(self, keep=()):
        """No sanitizer report, no core file, no process of ours left (the
        fence keeper of a failed start exits once its parent is gone)."""
        deadline = time.monotonic() + 5
        left = [p for p in self.our_pids() if p not in keep]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in self.our_pids() if p not in keep]
        reports = []
        for r in os.listdir(self.san_dir):
            with open(os.path.join(self.san_dir, r), errors="replace") as f:
                reports.append(f"sanitizer report {r}:\n{f.read()[-4000:]}")
        cores = [os.path.join(root, f) for root, _, files in os.walk(self.dir) for f in files
                 if f == "core" or f.startswith("core.")]
        assert not reports, "\n".join(reports)
        assert not cores, cores
        assert not left, f"processes left running: {left}"

    def cleanup(self):
        self.kill_all()
        # a test may have left a directory the owner cannot enter
        for root, dirs, _ in os.walk(self.dir):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o755)
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def s():
    sc = Scratch()
    try:
        yield sc
    finally:
        sc.cleanup()


def errors(stderr):
    return [ln for ln in stderr.splitlines()
            if ln.startswith("pgwarden: ") and not ln.startswith("pgwarden: warning: ")]


def warnings(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("pgwarden: warning: ")]


def refused_by_both(s, cfg_path, *needles, cwd=None):
    """run exits 1 naming the problem, validate exits 1 with the same words;
    both clean. Returns (run output, validate's error line)."""
    rc, out = s.run(cfg_path, cwd=cwd)
    assert rc == 1, (rc, out[-3000:])
    for n in needles:
        assert n in out, (n, out[-3000:])
    s.assert_clean()
    vrc, vout, verr = s.validate(cfg_path, cwd=cwd)
    assert vrc == 1, (vrc, verr)
    assert vout == ""
    [line] = errors(verr)
    for n in needles:
        assert n in line, (n, line)
    # the same message: validate's error line is in run's output
    assert line[len("pgwarden: "):] in out, (line, out[-3000:])
    s.assert_clean()
    return out, line


def refused_by_run_only(s, cfg_path, run_needles, warn_needles, keep=()):
    """A problem of the moment: run exits 1 naming it; validate exits 0 and
    warns about it, labelled as a warning."""
    rc, out = s.run(cfg_path)
    assert rc == 1, (rc, out[-3000:])
    for n in run_needles:
        assert n in out, (n, out[-3000:])
    s.assert_clean(keep=keep)
    vrc, vout, verr = s.validate(cfg_path)
    assert vrc == 0, (vrc, verr)
    assert errors(verr) == [], verr
    ws = warnings(verr)
    assert any(all(n in w for n in warn_needles) for w in ws), (warn_needles, verr)
    s.assert_clean(keep=keep)


def test_a_good_file_starts_and_validates(s):
    """The checker can pass: the base configuration validates silently and
    run starts on it (then stops on SIGTERM) - so the refusals below come
    from what each test breaks."""
    cfg = s.write_config(s.config(witness=True))
    vrc, vout, verr = s.validate(cfg)
    assert (vrc, vout, verr) == (0, "", "")
    p = s.popen("run", "-c", cfg)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as c:
                if c.connect_ex(("127.0.0.1", s.api_port)) == 0:
                    break
            assert p.poll() is None, p.stdout.read().decode(errors="replace")
            time.sleep(0.1)
        else:
            pytest.fail("REST API never came up")
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out.decode(errors="replace")[-3000:]
    s.assert_clean()


def test_pg_node_good_file_validates(s):
    cfg = s.write_config(s.config())
    assert s.validate(cfg) == (0, "", "")


# --- paths -------------------------------------------------------------------------


def test_relative_raft_data_dir_without_parent(s):
    """A relative raft.data_dir is resolved against the working directory;
    when its parent does not exist there it cannot be created."""
    cfg = s.write_config(s.config(witness=True, raft={"data_dir": "missing/raft"}))
    refused_by_both(s, cfg, "raft.data_dir", f"{s.dir}/missing/raft",
                    "cannot be created")


def test_raft_data_dir_is_a_file(s):
    s.write("raft", "not a directory\n")
    cfg = s.write_config(s.config(witness=True))
    refused_by_both(s, cfg, "raft.data_dir", s.raft_dir, "is not a directory")


def test_raft_data_dir_unreadable(s):
    s.mkdir("raft", mode=0o000)
    cfg = s.write_config(s.config(witness=True))
    refused_by_both(s, cfg, "raft.data_dir", s.raft_dir, "Permission denied")


def test_raft_data_dir_of_another_member(s):
    cfg = s.write_config(s.config(witness=True))
    s.mkdir("raft", mode=0o700)
    s.write("raft/pgwarden-node.json",
            '{"scope": "other", "name": "n9", "id": 7, "mode": "join"}\n')
    refused_by_both(s, cfg, "raft.data_dir", 'belongs to member "n9" of cluster "other"')


def test_data_dir_parent_unusable(s):
    os.chmod(s.path("pgdata"), 0o500)  # owned by postgres, but not writable
    cfg = s.write_config(s.config())
    refused_by_both(s, cfg, "postgresql.data_dir", s.data_dir, "Permission denied")


def test_data_dir_parent_missing(s):
    """Missing parents are created, as Patroni's initdb creates them
    (Patroni's example has data_dir: data/postgresql0), but only where the
    nearest existing one may be written: under a directory the postgres user
    cannot write, refused by both."""
    locked = s.path("locked")
    os.makedirs(locked)
    os.chmod(locked, 0o755)  # root's: postgres may not create anything in it
    cfg = s.write_config(s.config(postgresql={"data_dir": os.path.join(locked, "nope", "data")}))
    refused_by_both(s, cfg, "postgresql.data_dir", locked, "cannot be created",
                    "Permission denied")
    cfg = s.write_config(s.config(postgresql={"data_dir": s.path("nope", "data")}))
    vrc, _, verr = s.validate(cfg)
    assert vrc == 0 and errors(verr) == [], verr


def test_data_dir_is_a_file(s):
    s.write("pgdata/data", "x\n")
    cfg = s.write_config(s.config())
    refused_by_both(s, cfg, "postgresql.data_dir", s.data_dir, "is not a directory")


def test_log_dir_missing(s):
    cfg = s.write_config(s.config(witness=True, log={"dir": s.path("no-logs")}))
    refused_by_both(s, cfg, "log.dir", s.path("no-logs"), "No such file or directory")


# --- PostgreSQL binaries ------------------------------------------------------------


def test_bin_dir_wrong(s):
    empty = s.mkdir("emptybin")
    cfg = s.write_config(s.config(postgresql={"bin_dir": empty}))
    refused_by_both(s, cfg, "postgresql.bin_dir", f"{empty}/pg_ctl")


def test_bin_dir_without_pg_rewind(s):
    """pg_ctl is there (and says it is PostgreSQL) but pg_rewind is not: run
    used to start and fail at the first rejoin."""
    partial = s.mkdir("partialbin")
    for prog in ("pg_ctl", "initdb", "pg_basebackup", "pg_controldata"):
        os.symlink(os.path.join(PGBIN, prog), os.path.join(partial, prog))
    cfg = s.write_config(s.config(postgresql={"bin_dir": partial}))
    refused_by_both(s, cfg, "postgresql.bin_dir", f"{partial}/pg_rewind")


def test_bin_dir_not_postgresql(s):
    fake = s.mkdir("fakebin")
    for prog in ("pg_ctl", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"):
        s.write(f"fakebin/{prog}", "#!/bin/sh\necho hello\n", mode=0o755)
    cfg = s.write_config(s.config(postgresql={"bin_dir": fake}))
    # the program's output quoted on one line (it used to end the line after
    # "hello", leaving the rest of the message on a line of its own)
    _, line = refused_by_both(s, cfg, "postgresql.bin_dir", f"{fake}/pg_ctl",
                              'said "hello", not a PostgreSQL version')


# --- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="pgw-startup-pki-")
    try:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "2", "-subj", "/CN=startup ca", "-keyout", "ca.key", "-out", "ca.crt",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        for name in ("node", "other"):
            openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out",
                    f"{name}.csr", cwd=d)
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-set_serial", "1", "-days", "2", "-out", f"{name}.crt", cwd=d)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def copy_pki(s, pki):
    d = s.mkdir("pki")
    for f in os.listdir(pki):
        shutil.copy(os.path.join(pki, f), d)
        os.chmod(os.path.join(d, f), 0o600)
        s.chown(os.path.join(d, f))
    return d


def tls_cfg(s, d, **override):
    files = {"certfile": f"{d}/node.crt", "keyfile": f"{d}/node.key", "cafile": f"{d}/ca.crt"}
    files.update(override)
    return files


def test_restapi_tls_good_files_validate(s, pki):
    d = copy_pki(s, pki)
    cfg = s.write_config(s.config(witness=True, restapi=tls_cfg(s, d),
                                  raft=tls_cfg(s, d)))
    assert s.validate(cfg) == (0, "", "")


def test_restapi_certfile_missing(s, pki):
    d = copy_pki(s, pki)
    cfg = s.write_config(s.config(witness=True, restapi=tls_cfg(s, d, certfile=f"{d}/nope.crt")))
    refused_by_both(s, cfg, "restapi.certfile", f"{d}/nope.crt", "No such file or directory")


def test_restapi_keyfile_unreadable(s, pki):
    d = copy_pki(s, pki)
    os.chown(f"{d}/node.key", 0, 0)  # root's, mode 0600
    cfg = s.write_config(s.config(witness=True, restapi=tls_cfg(s, d)))
    refused_by_both(s, cfg, "restapi.keyfile", f"{d}/node.key", "Permission denied")


def test_restapi_certfile_garbage(s, pki):
    d = copy_pki(s, pki)
    s.write("pki/node.crt", "this is not a certificate\n")
    cfg = s.write_config(s.config(witness=True, restapi=tls_cfg(s, d)))
    refused_by_both(s, cfg, "restapi.certfile", f"{d}/node.crt")


def test_restapi_key_mismatch(s, pki):
    d = copy_pki(s, pki)
    cfg = s.write_config(s.config(witness=True, restapi=tls_cfg(s, d, keyfile=f"{d}/other.key")))
    refused_by_both(s, cfg, "restapi.keyfile", f"{d}/other.key", "does not match")


def test_restapi_cafile_garbage(s, pki):
    d = copy_pki(s, pki)
    s.write("pki/ca.crt", "garbage\n")
    cfg = s.write_config(s.config(witness=True, restapi=tls_cfg(s, d)))
    refused_by_both(s, cfg, "restapi.cafile", f"{d}/ca.crt")


def test_raft_certfile_missing(s, pki):
    d = copy_pki(s, pki)
    cfg = s.write_config(s.config(witness=True, raft=tls_cfg(s, d, certfile=f"{d}/nope.crt")))
    refused_by_both(s, cfg, "raft.certfile", f"{d}/nope.crt")


def test_raft_key_mismatch(s, pki):
    d = copy_pki(s, pki)
    cfg = s.write_config(s.config(witness=True, raft=tls_cfg(s, d, keyfile=f"{d}/other.key")))
    refused_by_both(s, cfg, "raft.keyfile", f"{d}/other.key")


def test_raft_cafile_garbage(s, pki):
    d = copy_pki(s, pki)
    s.write("pki/ca.crt", "garbage\n")
    cfg = s.write_config(s.config(witness=True, raft=tls_cfg(s, d)))
    refused_by_both(s, cfg, "raft.cafile", f"{d}/ca.crt")


# --- listeners -----------------------------------------------------------------------


def test_restapi_listen_host_name(s):
    """run listens on an address only; a host name used to pass validate."""
    cfg = s.write_config(s.config(witness=True,
                                  restapi={"listen": f"localhost:{s.api_port}",
                                           "connect_address": f"127.0.0.1:{s.api_port}"}))
    refused_by_both(s, cfg, "restapi.listen", "localhost", "not an IPv4 or IPv6 address")


def test_health_listen_same_port_as_restapi(s):
    cfg = s.write_config(s.config(witness=True,
                                  restapi={"health_listen": f"127.0.0.1:{s.api_port}"}))
    refused_by_both(s, cfg, "restapi.health_listen", f"port {s.api_port} is also used by "
                    "restapi.listen")


def busy(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    return ls


@pytest.mark.parametrize("witness", [True, False], ids=["witness", "pg-node"])
def test_restapi_port_in_use(s, witness):
    cfg = s.write_config(s.config(witness=witness))
    with busy(s.api_port):
        refused_by_run_only(s, cfg, ["restapi.listen", f"127.0.0.1:{s.api_port}",
                                     "Address already in use"],
                            ["restapi.listen", f"127.0.0.1:{s.api_port}", "in use"])


@pytest.mark.parametrize("witness", [True, False], ids=["witness", "pg-node"])
def test_raft_port_in_use(s, witness):
    cfg = s.write_config(s.config(witness=witness))
    with busy(s.raft_port):
        refused_by_run_only(s, cfg, ["raft.self_addr", f"127.0.0.1:{s.raft_port}",
                                     "address already in use"],
                            ["raft.self_addr", f"127.0.0.1:{s.raft_port}", "in use"])


def test_health_listen_port_in_use(s):
    (hp,) = free_ports(1)
    cfg = s.write_config(s.config(witness=True, restapi={"health_listen": f"127.0.0.1:{hp}"}))
    with busy(hp):
        refused_by_run_only(s, cfg, ["restapi.health_listen", f"127.0.0.1:{hp}",
                                     "Address already in use"],
                            ["restapi.health_listen", f"127.0.0.1:{hp}", "in use"])


# --- one pgwarden per raft.data_dir, the fence keeper --------------------------------------


def test_second_pgwarden_on_the_same_raft_data_dir(s):
    first_cfg = s.write_config(s.config(witness=True), "first.yml")
    first = s.popen("run", "-c", first_cfg)
    try:
        deadline = time.monotonic() + 30
        lock = os.path.join(s.raft_dir, "pgwarden.lock")
        while time.monotonic() < deadline:
            try:
                with open(lock) as f:
                    if f.read().strip() == str(first.pid):
                        break
            except OSError:
                pass
            assert first.poll() is None, first.stdout.read().decode(errors="replace")
            time.sleep(0.05)
        else:
            pytest.fail("the first pgwarden never took its lock")
        a2, r2 = free_ports(2)
        second = s.config(witness=True, restapi={"listen": f"127.0.0.1:{a2}"},
                          raft={"self_addr": f"127.0.0.1:{r2}"})
        cfg = s.write_config(second, "second.yml")
        refused_by_run_only(s, cfg, ["another pgwarden", f"pid {first.pid}", lock],
                            ["another pgwarden", f"pid {first.pid}", "raft.data_dir"],
                            keep=(first.pid,))
        assert first.poll() is None, "the refused second pgwarden took the first one down"
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert first.returncode == 0
    s.assert_clean()


def test_keeper_page_unusable(s):
    """The fence keeper's page in raft.data_dir cannot be created (a
    directory stands there): visible in the state directory, so validate
    says so too."""
    s.mkdir("raft", mode=0o700)
    s.mkdir("raft", "fence.state")
    cfg = s.write_config(s.config())
    refused_by_both(s, cfg, "fence.state", "Is a directory")


# --- watchdog, backup ---------------------------------------------------------------


def test_watchdog_required_without_device(s):
    dev = s.path("no-watchdog")
    cfg = s.write_config(s.config(watchdog={"mode": "required", "device": dev,
                                            "safety_margin": -1}))
    refused_by_both(s, cfg, "watchdog.device", dev, "No such file or directory")


def test_watchdog_required_not_a_device(s):
    dev = s.write("not-a-device", "")
    cfg = s.write_config(s.config(watchdog={"mode": "required", "device": dev,
                                            "safety_margin": -1}))
    refused_by_both(s, cfg, "watchdog.device", dev, "not a character device")


def test_watchdog_automatic_without_device_warns(s):
    dev = s.path("no-watchdog")
    cfg = s.write_config(s.config(watchdog={"mode": "automatic", "device": dev,
                                            "safety_margin": -1}))
    vrc, vout, verr = s.validate(cfg)
    assert vrc == 0, verr
    [w] = warnings(verr)
    assert "watchdog.device" in w and dev in w and "without a watchdog" in w, w


def test_backup_command_missing(s):
    cmd = s.path("no-pgbackrest")
    cfg = s.write_config(s.config(backup={"method": "pgbackrest", "command": cmd,
                                          "options": {"repo1-path": s.path("repo")}}))
    refused_by_both(s, cfg, "backup.command", cmd, "No such file or directory")


def test_backup_command_relative(s):
    """A relative path is resolved against the working directory (as every
    path key is); the message names the path it resolved to."""
    cfg = s.write_config(s.config(backup={"method": "pgbackrest", "command": "pgbackrest"}))
    refused_by_both(s, cfg, "backup.command", s.path("pgbackrest"), "No such file or directory")


# --- validate --offline -------------------------------------------------------------------


def test_offline_checks_the_file_only(s):
    """A file written for another machine: --offline skips what only this
    machine can tell; errors of the file itself still fail."""
    cfg = s.write_config(s.config(postgresql={"bin_dir": s.path("nowhere")}))
    rc, _, err = s.validate(cfg)
    assert rc == 1 and "postgresql.bin_dir" in err, err
    p = subprocess.run([s.binary, "validate", "--offline", "-c", cfg], capture_output=True,
                       env=s.env(), user="postgres", timeout=60, check=False)
    assert (p.returncode, p.stdout, p.stderr) == (0, b"", b"")
    bad = s.write("bad.yml", "scope: x\n")
    p = subprocess.run([s.binary, "validate", "--offline", "-c", bad], capture_output=True,
                       env=s.env(), user="postgres", timeout=60, check=False)
    assert p.returncode == 1 and b"required key is missing" in p.stderr, p.stderr
    s.assert_clean()
