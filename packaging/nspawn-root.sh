#!/bin/bash
# nspawn-root.sh [--with cloud-init] [dir]: make (once) a minimal Debian
# bookworm root that systemd-nspawn --boot can start, for the real-systemd
# package tests. --with cloud-init makes a second root, a copy of the first
# with Debian's cloud-init installed (/var/tmp/ec2net-nspawn-root-cloud-init
# by default): the user-data test validates with its "cloud-init schema"
# and boots it for real. EC2NET_NSPAWN_ROOT moves the base root (a variant
# gets "-<variant>" appended).
#
# The root is cached (default /var/tmp/ec2net-nspawn-root) and reused while
# its marker file matches this script's recipe; tests never write to it:
# they boot it through an overlayfs upper layer, so every run starts clean.
# It is built in a temporary directory and renamed into place, and the
# build holds a lock, so concurrent callers (parallel test packages, a
# developer and CI on one box) never see or make a half-built root.
set -euo pipefail

with=
if [ "${1:-}" = --with ]; then
	[ "${2:-}" = cloud-init ] || {
		echo "nspawn-root.sh: --with takes cloud-init" >&2
		exit 1
	}
	with=$2
	shift 2
fi
suite=bookworm
include=systemd,systemd-sysv,dbus,iproute2,procps,curl
default_root=${EC2NET_NSPAWN_ROOT:-/var/tmp/ec2net-nspawn-root}
recipe="debootstrap minbase $suite include=$include v1"
if [ -n "$with" ]; then
	# A copy of the base root with the package installed by apt-get in a
	# chroot (debootstrap --include cannot resolve cloud-init's Python
	# dependencies: it fails configuring python3-cryptography).
	default_root=$default_root-$with
	recipe="$recipe + apt-get install $with v1"
fi
root=${1:-$default_root}
marker=$root/.ec2net-root
name=nspawn-root.sh
# shellcheck source=packaging/rootlib.sh
. "$(dirname "$0")/rootlib.sh"
rootlib_require

valid() {
	[ -f "$marker" ] && [ "$(cat "$marker")" = "$recipe" ] &&
		[ -x "$root/lib/systemd/systemd" ] && [ -x "$root/usr/bin/dpkg" ]
}

rootlib_reuse_or_lock

# The Debian mirror this machine already uses (deb822 or one-line format),
# so the test needs no network access the host does not already have.
# Comment lines are skipped: they often name snapshot.debian.org.
mirror=$(grep -rhE '^[[:space:]]*(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
	grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v -- '-security' | head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

tmp=$root.tmp.$$
trap 'rm -rf "$tmp" "$tmp.log"' EXIT
rm -rf "$tmp"

if [ -n "$with" ]; then
	base=$(bash "$0" | tail -n1)
	echo "nspawn-root.sh: $root: $base + apt-get install $with (about 1 min, once)" >&2
	cp -a "$base" "$tmp"
	rm -f "$tmp/.ec2net-root"
	# No service starts in the chroot; the host's resolver for apt.
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 0755 "$tmp/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$tmp/etc/resolv.conf"
	unshare --mount --propagation private sh -c '
		mount -t proc proc "$1/proc" &&
		chroot "$1" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $2 && apt-get clean"
	' sh "$tmp" "$with" >"$tmp.log" 2>&1 || {
		tail -n 30 "$tmp.log" >&2
		exit 1
	}
	rm -f "$tmp/usr/sbin/policy-rc.d" "$tmp/etc/resolv.conf" "$tmp.log"
	rm -f "$tmp"/var/lib/apt/lists/*_Packages 2>/dev/null || true
	rootlib_install
	exit 0
fi

echo "nspawn-root.sh: debootstrap $suite from $mirror into $root (about 1 min, once)" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
	tail -n 30 "$tmp.log" >&2
	rm -f "$tmp.log"
	exit 1
}
rm -f "$tmp.log"
# Boot quietly and quickly: no login prompts on the passive console, no
# machine-id churn, nothing that waits for a network the container lacks.
echo ec2net-test >"$tmp/etc/hostname"
: >"$tmp/etc/machine-id"
rm -f "$tmp/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$tmp/etc/systemd/system/systemd-networkd-wait-online.service"
apt_clean_dirs="$tmp/var/cache/apt/archives/*.deb $tmp/var/lib/apt/lists/*_Packages"
rm -f $apt_clean_dirs 2>/dev/null || true
rootlib_install
