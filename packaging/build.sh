#!/bin/bash
# packaging/build.sh [outdir]: build ec2net and its .deb and .rpm.
#
# Run from anywhere; paths are relative to the repository. The version
# comes from git (see package_version); EC2NET_VERSION and EC2NET_RELEASE
# override it (the upgrade test builds the same code as release 2).
# GOARCH selects the architecture (default: this machine's);
# EC2NET_BINARY packages a binary built elsewhere instead. nfpm is
# installed with "go install" at a pinned version if it is not on PATH or
# in $(go env GOPATH)/bin (@latest does not build from the module proxy).
# Prints the paths of the two packages, one a line, last.
set -euo pipefail

nfpm_module=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.43.0

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

export GOARCH=${GOARCH:-$(go env GOARCH)}

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

export EC2NET_VERSION=${EC2NET_VERSION:-$(package_version)}
export EC2NET_RELEASE=${EC2NET_RELEASE:-1}
export EC2NET_ARCH=$GOARCH
version=$(binary_version)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
ln -s "$repo" "$stage/repo"

echo "build.sh: ec2net $version -> package $EC2NET_VERSION-$EC2NET_RELEASE ($GOARCH)" >&2
if [ -n "${EC2NET_BINARY:-}" ]; then
	# A binary built elsewhere (the tests build once and package twice).
	install -m 0755 "$EC2NET_BINARY" "$stage/ec2net"
else
	CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$version" \
		-o "$stage/ec2net" ./cmd/ec2net
fi

gzip -9n <packaging/ec2net.8 >"$stage/ec2net.8.gz"

# A one-entry Debian changelog (nfpm writes changelog.Debian.gz from it);
# the release history lives in git.
cat >"$stage/changelog.yaml" <<YAML
- semver: $EC2NET_VERSION-$EC2NET_RELEASE
  date: $(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
  packager: ec2net maintainers <ec2net@users.noreply.github.com>
  deb:
    urgency: medium
    distributions: [unstable]
  changes:
    - commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)
      note: Snapshot $version built from git.
YAML

nfpm=$(command -v nfpm || true)
if [ -z "$nfpm" ]; then
	nfpm="$(go env GOPATH)/bin/nfpm"
	if [ ! -x "$nfpm" ]; then
		echo "build.sh: installing $nfpm_module" >&2
		go install "$nfpm_module"
	fi
fi

# Reproducible timestamps: the commit time, unless the caller set one.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

for packager in deb rpm; do
	(cd "$stage" && "$nfpm" package --config repo/packaging/nfpm.yaml --packager "$packager" --target "$out/" >&2)
done
ls -1t "$out"/ec2net*"$EC2NET_VERSION"*.deb | head -n1
ls -1t "$out"/ec2net*"$EC2NET_VERSION"*.rpm | head -n1
