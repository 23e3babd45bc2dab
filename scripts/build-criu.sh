#!/usr/bin/env bash
# Builds and installs CRIU 4.2.1 as /usr/local/sbin/criu, for checkpoint/restore of
# containers (stateful stop/start, live migration). Bookworm's own criu 3.17 fails `criu
# check` on recent kernels, and 4.1 cannot dump an inet socket on Linux 6.16 and later
# (SO_PASSCRED is refused there: criu#2705), so the source is the upstream tarball of
# Debian's criu 4.2.1 source package, taken from the machine's Debian mirror's pool and
# checked against its known sha256, built against bookworm's libraries with the nftables
# network lock (no iptables binary needed), with the patches in scripts/criu/ applied
# (mount-v2-slave-groups.patch: a systemd container's sandboxed services' slave mounts of
# /run/systemd/incoming restore; upstream fails them with "Can't copy sharing").
# Idempotent: exits at once when this build, with these patches, is installed; FORCE=1
# rebuilds. Needs root.
set -euo pipefail

version=4.2.1
sha256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
stamp=/usr/local/share/criu-local/BUILD-INFO
patches_dir="$(cd "$(dirname "$0")" && pwd)/criu"
patches=$(cat "$patches_dir"/*.patch | sha256sum | cut -d' ' -f1)

if [ "${FORCE:-0}" != 1 ] && [ -x /usr/local/sbin/criu ] \
  && grep -qs "^version=$version\$" "$stamp" && grep -qs '^network-lock=nftables$' "$stamp" \
  && grep -qs "^patches=$patches\$" "$stamp"; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing: criu $version (build it as root: bash scripts/build-criu.sh)" >&2
  exit 1
fi

deps=(build-essential dpkg-dev pkg-config libbsd-dev libcap-dev libgnutls28-dev libnet1-dev
  libnftables-dev libnl-3-dev libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler
  protobuf-compiler uuid-dev iproute2 xz-utils curl ca-certificates patch)
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing criu build dependencies: ${missing[*]}" >&2
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/berth-criu.XXXXXX)
trap 'rm -rf "$work"' EXIT
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '/^deb / && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  echo "No Debian mirror found in the apt sources to fetch criu's source from" >&2
  exit 1
fi
cd "$work"
tarball=criu_"$version".orig.tar.xz
curl -fsSL --retry 3 -o "$tarball" "${mirror%/}/pool/main/c/criu/$tarball" || true
if [ ! -f "$tarball" ] || [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$sha256" ]; then
  echo "criu $version source tarball missing from ${mirror%/}/pool/main/c/criu/ or its checksum is wrong" >&2
  exit 1
fi
tar -xf "$tarball"
cd "criu-$version"
for p in "$patches_dir"/*.patch; do
  patch -p1 --quiet <"$p" || { echo "criu patch $(basename "$p") does not apply" >&2; exit 1; }
done
make -j"$(nproc)" criu NETWORK_LOCK_DEFAULT=NETWORK_LOCK_NFTABLES >build.log 2>&1 \
  || { tail -n 40 build.log >&2; exit 1; }
make install-criu PREFIX=/usr/local >>build.log 2>&1 || { tail -n 20 build.log >&2; exit 1; }
mkdir -p "$(dirname "$stamp")"
printf 'version=%s\nsource-sha256=%s\nnetwork-lock=nftables\npatches=%s\n' "$version" "$sha256" "$patches" >"$stamp"
# Checked, not required: stateful stop/start report criu's own complaint when it fails.
/usr/local/sbin/criu check || echo "Warning: criu check failed on this machine" >&2
