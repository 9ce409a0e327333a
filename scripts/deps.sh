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
clang libclang-rt-14-dev
patroni etcd-server etcd-client pgbackrest"

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

# patroni and etcd-server (the migration test, tests/e2e/test_migrate_patroni.py,
# runs its own Patroni and etcd on free ports) ship services: etcd-server's
# would start etcd on 127.0.0.1:2379/2380 at once and at every boot, which
# would take ports from the tests and be a DCS nobody configured. Keep the
# maintainer scripts from starting anything while we install (policy-rc.d
# exit 101 = "action forbidden", honoured by invoke-rc.d and
# deb-systemd-invoke), unless the machine already has such a policy (Docker
# images do); then disable whatever the packages enabled.
own_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# scripts/deps.sh: no service starts during this install\nexit 101\n' \
        > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
fi
remove_policy() {
    if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    own_policy=""
}
trap remove_policy EXIT INT TERM

apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
remove_policy

# Not enabled at boot either (the packages enable etcd.service, its alias
# etcd2.service and patroni.service). systemctl disable only edits symlinks,
# so it works whether or not systemd runs (containers); --now stops a running
# one only where systemd runs. update-rc.d does the same for sysvinit.
for unit in etcd patroni; do
    if [ -e "/lib/systemd/system/$unit.service" ] && command -v systemctl >/dev/null 2>&1; then
        if [ -d /run/systemd/system ]; then
            systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
        else
            systemctl disable "$unit.service" >/dev/null 2>&1 || true
        fi
    fi
    if [ -e "/etc/init.d/$unit" ]; then
        update-rc.d "$unit" disable >/dev/null 2>&1 || true
    fi
done
# etcd's and Patroni's default ports (client, peer, REST API): nothing of
# theirs may listen there now.
if command -v ss >/dev/null 2>&1 &&
   ss -ltnH '( sport = :2379 or sport = :2380 or sport = :8008 )' | grep -q .; then
    echo "make deps: warning: something listens on 2379, 2380 or 8008 after the install:" >&2
    ss -ltnp '( sport = :2379 or sport = :2380 or sport = :8008 )' >&2
fi
promtool_tool
