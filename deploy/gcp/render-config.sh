#!/bin/sh
# Render one node's /etc/pgwarden/pgwarden.yml from its instance metadata.
#
# startup.sh runs it on each VM with the values read from the metadata
# server and Secret Manager; the tests (tests/e2e/test_deploy.py) and the
# chaos suite's local rehearsal run it with fake values. It only prints: the
# YAML goes to stdout (or to the file given with -o, written atomically with
# mode 0600: it holds passwords), errors to stderr with exit status 2.
#
# Input, as environment variables:
#   PGW_NAME                 member name of this node (required)
#   PGW_SELF_IP              this node's IPv4 address (required)
#   PGW_PARTNER_IPS          the cluster's nodes, "ip" or "ip:port", separated by
#                            commas or spaces (required); this node is left out
#                            if listed, so every node may get the same list
#   PGW_SUBNET_CIDR          the nodes' subnet, for pg_hba.conf (required)
#   PGW_SUPERUSER_PASSWORD, PGW_REPLICATION_PASSWORD, PGW_REWIND_PASSWORD,
#   PGW_RESTAPI_PASSWORD, PGW_RAFT_PASSWORD      (required, one line each)
#   PGW_SCOPE                cluster name (default main)
#   PGW_RAFT_PORT            Raft port (default 5010; also the partners' default)
#   PGW_API_PORT             REST API port (default 8008)
#   PGW_PG_PORT              PostgreSQL port (default 5432)
#   PGW_LISTEN_HOST          address the REST API and PostgreSQL listen on
#                            (default 0.0.0.0: a passthrough load balancer
#                            delivers packets addressed to its own IP)
#   PGW_PG_VERSION           PostgreSQL major version (default 15)
#   PGW_PG_DATA_DIR          default /var/lib/postgresql/<version>/main
#   PGW_PG_BIN_DIR           default /usr/lib/postgresql/<version>/bin
#   PGW_RAFT_DATA_DIR        default /var/lib/pgwarden/raft
#   PGW_PG_SOCKET_DIR        optional: PostgreSQL's unix_socket_directories
#                            (default: PostgreSQL's own, /var/run/postgresql;
#                            the rehearsal gives each node its own)
#   PGW_CLIENT_CIDRS         networks clients connect from (default: the subnet)
#   PGW_SHARED_BUFFERS       default 128MB (startup.sh passes 25% of the RAM)
#   PGW_ZONE                 optional: becomes the custom tag `zone`
#   PGW_BACKUP_BUCKET        optional: a GCS bucket; turns on backups with
#                            pgBackRest (repo1-type gcs, the VM's service
#                            account, path /pgwarden/<scope>; docs/backups.md)
#   PGW_PRE_PROMOTE          optional: postgresql.pre_promote (startup.sh sets it to
#                            stonith-reset.sh when Terraform's enable_stonith is on)
set -eu

out=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) [ $# -ge 2 ] || { echo "render-config: -o needs a file" >&2; exit 2; }
            out=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "render-config: unexpected argument \"$1\"" >&2; exit 2 ;;
    esac
done

die() {
    echo "render-config: $*" >&2
    exit 2
}

require() {
    eval "v=\${$1:-}"
    # shellcheck disable=SC2154  # v is set by the eval above
    [ -n "$v" ] || die "$1 is required"
}

# one line, no control characters: what a YAML single-quoted scalar can carry
nl='
'
cr=$(printf '\r')
tab=$(printf '\t')
one_line() {
    eval "v=\${$1:-}"
    case "$v" in
        *"$nl"*|*"$cr"*|*"$tab"*) die "$1 must be a single line" ;;
    esac
}

is_ipv4() {
    printf '%s\n' "$1" | awk -F. 'NF != 4 { exit 1 }
        { for (i = 1; i <= 4; i++) if ($i !~ /^[0-9]+$/ || $i > 255 || length($i) > 3) exit 1 }'
}

is_port() {
    case "$1" in
        ''|*[!0-9]*) return 1 ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

