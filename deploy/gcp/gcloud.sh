#!/bin/bash
# The deploy/gcp Terraform configuration as plain gcloud commands, for those
# who do not use Terraform. Same resources, same names, same settings.
#
#   PROJECT=my-project DEB_URL=gs://my-bucket/pgwarden_0.1.0_amd64.deb \
#       deploy/gcp/gcloud.sh [--dry-run] up|down|roll [NODE...]
#
# --dry-run prints the commands (one per line, shell-quoted; passwords shown
# as <generated>) and runs nothing that changes anything. `up` creates, `down`
# deletes everything `up` created (the subnet only if it created it) except
# the data disks and their snapshots, unless DELETE_DATA=yes.
#
# `roll` replaces the VMs one at a time, keeping each one's data disk: for
# each node (the NODEs named, else all; the replicas first, the primary
# last) it waits until the cluster is healthy, switches the primary role
# away from the node if it holds it (pgwarden ctl switchover), replaces the
# VM (new boot disk from IMAGE_FAMILY, MACHINE_TYPE, the same data disk,
# address and name), and waits until the node streams again within
# ROLL_MAX_LAG_MB and is healthy behind the reader load balancer. Its dry run
# does run the read-only queries it needs (ctl list, instances describe) and
# prints the rest, waits included as "# wait ..." lines. It talks to the
# cluster with `pgwarden ctl` over the REST API: through IAP SSH on another
# node (sudo pgwarden ctl -c /etc/pgwarden/pgwarden.yml), or with CTL set,
# that command from here (e.g. CTL="pgwarden ctl --endpoint http://10.20.0.11:8008",
# credentials in PGWARDEN_CTL_USERNAME/PASSWORD).
#
# Settings (environment, defaults in brackets):
#   PROJECT (required)       DEB_URL (required: gs://BUCKET/....deb or https://....deb)
#   REGION [europe-west1]    ZONES ["europe-west1-b europe-west1-c europe-west1-d"]
#   PREFIX [pg]              SCOPE [main]
#   NETWORK [default]        SUBNET [empty: create PREFIX-subnet]
#   SUBNET_CIDR [10.20.0.0/24]   (with SUBNET: that subnet's range, for pg_hba.conf)
#   NODE_IPS ["10.20.0.11 10.20.0.12 10.20.0.13"]   (free addresses of the subnet)
#   WRITER_IP [10.20.0.5]    READER_IP [10.20.0.6]
#   MACHINE_TYPE [e2-standard-2]  BOOT_DISK_SIZE_GB [50]  BOOT_DISK_TYPE [pd-ssd]
#   DATA_DISK_SIZE_GB [100]  DATA_DISK_TYPE [pd-ssd] (or pd-balanced)
#   SNAPSHOT_RETENTION_DAYS [14]  SNAPSHOT_START_TIME [03:00] (UTC)
#   DELETION_PROTECTION [yes]     OPS_AGENT [yes]     DELETE_DATA [no] (down)
#   BACKUP_BUCKET []         a GCS bucket for pgBackRest (docs/backups.md); the nodes'
#                            service account needs roles/storage.objectAdmin on it
#   STONITH [no]             (yes: stonith-reset.sh as pre_promote; grant the
#                            service account the reset role yourself: README.md)
#   IMAGE_PROJECT [debian-cloud]  IMAGE_FAMILY [debian-12]
#   PG_VERSION [15]          RAFT_PORT [5010]    TAG [pgwarden]
#   CLIENT_TAGS [pg-client]  CLIENT_RANGES []    HBA_CLIENT_CIDRS [10.0.0.0/8]
#   CREATE_NAT [yes]         IAP_SSH [yes]       WRITER_DROP_IF_UNHEALTHY [yes]
#   roll: ROLL_WITH [gcloud] or terraform (then TF_DIR [this directory] and
#         TF_ARGS [], e.g. "-var-file=prod.tfvars": the replacement is
#         terraform apply -replace of that node's VM, then of its group)
#         ROLL_MAX_LAG_MB [16]  ROLL_TIMEOUT_S [1800] (each wait)
#         ROLL_POLL_S [5]  CTL [empty: through IAP SSH]
# Lists are space-separated.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dry=false
if [ "${1:-}" = "--dry-run" ]; then
    dry=true
    shift
