#!/bin/bash
# Startup script of the pgwarden VMs (Compute Engine runs it as root at every
# boot; `sudo google_metadata_script_runner startup` runs it again by hand).
#
#  1. PostgreSQL <pgwarden-pg-version> from Debian (15) or apt.postgresql.org,
#     without Debian's default cluster: pgwarden creates and runs PostgreSQL.
#  2. The pgwarden .deb from <pgwarden-deb-url> (gs:// or https://), installed
#     when its version differs from the installed one.
#  3. The passwords from Secret Manager (<pgwarden-secret-prefix>-*-password).
#  4. /etc/pgwarden/pgwarden.yml rendered by render-config.sh (itself shipped
#     in the metadata attribute pgwarden-render-config) and validated.
#  5. systemctl enable --now pgwarden; after a package upgrade, a restart of
#     this node's pgwarden (a primary hands its role over first).
# Output goes to the journal and the serial console
# (journalctl -u google-startup-scripts).
set -euo pipefail

# Local rehearsal (tests/chaos/test_rehearsal.py runs this script unchanged in
# network namespaces, with shims for apt-get, dpkg-query, gcloud and systemctl
# first on PATH). Unset on a VM, where the script runner gives none of them:
#   PGW_METADATA_URL  the metadata server (a fake one in the rehearsal)
#   PGW_STARTUP_ROOT  prefix of every path this script writes or runs:
#                     /etc/pgwarden, /usr/local/lib/pgwarden, /var/cache/pgwarden,
#                     /var/lib/postgresql, /usr/bin/pgwarden and
#                     /etc/postgresql-common/createcluster.conf (default: none)
# The environment reaches render-config.sh, so its overrides (PGW_PG_DATA_DIR,
# PGW_RAFT_DATA_DIR, PGW_PG_SOCKET_DIR, ...) apply as well; PGW_SHARED_BUFFERS, if set,
# replaces the default of a quarter of the RAM.
MD=${PGW_METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}
ROOT=${PGW_STARTUP_ROOT:-}
LIB=$ROOT/usr/local/lib/pgwarden
CONF=$ROOT/etc/pgwarden/pgwarden.yml
PGWARDEN=$ROOT/usr/bin/pgwarden

log() {
    echo "pgwarden-startup: $*"
}

die() {
    echo "pgwarden-startup: ERROR: $*" >&2
    exit 1
}

md_get() {
    curl -fsS --retry 5 --retry-connrefused --max-time 10 -H "Metadata-Flavor: Google" "$MD/$1"
}

attr() {
    md_get "instance/attributes/$1" || die "instance metadata attribute $1 is missing"
}

name=$(attr pgwarden-name)
scope=$(attr pgwarden-scope)
self_ip=$(attr pgwarden-self-ip)
partner_ips=$(attr pgwarden-partner-ips)
raft_port=$(attr pgwarden-raft-port)
pg_version=$(attr pgwarden-pg-version)
deb_url=$(attr pgwarden-deb-url)
secret_prefix=$(attr pgwarden-secret-prefix)
subnet_cidr=$(attr pgwarden-subnet-cidr)
client_cidrs=$(attr pgwarden-client-cidrs)
zone=$(attr pgwarden-zone)
project=$(md_get project/project-id) || die "cannot read the project id from the metadata server"
log "node $name ($self_ip) of $scope, PostgreSQL $pg_version, partners $partner_ips"

export DEBIAN_FRONTEND=noninteractive

# --- 1. PostgreSQL -----------------------------------------------------------------

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if ! installed "postgresql-$pg_version"; then
    log "installing PostgreSQL $pg_version"
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql-common curl ca-certificates gnupg
    # No 'main' cluster: pgwarden runs initdb (or clones) itself.
    cc=$ROOT/etc/postgresql-common/createcluster.conf
    if grep -qE '^#?[[:space:]]*create_main_cluster' "$cc"; then
        sed -i -E 's/^#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$cc"
    else
        echo "create_main_cluster = false" >>"$cc"
    fi
    if ! apt-cache show "postgresql-$pg_version" >/dev/null 2>&1; then
        log "PostgreSQL $pg_version is not in Debian: adding apt.postgresql.org"
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y
    fi
    apt-get install -y -q "postgresql-$pg_version"
