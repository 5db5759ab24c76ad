# shellcheck shell=bash disable=SC2154
# rootlib.sh: what nspawn-root.sh and coexist-root.sh share, sourced by
# both. A cached root is valid while its marker holds the recipe; it is
# built once, under a lock, in $tmp and renamed into place, so concurrent
# callers never see or make a half-built root.
#
# The caller sets: name (for messages), root, recipe, marker, and defines
# valid() (the marker plus the files the root must have).

# rootlib_require: root, debootstrap and systemd-nspawn, or exit 1.
rootlib_require() {
	if [ "$(id -u)" != 0 ]; then
		echo "$name: needs root" >&2
		exit 1
	fi
	local tool
	for tool in debootstrap systemd-nspawn; do
		if ! command -v "$tool" >/dev/null; then
			echo "$name: $tool missing: apt-get install -y --no-install-recommends debootstrap systemd-container" >&2
			exit 1
		fi
	done
}

# rootlib_reuse_or_lock: print the root and exit if it is valid; else take
# the build lock (held until exit) and check again, since someone else may
# have built it while we waited. The first check skips the lock: a
# finished root never changes.
rootlib_reuse_or_lock() {
	if valid; then
		echo "$root"
		exit 0
	fi
	mkdir -p "$(dirname "$root")"
	exec 9>"$root.lock"
	flock 9
	if valid; then
		echo "$root"
		exit 0
	fi
}

# rootlib_install: mark $tmp with the recipe, rename it into place and
# print it.
rootlib_install() {
	echo "$recipe" >"$tmp/.ec2net-root"
	rm -rf "$root"
	mv "$tmp" "$root"
	trap - EXIT
	echo "$root"
}
