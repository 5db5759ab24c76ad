#!/bin/sh
# ec2net post-removal (deb postrm, rpm %postun).
#
# deb "remove": forget the unit (daemon-reload); the configuration file and
# the ownership records in /run/ec2net stay, as for any removed package.
# deb "purge": delete /etc/ec2net (the edited configuration) and
# /run/ec2net (the records; the kernel keeps what they described until
# reboot or "ip" commands - run "ec2net cleanup" before purging to remove it).
# rpm erase (0): rpm has no purge: it already removed an unmodified
# configuration and kept an edited one as .rpmsave, so only the records and
# the bookkeeping go. Upgrades (deb "upgrade", rpm 1+) do nothing.
set -e

reload() {
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
}

case "$1" in
remove)
	reload
	;;
purge)
	rm -rf /etc/ec2net /run/ec2net /var/lib/ec2net
	reload
	;;
0)
	rm -rf /run/ec2net /var/lib/ec2net
	rmdir /etc/ec2net 2>/dev/null || true
	reload
	;;
esac
exit 0