fi
# PostgreSQL's data directory lives under here; pgwarden (user postgres) creates it.
install -d -o postgres -g postgres -m 0755 "$ROOT/var/lib/postgresql/$pg_version"

# --- 2. pgwarden ---------------------------------------------------------------------

mkdir -p "$ROOT/var/cache/pgwarden"
deb=$ROOT/var/cache/pgwarden/$(basename "$deb_url")
case "$deb_url" in
    gs://*) gcloud storage cp "$deb_url" "$deb.part" --quiet ;;
    https://*) curl -fsSL --retry 5 --max-time 300 -o "$deb.part" "$deb_url" ;;
    *) die "pgwarden-deb-url must be gs://... or https://..., got $deb_url" ;;
esac
mv "$deb.part" "$deb"
want=$(dpkg-deb -f "$deb" Version)
have=$(dpkg-query -W -f='${Version}' pgwarden 2>/dev/null || true)
upgraded=false
if [ "$want" != "$have" ]; then
    log "installing pgwarden $want (was: ${have:-none})"
    apt-get install -y -q "$deb"
    upgraded=true
fi

# --- 3. secrets ----------------------------------------------------------------------

# Bounded retries: right after `terraform apply` the IAM grant may not have
# reached Secret Manager yet.
secret() {
    local s="$secret_prefix-$1-password" i
    for i in $(seq 1 30); do
        if gcloud secrets versions access latest --secret="$s" --project="$project" 2>/dev/null; then
            return 0
        fi
        log "secret $s not readable yet (attempt $i of 30)" >&2
        sleep 10
    done
    die "cannot read secret $s (does the VM's service account have secretAccessor?)"
}

PGW_SUPERUSER_PASSWORD=$(secret superuser)
PGW_REPLICATION_PASSWORD=$(secret replication)
PGW_REWIND_PASSWORD=$(secret rewind)
PGW_RESTAPI_PASSWORD=$(secret restapi)
PGW_RAFT_PASSWORD=$(secret raft)
export PGW_SUPERUSER_PASSWORD PGW_REPLICATION_PASSWORD PGW_REWIND_PASSWORD PGW_RESTAPI_PASSWORD \
    PGW_RAFT_PASSWORD

# --- 4. configuration ----------------------------------------------------------------

mkdir -p "$LIB"
attr pgwarden-render-config >"$LIB/render-config.sh.new"
chmod 0755 "$LIB/render-config.sh.new"
mv "$LIB/render-config.sh.new" "$LIB/render-config.sh"

mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
export PGW_SHARED_BUFFERS="${PGW_SHARED_BUFFERS:-$((mem_kb / 4 / 1024))MB}"
export PGW_NAME="$name" PGW_SCOPE="$scope" PGW_SELF_IP="$self_ip" PGW_PARTNER_IPS="$partner_ips"
export PGW_RAFT_PORT="$raft_port" PGW_PG_VERSION="$pg_version" PGW_SUBNET_CIDR="$subnet_cidr"
export PGW_CLIENT_CIDRS="$client_cidrs" PGW_ZONE="$zone"

install -d -o root -g postgres -m 0750 "$ROOT/etc/pgwarden"
# owned by the service user, readable by nobody else (it holds passwords)
"$LIB/render-config.sh" -o "$CONF.new"
chown postgres:postgres "$CONF.new"
chmod 0600 "$CONF.new"
if ! runuser -u postgres -- "$PGWARDEN" validate -c "$CONF.new"; then
    die "the rendered configuration $CONF.new is invalid (kept for inspection)"
fi
changed=true
if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
    changed=false
    rm -f "$CONF.new"
else
    mv "$CONF.new" "$CONF"
    log "wrote $CONF"
fi

# --- 5. service -----------------------------------------------------------------------

systemctl enable pgwarden.service
if ! systemctl is-active --quiet pgwarden.service; then
    log "starting pgwarden"
    systemctl start pgwarden.service
elif [ "$upgraded" = true ]; then
    log "restarting pgwarden on the new version $want (a primary hands its role over first)"
    systemctl restart pgwarden.service
elif [ "$changed" = true ]; then
    log "configuration changed: reloading (keys marked 'restart' in the reference need systemctl restart pgwarden)"
    systemctl reload pgwarden.service
fi
log "done: $("$PGWARDEN" version | head -1)"
