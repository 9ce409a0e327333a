#!/bin/bash
# The deploy/gcp Terraform configuration as plain gcloud commands, for those
# who do not use Terraform. Same resources, same names, same settings.
#
#   PROJECT=my-project DEB_URL=gs://my-bucket/pgwarden_0.1.0_amd64.deb \
#       deploy/gcp/gcloud.sh [--dry-run] up|down
#
# --dry-run prints the commands (one per line, shell-quoted; passwords shown
# as <generated>) and runs nothing. `up` creates, `down` deletes everything
# `up` created (the subnet only if it created it).
#
# Settings (environment, defaults in brackets):
#   PROJECT (required)       DEB_URL (required: gs://BUCKET/....deb or https://....deb)
#   REGION [europe-west1]    ZONES ["europe-west1-b europe-west1-c europe-west1-d"]
#   PREFIX [pg]              SCOPE [main]
#   NETWORK [default]        SUBNET [empty: create PREFIX-subnet]
#   SUBNET_CIDR [10.20.0.0/24]   (with SUBNET: that subnet's range, for pg_hba.conf)
#   NODE_IPS ["10.20.0.11 10.20.0.12 10.20.0.13"]   (free addresses of the subnet)
#   WRITER_IP [10.20.0.5]    READER_IP [10.20.0.6]
#   MACHINE_TYPE [e2-standard-2]  DISK_SIZE_GB [50]  DISK_TYPE [pd-ssd]
#   IMAGE_PROJECT [debian-cloud]  IMAGE_FAMILY [debian-12]
#   PG_VERSION [15]          RAFT_PORT [5010]    TAG [pgwarden]
#   CLIENT_TAGS [pg-client]  CLIENT_RANGES []    HBA_CLIENT_CIDRS [10.0.0.0/8]
#   CREATE_NAT [yes]         IAP_SSH [yes]       WRITER_DROP_IF_UNHEALTHY [yes]
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
    up|down) ;;
    *) echo "usage: $0 [--dry-run] up|down   (settings: see the top of this file)" >&2; exit 2 ;;
esac

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
DISK_SIZE_GB=${DISK_SIZE_GB:-50}
DISK_TYPE=${DISK_TYPE:-pd-ssd}
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
if [ "$action" = up ]; then
    [[ "$DEB_URL" =~ ^(gs://[^/]+/.+|https://.+)\.deb$ ]] ||
        { echo "$0: DEB_URL must be gs://BUCKET/PATH.deb or https://HOST/PATH.deb" >&2; exit 2; }
fi

# Where Google's health-check probes come from (health-check-concepts).
HEALTH_CHECK_RANGES=35.191.0.0/16,130.211.0.0/22
IAP_RANGE=35.235.240.0/20
SECRETS=(superuser replication rewind restapi raft)
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

up() {
    local i j name partners subnet
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

    # the three VMs, one per zone, each in its own unmanaged instance group
    for i in 0 1 2; do
        name=$(node_name "$i")
        partners=()
        for j in 0 1 2; do
            [ "$j" -eq "$i" ] || partners+=("${NODE_IPS[$j]}")
        done
        # ^|^ makes | the separator, so that values may hold commas
        local md="^|^pgwarden-name=$name|pgwarden-scope=$SCOPE|pgwarden-self-ip=${NODE_IPS[$i]}"
        md+="|pgwarden-partner-ips=$(join , "${partners[@]}")|pgwarden-raft-port=$RAFT_PORT"
        md+="|pgwarden-pg-version=$PG_VERSION|pgwarden-deb-url=$DEB_URL|pgwarden-secret-prefix=$PREFIX"
        md+="|pgwarden-subnet-cidr=$SUBNET_CIDR|pgwarden-client-cidrs=$(join , "${HBA_CLIENT_CIDRS[@]}")"
        md+="|pgwarden-zone=${ZONES[$i]}|enable-oslogin=TRUE"
        run "${G[@]}" compute instances create "$name" --zone="${ZONES[$i]}" --machine-type="$MACHINE_TYPE" \
            --subnet="$subnet" --private-network-ip="${NODE_IPS[$i]}" --no-address --tags="$TAG" \
            --image-family="$IMAGE_FAMILY" --image-project="$IMAGE_PROJECT" \
            --boot-disk-size="${DISK_SIZE_GB}GB" --boot-disk-type="$DISK_TYPE" \
            --service-account="$SA" --scopes=cloud-platform \
            --metadata-from-file="startup-script=$here/startup.sh,pgwarden-render-config=$here/render-config.sh" \
            --metadata="$md"
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
        run_ok "${G[@]}" compute instances delete "$name" --zone="${ZONES[$i]}"
        run_ok "${G[@]}" compute addresses delete "$name-ip" --region="$REGION"
    done
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

if ! $dry && ! command -v gcloud >/dev/null 2>&1; then
    echo "$0: gcloud not found (install the Google Cloud CLI, or use --dry-run)" >&2
    exit 2
fi
"$action"
