#!/bin/sh
# ec2net post-install (deb postinst, rpm %post).
#
# Fresh install: enable the service, and start it where systemd runs (not
# in a chroot or an image build, where only the enablement symlink is made,
# so the service starts on first boot).
# Both: where amazon-ec2-net-utils is installed, mask its per-ENI units
# (see take_over_from_ec2_net_utils).
# Upgrade: reload unit files and try-restart only: a service the admin
# stopped or disabled stays that way. Restarting never flushes networking:
# on SIGTERM the daemon exits leaving addresses, routes and rules in place,
# and the new daemon adopts them from its records in /run/ec2net.
#
# Argument conventions: deb passes "configure <previously configured
# version>" (empty on a first install) or "abort-*"; rpm passes the number
# of installed instances after the transaction (1 = install, 2+ = upgrade).
set -e

unit=ec2net.service
# prerm/%preun "remove" leaves this behind so that re-installing after a
# remove (dpkg passes the old version then) counts as a fresh install.
removed_marker=/var/lib/ec2net/removed

have_systemctl() { command -v systemctl >/dev/null 2>&1; }
systemd_running() { [ -d /run/systemd/system ]; }

# While the system is still booting, a blocking start can deadlock: an
# installer run from cloud-init's bootcmd is part of cloud-init.service,
# which is ordered before sysinit.target, and ec2net.service is ordered
# after it. Then the job is only queued; it runs when boot gets there.
# Otherwise wait for it, so that a failed start is reported.
start_mode() {
	case "$(systemctl is-system-running 2>/dev/null || true)" in
	initializing | starting) echo --no-block ;;
	esac
}

# amazon-ec2-net-utils (installed on Amazon Linux 2023) configures the
# same route tables and rule priorities as ec2net, per ENI, through
# systemd-networkd: a udev rule starts policy-routes@<iface>.service for
# every ENI that appears, and a timer refreshes it every minute. Two
# managers of one ENI fight, so ec2net takes over that per-ENI part: it
# masks the udev rule and those units (symlinks to /dev/null in /etc, made
# only where /etc has no file of that name; listed in $masked_list so that
# removing ec2net undoes exactly these) and stops the running refresh
# timers. The package itself stays installed (no Conflicts:): its
# 80-ec2.network is what gives the primary ENI DHCP, and it is never
# touched, nor is systemd-networkd restarted or reloaded.
ec2_net_utils_rule=99-vpc-policy-routes.rules
ec2_net_utils_units="policy-routes@.service refresh-policy-routes@.service refresh-policy-routes@.timer"
masked_list=/var/lib/ec2net/masked

has_ec2_net_utils() {
	for f in /usr/lib/udev/rules.d/$ec2_net_utils_rule /lib/udev/rules.d/$ec2_net_utils_rule \
		/usr/lib/systemd/system/policy-routes@.service /lib/systemd/system/policy-routes@.service; do
		[ -e "$f" ] && return 0
	done
	return 1
}

# mask_path: /dev/null symlink at $1 unless something is there already
# (the admin's own file, or a mask from an earlier install).
mask_path() {
	if [ -e "$1" ] || [ -L "$1" ]; then
		return 0
	fi
	mkdir -p "$(dirname "$1")"
	ln -s /dev/null "$1"
	echo "$1" >>"$masked_list"
}

take_over_from_ec2_net_utils() {
	has_ec2_net_utils || return 0
	mkdir -p /var/lib/ec2net
	mask_path /etc/udev/rules.d/$ec2_net_utils_rule
	for u in $ec2_net_utils_units; do
		mask_path "/etc/systemd/system/$u"
	done
	if have_systemctl && systemd_running; then
		systemctl daemon-reload || true
		systemctl stop 'refresh-policy-routes@*.timer' 'refresh-policy-routes@*.service' 2>/dev/null || true
		if command -v udevadm >/dev/null 2>&1; then udevadm control --reload 2>/dev/null || true; fi
	fi
	cat >&2 <<MSG
ec2net: amazon-ec2-net-utils is installed: its per-ENI policy routing
  (udev rule $ec2_net_utils_rule, policy-routes@ and refresh-policy-routes@
  units) is now masked and ec2net configures the ENIs. Its 80-ec2.network,
  the primary ENI's DHCP, is unchanged. What it generated for ENIs already
  attached (/run/systemd/network/70-*.network) stays until the next boot.
  Removing ec2net unmasks it again. See /usr/share/doc/ec2net/README.md.
MSG
}

fresh_install() {
	rm -f "$removed_marker"
	rmdir /var/lib/ec2net 2>/dev/null || true
	take_over_from_ec2_net_utils
	have_systemctl || return 0
	systemd_running && systemctl daemon-reload || true
	systemctl enable "$unit" || true
	if systemd_running; then
		# The daemon reports READY within ready-timeout (20 s) even when
		# IMDS is unreachable, so a blocking start cannot hang the install.
		systemctl $(start_mode) start "$unit" || echo "ec2net: service did not start; see: journalctl -u $unit" >&2
	fi
}

upgrade() {
	take_over_from_ec2_net_utils
	have_systemctl || return 0
	systemd_running || return 0
	systemctl daemon-reload || true
	systemctl $(start_mode) try-restart "$unit" || echo "ec2net: restart failed; see: journalctl -u $unit" >&2
}

case "$1" in
configure)
	if [ -z "$2" ] || [ -e "$removed_marker" ]; then fresh_install; else upgrade; fi
	;;
abort-upgrade | abort-remove | abort-deconfigure)
	# A failed removal or upgrade: put back what the old scripts stopped.
	if have_systemctl && systemd_running && systemctl -q is-enabled "$unit" 2>/dev/null; then
		systemctl $(start_mode) start "$unit" || true
	fi
	;;
1) fresh_install ;;
[0-9]*) upgrade ;;
esac
exit 0