fi
action=${1:-}
case "$action" in
    up|down) [ $# -eq 1 ] || { echo "usage: $0 [--dry-run] $action" >&2; exit 2; } ;;
    roll) ;;
    *) echo "usage: $0 [--dry-run] up|down|roll [NODE...]   (settings: see the top of this file)" >&2; exit 2 ;;
esac
shift

PROJECT=${PROJECT:-}
DEB_URL=${DEB_URL:-}
REGION=${REGION:-europe-west1}
read -r -a ZONES <<<"${ZONES:-europe-west1-b europe-west1-c europe-west1-d}"
PREFIX=${PREFIX:-pg}
SCOPE=${SCOPE:-main}
NETWORK=${NETWORK:-default}
SUBNET=${SUBNET:-}
SUBNET_CIDR=${SUBNET_CIDR:-10.20.0.0/24}
read -r -a NODE_IPS <<<"${NODE_IPS:-10.20.0.11 10.20.0.12 10.20.0.13}"
WRITER_IP=${WRITER_IP:-10.20.0.5}
READER_IP=${READER_IP:-10.20.0.6}
MACHINE_TYPE=${MACHINE_TYPE:-e2-standard-2}
if [ -n "${DISK_SIZE_GB:-}" ] || [ -n "${DISK_TYPE:-}" ]; then
    echo "$0: DISK_SIZE_GB/DISK_TYPE are now BOOT_DISK_SIZE_GB/BOOT_DISK_TYPE (the system);" \
        "PostgreSQL's data is on DATA_DISK_SIZE_GB/DATA_DISK_TYPE" >&2
    exit 2
fi
BOOT_DISK_SIZE_GB=${BOOT_DISK_SIZE_GB:-50}
BOOT_DISK_TYPE=${BOOT_DISK_TYPE:-pd-ssd}
DATA_DISK_SIZE_GB=${DATA_DISK_SIZE_GB:-100}
DATA_DISK_TYPE=${DATA_DISK_TYPE:-pd-ssd}
SNAPSHOT_RETENTION_DAYS=${SNAPSHOT_RETENTION_DAYS:-14}
SNAPSHOT_START_TIME=${SNAPSHOT_START_TIME:-03:00}
DELETION_PROTECTION=${DELETION_PROTECTION:-yes}
OPS_AGENT=${OPS_AGENT:-yes}
BACKUP_BUCKET=${BACKUP_BUCKET:-}
STONITH=${STONITH:-no}
DELETE_DATA=${DELETE_DATA:-no}
ROLL_WITH=${ROLL_WITH:-gcloud}
TF_DIR=${TF_DIR:-$here}
read -r -a TF_ARGS <<<"${TF_ARGS:-}"
ROLL_MAX_LAG_MB=${ROLL_MAX_LAG_MB:-16}
ROLL_TIMEOUT_S=${ROLL_TIMEOUT_S:-1800}
ROLL_POLL_S=${ROLL_POLL_S:-5}
CTL=${CTL:-}
IMAGE_PROJECT=${IMAGE_PROJECT:-debian-cloud}
IMAGE_FAMILY=${IMAGE_FAMILY:-debian-12}
PG_VERSION=${PG_VERSION:-15}
RAFT_PORT=${RAFT_PORT:-5010}
TAG=${TAG:-pgwarden}
read -r -a CLIENT_TAGS <<<"${CLIENT_TAGS-pg-client}"
read -r -a CLIENT_RANGES <<<"${CLIENT_RANGES:-}"
read -r -a HBA_CLIENT_CIDRS <<<"${HBA_CLIENT_CIDRS:-10.0.0.0/8}"
CREATE_NAT=${CREATE_NAT:-yes}
IAP_SSH=${IAP_SSH:-yes}
WRITER_DROP_IF_UNHEALTHY=${WRITER_DROP_IF_UNHEALTHY:-yes}

