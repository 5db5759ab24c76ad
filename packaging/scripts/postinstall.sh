#!/bin/sh
# ec2net post-install (deb postinst, rpm %post).
#
# Fresh install: enable the service, and start it where systemd runs (not
# in a chroot or an image build, where only the enablement symlink is made,
# so the service starts on first boot).
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

fresh_install() {
	rm -f "$removed_marker"
	rmdir /var/lib/ec2net 2>/dev/null || true
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
