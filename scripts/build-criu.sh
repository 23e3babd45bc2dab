#!/usr/bin/env bash
# Builds and installs CRIU 4.1.1 as /usr/local/sbin/criu, for checkpoint/restore of
# containers (stateful stop/start). Bookworm's own criu 3.17 fails `criu check` on recent
# kernels, so the source comes from Debian trixie's source package (only the upstream
# tarball, verified against the trixie Sources index), built against bookworm's libraries
# with the nftables network lock (no iptables binary needed).
# Idempotent: exits at once when a good build is installed; FORCE=1 rebuilds. Needs root.
set -euo pipefail

version=4.1.1
debver=4.1.1-1
stamp=/usr/local/share/criu-local/BUILD-INFO

if [ "${FORCE:-0}" != 1 ] && [ -x /usr/local/sbin/criu ] \
  && /usr/local/sbin/criu --version 2>/dev/null | grep -q "Version: $version\$" \
  && grep -qs '^network-lock=nftables$' "$stamp" \
  && /usr/local/sbin/criu check >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing: criu $version (build it as root: bash scripts/build-criu.sh)" >&2
  exit 1
fi

deps=(build-essential dpkg-dev pkg-config libbsd-dev libcap-dev libgnutls28-dev libnet1-dev
  libnftables-dev libnl-3-dev libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler
  protobuf-compiler uuid-dev iproute2 xz-utils)
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing criu build dependencies: ${missing[*]}" >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# A trixie deb-src entry of its own, so apt can find the source package; removed at the end.
srclist=/etc/apt/sources.list.d/berth-criu-src.list
work=$(mktemp -d /tmp/berth-criu.XXXXXX)
cleanup() { rm -f "$srclist"; rm -rf "$work"; }
trap cleanup EXIT
mirror=http://deb.debian.org/debian
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
echo "deb-src ${mirror:-http://deb.debian.org/debian} trixie main" >"$srclist"
apt-get update -q -o Dir::Etc::sourcelist="$srclist" -o Dir::Etc::sourceparts=- \
  -o APT::Get::List-Cleanup=0 >/dev/null

# The orig tarball's checksum from the 4.1.1-1 stanza of the Sources index.
want=$(apt-cache showsrc criu | awk -v v="$debver" '
  /^Version:/ {ok = ($2 == v)}
  ok && /^Checksums-Sha256:/ {in_sums = 1; next}
  ok && in_sums && /^ / {if ($3 ~ /orig\.tar/) {print $1; exit}; next}
  {in_sums = 0}')
if [ -z "$want" ]; then
  echo "criu $debver not found in the trixie Sources index" >&2
  exit 1
fi
cd "$work"
# Some mirrors serve only the orig tarball; apt-get then fails on the rest. Keep what came.
apt-get source -q --download-only "criu=$debver" >/dev/null 2>&1 || true
tarball=$(ls criu_"$version".orig.tar.* 2>/dev/null | head -n1)
if [ -z "$tarball" ] || [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$want" ]; then
  echo "criu $version source tarball missing or its checksum is wrong" >&2
  exit 1
fi
tar -xf "$tarball"
cd "criu-$version"
make -j"$(nproc)" criu NETWORK_LOCK_DEFAULT=NETWORK_LOCK_NFTABLES >build.log 2>&1 \
  || { tail -n 40 build.log >&2; exit 1; }
make install-criu PREFIX=/usr/local >/dev/null
mkdir -p "$(dirname "$stamp")"
printf 'version=%s\nsource-sha256=%s\nnetwork-lock=nftables\n' "$version" "$want" >"$stamp"
/usr/local/sbin/criu check
