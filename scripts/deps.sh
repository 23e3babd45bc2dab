#!/usr/bin/env bash
# Installs the system packages berth's build, tests and main job need, when missing.
# Idempotent and quiet when everything is there; needs root (apt-get) otherwise.
set -euo pipefail

packages=(
  lxd-client      # the real LXD client the end-to-end tests drive berthd with
  busybox-static  # the busybox test image (berth image build busybox)
  squashfs-tools  # unsquashfs: checking and unpacking squashfs rootfs images
  debootstrap     # berth image build debian
  lxc-dev         # liblxc 5.0 headers and library (lxc-sys links it)
  lxcfs           # containers see their own limits in /proc (berthd starts it when needed)
  pkg-config      # lxc-sys's build script checks the liblxc version with it
  libc6-dev       # static libc: an e2e test builds a syscall probe to run in a container
  dnsmasq-base    # DHCP and DNS on managed bridges (the binary only, never the service)
  nftables        # NAT and accept rules of managed networks (nft)
  iproute2        # links, addresses, routes and traffic control (ip, tc, ss)
  rsync           # instance volumes between hosts (LXD's migration protocol sends them with rsync)
  btrfs-progs     # btrfs pools: mkfs.btrfs and subvolumes (btrfs)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing packages: ${missing[*]}; run this as root to install them." >&2
    exit 1
  fi
  echo "Installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The real incus client (its file push/pull speak SFTP), and Incus's container-only daemon
# (incus-base: the tests copy and move containers between berthd and Incus, each test
# running its own incusd), from Debian's bookworm-backports: that suite is added to the
# machine's own Debian source when missing. The packaged service is left stopped.
if ! command -v incus >/dev/null 2>&1 || [ ! -x /usr/libexec/incus/incusd ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing: incus (incus-client and incus-base from bookworm-backports); run this as root." >&2
    exit 1
  fi
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && ! grep -q "bookworm-backports" "$src"; then
    sed -i '0,/^Suites: bookworm\b/s//Suites: bookworm bookworm-backports/' "$src"
  elif [ ! -f "$src" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d; then
    mirror=$(awk '/^deb / && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
    echo "deb ${mirror:-http://deb.debian.org/debian} bookworm-backports main" \
      > /etc/apt/sources.list.d/bookworm-backports.list
  fi
  echo "Installing: incus-client and incus-base (bookworm-backports)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends -t bookworm-backports incus-client incus-base
  if [ -d /run/systemd/system ]; then
    systemctl disable --now incus.socket incus.service incus-startup.service >/dev/null 2>&1 || true
  fi
fi

# CRIU 4.2.1 (patched) for checkpoint/restore (bookworm's criu 3.17 fails on current kernels): built
# from Debian's source once, then a no-op.
bash "$(dirname "$0")/build-criu.sh"

# pylxd, the Python client the end-to-end tests also drive berthd with.
if ! python3 -c 'import pylxd' 2>/dev/null; then
  echo "Installing pylxd" >&2
  python3 -m pip install -q pylxd
fi