is_cidr() {
    case "$1" in
        */*) is_ipv4 "${1%/*}" && case "${1#*/}" in ''|*[!0-9]*) false ;; *) [ "${1#*/}" -le 32 ] ;; esac ;;
        *) return 1 ;;
    esac
}

# YAML single-quoted scalar ('' stands for ')
q() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"
}

for var in PGW_NAME PGW_SELF_IP PGW_PARTNER_IPS PGW_SUBNET_CIDR PGW_SUPERUSER_PASSWORD \
           PGW_REPLICATION_PASSWORD PGW_REWIND_PASSWORD PGW_RESTAPI_PASSWORD PGW_RAFT_PASSWORD; do
    require "$var"
done
for var in PGW_SUPERUSER_PASSWORD PGW_REPLICATION_PASSWORD PGW_REWIND_PASSWORD \
           PGW_RESTAPI_PASSWORD PGW_RAFT_PASSWORD PGW_ZONE PGW_PG_SOCKET_DIR PGW_BACKUP_BUCKET \
           PGW_PRE_PROMOTE; do
    one_line "$var"
done

name=$PGW_NAME
scope=${PGW_SCOPE:-main}
self_ip=$PGW_SELF_IP
raft_port=${PGW_RAFT_PORT:-5010}
api_port=${PGW_API_PORT:-8008}
pg_port=${PGW_PG_PORT:-5432}
listen=${PGW_LISTEN_HOST:-0.0.0.0}
pg_version=${PGW_PG_VERSION:-15}
pg_data=${PGW_PG_DATA_DIR:-/var/lib/postgresql/$pg_version/main}
pg_bin=${PGW_PG_BIN_DIR:-/usr/lib/postgresql/$pg_version/bin}
raft_data=${PGW_RAFT_DATA_DIR:-/var/lib/pgwarden/raft}
sock_dir=${PGW_PG_SOCKET_DIR:-}
subnet=$PGW_SUBNET_CIDR
clients=${PGW_CLIENT_CIDRS:-$subnet}
shared_buffers=${PGW_SHARED_BUFFERS:-128MB}
zone=${PGW_ZONE:-}
backup_bucket=${PGW_BACKUP_BUCKET:-}
pre_promote=${PGW_PRE_PROMOTE:-}

