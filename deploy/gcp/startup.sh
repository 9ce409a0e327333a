#!/bin/bash
# Startup script of the pgwarden VMs (Compute Engine runs it as root at every
# boot; `sudo google_metadata_script_runner startup` runs it again by hand).
#
#  1. PostgreSQL <pgwarden-pg-version> from Debian (15) or apt.postgresql.org,
#     without Debian's default cluster: pgwarden creates and runs PostgreSQL;
#     then the VM's data disk (<pgwarden-data-device>) mounted on
#     /var/lib/postgresql, formatted only if it is blank: PGDATA and
#     raft.data_dir live there and survive the VM's replacement.
#  2. The pgwarden .deb from <pgwarden-deb-url> (gs:// or https://), installed
#     when its version differs from the installed one.
#  3. The passwords from Secret Manager (<pgwarden-secret-prefix>-*-password).
#  4. /etc/pgwarden/pgwarden.yml rendered by render-config.sh (itself shipped
#     in the metadata attribute pgwarden-render-config) and validated.
#  5. systemctl enable --now pgwarden; after a package upgrade, a restart of
#     this node's pgwarden (a primary hands its role over first).
#  6. With <pgwarden-ops-agent-config> set: Google's Ops Agent with that
#     configuration (logs and /metrics to Cloud Logging and Monitoring).
#  With <pgwarden-stonith-script> set (Terraform's enable_stonith): that
#  script as /usr/local/lib/pgwarden/stonith-reset.sh, <pgwarden-stonith-map>
#  as /etc/pgwarden/stonith.map, and the script as postgresql.pre_promote
#  (fencing from outside: deploy/gcp/README.md).
# Attributes older configurations lack (pgwarden-data-device,
# pgwarden-ops-agent-config, pgwarden-stonith-*) read as empty: boot disk
# only, no Ops Agent, no STONITH.
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
#   PGW_DATA_DISK_WAIT_S  how long to wait for the data disk's device (60 s)
# Sourced (`. startup.sh`) it only defines its functions: tests/e2e/test_deploy.py
# runs data_disk that way against a disk image.
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

# An attribute that may be missing (404: empty output); any other failure dies.
attr_opt() {
    local body code
    body=$(mktemp)
    code=$(curl -sS --retry 5 --retry-connrefused --max-time 10 -H "Metadata-Flavor: Google" \
        -o "$body" -w '%{http_code}' "$MD/instance/attributes/$1") || code=failed
    case "$code" in
        200) cat "$body" ;;
        404) ;;
        *) rm -f "$body"; die "cannot read instance metadata attribute $1 (HTTP $code)" ;;
    esac
    rm -f "$body"
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# --- the data disk -----------------------------------------------------------------

# Where the data disk is mounted, as the VM sees it (the config names these
# paths): PGDATA is /var/lib/postgresql/<version>/main as in Debian's layout.
DATA_MNT=/var/lib/postgresql
DATA_RAFT_DIR=$DATA_MNT/pgwarden/raft
DATA_DROPIN=/etc/systemd/system/pgwarden.service.d/data-disk.conf

# Type of the filesystem on $1 ("" when blkid finds none); dies when blkid
# cannot tell (an unreadable device, or two signatures at once).
fs_type() {
    local rc=0 out
    out=$(blkid -p -o value -s TYPE "$1") || rc=$?
    case "$rc" in
        0) printf '%s\n' "$out" ;;
        2) ;;
        *) die "blkid -p $1 failed (exit status $rc): leaving the data disk alone" ;;
    esac
}

# Never written to: nothing but zeros where partition tables and filesystem
# superblocks live (the first 16 MiB). A new persistent disk reads as zeros.
blank() {
    cmp -s -n $((16 * 1024 * 1024)) "$1" /dev/zero
}

