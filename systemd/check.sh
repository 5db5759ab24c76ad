#!/bin/bash
# systemd/check.sh [unit-file] [max-exposure]
#
# Static checks of the ec2net unit that work without systemd as PID 1:
#   1. systemd-analyze verify must print nothing at all. It exits 0 on some
#      errors (an invalid Type= is only a warning), so any output fails.
#   2. systemd-analyze security --offline=yes: print the exposure and fail
#      above max-exposure (default 2.0).
# verify also checks that ExecStart= is executable and that the man page in
# Documentation= exists, so the unit is checked against a copy whose
# ExecStart points at a stand-in executable, with MANPATH at our man page:
# nothing is installed on this machine.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
unit=${1:-$here/ec2net.service}
max=${2:-2.0}
manpage=${EC2NET_MANPAGE:-$here/../packaging/ec2net.8}
name=$(basename "$unit")

command -v systemd-analyze >/dev/null || {
	echo "check.sh: systemd-analyze missing (apt-get install -y systemd)" >&2
	exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/man/man8"
printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/ec2net"
chmod 0755 "$tmp/bin/ec2net"
gzip -c "$manpage" >"$tmp/man/man8/ec2net.8.gz"
sed "s#/usr/bin/ec2net#$tmp/bin/ec2net#g" "$unit" >"$tmp/$name"

fail=0
out=$(MANPATH=$tmp/man systemd-analyze verify "$tmp/$name" 2>&1) || true
if [ -n "$out" ]; then
	echo "FAIL systemd-analyze verify $name printed:" >&2
	printf '%s\n' "$out" | sed "s#$tmp/##g" >&2
	fail=1
else
	echo "ok   systemd-analyze verify $name: no output"
fi

report=$(systemd-analyze security --offline=yes --no-pager "$tmp/$name" 2>&1) || true
exposure=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
	echo "FAIL systemd-analyze security printed no exposure level:" >&2
	printf '%s\n' "$report" >&2
	exit 1
fi
if awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e > m) }'; then
	echo "FAIL exposure $exposure > $max; what scores:" >&2
	printf '%s\n' "$report" | grep '✗' >&2 || true
	fail=1
else
	echo "ok   systemd-analyze security $name: exposure $exposure (limit $max)"
fi
exit $fail
