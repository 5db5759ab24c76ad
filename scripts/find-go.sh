#!/bin/sh
# scripts/find-go.sh: print the path of a go binary, for the Makefile.
#
# "sudo make" runs with sudo's secure_path, which drops /usr/local/go/bin
# (where the tarball from go.dev installs), so "go" is often not on PATH
# although it is installed. Then look where Go is usually installed, in
# this order: /usr/local/go/bin, /usr/lib/go/bin (Debian's golang-go),
# /usr/lib/go-1.*/bin (newest first), /snap/bin, ~/go/bin, ~/sdk/go*/bin,
# ~/.local/go/bin (root's home and the sudo user's), and last the sudo
# user's login PATH. Says where it found it in one line on stderr.
# Prints nothing and exits 1 when there is no Go, with how to get it.
set -u

here=$(cd "$(dirname "$0")" && pwd)
want=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$here/../go.mod")

if p=$(command -v go 2>/dev/null); then
	echo "$p"
	exit 0
fi

homes=${HOME:-}
if [ -n "${SUDO_USER:-}" ]; then
	h=$(getent passwd "$SUDO_USER" 2>/dev/null | cut -d: -f6)
	[ -n "$h" ] && homes="$homes $h"
fi

candidates="/usr/local/go/bin/go /usr/lib/go/bin/go $(ls -d /usr/lib/go-1.*/bin/go 2>/dev/null | sort -rV) /snap/bin/go"
for h in $homes; do
	candidates="$candidates $h/go/bin/go $(ls -d "$h"/sdk/go*/bin/go 2>/dev/null | sort -rV) $h/.local/go/bin/go"
done
for c in $candidates; do
	if [ -x "$c" ]; then
		echo "make: go is not on PATH (sudo's secure_path drops it); using $c" >&2
		echo "$c"
		exit 0
	fi
done

# The sudo user's own PATH, from a login shell (bounded: a profile that
# waits for input must not hang the build).
if [ -n "${SUDO_USER:-}" ] && command -v timeout >/dev/null; then
	c=$(timeout 5 su - "$SUDO_USER" -c 'command -v go' </dev/null 2>/dev/null)
	if [ -n "$c" ] && [ -x "$c" ]; then
		echo "make: go is not on PATH (sudo's secure_path drops it); using $SUDO_USER's $c" >&2
		echo "$c"
		exit 0
	fi
fi

cat >&2 <<MSG
make: Go not found (not on PATH, nor in /usr/local/go/bin, /usr/lib/go*/bin,
  /snap/bin, ~/go/bin, ~/sdk). ec2net needs Go $want or later (go.mod):
    https://go.dev/dl/ : tar -C /usr/local -xzf go$want.linux-amd64.tar.gz
  (Debian/Ubuntu's golang-go package is older than that on most releases.)
  Then run make again; sudo make finds /usr/local/go/bin/go by itself.
MSG
exit 1