[ -n "$PROJECT" ] || { echo "$0: PROJECT is required" >&2; exit 2; }
[ "${#ZONES[@]}" -eq 3 ] || { echo "$0: ZONES must name three zones" >&2; exit 2; }
[ "${#NODE_IPS[@]}" -eq 3 ] || { echo "$0: NODE_IPS must name three addresses" >&2; exit 2; }
case "$DATA_DISK_TYPE" in
    pd-ssd | pd-balanced) ;;
    *) echo "$0: DATA_DISK_TYPE must be pd-ssd or pd-balanced" >&2; exit 2 ;;
esac
case "$ROLL_WITH" in
    gcloud | terraform) ;;
    *) echo "$0: ROLL_WITH must be gcloud or terraform" >&2; exit 2 ;;
esac
# up, and roll with gcloud, create VMs: they need the package
if [ "$action" = up ] || { [ "$action" = roll ] && [ "$ROLL_WITH" = gcloud ]; }; then
    [[ "$DEB_URL" =~ ^(gs://[^/]+/.+|https://.+)\.deb$ ]] ||
        { echo "$0: DEB_URL must be gs://BUCKET/PATH.deb or https://HOST/PATH.deb" >&2; exit 2; }
fi

# Where Google's health-check probes come from (health-check-concepts).
HEALTH_CHECK_RANGES=35.191.0.0/16,130.211.0.0/22
IAP_RANGE=35.235.240.0/20
SECRETS=(superuser replication rewind restapi raft)
# the Ops Agent writes logs and metrics as the VMs' service account
TELEMETRY_ROLES=(roles/logging.logWriter roles/monitoring.metricWriter)
# every node's data disk is attached under this device name (main.tf's local.data_device)
DATA_DEVICE=pgwarden-data
SA="$PREFIX-pgwarden@$PROJECT.iam.gserviceaccount.com"
G=(gcloud --project="$PROJECT" --quiet)

run() {
    if $dry; then
        printf '%q ' "$@" | sed 's/ $//'
        echo
    else
        "$@"
    fi
}

# `down` goes on when something is already gone.
run_ok() {
    run "$@" || echo "$0: (ignored) failed: $*" >&2
}

join() {
    local IFS=$1
    shift
    echo "$*"
}

node_name() {
    echo "$PREFIX-$(($1 + 1))"
}

subnet_name() {
    if [ -n "$SUBNET" ]; then echo "$SUBNET"; else echo "$PREFIX-subnet"; fi
}

# create_vm I: node I's VM, with its data disk (created before) attached under
# DATA_DEVICE and kept when the VM is deleted (auto-delete=no).
create_vm() {
    local i=$1 j name partners=() md files protect=()
    name=$(node_name "$i")
    for j in 0 1 2; do
        [ "$j" -eq "$i" ] || partners+=("${NODE_IPS[$j]}")
    done
    # ^|^ makes | the separator, so that values may hold commas
    md="^|^pgwarden-name=$name|pgwarden-scope=$SCOPE|pgwarden-self-ip=${NODE_IPS[$i]}"
    md+="|pgwarden-partner-ips=$(join , "${partners[@]}")|pgwarden-raft-port=$RAFT_PORT"
    md+="|pgwarden-pg-version=$PG_VERSION|pgwarden-deb-url=$DEB_URL|pgwarden-secret-prefix=$PREFIX"
    md+="|pgwarden-subnet-cidr=$SUBNET_CIDR|pgwarden-client-cidrs=$(join , "${HBA_CLIENT_CIDRS[@]}")"
    md+="|pgwarden-zone=${ZONES[$i]}|pgwarden-data-device=$DATA_DEVICE|enable-oslogin=TRUE"
    md+="|pgwarden-backup-bucket=$BACKUP_BUCKET"
    files="startup-script=$here/startup.sh,pgwarden-render-config=$here/render-config.sh"
    if [ "$OPS_AGENT" = yes ]; then
        files+=",pgwarden-ops-agent-config=$here/ops-agent.yaml"
    else
        md+="|pgwarden-ops-agent-config="
    fi
    if [ "$STONITH" = yes ]; then
        files+=",pgwarden-stonith-script=$here/stonith-reset.sh"
        md+="|pgwarden-stonith-map=$(for j in 0 1 2; do printf '%s %s;' "$(node_name "$j")" "${ZONES[$j]}"; done)"
    else
        md+="|pgwarden-stonith-script=|pgwarden-stonith-map="
    fi
    [ "$DELETION_PROTECTION" = yes ] && protect=(--deletion-protection)
    run "${G[@]}" compute instances create "$name" --zone="${ZONES[$i]}" --machine-type="$MACHINE_TYPE" \
        --subnet="$(subnet_name)" --private-network-ip="${NODE_IPS[$i]}" --no-address --tags="$TAG" \
        --image-family="$IMAGE_FAMILY" --image-project="$IMAGE_PROJECT" \
        --boot-disk-size="${BOOT_DISK_SIZE_GB}GB" --boot-disk-type="$BOOT_DISK_TYPE" \
        --disk="name=$name-data,device-name=$DATA_DEVICE,mode=rw,boot=no,auto-delete=no" \
        "${protect[@]}" --service-account="$SA" --scopes=cloud-platform \
        --metadata-from-file="$files" --metadata="$md"
}

up() {
    local i name subnet
    subnet=$(subnet_name)
    # network
    if [ -z "$SUBNET" ]; then
        run "${G[@]}" compute networks subnets create "$subnet" --network="$NETWORK" --region="$REGION" \
            --range="$SUBNET_CIDR" --enable-private-ip-google-access
    fi
    if [ "$CREATE_NAT" = yes ]; then
        run "${G[@]}" compute routers create "$PREFIX-router" --network="$NETWORK" --region="$REGION"
        run "${G[@]}" compute routers nats create "$PREFIX-nat" --router="$PREFIX-router" --region="$REGION" \
            --auto-allocate-nat-external-ips --nat-custom-subnet-ip-ranges="$subnet"
    fi
    for i in 0 1 2; do
        run "${G[@]}" compute addresses create "$(node_name "$i")-ip" --region="$REGION" --subnet="$subnet" \
            --addresses="${NODE_IPS[$i]}"
    done
    run "${G[@]}" compute addresses create "$PREFIX-writer-ip" --region="$REGION" --subnet="$subnet" \
        --addresses="$WRITER_IP"
    run "${G[@]}" compute addresses create "$PREFIX-reader-ip" --region="$REGION" --subnet="$subnet" \
        --addresses="$READER_IP"

    # firewall: Raft and 5432 between the VMs; 8008 from health checkers and VMs
    run "${G[@]}" compute firewall-rules create "$PREFIX-cluster" --network="$NETWORK" --direction=INGRESS \
        --allow="tcp:$RAFT_PORT,tcp:5432" --source-tags="$TAG" --target-tags="$TAG"
    run "${G[@]}" compute firewall-rules create "$PREFIX-api-health-checks" --network="$NETWORK" \
        --direction=INGRESS --allow=tcp:8008 --source-ranges="$HEALTH_CHECK_RANGES" --target-tags="$TAG"
    run "${G[@]}" compute firewall-rules create "$PREFIX-api-nodes" --network="$NETWORK" --direction=INGRESS \
        --allow=tcp:8008 --source-tags="$TAG" --target-tags="$TAG"
    if [ "${#CLIENT_TAGS[@]}" -gt 0 ] || [ "${#CLIENT_RANGES[@]}" -gt 0 ]; then
        local client_args=()
        [ "${#CLIENT_TAGS[@]}" -gt 0 ] && client_args+=(--source-tags="$(join , "${CLIENT_TAGS[@]}")")
        [ "${#CLIENT_RANGES[@]}" -gt 0 ] && client_args+=(--source-ranges="$(join , "${CLIENT_RANGES[@]}")")
        run "${G[@]}" compute firewall-rules create "$PREFIX-pg-clients" --network="$NETWORK" \
            --direction=INGRESS --allow=tcp:5432 "${client_args[@]}" --target-tags="$TAG"
    fi
    if [ "$IAP_SSH" = yes ]; then
        run "${G[@]}" compute firewall-rules create "$PREFIX-ssh-iap" --network="$NETWORK" --direction=INGRESS \
            --allow=tcp:22 --source-ranges="$IAP_RANGE" --target-tags="$TAG"
    fi

    # secrets and the VMs' service account
    run "${G[@]}" iam service-accounts create "$PREFIX-pgwarden" --display-name="pgwarden VMs ($PREFIX)"
    for s in "${SECRETS[@]}"; do
        if $dry; then
            echo "printf %s '<generated>' | gcloud --project=$PROJECT --quiet secrets create $PREFIX-$s-password --replication-policy=automatic --data-file=-"
        else
            head -c 24 /dev/urandom | base64 | tr -d '/+=\n' |
                "${G[@]}" secrets create "$PREFIX-$s-password" --replication-policy=automatic --data-file=-
        fi
        run "${G[@]}" secrets add-iam-policy-binding "$PREFIX-$s-password" \
            --member="serviceAccount:$SA" --role=roles/secretmanager.secretAccessor
    done
    if [[ "$DEB_URL" == gs://* ]]; then
        local bucket=${DEB_URL#gs://}
        bucket=${bucket%%/*}
        run "${G[@]}" storage buckets add-iam-policy-binding "gs://$bucket" \
            --member="serviceAccount:$SA" --role=roles/storage.objectViewer
    fi
    if [ "$OPS_AGENT" = yes ]; then
        local role
        for role in "${TELEMETRY_ROLES[@]}"; do
            run "${G[@]}" projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$SA" \
                --role="$role" --condition=None
        done
    fi

    # the data disks, snapshotted daily; kept by `down` unless DELETE_DATA=yes
    run "${G[@]}" compute resource-policies create snapshot-schedule "$PREFIX-data-snapshots" \
        --region="$REGION" --daily-schedule --start-time="$SNAPSHOT_START_TIME" \
        --max-retention-days="$SNAPSHOT_RETENTION_DAYS" --on-source-disk-delete=keep-auto-snapshots \
        --storage-location="$REGION"
    for i in 0 1 2; do
        name=$(node_name "$i")
        if ! $dry && "${G[@]}" compute disks describe "$name-data" --zone="${ZONES[$i]}" >/dev/null 2>&1; then
            echo "$0: keeping the existing data disk $name-data (and what it holds)" >&2
        else
            run "${G[@]}" compute disks create "$name-data" --zone="${ZONES[$i]}" --type="$DATA_DISK_TYPE" \
                --size="${DATA_DISK_SIZE_GB}GB" --labels="pgwarden-node=$name"
        fi
        run "${G[@]}" compute disks add-resource-policies "$name-data" --zone="${ZONES[$i]}" \
            --resource-policies="$PREFIX-data-snapshots"
    done

    # the three VMs, one per zone, each in its own unmanaged instance group
    for i in 0 1 2; do
        name=$(node_name "$i")
        create_vm "$i"
        run "${G[@]}" compute instance-groups unmanaged create "$name-ig" --zone="${ZONES[$i]}"
        run "${G[@]}" compute instance-groups unmanaged add-instances "$name-ig" --zone="${ZONES[$i]}" \
            --instances="$name"
    done

    # health checks on the Patroni-compatible endpoints: every 1 s, 1 s timeout,
    # healthy after 1 success, unhealthy after 2 failures
    local role path
    for role in primary replica; do
        path=/$role
        run "${G[@]}" compute health-checks create http "$PREFIX-$role" --region="$REGION" --port=8008 \
            --request-path="$path" --check-interval=1s --timeout=1s --healthy-threshold=1 \
            --unhealthy-threshold=2
    done

    # internal passthrough TCP load balancers: writer (/primary), reader (/replica)
    local lb hc ip extra
    for lb in writer reader; do
        if [ "$lb" = writer ]; then
            hc=primary
            extra=(--connection-draining-timeout=0 --connection-persistence-on-unhealthy-backends=NEVER_PERSIST)
            [ "$WRITER_DROP_IF_UNHEALTHY" = yes ] && extra+=(--drop-traffic-if-unhealthy)
        else
            hc=replica
            extra=(--connection-draining-timeout=10)
        fi
        run "${G[@]}" compute backend-services create "$PREFIX-$lb" --region="$REGION" \
            --load-balancing-scheme=INTERNAL --protocol=TCP --health-checks="$PREFIX-$hc" \
            --health-checks-region="$REGION" "${extra[@]}"
        for i in 0 1 2; do
            run "${G[@]}" compute backend-services add-backend "$PREFIX-$lb" --region="$REGION" \
                --instance-group="$(node_name "$i")-ig" --instance-group-zone="${ZONES[$i]}"
        done
        if [ "$lb" = writer ]; then ip=$WRITER_IP; else ip=$READER_IP; fi
        run "${G[@]}" compute forwarding-rules create "$PREFIX-$lb" --region="$REGION" \
            --load-balancing-scheme=INTERNAL --network="$NETWORK" --subnet="$subnet" \
            --address="$ip" --ip-protocol=TCP --ports=5432 \
            --backend-service="$PREFIX-$lb" --backend-service-region="$REGION"
    done
}

down() {
    local i lb role s name
    for lb in writer reader; do
        run_ok "${G[@]}" compute forwarding-rules delete "$PREFIX-$lb" --region="$REGION"
        run_ok "${G[@]}" compute backend-services delete "$PREFIX-$lb" --region="$REGION"
    done
    for role in primary replica; do
        run_ok "${G[@]}" compute health-checks delete "$PREFIX-$role" --region="$REGION"
    done
    for i in 0 1 2; do
        name=$(node_name "$i")
        run_ok "${G[@]}" compute instance-groups unmanaged delete "$name-ig" --zone="${ZONES[$i]}"
        run_ok "${G[@]}" compute instances update "$name" --zone="${ZONES[$i]}" --no-deletion-protection
        # the boot disk goes with the VM; the data disk (auto-delete=no) stays
        run_ok "${G[@]}" compute instances delete "$name" --zone="${ZONES[$i]}" --keep-disks=data
        run_ok "${G[@]}" compute addresses delete "$name-ip" --region="$REGION"
    done
    if [ "$DELETE_DATA" = yes ]; then
        for i in 0 1 2; do
            run_ok "${G[@]}" compute disks delete "$(node_name "$i")-data" --zone="${ZONES[$i]}"
        done
        # the snapshots taken so far stay (on-source-disk-delete=keep-auto-snapshots)
        run_ok "${G[@]}" compute resource-policies delete "$PREFIX-data-snapshots" --region="$REGION"
    else
        echo "$0: kept: the data disks $PREFIX-{1,2,3}-data, their snapshot schedule and snapshots" \
            "(DELETE_DATA=yes deletes the disks and the schedule)" >&2
    fi
    if [ "$OPS_AGENT" = yes ]; then
        for role in "${TELEMETRY_ROLES[@]}"; do
            run_ok "${G[@]}" projects remove-iam-policy-binding "$PROJECT" \
                --member="serviceAccount:$SA" --role="$role" --condition=None
        done
    fi
    run_ok "${G[@]}" compute addresses delete "$PREFIX-writer-ip" "$PREFIX-reader-ip" --region="$REGION"
    for s in cluster api-health-checks api-nodes pg-clients ssh-iap; do
        run_ok "${G[@]}" compute firewall-rules delete "$PREFIX-$s"
    done
    for s in "${SECRETS[@]}"; do
        run_ok "${G[@]}" secrets delete "$PREFIX-$s-password"
    done
    run_ok "${G[@]}" iam service-accounts delete "$SA"
    if [ "$CREATE_NAT" = yes ]; then
        run_ok "${G[@]}" compute routers nats delete "$PREFIX-nat" --router="$PREFIX-router" --region="$REGION"
        run_ok "${G[@]}" compute routers delete "$PREFIX-router" --region="$REGION"
    fi
    if [ -z "$SUBNET" ]; then
        run_ok "${G[@]}" compute networks subnets delete "$(subnet_name)" --region="$REGION"
    fi
}

# --- roll: replace the VMs one at a time ---------------------------------------------

node_index() {
    local i
    for i in 0 1 2; do
        [ "$(node_name "$i")" = "$1" ] && { echo "$i"; return 0; }
    done
    return 1
}

# The `pgwarden ctl` command line (without its arguments): CTL, or IAP SSH to
# the first node other than $1 (the node being replaced is never asked).
ctl_argv() {
    local i name
    if [ -n "$CTL" ]; then
        read -r -a CTL_ARGV <<<"$CTL"
        return 0
    fi
    for i in 0 1 2; do
        name=$(node_name "$i")
        [ "$name" = "${1:-}" ] && continue
        CTL_ARGV=("${G[@]}" compute ssh "$name" --zone="${ZONES[$i]}" --tunnel-through-iap --
                  sudo pgwarden ctl -c /etc/pgwarden/pgwarden.yml)
        return 0
    done
}

# "NAME ROLE STATE LAG_MB" per member, from `pgwarden ctl -f json list`
# (Role with _ for spaces: Leader, Replica, Sync_Standby; lag empty if unknown).
members() {
    local out
    ctl_argv "${1:-}"
    out=$("${CTL_ARGV[@]}" -f json list) || return 1
    printf '%s\n' "$out" | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    lag = m.get("Replay Lag", m.get("Receive Lag"))
    print(m.get("Member", "?"), m.get("Role", "?").replace(" ", "_"), m.get("State", "?"),
          "" if lag is None else lag)'
}

# Healthy enough to take one node away: every node of this deployment is a
# member, one leader runs, every other member streams within ROLL_MAX_LAG_MB.
# With $1, that node must not be the leader. Prints why not.
cluster_ready() {
    local not_leader=${1:-} list i name role state lag leaders=0
    list=$(members "$not_leader") || { echo "pgwarden ctl list failed"; return 1; }
    for i in 0 1 2; do
        name=$(node_name "$i")
        grep -q "^$name " <<<"$list" || { echo "$name is not a member (yet)"; return 1; }
    done
    while read -r name role state lag; do
        case "$role" in
            Leader)
                leaders=$((leaders + 1))
                [ "$state" = running ] || { echo "leader $name is $state"; return 1; }
                [ "$name" != "$not_leader" ] || { echo "$name still leads"; return 1; } ;;
            *)
                [ "$state" = streaming ] || { echo "$name is $state"; return 1; }
                if [ -z "$lag" ] || [ "$lag" -gt "$ROLL_MAX_LAG_MB" ]; then
                    echo "$name lags ${lag:-?} MB (more than $ROLL_MAX_LAG_MB)"
                    return 1
                fi ;;
        esac
    done <<<"$list"
    [ "$leaders" -eq 1 ] || { echo "$leaders leaders"; return 1; }
}

reader_healthy() {
    "${G[@]}" compute backend-services get-health "$PREFIX-reader" --region="$REGION" --format=json |
        python3 -c '
import json, sys
node = sys.argv[1]
ok = any(h.get("healthState") == "HEALTHY" and h.get("instance", "").endswith("/instances/" + node)
         for g in json.load(sys.stdin) for h in g.get("status", {}).get("healthStatus", []))
sys.exit(0 if ok else 1)' "$1"
}

# wait_for WHAT CHECK [ARG...]: until CHECK succeeds, at most ROLL_TIMEOUT_S
# (a dry run prints the wait instead).
wait_for() {
    local what=$1 deadline=$((SECONDS + ROLL_TIMEOUT_S)) why=""
    shift
    if $dry; then
        echo "# wait (at most ${ROLL_TIMEOUT_S}s) until $what"
        return 0
    fi
    echo "$0: roll: waiting until $what" >&2
    until why=$("$@"); do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$0: roll: stopped: not $what within ${ROLL_TIMEOUT_S}s (${why:-no answer})" >&2
            exit 1
        fi
        sleep "$ROLL_POLL_S"
    done
}

replace_vm() {
    local i=$1 name zone
    name=$(node_name "$i")
    zone=${ZONES[$i]}
    # deletion protection guards against exactly this: lifted for this VM only
    run "${G[@]}" compute instances update "$name" --zone="$zone" --no-deletion-protection
    if [ "$ROLL_WITH" = terraform ]; then
        run terraform -chdir="$TF_DIR" apply -auto-approve "${TF_ARGS[@]}" \
            -replace="google_compute_instance.node[\"$name\"]" -target="google_compute_instance.node[\"$name\"]"
        # the deleted VM left its instance group: a second apply puts it back
        run terraform -chdir="$TF_DIR" apply -auto-approve "${TF_ARGS[@]}" \
            -target="google_compute_instance_group.node[\"$name\"]"
    else
        run "${G[@]}" compute instances delete "$name" --zone="$zone" --keep-disks=data
        create_vm "$i"
        run "${G[@]}" compute instance-groups unmanaged add-instances "$name-ig" --zone="$zone" \
            --instances="$name"
    fi
}

roll() {
    local targets=("$@") order=() name i list leader="" devices why
    [ "${#targets[@]}" -gt 0 ] || targets=("$(node_name 0)" "$(node_name 1)" "$(node_name 2)")
    for name in "${targets[@]}"; do
        node_index "$name" >/dev/null || { echo "$0: roll: $name is not one of this deployment's nodes" >&2; exit 2; }
        i=$(node_index "$name")
        # never replace a VM whose data would go with it
        devices=$("${G[@]}" compute instances describe "$name" --zone="${ZONES[$i]}" \
            --format='value(disks[].deviceName)') || { echo "$0: roll: cannot describe $name" >&2; exit 1; }
        if ! tr ';,' '\n' <<<"$devices" | grep -qxF "$DATA_DEVICE"; then
            echo "$0: roll: $name has no disk $DATA_DEVICE: replacing it would lose its data" \
                "(move it to a data disk first: README.md)" >&2
            exit 1
        fi
    done
    if $dry && ! why=$(cluster_ready ""); then
        echo "# the cluster is not healthy now: $why"
    fi
    list=$(members "") || { echo "$0: roll: pgwarden ctl list failed" >&2; exit 1; }
    leader=$(awk '$2 == "Leader" { print $1 }' <<<"$list")
    # the replicas first, the primary last: one switchover in all
    for name in "${targets[@]}"; do
        [ "$name" = "$leader" ] || order+=("$name")
    done
    for name in "${targets[@]}"; do
        [ "$name" != "$leader" ] || order+=("$name")
    done
    for name in "${order[@]}"; do
        i=$(node_index "$name")
        echo "# roll $name"
        wait_for "the cluster is healthy" cluster_ready ""
        if ! $dry; then
            list=$(members "$name") || { echo "$0: roll: pgwarden ctl list failed" >&2; exit 1; }
            leader=$(awk '$2 == "Leader" { print $1 }' <<<"$list")
        fi
        if [ "$name" = "$leader" ]; then
            ctl_argv "$name"
            run "${CTL_ARGV[@]}" switchover --leader "$name" --force
            wait_for "another node leads and $name streams" cluster_ready "$name"
        fi
        replace_vm "$i"
        wait_for "$name streams again within ${ROLL_MAX_LAG_MB} MB" cluster_ready ""
        wait_for "$name is healthy behind $PREFIX-reader" reader_healthy "$name"
    done
    echo "# rolled: ${order[*]}"
}

if ! $dry && ! command -v gcloud >/dev/null 2>&1; then
    echo "$0: gcloud not found (install the Google Cloud CLI, or use --dry-run)" >&2
    exit 2
fi
"$action" "$@"
