#!/bin/sh
# stonith-reset.sh: pgwarden's postgresql.pre_promote on GCP. Before this node
# promotes, reset the VM of the member that may still write as primary (a VM
# paused by the hypervisor, or cut off, whose pgwarden cannot fence it in
# time), through the Compute Engine API, and wait until the reset operation is
# DONE. Exit 0 only then: any other exit makes pgwarden give the role back
# without promoting (docs/hooks.md), and the controller tries again after ttl.
#
# Whom to reset: pgwarden passes PGWARDEN_FORMER_PRIMARY (the member that last
# ran as primary) and PGWARDEN_PREVIOUS_HOLDER (the holder of the epoch
# before, when it may have promoted without confirming it); usually the same
# member. This node (PGWARDEN_MEMBER) is never reset. Both unknown (a cluster
# state written by an older pgwarden): refuse, unless --allow-unknown.
#
# Where it runs: member name -> "instance zone" from the map, a file of lines
#     <member> <zone> [<instance>]      (# comments; instance defaults to member;
#                                        ";" also ends a line)
# given by --map FILE (or STONITH_MAP), else read from this VM's metadata
# attribute pgwarden-stonith-map (same format; deploy/gcp/main.tf sets it:
# the VMs are named after their members). The project is --project, else the
# metadata server's project-id. The access token is the VM service account's,
# from the metadata server; the account needs compute.instances.reset and
# compute.zoneOperations.get on the node VMs (deploy/gcp/README.md).
#
# Options (each also an environment variable):
#   --map FILE         STONITH_MAP
#   --project ID       STONITH_PROJECT
#   --timeout SECONDS  STONITH_TIMEOUT (default 40; keep it below
#                      postgresql.pg_ctl_timeout, 60 by default, the hook's deadline)
#   --api URL          STONITH_COMPUTE_API (default https://compute.googleapis.com/compute/v1)
#   --metadata URL     STONITH_METADATA_URL (default http://metadata.google.internal/computeMetadata/v1)
#   --allow-unknown    STONITH_ALLOW_UNKNOWN=1: promote when pgwarden does not know the former primary
# Needs curl. Output goes to pgwarden's log ("[hooks] pre_promote: ...").
set -eu

api=${STONITH_COMPUTE_API:-https://compute.googleapis.com/compute/v1}
md=${STONITH_METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}
map=${STONITH_MAP:-}
project=${STONITH_PROJECT:-}
timeout=${STONITH_TIMEOUT:-40}
allow_unknown=${STONITH_ALLOW_UNKNOWN:-0}

say() { printf 'stonith: %s\n' "$*" >&2; }
die() { say "$* -- not promoting"; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --map) map=${2:?--map needs a file}; shift 2 ;;
        --project) project=${2:?--project needs an id}; shift 2 ;;
        --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
        --api) api=${2:?--api needs a URL}; shift 2 ;;
        --metadata) md=${2:?--metadata needs a URL}; shift 2 ;;
        --allow-unknown) allow_unknown=1; shift ;;
        *) die "unknown argument: $1" ;;
    esac
done
case $timeout in
    '' | *[!0-9]*) die "--timeout must be whole seconds, not '$timeout'" ;;
esac
[ "$timeout" -ge 1 ] || die "--timeout must be at least 1"
command -v curl >/dev/null 2>&1 || die "curl is not installed"

self=${PGWARDEN_MEMBER:-}
former=${PGWARDEN_FORMER_PRIMARY:-}
previous=${PGWARDEN_PREVIOUS_HOLDER:-}
deadline=$(($(date +%s) + timeout))

left() { echo $((deadline - $(date +%s))); }

# curl bounded by what is left of the deadline (at most 10 s a request).
req() {
    t=$(left)
    [ "$t" -gt 0 ] || return 28
    [ "$t" -le 10 ] || t=10
    curl -sS --connect-timeout "$t" --max-time "$t" "$@"
}

metadata() {
    req -f -H 'Metadata-Flavor: Google' "$md/$1"
}

# the value of a top-level string field of a JSON object: "key": "value"
json_str() {
    sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1
}

targets=
for m in $former $previous; do
    if [ -z "$m" ] || [ "$m" = "$self" ]; then
        continue
    fi
    case " $targets " in
        *" $m "*) ;;
        *) targets="$targets $m" ;;
    esac
done
if [ -z "$former" ] && [ -z "$previous" ]; then
    [ "$allow_unknown" = 1 ] || die "pgwarden does not know the former primary (PGWARDEN_FORMER_PRIMARY is empty)"
    say "former primary unknown; promoting without a reset (--allow-unknown)"
    exit 0
fi
if [ -z "$targets" ]; then
    say "the former primary is this member ($self): nothing to reset"
    exit 0
fi

if [ -n "$map" ]; then
    [ -r "$map" ] || die "cannot read the map $map"
    maptext=$(cat "$map")
else
    maptext=$(metadata instance/attributes/pgwarden-stonith-map) ||
        die "no --map and no metadata attribute pgwarden-stonith-map"
fi
if [ -z "$project" ]; then
    project=$(metadata project/project-id) || die "cannot read the project id from the metadata server"
fi
token=$(metadata instance/service-accounts/default/token | json_str access_token) ||
    die "cannot get an access token from the metadata server"
[ -n "$token" ] || die "the metadata server returned no access token"

for m in $targets; do
    line=$(printf '%s\n' "$maptext" | tr ';' '\n' | sed 's/#.*//' | awk -v m="$m" '$1 == m { print; exit }')
    [ -n "$line" ] || die "$m is not in the map"
    # shellcheck disable=SC2086  # split the map line into its fields
    set -- $line
    zone=${2:-}
    inst=${3:-$m}
    [ -n "$zone" ] || die "no zone for $m in the map"
    base="$api/projects/$project/zones/$zone"
    say "resetting $inst (member $m, zone $zone, project $project)"
    body=$(req -X POST -H "Authorization: Bearer $token" -H 'Content-Length: 0' \
        -w '\n%{http_code}' "$base/instances/$inst/reset") || die "reset of $inst: request failed"
    code=$(printf '%s\n' "$body" | tail -n 1)
    case $code in
        2??) ;;
        *) die "reset of $inst refused: HTTP $code: $(printf '%s\n' "$body" | sed '$d' | tr -s '[:space:]' ' ' | cut -c1-300)" ;;
    esac
    op=$(printf '%s\n' "$body" | sed '$d' | json_str name)
    [ -n "$op" ] || die "reset of $inst: no operation name in the answer"
    status=
    while [ "$status" != DONE ]; do
        [ "$(left)" -gt 0 ] || die "reset of $inst: operation $op not DONE within ${timeout}s"
        opjson=$(req -f -H "Authorization: Bearer $token" "$base/operations/$op") || {
            sleep 1
            continue
        }
        status=$(printf '%s\n' "$opjson" | json_str status)
        [ "$status" = DONE ] || sleep 1
    done
    if printf '%s\n' "$opjson" | grep -q '"error"'; then
        die "reset of $inst failed: $(printf '%s\n' "$opjson" | tr -s '[:space:]' ' ' | cut -c1-300)"
    fi
    say "reset of $inst done (operation $op)"
done
exit 0
