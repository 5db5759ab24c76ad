#!/bin/bash
# scripts/test-deps.sh: make sure the programs "make test" needs are here.
#
# On Debian and Ubuntu, as root, it installs the missing ones with apt-get
# (non-interactive, saying which packages); elsewhere, or not as root, it
# prints the missing programs with the packages that provide them and
# exits 1 (not as root, outside CI, it only warns: the tests that need root
# fail or skip on their own then).
#
# Not installed on purpose: cloud-init. Installed on a machine that boots
# with systemd it would run at the next boot and may rewrite that machine's
# network configuration. The user-data test validates with "cloud-init
# schema" inside the Debian root it boots (packaging/nspawn-root.sh), where
# cloud-init is installed instead.
set -euo pipefail

# program  Debian package  Fedora/RHEL/AL2023 package
needs=(
	"make make make"
	"git git git"
	"ip iproute2 iproute"
	"nft nftables nftables"
	"ping iputils-ping iputils"
	"nsenter util-linux util-linux"
	"debootstrap debootstrap debootstrap"
	"systemd-nspawn systemd-container systemd-container"
	"systemd-analyze systemd systemd"
	"man man-db man-db"
	"dpkg-deb dpkg dpkg"
	"rpmbuild rpm rpm-build"
	"rpm2cpio rpm rpm"
	"cpio cpio cpio"
	"lintian lintian -"
	"rpmlint rpmlint rpmlint"
	"zsh zsh zsh"
	"dhclient isc-dhcp-client dhcp-client"
)

missing=() debs=() rpms=()
for n in "${needs[@]}"; do
	read -r prog deb rpm <<<"$n"
	if ! command -v "$prog" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$prog" ] && ! [ -x "/sbin/$prog" ]; then
		missing+=("$prog")
		[[ " ${debs[*]} " == *" $deb "* ]] || debs+=("$deb")
		[[ $rpm == - || " ${rpms[*]} " == *" $rpm "* ]] || rpms+=("$rpm")
	fi
done
# go test -race needs cgo: a C compiler and the C library's headers (with
# neither, Go turns cgo off and -race refuses to build).
if ! command -v gcc >/dev/null 2>&1 || ! [ -e /usr/include/stdio.h ]; then
	missing+=("a C compiler for -race")
	debs+=(gcc libc6-dev)
	rpms+=(gcc glibc-devel)
fi
# Go fetches modules over HTTPS.
if ! [ -e /etc/ssl/certs/ca-certificates.crt ] && ! [ -e /etc/pki/tls/certs/ca-bundle.crt ]; then
	missing+=("CA certificates")
	debs+=(ca-certificates)
	rpms+=(ca-certificates)
fi

if [ ${#missing[@]} = 0 ]; then
	exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: missing ${missing[*]}; installing with apt-get: ${debs[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	# A fresh machine has no package lists yet; update them once.
	apt-get update -q >&2
	apt-get install -y -q --no-install-recommends "${debs[@]}" >&2
	exit 0
fi

{
	echo "test-deps: make test needs programs that are missing: ${missing[*]}"
	echo "  Debian/Ubuntu (as root): apt-get install --no-install-recommends ${debs[*]}"
	echo "  Fedora/RHEL/AL2023: dnf install ${rpms[*]} (lintian and debootstrap: EPEL or Fedora only)"
} >&2
if [ "$(id -u)" != 0 ] && [ -z "${CI:-}" ]; then
	echo "test-deps: not root: the tests that need them will fail or skip; sudo make test installs them" >&2
	exit 0
fi
exit 1