# the same rules pgwarden applies (name: 1-63 of A-Z a-z 0-9 _ . -)
for pair in "PGW_NAME:$name" "PGW_SCOPE:$scope"; do
    v=${pair#*:}
    case "$v" in
        *[!A-Za-z0-9_.-]*) die "${pair%%:*}: \"$v\" may only contain A-Z a-z 0-9 _ . -" ;;
    esac
    [ ${#v} -le 63 ] || die "${pair%%:*}: longer than 63 characters"
done
is_ipv4 "$self_ip" || die "PGW_SELF_IP: \"$self_ip\" is not an IPv4 address"
is_ipv4 "$listen" || die "PGW_LISTEN_HOST: \"$listen\" is not an IPv4 address"
for p in "$raft_port" "$api_port" "$pg_port"; do
    is_port "$p" || die "port \"$p\" is not 1-65535"
done
case "$pg_version" in
    ''|*[!0-9]*) die "PGW_PG_VERSION: \"$pg_version\" is not a major version number" ;;
esac
is_cidr "$subnet" || die "PGW_SUBNET_CIDR: \"$subnet\" is not an IPv4 CIDR"
case "$sock_dir" in
    ''|/*) ;;
    *) die "PGW_PG_SOCKET_DIR: \"$sock_dir\" is not an absolute path" ;;
esac
case "$shared_buffers" in
    ''|*[!0-9A-Za-z]*) die "PGW_SHARED_BUFFERS: \"$shared_buffers\" is not a size such as 512MB" ;;
esac

self_addr="$self_ip:$raft_port"
partners=""
for p in $(printf '%s' "$PGW_PARTNER_IPS" | tr ',' ' '); do
    case "$p" in
        *:*) ip=${p%:*}; port=${p##*:} ;;
        *) ip=$p; port=$raft_port ;;
    esac
    is_ipv4 "$ip" || die "PGW_PARTNER_IPS: \"$ip\" is not an IPv4 address"
    is_port "$port" || die "PGW_PARTNER_IPS: \"$p\": bad port"
    [ "$ip:$port" = "$self_addr" ] && continue
    case " $partners " in
        *" $ip:$port "*) continue ;;
    esac
    partners="$partners $ip:$port"
done
[ -n "$partners" ] || die "PGW_PARTNER_IPS names no node other than this one ($self_addr)"

clients_list=""
for c in $(printf '%s' "$clients" | tr ',' ' '); do
    is_cidr "$c" || die "PGW_CLIENT_CIDRS: \"$c\" is not an IPv4 CIDR"
    clients_list="$clients_list $c"
done

render() {
    cat <<EOF
# Written by deploy/gcp/render-config.sh for $name (scope $scope).
# Re-rendered at every boot from the instance metadata: edit the metadata
# (or Terraform), not this file.
scope: $scope
name: $name
restapi:
  listen: $listen:$api_port
  connect_address: $self_ip:$api_port
  authentication:
    username: pgwarden
    password: $(q "$PGW_RESTAPI_PASSWORD")
raft:
  self_addr: $self_addr
  partner_addrs:
EOF
    for p in $partners; do
        echo "    - $p"
    done
    cat <<EOF
  data_dir: $(q "$raft_data")
  password: $(q "$PGW_RAFT_PASSWORD")
bootstrap:
  dcs:
    ttl: 2
    loop_wait: 0.5
    retry_timeout: 0.75
    maximum_lag_on_failover: 1MB
    synchronous_mode: off
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 200
        max_wal_senders: 10
        max_replication_slots: 10
        wal_level: replica
        wal_log_hints: on
  initdb:
    - data-checksums
    - encoding: UTF8
    - locale: C.UTF-8
postgresql:
  listen: $listen:$pg_port
  connect_address: $self_ip:$pg_port
  data_dir: $(q "$pg_data")
  bin_dir: $(q "$pg_bin")
  authentication:
    superuser:
      username: postgres
      password: $(q "$PGW_SUPERUSER_PASSWORD")
    replication:
      username: replicator
      password: $(q "$PGW_REPLICATION_PASSWORD")
    rewind:
      username: rewind_user
      password: $(q "$PGW_REWIND_PASSWORD")
  parameters:
    shared_buffers: $shared_buffers
    log_line_prefix: '%m [%p] %q%u@%d '
EOF
    if [ -n "$sock_dir" ]; then
        echo "    unix_socket_directories: $(q "$sock_dir")"
    fi
    cat <<EOF
  pg_hba:
    - local all all peer
    - host all all 127.0.0.1/32 scram-sha-256
    - host replication replicator $subnet scram-sha-256
    - host all all $subnet scram-sha-256
EOF
    for c in $clients_list; do
        [ "$c" = "$subnet" ] || echo "    - host all all $c scram-sha-256"
    done
    cat <<EOF
  basebackup:
    checkpoint: fast
EOF
    if [ -n "$pre_promote" ]; then
        echo "  pre_promote: $(q "$pre_promote")"
    fi
    if [ -n "$zone" ]; then
        printf 'tags:\n  zone: %s\n' "$(q "$zone")"
    fi
    if [ -n "$backup_bucket" ]; then
        cat <<EOF
backup:
  method: pgbackrest
  options:
    repo1-type: gcs
    repo1-gcs-bucket: $(q "$backup_bucket")
    repo1-gcs-key-type: auto
    repo1-path: /pgwarden/$scope
    repo1-retention-full: '4'
    start-fast: 'y'
  full_interval: 604800
  diff_interval: 86400
EOF
    fi
    cat <<EOF
log:
  level: info
EOF
}

if [ -z "$out" ]; then
    render
    exit 0
fi
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
umask 077
render >"$tmp"
mv "$tmp" "$out"
trap - EXIT
