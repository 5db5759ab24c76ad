#!/bin/bash
# packaging/build.sh [outdir]: build ec2net and its .deb and .rpm for each
# architecture in EC2NET_ARCHES (GOARCH names, space or comma separated;
# default: $GOARCH, else this machine's). `make packages` builds amd64 and
# arm64 (Go cross-compiles; CGO_ENABLED=0 makes a static binary).
#
# Per architecture it writes, in outdir:
#   ec2net_<version>-<release>_<debarch>.deb   versioned, for repositories
#   ec2net-<version>-<release>.<rpmarch>.rpm   (debarch amd64/arm64,
#                                               rpmarch x86_64/aarch64)
#   ec2net_<debarch>.deb, ec2net.<rpmarch>.rpm  the same files under
#                                               stable names, which the
#                                               docs and user data use
# and prints the versioned paths, .deb then .rpm per architecture, last.
#
# The .deb is made by nfpm (packaging/nfpm.yaml), installed with
# "go install" at a pinned version if missing; the .rpm by rpmbuild from
# packaging/ec2net.spec.in (nfpm's rpm stores absolute paths in its cpio
# payload). The version comes from git (see package_version);
# EC2NET_VERSION and EC2NET_RELEASE override it (the upgrade test builds
# the same code as release 2). EC2NET_BINARY packages a binary built
# elsewhere instead (one architecture only).
set -euo pipefail

nfpm_module=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.43.0

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

die() {
	echo "build.sh: $*" >&2
	exit 1
}
command -v go >/dev/null || die "go not found (Go $(sed -n 's/^go //p' go.mod) or later: https://go.dev/dl/)"
command -v rpmbuild >/dev/null ||
	die "rpmbuild not found: apt-get install rpm (Debian/Ubuntu) or dnf install rpm-build (Fedora/RHEL/AL2023)"

arches=${EC2NET_ARCHES:-${GOARCH:-$(go env GOARCH)}}
arches=${arches//,/ }
if [ -n "${EC2NET_BINARY:-}" ] && [ "$(wc -w <<<"$arches")" != 1 ]; then
	die "EC2NET_BINARY packages one architecture; EC2NET_ARCHES is '$arches'"
fi

# binary_version is what "ec2net version" prints: git describe without the
# leading v for a release tag, else 0.0.0+<short sha>[-dirty].
binary_version() {
	local d
	d=$(git describe --tags --always --dirty 2>/dev/null || true)
	if [[ $d =~ ^v?[0-9]+\.[0-9]+ ]]; then
		echo "${d#v}"
	elif [ -n "$d" ]; then
		echo "0.0.0+$d"
	else
		echo "0.0.0+unknown"
	fi
}

# package_version must sort correctly in both dpkg and rpm:
#   tag v1.2.3, clean           -> 1.2.3
#   3 commits after v1.2.3      -> 1.2.3+git3.<sha>   (after 1.2.3)
#   no tag                      -> 0.0.0~git<commit time>.<sha> (before any
#                                  release; the commit time keeps successive
#                                  snapshots in order)
# A dirty tree appends ".dirty" (only for local builds: never release one).
package_version() {
	local sha tag n v
	sha=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
	if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
		n=$(git rev-list --count "$tag..HEAD")
		v=${tag#v}
		[ "$n" = 0 ] || v="$v+git$n.$sha"
	else
		v="0.0.0~git$(git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S 2>/dev/null || echo 0).$sha"
	fi
	if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		v="$v.dirty"
	fi
	echo "$v"
}

rpm_arch() {
	case $1 in
	amd64) echo x86_64 ;;
	arm64) echo aarch64 ;;
	*) die "no rpm architecture for GOARCH $1 (amd64 and arm64 are supported)" ;;
	esac
}

export EC2NET_VERSION=${EC2NET_VERSION:-$(package_version)}
export EC2NET_RELEASE=${EC2NET_RELEASE:-1}
version=$(binary_version)
# Reproducible timestamps: the commit time, unless the caller set one.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

