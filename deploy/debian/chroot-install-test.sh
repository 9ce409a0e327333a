#!/bin/sh
# Install a pgwarden .deb into a clean Debian 12 (bookworm) root and run it
# there: the acceptance test of `make deb` (tests/e2e/test_deb.py runs it).
#
#   deploy/debian/chroot-install-test.sh PACKAGE.deb [CACHE_DIR]
#
# 1. A minimal bookworm root (debootstrap --variant=minbase) is built once:
#    the downloaded packages are kept as CACHE_DIR/bookworm-minbase.tgz
#    (--make-tarball, then --unpack-tarball) and the finished root as
#    CACHE_DIR/bookworm-minbase-root.tar; later runs only unpack the latter.
# 2. A fresh copy of that root gets the package's dependencies from Debian's
#    mirror with apt (lists and .debs cached in CACHE_DIR/apt), then
#    `dpkg -i PACKAGE.deb`, then `pgwarden version` and
#    `pgwarden validate -c /etc/pgwarden/pgwarden.yml.example`, plus checks
#    of what the maintainer scripts did; then systemd (the package, not a
#    running manager) and logrotate from Debian check the installed unit
#    (`systemd-analyze verify`, and `systemd-analyze security`'s exposure
#    score, printed) and the logrotate snippet (`logrotate --debug`).
# The chroot runs in its own mount namespace (unshare), so /proc mounted for
# it disappears with it; the copied root is removed at exit. Needs root,
# debootstrap, unshare, and network access to $DEBIAN_MIRROR.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 PACKAGE.deb [CACHE_DIR]" >&2
    exit 2
fi
deb=$(realpath "$1")
cache=${2:-build/deb-test}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

[ -f "$deb" ] || { echo "$0: no such package: $deb" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: must run as root (debootstrap, chroot)" >&2; exit 2; }
for tool in debootstrap unshare chroot dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$0: $tool not found (make deps)" >&2; exit 2; }
done

mkdir -p "$cache/apt/lists" "$cache/apt/archives"
cache=$(realpath "$cache")
work=$(mktemp -d /tmp/pgw-deb-test.XXXXXX)
# shellcheck disable=SC2317  # called by the trap
cleanup() {
    # nothing is mounted in this namespace: the mounts lived in unshare's
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

base_tar="$cache/$suite-minbase-root.tar"
if [ ! -s "$base_tar" ]; then
    debs="$cache/$suite-minbase.tgz"
    if [ ! -s "$debs" ]; then
        echo "== debootstrap: downloading $suite (minbase) from $mirror"
        debootstrap --variant=minbase --make-tarball="$work/debs.tgz" "$suite" "$work/mk" "$mirror" \
            >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
        mv "$work/debs.tgz" "$debs"
        rm -rf "$work/mk"
    fi
    echo "== debootstrap: installing $suite (minbase) from $debs"
    debootstrap --variant=minbase --unpack-tarball="$debs" "$suite" "$work/base" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    tar -C "$work/base" -cf "$work/base.tar" .
    mv "$work/base.tar" "$base_tar"
    rm -rf "$work/base"
fi

root="$work/root"
mkdir "$root"
tar -C "$root" -xf "$base_tar"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"
cp -a "$cache/apt/lists/." "$root/var/lib/apt/lists/"
cp -a "$cache/apt/archives/." "$root/var/cache/apt/archives/"
# Depends without versions and with the first of each alternative, for apt
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' |
    grep -v '^$' | tr '\n' ' ')
pkgfile=/tmp/$(basename "$deb")

cat >"$root/tmp/inside.sh" <<INSIDE
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "== apt-get install (dependencies): $deps"
apt-get update -q >/tmp/apt-update.log 2>&1 || { cat /tmp/apt-update.log; exit 1; }
apt-get install -y -q --no-install-recommends $deps >/tmp/apt-install.log 2>&1 ||
    { tail -30 /tmp/apt-install.log; exit 1; }
echo "== dpkg -i $pkgfile"
dpkg -i "$pkgfile"
echo "== dpkg -s pgwarden"
dpkg -s pgwarden | grep -E '^(Status|Version):'
echo "== pgwarden version"
pgwarden version
echo "== pgwarden validate -c /etc/pgwarden/pgwarden.yml.example"
pgwarden validate --offline -c /etc/pgwarden/pgwarden.yml.example 2>/tmp/validate.err
echo "validate: exit \$? stderr: \$(cat /tmp/validate.err)"
echo "== the documented copy, validated as the service user"
install -o postgres -g postgres -m 0600 /etc/pgwarden/pgwarden.yml.example /etc/pgwarden/pgwarden.yml
runuser -u postgres -- pgwarden validate --offline -c /etc/pgwarden/pgwarden.yml 2>/tmp/validate.err
echo "validate-as-postgres: exit \$? stderr: \$(cat /tmp/validate.err)"
echo "== installed files"
for f in /usr/bin/pgwarden /lib/systemd/system/pgwarden.service /etc/pgwarden/pgwarden.yml.example \
         /usr/share/doc/pgwarden/README.md /usr/share/doc/pgwarden/copyright \
         /usr/share/doc/pgwarden/docs/configuration.md; do
    echo "file \$f \$(stat -c '%U:%G %a' "\$f")"
done
echo "dir /etc/pgwarden \$(stat -c '%U:%G %a' /etc/pgwarden)"
echo "user \$(getent passwd postgres)"
echo "== udev rule"
echo "file /lib/udev/rules.d/60-pgwarden-watchdog.rules \$(stat -c '%U:%G %a' /lib/udev/rules.d/60-pgwarden-watchdog.rules)"
echo "== systemd and logrotate from Debian, to check the unit and the snippet"
apt-get install -y -q --no-install-recommends systemd logrotate >/tmp/apt-tools.log 2>&1 ||
    { tail -30 /tmp/apt-tools.log; exit 1; }
echo "== systemd-analyze verify pgwarden.service"
systemd-analyze verify /lib/systemd/system/pgwarden.service >/tmp/verify.out 2>&1 && vrc=0 || vrc=\$?
echo "verify: exit \$vrc output: \$(tr '\n' '|' </tmp/verify.out)"
echo "== systemd-analyze security pgwarden.service"
systemd-analyze security --offline=true pgwarden.service >/tmp/security.out 2>&1 || true
grep -E '^(✗|→)' /tmp/security.out || cat /tmp/security.out
echo "== logrotate --debug /etc/logrotate.d/pgwarden"
logrotate --debug --state /tmp/logrotate.state /etc/logrotate.d/pgwarden >/tmp/logrotate.out 2>&1 && lrc=0 || lrc=\$?
echo "logrotate: exit \$lrc errors: \$(grep -ci 'error' /tmp/logrotate.out)"
echo "== pgwarden run as root"
if pgwarden run -c /etc/pgwarden/pgwarden.yml.example 2>/tmp/run.err; then
    echo "run-as-root: started (wrong)"
else
    echo "run-as-root: refused: \$(head -c 60 /tmp/run.err)"
fi
INSIDE

status=0
# shellcheck disable=SC2016  # expanded by the inner sh
unshare --mount --propagation private -- sh -c '
    mount -t proc proc "$1/proc"
    chroot "$1" /bin/sh /tmp/inside.sh
' sh "$root" || status=$?

# keep what apt fetched for the next run
cp -a "$root/var/lib/apt/lists/." "$cache/apt/lists/" 2>/dev/null || true
find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -a {} "$cache/apt/archives/" \; || true
echo "== done: exit $status"
exit "$status"
