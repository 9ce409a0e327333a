#!/bin/sh
# make demo / make demo-stop: a 3-node pgwarden cluster on 127.0.0.1.
# Everything lives in one directory owned by the postgres user (PostgreSQL
# refuses root, and so does pgwarden); processes are ended by the pids
# recorded at start, never by name.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=${PGW_DEMO_DIR:-/tmp/pgwarden-demo}
BIN_SRC=${PGW_BIN:-$ROOT/build/release/pgwarden}
PY=/usr/bin/python3

stop() {
    [ -d "$DEMO" ] || { echo "demo: nothing to stop ($DEMO does not exist)"; return 0; }
    for pidfile in "$DEMO"/n*/pgwarden.pid; do
        [ -f "$pidfile" ] || continue
        kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    done
    # graceful: a primary hands over first; bounded wait, then SIGKILL
    i=0
    while [ $i -lt 600 ]; do
        alive=0
        for pidfile in "$DEMO"/n*/pgwarden.pid; do
            if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
                alive=1
            fi
        done
        [ $alive -eq 0 ] && break
        sleep 0.1
        i=$((i + 1))
    done
    for pidfile in "$DEMO"/n*/pgwarden.pid; do
        if [ -f "$pidfile" ]; then
            kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
    for pm in "$DEMO"/n*/data/postmaster.pid; do
        [ -f "$pm" ] || continue
        kill -QUIT "$(head -1 "$pm")" 2>/dev/null || true
    done
    sleep 1
    rm -rf "$DEMO"
    echo "demo: stopped and removed $DEMO"
}

write_config() {
    n=$1 api=$2 raft=$3 pg=$4 partners=$5
    mkdir -p "$DEMO/n$n"
    cat > "$DEMO/n$n/pgwarden.yml" <<YML
scope: demo
name: node$n
restapi:
  listen: 127.0.0.1:$api
raft:
  self_addr: 127.0.0.1:$raft
  partner_addrs: [$partners]
  data_dir: $DEMO/n$n/raft
bootstrap:
  initdb: [{encoding: UTF8}, data-checksums]
postgresql:
  listen: 127.0.0.1:$pg
  data_dir: $DEMO/n$n/data
  authentication:
    superuser: {username: postgres, password: demo-superuser}
    replication: {username: replicator, password: demo-replicator}
    rewind: {username: rewind_user, password: demo-rewind}
  parameters:
    unix_socket_directories: $DEMO
YML
    chmod 600 "$DEMO/n$n/pgwarden.yml"
}

start() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "demo: run as root (it starts the nodes as the postgres user)" >&2
        exit 1
    fi
    [ -x "$BIN_SRC" ] || { echo "demo: $BIN_SRC is not built (make build)" >&2; exit 1; }
    [ -d "$DEMO" ] && stop
    mkdir -p "$DEMO/bin"
    cp "$BIN_SRC" "$DEMO/bin/pgwarden"
    chmod 755 "$DEMO" "$DEMO/bin" "$DEMO/bin/pgwarden"
    # nine free ports: REST, Raft and PostgreSQL for each node
    ports=$($PY -c '
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))')
    # shellcheck disable=SC2086
    set -- $ports
    api1=$1 api2=$2 api3=$3 raft1=$4 raft2=$5 raft3=$6 pg1=$7 pg2=$8 pg3=$9
    write_config 1 "$api1" "$raft1" "$pg1" "\"127.0.0.1:$raft2\", \"127.0.0.1:$raft3\""
    write_config 2 "$api2" "$raft2" "$pg2" "\"127.0.0.1:$raft1\", \"127.0.0.1:$raft3\""
    write_config 3 "$api3" "$raft3" "$pg3" "\"127.0.0.1:$raft1\", \"127.0.0.1:$raft2\""
    chown -R postgres:postgres "$DEMO"
    for n in 1 2 3; do
        # setpriv executes pgwarden in place, so $! is pgwarden's own pid
        setpriv --reuid=postgres --regid=postgres --init-groups \
            "$DEMO/bin/pgwarden" run -c "$DEMO/n$n/pgwarden.yml" > "$DEMO/n$n/pgwarden.log" 2>&1 &
        echo $! > "$DEMO/n$n/pgwarden.pid"
    done
    echo "demo: started 3 nodes in $DEMO; waiting for one primary and two streaming replicas..."
    if ! $PY - "$api1" "$api2" "$api3" <<'PYWAIT'
import json, sys, time, urllib.request
apis = sys.argv[1:]
deadline = time.time() + 120
while time.time() < deadline:
    for a in apis:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{a}/cluster", timeout=1) as r:
                d = json.load(r)
        except Exception:
            continue
        m = d.get("members", [])
        if sum(x["role"] == "leader" and x["state"] == "running" for x in m) == 1 and \
           sum(x["state"] == "streaming" for x in m) == 2:
            sys.exit(0)
    time.sleep(0.5)
sys.exit(1)
PYWAIT
    then
        echo "demo: the cluster did not become healthy within 120 s; logs: $DEMO/n*/pgwarden.log" >&2
        exit 1
    fi
    echo
    if "$DEMO/bin/pgwarden" ctl --help >/dev/null 2>&1; then
        "$DEMO/bin/pgwarden" ctl --endpoint "http://127.0.0.1:$api1" list
    else
        $PY -c "import json,urllib.request; d=json.load(urllib.request.urlopen('http://127.0.0.1:$api1/cluster')); [print(f\"{m['name']:8} {m['role']:8} {m['state']:10} TL {m.get('timeline','')}\") for m in d['members']]"
    fi
    cat <<TXT

Connect (the node answering 200 on /primary is the primary):
  PGPASSWORD=demo-superuser psql -h 127.0.0.1 -p $pg1 -U postgres   # node1
  PGPASSWORD=demo-superuser psql -h 127.0.0.1 -p $pg2 -U postgres   # node2
  PGPASSWORD=demo-superuser psql -h 127.0.0.1 -p $pg3 -U postgres   # node3
Health checks: curl -i http://127.0.0.1:$api1/primary   (and :$api2, :$api3; /replica for readers)
Cluster state: $DEMO/bin/pgwarden ctl --endpoint http://127.0.0.1:$api1 list
Switch over:   $DEMO/bin/pgwarden ctl --endpoint http://127.0.0.1:$api1 switchover --force
Fail over:     kill -9 the primary's pgwarden and postmaster (pids in $DEMO/n*/pgwarden.pid
               and $DEMO/n*/data/postmaster.pid) and watch another node take over
Logs:          $DEMO/n*/pgwarden.log
Stop:          make demo-stop
TXT
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
