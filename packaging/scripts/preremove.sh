#!/bin/sh
# ec2net pre-removal (deb prerm, rpm %preun).
#
# Removal: stop and disable the service. Stopping leaves the network
# configuration in place (run "ec2net cleanup" first to remove it).
# Upgrade: nothing: the new package's scripts restart the daemon, and the
# network keeps working throughout.
#
# deb passes "remove", "upgrade <new version>", "deconfigure" or
# "failed-upgrade"; rpm passes the number of instances left (0 = erase).
set -e

unit=ec2net.service

remove() {
	if command -v systemctl >/dev/null 2>&1; then
		if [ -d /run/systemd/system ]; then
			systemctl stop "$unit" || true
		fi
		systemctl disable "$unit" || true
	fi
	mkdir -p /var/lib/ec2net
	: >/var/lib/ec2net/removed
}

case "$1" in
remove | 0) remove ;;
esac
exit 0
