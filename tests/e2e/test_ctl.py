"""`pgwarden ctl` against real 3-node clusters on 127.0.0.1.

One cluster serves the read-only views, the configuration commands, pause
and resume, the refusals and usage errors, and ends with a switchover; a
second one, with REST API authentication, is used for a failover after its
primary is killed (credentials read with -c from a node's file). ctl runs as
root: it is a client (only `run` refuses root). Every ctl run goes through
the sanitizers; their reports fail the test at cleanup."""
import json
import os
import re
import signal
import subprocess

import pytest
import yaml

from pgw_harness import Cluster, http, wait_for

LIST_COLUMNS = ["Cluster", "Member", "Host", "Role", "State", "TL",
                "Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag"]


def run_ctl(cluster, *args, stdin=subprocess.DEVNULL, input=None, env_extra=None, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_CTL_")}
    env.update(cluster.sanitizer_env())
    env.update(env_extra or {})
    kw = {"input": input} if input is not None else {"stdin": stdin}
    p = subprocess.run([cluster.binary, "ctl", *args], capture_output=True, text=True,
                       env=env, timeout=timeout, **kw)
    print(f"$ pgwarden ctl {' '.join(args)}  -> {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def ep(node):
    return f"--endpoint={node.api}"


def config_of(node):
    status, body = node.get("/config")
    assert status == 200, body
    return body


def history_rows(cluster, node, *how):
    """`ctl history -f json` (a node applies a new history entry a moment after the change)."""
    r = run_ctl(cluster, *(how or (ep(node),)), "history", "-f", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def parse_pretty(out):
    """(title line, header cells, rows as lists of cells, footer lines) of a patronictl table."""
    lines = out.splitlines()
    assert lines[0].startswith("+"), out
    table = [ln for ln in lines if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in table]
    end = max(i for i, ln in enumerate(lines) if ln.startswith("+"))
    return lines[0], cells[0], cells[1:], lines[end + 1:]


@pytest.fixture(scope="module")
def cluster(request):
    c = Cluster(n=3)
    failed_before = request.session.testsfailed
    try:
        c.start()
        c.wait_healthy(timeout=90)
        yield c
    finally:
        if request.session.testsfailed > failed_before:
            print(c.dump_logs(tail=200))  # a test of this module failed: what the nodes did
        c.cleanup()


def test_list_pretty(cluster):
    p = cluster.wait_healthy()
    node = cluster.nodes[1]
    r = run_ctl(cluster, ep(node), "list")
    assert r.returncode == 0, r.stderr
    title, header, rows, footer = parse_pretty(r.stdout)
    sysid = node.get("/patroni")[1]["database_system_identifier"]
    m = re.match(r"^\+ Cluster: (\S+) \((\d+)\) -+\+", title)
    assert m and m.group(1) == cluster.scope and m.group(2) == sysid, title
    assert header == ["Member", "Host", "Role", "State", "TL", "Receive LSN", "Lag",
                      "Replay LSN", "Lag"]
    assert [row[0] for row in rows] == ["n1", "n2", "n3"]
    roles = {row[0]: row[2] for row in rows}
    assert roles[p.name] == "Leader"
    assert sorted(roles.values()) == ["Leader", "Replica", "Replica"]
    # Host is host:port (ports are not 5432), the PostgreSQL port of each node
    hosts = {row[0]: row[1] for row in rows}
    for n in cluster.nodes:
        assert hosts[n.name] == f"127.0.0.1:{n.pg_port}"
    for row in rows:
        if row[0] != p.name:
            assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", row[5]), row  # Receive LSN as X/Y
            assert row[6].isdigit(), row
    assert footer == []

    r = run_ctl(cluster, ep(node), "topology")
    assert r.returncode == 0
    _, _, rows, _ = parse_pretty(r.stdout)
    assert rows[0][0] == p.name and rows[0][2] == "Leader"
    assert sorted(row[0] for row in rows[1:]) == sorted(f"+ {n.name}" for n in cluster.nodes
                                                        if n is not p)

    r = run_ctl(cluster, ep(node), "list", "-e")
    assert r.returncode == 0
    _, header, _, _ = parse_pretty(r.stdout)
    for col in ("Pending restart", "Tags", "Not a candidate"):
        assert col in header


def test_list_machine_formats(cluster):
    p = cluster.wait_healthy()
    node = cluster.nodes[2]
    view = cluster.cluster_view(node)
    tl = {m["name"]: m["timeline"] for m in view["members"]}

    r = run_ctl(cluster, ep(node), "list", "-f", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    r = run_ctl(cluster, "-f", "yaml", "list", ep(node))  # global options anywhere
    assert r.returncode == 0, r.stderr
    rows_yaml = yaml.safe_load(r.stdout)
    r = run_ctl(cluster, ep(node), "list", "--format=tsv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == LIST_COLUMNS
    rows_tsv = [dict(zip(LIST_COLUMNS, ln.split("\t"))) for ln in lines[1:]]

    for parsed in (rows, rows_yaml, rows_tsv):
        assert [x["Member"] for x in parsed] == ["n1", "n2", "n3"]
        assert all(x["Cluster"] == cluster.scope for x in parsed)
        leaders = [x["Member"] for x in parsed if x["Role"] == "Leader"]
        assert leaders == [p.name], parsed
    for parsed in (rows, rows_yaml):
        for x in parsed:
            assert set(x) <= set(LIST_COLUMNS)
            assert x["TL"] == tl[x["Member"]] and isinstance(x["TL"], int)
            if x["Role"] == "Replica" and "Replay Lag" in x:
                assert isinstance(x["Replay Lag"], int)
                assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", x["Replay LSN"])
        # the leader has no receive/replay columns (empty values are left out, as patronictl does)
        lead = next(x for x in parsed if x["Role"] == "Leader")
        assert "Receive LSN" not in lead and "Replay Lag" not in lead
    assert {x["Member"]: str(x["TL"]) for x in rows} == {x["Member"]: x["TL"] for x in rows_tsv}


def test_history_starts_empty(cluster):
    r = run_ctl(cluster, ep(cluster.nodes[0]), "history", "-f", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
    r = run_ctl(cluster, ep(cluster.nodes[0]), "history")
    assert r.returncode == 0
    _, header, rows, _ = parse_pretty(r.stdout)
    assert header == ["TL", "LSN", "Reason", "Timestamp", "New Leader"] and rows == []


def test_show_config(cluster):
    node = cluster.nodes[0]
    r = run_ctl(cluster, ep(node), "show-config")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout) == config_of(node)
    r = run_ctl(cluster, ep(node), "show-config", "-f", "json")
    assert r.returncode == 0
    assert json.loads(r.stdout) == config_of(node)


def test_edit_config(cluster):
    node = cluster.nodes[0]
    before = config_of(node)
    assert before["loop_wait"] != 0.25
    r = run_ctl(cluster, ep(node), "edit-config", "-s", "loop_wait=0.25", "--force")
    assert r.returncode == 0, r.stderr
    assert f"-loop_wait: {before['loop_wait']}" in r.stdout and "+loop_wait: 0.25" in r.stdout
    for n in cluster.nodes:
        wait_for(lambda: config_of(n)["loop_wait"] == 0.25, 10, what=f"{n.name} sees loop_wait")
    r = run_ctl(cluster, ep(cluster.nodes[1]), "show-config")
    assert r.returncode == 0
    shown = yaml.safe_load(r.stdout)
    assert shown["loop_wait"] == 0.25 and isinstance(shown["loop_wait"], float)

    # a bad value: the server's 400 reason, exit 1, nothing changed
    before = config_of(node)
    r = run_ctl(cluster, ep(node), "edit-config", "-s", "ttl=abc", "--force")
    assert r.returncode == 1
    assert "400" in r.stderr and "ttl" in r.stderr and "nothing was changed" in r.stderr, r.stderr
    assert config_of(node) == before

    # -p and --apply from standard input; a number stays a number
    # (a node answers once the change is committed; it may apply it a moment later)
    r = run_ctl(cluster, ep(node), "edit-config", "-p", "work_mem=8MB", "--force")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: config_of(node)["postgresql"]["parameters"].get("work_mem") == "8MB", 10,
             what="work_mem in /config")
    r = run_ctl(cluster, ep(node), "edit-config", "--apply", "-", "--force",
                input="maximum_lag_on_failover: 2097152\npostgresql:\n  parameters:\n    work_mem: null\n")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: config_of(node)["maximum_lag_on_failover"] == 2097152, 10,
             what="maximum_lag_on_failover in /config")
    after = config_of(node)
    assert isinstance(after["maximum_lag_on_failover"], int)
    assert "work_mem" not in after["postgresql"].get("parameters", {})
    r = run_ctl(cluster, ep(node), "edit-config", "-s", "loop_wait=0.25", "--force")
    assert r.returncode == 0 and "Not changing configuration" in r.stdout

    # no terminal and no --force: refused before anything is sent
    r = run_ctl(cluster, ep(node), "edit-config", "-s", "loop_wait=0.5")
    assert r.returncode == 2 and "--force" in r.stderr
    r = run_ctl(cluster, ep(node), "edit-config")
    assert r.returncode == 2 and "nothing to change" in r.stderr
    r = run_ctl(cluster, ep(node), "edit-config", "-s", "a..b=1", "--force")
    assert r.returncode == 2 and "empty part" in r.stderr
    assert config_of(node) == after


def test_pause_resume(cluster):
    node = cluster.nodes[2]
    r = run_ctl(cluster, ep(node), "pause", "--wait")
    assert r.returncode == 0, r.stderr
    assert "Success: cluster management is paused" in r.stdout
    for n in cluster.nodes:
        assert config_of(n).get("pause") is True
    r = run_ctl(cluster, ep(node), "list")
    assert "Maintenance mode: on" in parse_pretty(r.stdout)[3][0]
    r = run_ctl(cluster, ep(node), "pause")
    assert r.returncode == 1 and "already paused" in r.stderr
    r = run_ctl(cluster, ep(node), "resume", "--wait")
    assert r.returncode == 0, r.stderr
    assert "Success: cluster management is resumed" in r.stdout
    for n in cluster.nodes:
        assert "pause" not in config_of(n)
    r = run_ctl(cluster, ep(node), "resume")
    assert r.returncode == 1 and "not paused" in r.stderr


def test_members(cluster):
    node = cluster.nodes[0]
    r = run_ctl(cluster, ep(node), "members", "-f", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert sorted((x["Name"], x["Raft address"]) for x in rows) == \
        sorted((n.name, n.raft_addr) for n in cluster.nodes)
    assert all(x["Role"] == "voter" for x in rows)
    raft = node.get("/raft")[1]
    assert [x["Name"] for x in rows if x["Raft leader"]] == [raft["leader"]["name"]]
    r = run_ctl(cluster, ep(node), "members")
    assert r.returncode == 0
    title, header, prow, _ = parse_pretty(r.stdout)
    assert title.startswith("+ Raft: term ") and header[:4] == ["ID", "Name", "Raft address", "Role"]
    assert len(prow) == 3
    r = run_ctl(cluster, ep(node), "members", "remove", "n9", "--force")
    assert r.returncode == 1 and "n9 is not a member (members: " in r.stderr
    r = run_ctl(cluster, ep(node), "members", "add", "localhost:5000", "n4")
    assert r.returncode == 2 and "IPv4" in r.stderr
    r = run_ctl(cluster, ep(node), "members", "remove", "n2")
    assert r.returncode == 2 and "--force" in r.stderr


def test_version(cluster):
    r = run_ctl(cluster, ep(cluster.nodes[0]), "version")
    assert r.returncode == 0, r.stderr
    assert re.match(r"pgwarden ctl version \S+\n", r.stdout)
    for n in cluster.nodes:
        assert re.search(rf"^{n.name}: pgwarden \S+ PostgreSQL 15\.\d+$", r.stdout, re.M), r.stdout


def test_usage_errors(cluster):
    node = cluster.nodes[0]
    cases = [
        ([], "Usage: pgwarden ctl"),
        (["bogus"], "unknown command"),
        ([ep(node), "list", "--bogus"], "unknown option --bogus"),
        ([ep(node), "-f", "xml", "list"], "--format must be"),
        ([ep(node), "list", "-w", "soon"], "--watch"),
        ([ep(node), "failover", "--force"], "--candidate NAME is required"),
        ([ep(node), "switchover", "--scheduled", "tomorrow", "--force"], "ISO 8601"),
        ([ep(node), "switchover", "--candidate", "n2"], "add --force"),
        ([ep(node), "failover", "--candidate", "n2"], "add --force"),
        ([ep(node), "restart", "n1"], "add --force"),
        ([ep(node), "restart", "--role", "boss", "--force"], "--role must be"),
        ([ep(node), "reinit", "--force"], "which member"),
        (["list"], "which cluster?"),
        ([ep(node), "--endpoint"], "needs a value"),
    ]
    for args, msg in cases:
        r = run_ctl(cluster, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert msg in r.stderr, (args, r.stderr)
    r = run_ctl(cluster, "list", env_extra={"PGWARDEN_CTL_ENDPOINT": node.api})
    assert r.returncode == 0 and "Cluster: " in r.stdout
    r = run_ctl(cluster, "--endpoint", node.api.replace("http://", "https://"), "list")
    assert r.returncode == 1 and "TLS handshake with" in r.stderr and "http://" in r.stderr
    # several endpoints: the dead one is skipped
    r = run_ctl(cluster, "--endpoint", "http://127.0.0.1:1", ep(node), "list", "-f", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3
    r = run_ctl(cluster, "--endpoint", "127.0.0.1:1", "list")
    assert r.returncode == 1 and "connection refused" in r.stderr
    r = run_ctl(cluster, "list", "--help")
    assert r.returncode == 0 and "Usage: pgwarden ctl list" in r.stdout


def test_refusals(cluster):
    p = cluster.wait_healthy()
    replica = next(n for n in cluster.nodes if n is not p)
    node = cluster.nodes[0]
    r = run_ctl(cluster, ep(node), "switchover", "--candidate", "n9", "--force")
    assert r.returncode == 1
    assert "ctl switchover: --candidate n9 is not a member (members: n1, n2, n3)" in r.stderr
    r = run_ctl(cluster, ep(node), "switchover", "--leader", replica.name, "--force")
    assert r.returncode == 1 and f"--leader {replica.name} is not the leader (the leader is {p.name})" in r.stderr
    r = run_ctl(cluster, ep(node), "switchover", "--candidate", p.name, "--force")
    assert r.returncode == 1 and "already the leader" in r.stderr
    # refused by the server: the reason it gives is shown
    r = run_ctl(cluster, ep(node), "switchover", "--candidate", replica.name,
                "--scheduled", "2000-01-01T00:00+00:00", "--force")
    assert r.returncode == 1 and "422" in r.stderr and "in the past" in r.stderr, r.stderr
    r = run_ctl(cluster, ep(node), "switchover", "not-this-cluster", "--force")
    assert r.returncode == 1 and f'serves cluster "{cluster.scope}"' in r.stderr
    r = run_ctl(cluster, ep(node), "restart", "n9", "--force")
    assert r.returncode == 1 and "n9 is not a member" in r.stderr
    r = run_ctl(cluster, ep(node), "reinit", p.name, "--force")
    assert r.returncode == 1 and "is the leader" in r.stderr
    assert cluster.primary() is p


def test_reload_reports_the_server_answer(cluster):
    """POST /reload may not exist yet: whatever the server answers is reported."""
    node = cluster.nodes[1]
    status, body = http(node.api + "/reload", method="POST", body={})
    r = run_ctl(cluster, ep(cluster.nodes[0]), "reload", node.name)
    if status in (200, 202):
        assert r.returncode == 0 and f"Success: reload on member {node.name}" in r.stdout
    else:
        assert r.returncode == 1
        reason = body.get("error") if isinstance(body, dict) else str(body)
        assert f"Failed: reload for member {node.name}, status code={status}, ({reason})" in r.stderr


def run_ctl_tty(cluster, args, answers, env_extra=None, timeout=60):
    """ctl on a pseudo-terminal; answers[i] is typed when the output ends with prompts[i]."""
    import pty
    import select
    import time
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_CTL_")}
    env.update(cluster.sanitizer_env())
    env.update(env_extra or {})
    p = subprocess.Popen([cluster.binary, "ctl", *args], stdin=slave, stdout=slave,
                         stderr=subprocess.STDOUT, env=env)
    os.close(slave)
    out, i = b"", 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if p.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
            if i < len(answers) and out.rstrip().endswith(answers[i][0].encode()):
                os.write(master, answers[i][1].encode() + b"\n")
                i += 1
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    text = out.decode(errors="replace").replace("\r\n", "\n")
    print(f"$ pgwarden ctl {' '.join(args)} (tty) -> {p.returncode}\n{text}")
    return p.returncode, text, i


def test_interactive(cluster):
    p = cluster.wait_healthy()
    node = cluster.nodes[0]
    # edit-config with $EDITOR: the editor's change is shown as a diff and applied on "y"
    editor = os.path.join(cluster.dir, "editor.sh")
    with open(editor, "w") as f:
        f.write("#!/bin/sh\nsed -i 's/^primary_start_timeout: .*/primary_start_timeout: 123/' \"$1\"\n")
    os.chmod(editor, 0o755)
    rc, out, asked = run_ctl_tty(cluster, [ep(node), "edit-config"],
                                 [("Apply these changes? [y/N]:", "y")], {"EDITOR": editor})
    assert rc == 0 and asked == 1, out
    assert "+primary_start_timeout: 123" in out and "Configuration changed" in out
    wait_for(lambda: config_of(node)["primary_start_timeout"] == 123, 10, what="the edit applied")
    # an answer other than yes changes nothing
    rc, out, asked = run_ctl_tty(cluster, [ep(node), "edit-config", "-s", "primary_start_timeout=300"],
                                 [("Apply these changes? [y/N]:", "no")])
    assert rc == 1 and asked == 1 and "aborted" in out, out
    assert config_of(node)["primary_start_timeout"] == 123
    # switchover asks for the primary, the candidate, the time, then to confirm
    replica = next(n for n in cluster.nodes if n is not p)
    rc, out, asked = run_ctl_tty(cluster, [ep(node), "switchover"],
                                 [(f"Primary [{p.name}]:", ""), ("[]:", replica.name),
                                  ("[now]:", ""), ("[y/N]:", "n")])
    assert rc == 1 and asked == 4 and "aborted" in out, out
    assert f"demoting current leader {p.name}?" in out
    assert cluster.primary() is p


def test_scheduled_switchover_and_flush(cluster):
    import datetime
    p = cluster.wait_healthy()
    target = next(n for n in cluster.nodes if n is not p)
    node = cluster.nodes[0]
    when = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M+00:00")
    r = run_ctl(cluster, ep(node), "switchover", "--candidate", target.name, "--scheduled", when, "--force")
    assert r.returncode == 0 and "Switchover scheduled" in r.stdout, r.stderr

    def footer():
        out = run_ctl(cluster, ep(node), "list").stdout
        return parse_pretty(out)[3]
    lines = wait_for(footer, 10, what="the scheduled switchover in the list footer")
    assert lines[0] == f" Switchover scheduled at: {when[:16]}:00.000Z"
    assert lines[1:] == [f"{'from':>24}: {p.name}", f"{'to':>24}: {target.name}"]
    r = run_ctl(cluster, ep(node), "flush", "switchover")
    assert r.returncode == 0 and "Success" in r.stdout, r.stderr
    wait_for(lambda: footer() == [], 10, what="the footer to go")
    r = run_ctl(cluster, ep(node), "flush", "switchover")
    assert r.returncode == 0 and "No pending scheduled switchover" in r.stdout
    assert cluster.primary() is p


def test_restart_and_flush(cluster):
    """POST/DELETE /restart on members (reported as the server answers, if it lacks them)."""
    import datetime
    p = cluster.wait_healthy()
    replica = next(n for n in cluster.nodes if n is not p)
    node = cluster.nodes[0]
    status, body = http(replica.api + "/restart", method="DELETE")
    if status not in (200, 404) or (status == 404 and "not found: /restart" in str(body)):
        r = run_ctl(cluster, ep(node), "restart", replica.name, "--force")
        assert r.returncode == 1 and f"Failed: restart for member {replica.name}, status code=" in r.stderr
        return
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    for hours in (1, 2):  # the second one replaces the first (--force)
        when = (later + datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M+00:00")
        r = run_ctl(cluster, ep(node), "restart", replica.name, "--scheduled", when, "--force")
        assert r.returncode == 0, r.stderr
        assert f"Success: restart on member {replica.name}: restart scheduled" in r.stdout
        assert ("flush scheduled restart" in r.stdout) == (hours == 2)
    r = run_ctl(cluster, ep(node), "flush", replica.name, "restart")
    assert r.returncode == 0 and f"Success: flush scheduled restart on member {replica.name}" in r.stdout
    r = run_ctl(cluster, ep(node), "flush", replica.name, "restart")
    assert r.returncode == 0 and f"No scheduled restart for member {replica.name}" in r.stdout
    r = run_ctl(cluster, ep(node), "restart", replica.name, "--role", "replica", "--force")
    assert r.returncode == 0 and f"Success: restart on member {replica.name}" in r.stdout, r.stderr
    assert cluster.wait_healthy(timeout=60) is p


def test_switchover(cluster):
    old = cluster.wait_healthy()
    target = next(n for n in cluster.nodes if n is not old)
    r = run_ctl(cluster, ep(cluster.nodes[0]), "switchover", "--candidate", target.name, "--force")
    assert r.returncode == 0, r.stderr
    assert f"Successfully switched over to {target.name}" in r.stdout
    assert cluster.wait_primary(timeout=30) is target
    # the table printed after the switchover names the new leader
    _, _, rows, _ = parse_pretty(r.stdout[r.stdout.index("+ Cluster: "):])
    assert [row[0] for row in rows if row[2] == "Leader"] == [target.name]
    r = run_ctl(cluster, ep(target), "list", "-f", "json")
    assert [x["Member"] for x in json.loads(r.stdout) if x["Role"] == "Leader"] == [target.name]


AUTH = {"username": "ops", "password": "ctl-Secret-9"}


def test_failover_with_credentials_from_config():
    c = Cluster(n=3, node_opts={f"n{i}": {"extra": {"restapi": {"authentication": dict(AUTH)}}}
                                for i in (1, 2, 3)})
    try:
        c.start()
        old = c.wait_healthy(timeout=90)
        target = next(n for n in c.nodes if n is not old)
        # a write without credentials is refused with the server's 401
        r = run_ctl(c, ep(target), "pause")
        assert r.returncode == 1 and "401" in r.stderr
        # -c: endpoint (restapi.connect_address) and credentials from the node's file
        r = run_ctl(c, "-c", target.cfg_path, "list", "-f", "json")
        assert r.returncode == 0, r.stderr
        assert len(json.loads(r.stdout)) == 3
        old.kill(signal.SIGKILL)
        old.kill_postmaster(signal.SIGKILL)
        r = run_ctl(c, "-c", target.cfg_path, "failover", "--candidate", target.name, "--force")
        assert r.returncode == 0, r.stderr + c.dump_logs(40)
        assert f"Successfully failed over to {target.name}" in r.stdout
        assert c.wait_primary(timeout=30) is target
        rows = wait_for(lambda: history_rows(c, target, "-c", target.cfg_path), 10,
                        what="a history row")
        assert rows[-1]["New Leader"] == target.name and "failover" in rows[-1]["Reason"]
        assert rows[-1]["TL"] == 1 and re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", rows[-1]["LSN"])
        r = run_ctl(c, "-c", target.cfg_path, "history")
        assert r.returncode == 0
        _, header, prow, _ = parse_pretty(r.stdout)
        assert header == ["TL", "LSN", "Reason", "Timestamp", "New Leader"]
        assert prow[-1][0] == "1" and prow[-1][4] == target.name
    finally:
        c.cleanup()