# data_disk DEVICE_NAME: the persistent disk attached with that device name
# (/dev/disk/by-id/google-DEVICE_NAME) mounted on /var/lib/postgresql through
# /etc/fstab (nofail, so that a missing disk never stops the boot; the
# pgwarden unit requires the mount instead, see DATA_DROPIN). Formatted
# (ext4) only when blkid finds no filesystem AND the disk is blank: a disk
# that holds anything is never formatted, and one that holds an unexpected
# filesystem or partition table is not mounted either. Idempotent: on a
# replacement VM the disk already holds the data and is only mounted; on a
# reboot it is already mounted. Then grows the filesystem to the disk's size
# (a disk resized in Terraform) and makes the directories pgwarden uses.
data_disk() {
    local device=$1 dev mnt fstype fstab line dropin want i changed=false
    dev=$ROOT/dev/disk/by-id/google-$device
    mnt=$ROOT$DATA_MNT
    fstab=$ROOT/etc/fstab
    dropin=$ROOT$DATA_DROPIN
    for i in $(seq 1 "${PGW_DATA_DISK_WAIT_S:-60}"); do
        [ -e "$dev" ] && break
        [ "$i" -eq 1 ] && log "waiting for the data disk $dev"
        sleep 1
    done
    [ -e "$dev" ] || die "no data disk $dev: is a disk attached to this VM with device name $device?"
    mkdir -p "$mnt"
    if mountpoint -q "$mnt"; then
        fstype=$(fs_type "$dev")
        [ -n "$fstype" ] || die "$mnt is mounted but $dev holds no filesystem: something else is mounted there"
    else
        # Whatever is in the directory now is on the boot disk and would be
        # hidden by the mount: a node set up before data disks existed.
        if [ -n "$(find "$mnt" -mindepth 2 -maxdepth 3 -name PG_VERSION -print -quit)" ] ||
            [ -n "$(ls -A "$ROOT/var/lib/pgwarden/raft" 2>/dev/null)" ]; then
            die "this node's PostgreSQL data ($mnt) or Raft directory (/var/lib/pgwarden/raft) is on the boot disk: mounting the data disk would hide it. Move them first (deploy/gcp/README.md, \"Move a node to its data disk\")"
        fi
        fstype=$(fs_type "$dev")
        if [ -z "$fstype" ]; then
            blank "$dev" || die "the data disk $dev holds no filesystem blkid knows, but is not blank: not formatting it (inspect it with: file -s $dev)"
            log "formatting the new data disk $dev (ext4)"
            mkfs.ext4 -q -m 0 -E lazy_itable_init=0,lazy_journal_init=0,discard -L "${device:0:16}" "$dev"
            fstype=ext4
        fi
    fi
    case "$fstype" in
        ext4 | xfs) ;;
        *) die "the data disk $dev holds a $fstype filesystem: expected ext4 (or xfs); not using it" ;;
    esac
    line="/dev/disk/by-id/google-$device $DATA_MNT $fstype defaults,discard,nofail 0 2"
    if ! grep -qxF "$line" "$fstab" 2>/dev/null; then
        # one line for the mount point: ours replaces any other
        { grep -vE "^[^#[:space:]]+[[:space:]]+$DATA_MNT/?[[:space:]]" "$fstab" 2>/dev/null || true
          echo "$line"; } >"$fstab.new"
        mv "$fstab.new" "$fstab"
        log "data disk: $DATA_MNT in /etc/fstab"
        changed=true
    fi
    want=$(printf '%s\n' "# Written by the pgwarden GCP startup script: PGDATA and raft.data_dir are" \
        "# on the data disk, so pgwarden never starts without it." "[Unit]" \
        "RequiresMountsFor=$DATA_MNT")
    if [ "$(cat "$dropin" 2>/dev/null)" != "$want" ]; then
        mkdir -p "$(dirname "$dropin")"
        printf '%s\n' "$want" >"$dropin"
        changed=true
    fi
    if $changed; then
        systemctl daemon-reload
    fi
    if ! mountpoint -q "$mnt"; then
        log "mounting the data disk $dev on $DATA_MNT"
        mount -t "$fstype" -o defaults,discard "$dev" "$mnt"
    fi
    case "$fstype" in
        ext4) resize2fs "$dev" >/dev/null 2>&1 || log "resize2fs $dev failed: the filesystem keeps its size" ;;
        xfs) xfs_growfs "$mnt" >/dev/null 2>&1 || log "xfs_growfs $mnt failed: the filesystem keeps its size" ;;
    esac
    chown postgres:postgres "$mnt"
    chmod 0755 "$mnt"
    install -d -o postgres -g postgres -m 0700 "$mnt/pgwarden"
}

