#!/bin/sh
# ec2net pre-removal (deb prerm, rpm %preun).
#
# Removal: stop and disable the service. Stopping leaves the network
# configuration in place (run "ec2net cleanup" first to remove it). Undo
# the masks of amazon-ec2-net-utils' units that postinst made.
# Upgrade: nothing: the new package's scripts restart the daemon, and the
# network keeps working throughout.
#
# deb passes "remove", "upgrade <new version>", "deconfigure" or
# "failed-upgrade"; rpm passes the number of instances left (0 = erase).
set -e

unit=ec2net.service

# The masks postinst made for amazon-ec2-net-utils (see postinstall.sh):
# removed if they are still the /dev/null symlinks it made, so that tool
# manages ENIs again from the next boot or attach on.
masked_list=/var/lib/ec2net/masked

unmask_ec2_net_utils() {
	[ -f "$masked_list" ] || return 0
	while read -r path; do
		if [ -L "$path" ] && [ "$(readlink "$path")" = /dev/null ]; then
			rm -f "$path"
		fi
	done <"$masked_list"
	rm -f "$masked_list"
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		if command -v udevadm >/dev/null 2>&1; then udevadm control --reload 2>/dev/null || true; fi
	fi
	echo "ec2net: amazon-ec2-net-utils' policy routing is unmasked; it configures ENIs again from the next boot or ENI attach on" >&2
}

remove() {
	if command -v systemctl >/dev/null 2>&1; then
		if [ -d /run/systemd/system ]; then
			systemctl stop "$unit" || true
		fi
		systemctl disable "$unit" || true
	fi
	unmask_ec2_net_utils
	mkdir -p /var/lib/ec2net
	: >/var/lib/ec2net/removed
}

case "$1" in
remove | 0) remove ;;
esac
exit 0