nfpm=$(command -v nfpm || true)
if [ -z "$nfpm" ]; then
	nfpm="$(go env GOPATH)/bin/nfpm"
	if [ ! -x "$nfpm" ]; then
		echo "build.sh: installing $nfpm_module" >&2
		GOARCH='' go install "$nfpm_module"
	fi
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# stage_common: the architecture-independent files, named as the spec and
# nfpm.yaml expect them.
stage_common() {
	local s=$1
	mkdir -p "$s"
	ln -s "$repo" "$s/repo"
	gzip -9n <packaging/ec2net.8 >"$s/ec2net.8.gz"
	gzip -9n <packaging/ec2net.conf.5 >"$s/ec2net.conf.5.gz"
	cp systemd/ec2net.service packaging/ec2net.conf packaging/README.md \
		docs/TROUBLESHOOTING.md docs/STATUS.md packaging/completions/ec2net.bash packaging/completions/_ec2net LICENSE "$s/"
	cp packaging/cloud-init/user-data.yaml "$s/cloud-init-user-data.yaml"
	cp packaging/dropins/networkd.conf.d/ec2net.conf "$s/networkd-ec2net.conf"
	cp packaging/dropins/NetworkManager/conf.d/ec2net.conf "$s/NetworkManager-ec2net.conf"
	# A one-entry Debian changelog (nfpm writes changelog.Debian.gz from
	# it); the release history lives in git.
	cat >"$s/changelog.yaml" <<YAML
- semver: $EC2NET_VERSION-$EC2NET_RELEASE
  date: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  packager: ec2net maintainers <ec2net@users.noreply.github.com>
  deb:
    urgency: medium
    distributions: [unstable]
  changes:
    - commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)
      note: Snapshot $version built from git.
YAML
}

# scriptlet prints a shared maintainer script without its comment lines
# (the .deb keeps them): rpmlint reads words such as "rpm" in comments as
# dangerous commands, and rpm stores scriptlets in the package header.
scriptlet() {
	sed -e '/^[[:space:]]*#/d' "$1"
}

# rpm_spec: the spec with the shared maintainer scripts and a changelog.
rpm_spec() {
	cat packaging/ec2net.spec.in
	printf '\n%%post\n'
	scriptlet packaging/scripts/postinstall.sh
	printf '\n%%preun\n'
	scriptlet packaging/scripts/preremove.sh
	printf '\n%%postun\n'
	scriptlet packaging/scripts/postremove.sh
	printf '\n%%changelog\n* %s ec2net maintainers <ec2net@users.noreply.github.com> - %s-%s\n- Snapshot %s built from git.\n' \
		"$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y')" "$EC2NET_VERSION" "$EC2NET_RELEASE" "$version"
}

build_arch() {
	local goarch=$1 rpmarch s deb rpm
	rpmarch=$(rpm_arch "$goarch")
	s=$stage/$goarch
	stage_common "$s"
	echo "build.sh: ec2net $version -> package $EC2NET_VERSION-$EC2NET_RELEASE ($goarch)" >&2
	if [ -n "${EC2NET_BINARY:-}" ]; then
		install -m 0755 "$EC2NET_BINARY" "$s/ec2net"
	else
		CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -buildvcs=false \
			-ldflags "-s -w -X main.version=$version" -o "$s/ec2net" ./cmd/ec2net
	fi

	(cd "$s" && EC2NET_ARCH=$goarch "$nfpm" package --config repo/packaging/nfpm.yaml \
		--packager deb --target "$out/" >&2)
	deb=$(ls -1t "$out"/ec2net_"$EC2NET_VERSION"-"$EC2NET_RELEASE"_"$goarch".deb | head -n1)

	rpm_spec >"$s/ec2net.spec"
	rpmbuild -bb --quiet --target "$rpmarch-linux" \
		--define "_topdir $s/rpmbuild" --define "_rpmdir $s/rpms" \
		--define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
		--define "ec2net_version $EC2NET_VERSION" --define "ec2net_release $EC2NET_RELEASE" \
		--define "ec2net_stage $s" "$s/ec2net.spec" >&2
	rpm=$out/$(basename "$s"/rpms/*.rpm)
	mv "$s"/rpms/*.rpm "$rpm"
	echo "build.sh: wrote $deb and $rpm" >&2

	cp -f "$deb" "$out/ec2net_$goarch.deb"
	cp -f "$rpm" "$out/ec2net.$rpmarch.rpm"
	built+=("$deb" "$rpm")
}

built=()
for a in $arches; do
	build_arch "$a"
done
printf '%s\n' "${built[@]}"