# --- the Ops Agent ------------------------------------------------------------------

OPS_AGENT_CONF=/etc/google-cloud-ops-agent/config.yaml

# ops_agent CONFIG: Google's Ops Agent installed (its repository script, once)
# with CONFIG as its configuration; restarted when that changed.
ops_agent() {
    local conf=$ROOT$OPS_AGENT_CONF tmp
    if ! installed google-cloud-ops-agent; then
        log "installing the Ops Agent"
        tmp=$(mktemp -d)
        curl -fsSL --retry 5 --max-time 120 -o "$tmp/add-google-cloud-ops-agent-repo.sh" \
            https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh
        bash "$tmp/add-google-cloud-ops-agent-repo.sh" --also-install
        rm -rf "$tmp"
    fi
    if [ "$(cat "$conf" 2>/dev/null)" != "$1" ]; then
        mkdir -p "$(dirname "$conf")"
        printf '%s\n' "$1" >"$conf.new"
        mv "$conf.new" "$conf"
        log "Ops Agent configuration written: restarting it"
        systemctl restart google-cloud-ops-agent
    fi
}

main() {
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
    backup_bucket=$(attr_opt pgwarden-backup-bucket)
    data_device=$(attr_opt pgwarden-data-device)
    ops_agent_config=$(attr_opt pgwarden-ops-agent-config)
    stonith_script=$(attr_opt pgwarden-stonith-script)
    stonith_map=$(attr_opt pgwarden-stonith-map)
    project=$(md_get project/project-id) || die "cannot read the project id from the metadata server"
    log "node $name ($self_ip) of $scope, PostgreSQL $pg_version, partners $partner_ips"

    export DEBIAN_FRONTEND=noninteractive

    # --- 1. PostgreSQL -----------------------------------------------------------------

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
    if [ -n "$backup_bucket" ] && ! command -v pgbackrest >/dev/null 2>&1; then
        apt-get install -y -q pgbackrest
    fi
    if [ -n "$data_device" ]; then
        data_disk "$data_device"
        export PGW_RAFT_DATA_DIR="${PGW_RAFT_DATA_DIR:-$DATA_RAFT_DIR}"
    else
        log "no data disk in the metadata (pgwarden-data-device): PostgreSQL's data stays on the boot disk"
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
    export PGW_CLIENT_CIDRS="$client_cidrs" PGW_ZONE="$zone" PGW_BACKUP_BUCKET="$backup_bucket"

    install -d -o root -g postgres -m 0750 "$ROOT/etc/pgwarden"
    # fencing from outside: the hook and the member -> zone map it reads
    if [ -n "$stonith_script" ]; then
        printf '%s\n' "$stonith_script" >"$LIB/stonith-reset.sh.new"
        chmod 0755 "$LIB/stonith-reset.sh.new"
        mv "$LIB/stonith-reset.sh.new" "$LIB/stonith-reset.sh"
        printf '%s\n' "$stonith_map" >"$ROOT/etc/pgwarden/stonith.map.new"
        chmod 0644 "$ROOT/etc/pgwarden/stonith.map.new"
        mv "$ROOT/etc/pgwarden/stonith.map.new" "$ROOT/etc/pgwarden/stonith.map"
        export PGW_PRE_PROMOTE="$LIB/stonith-reset.sh --map $ROOT/etc/pgwarden/stonith.map"
    else
        rm -f "$LIB/stonith-reset.sh" "$ROOT/etc/pgwarden/stonith.map"
        unset PGW_PRE_PROMOTE
    fi
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

    # --- 6. Ops Agent ----------------------------------------------------------------------

    if [ -n "$ops_agent_config" ]; then
        ops_agent "$ops_agent_config"
    fi
    log "done: $("$PGWARDEN" version | head -1)"
}

# Executed (by the guest agent, or by hand), not sourced by a test.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
