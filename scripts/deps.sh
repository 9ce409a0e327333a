#!/bin/sh
# Install, as root, every Debian package that pgwarden's build, tests and demo
# need. Does nothing when all are present; runs `apt-get update` only when
# something is missing.
set -eu

PKGS="build-essential cmake pkg-config
libraft-dev libuv1-dev libyaml-dev libpq-dev libjansson-dev libcmocka-dev libssl-dev
libsystemd-dev
node-llhttp
postgresql-15 postgresql-client-15
python3 python3-pytest python3-psycopg2 python3-yaml
haproxy nftables iptables iproute2 wrk procps util-linux faketime
debootstrap shellcheck logrotate
pgbackrest
clang libclang-rt-14-dev"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# deploy/gcp checks parse Terraform with an npm package (make deploy-deps).
# Any Node.js with npm will do (Debian's, or NodeSource's which bundles npm).
if ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi

# promtool checks the PromQL of deploy/gcp's alerts and dashboards. It comes
# in Debian's prometheus package, whose installation would also start a
# Prometheus server on every interface: take only the program, into
# build/tools/bin (the Makefile puts it on the tests' PATH).
promtool_tool() {
    [ -x build/tools/bin/promtool ] && return 0
    command -v promtool >/dev/null 2>&1 && return 0
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
        dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
        mkdir -p build/tools/bin
        cp "$tmp/x/usr/bin/promtool" build/tools/bin/promtool
        echo "make deps: promtool taken from Debian's prometheus package into build/tools/bin"
    else
        echo "make deps: cannot download Debian's prometheus package (promtool); the PromQL checks will be skipped" >&2
    fi
    rm -rf "$tmp"
}

if [ -z "$missing" ]; then
    promtool_tool
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "make deps: missing Debian packages:$missing" >&2
    echo "make deps: run as root (or install them) first" >&2
    exit 1
fi

echo "make deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
promtool_tool
