#!/bin/bash
# coexist-root.sh [dir]: make (once) a Debian bookworm root with the
# network managers of the coexistence matrix (coexist_test.go) installed
# side by side: systemd-networkd (part of systemd), NetworkManager, and
# ifupdown with isc-dhcp-client. The test enables one of them per cell
# and masks the others in an overlay, so one root serves every cell.
#
# Cached like nspawn-root.sh's root (default /var/tmp/ec2net-coexist-root,
# about 60 s and 300 MB once, after nspawn-root.sh's), reused while the marker matches the recipe,
# built under a lock in a temporary directory and renamed into place.
set -euo pipefail

root=${1:-${EC2NET_COEXIST_ROOT:-/var/tmp/ec2net-coexist-root}}
packages="network-manager ifupdown isc-dhcp-client"
recipe="nspawn-root.sh + apt-get install $packages v1"
marker=$root/.ec2net-root

name=coexist-root.sh
# shellcheck source=packaging/rootlib.sh
. "$(dirname "$0")/rootlib.sh"
rootlib_require

valid() {
	[ -f "$marker" ] && [ "$(cat "$marker")" = "$recipe" ] &&
		[ -x "$root/lib/systemd/systemd" ] && [ -x "$root/usr/sbin/NetworkManager" ] &&
		[ -x "$root/sbin/ifup" ] && [ -x "$root/sbin/dhclient" ]
}

rootlib_reuse_or_lock

# Start from nspawn-root.sh's minimal root and add the managers with apt
# inside a throwaway nspawn container (host network for apt only, no
# boot): debootstrap --include of network-manager fails configuring
# polkitd in its chroot.
base=$(bash "$(dirname "$0")/nspawn-root.sh" | tail -n1)
tmp=$root.tmp.$$
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"
echo "coexist-root.sh: adding $packages to a copy of $base in $root (about 60 s, once)" >&2
cp -a "$base" "$tmp"
rm -f "$tmp/.ec2net-root"
systemd-nspawn -q --register=no --keep-unit -D "$tmp" --pipe /bin/sh -c \
	"export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends $packages" \
	>"$tmp.log" 2>&1 || {
	tail -n 30 "$tmp.log" >&2
	rm -f "$tmp.log"
	exit 1
}
rm -f "$tmp.log"
echo ec2net-coexist >"$tmp/etc/hostname"
: >"$tmp/etc/machine-id"
rm -f "$tmp/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
# Nothing may hold the boot for a network: the test waits for what it needs.
for u in console-getty systemd-networkd-wait-online NetworkManager-wait-online; do
	ln -sf /dev/null "$tmp/etc/systemd/system/$u.service"
done
# Every manager starts disabled; the test enables one per cell.
rm -f "$tmp/etc/systemd/system/multi-user.target.wants/NetworkManager.service" \
	"$tmp/etc/systemd/system/multi-user.target.wants/networking.service" \
	"$tmp/etc/systemd/system/network-online.target.wants/networking.service" \
	"$tmp/etc/systemd/system/dbus-org.freedesktop.nm-dispatcher.service" 2>/dev/null || true
rm -f "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_Packages 2>/dev/null || true
rootlib_install
