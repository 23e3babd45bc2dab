#!/usr/bin/env bash
# berth's main job, from a fresh machine: install what is missing, build, start berthd with
# its embedded defaults (state in $BERTH_DIR, default /var/lib/berth) unless it already runs
# there, set it up (storage, the managed bridge berthbr0), show what it serves, make a local
# busybox image, launch a container from it, run a command inside and show its address and
# a name lookup from inside.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cargo build --release --bins --quiet
bin="$PWD/target/release"
dir="${BERTH_DIR:-/var/lib/berth}"
export BERTH_DIR="$dir"

if ! "$bin/berth" info >/dev/null 2>&1; then
  mkdir -p "$dir"
  echo "Starting berthd on $dir (log: $dir/logs/berthd.log)" >&2
  setsid "$bin/berthd" --dir "$dir" --verbose </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 200); do
    "$bin/berth" info >/dev/null 2>&1 && break
    sleep 0.05
  done
fi

"$bin/berth" version
"$bin/berth" info
# Storage, the managed bridge berthbr0 and the default profile's eth0 on it, once.
if ! "$bin/berth" network show berthbr0 >/dev/null 2>&1; then
  "$bin/berth" admin init --auto
fi
"$bin/berth" network list
# A local image, built offline from busybox-static.
if ! "$bin/berth" image alias list -f csv | grep -q '^busybox,'; then
  "$bin/berth" image build busybox --alias busybox
fi
"$bin/berth" image list
# A container from it, and a command run inside.
state=$("$bin/berth" list -f csv | awk -F, '$1 == "demo" { print $2 }')
if [ -z "$state" ]; then
  "$bin/berth" launch busybox demo
elif [ "$state" != "RUNNING" ]; then
  "$bin/berth" start demo
fi
# Its address, by DHCP from berthbr0's dnsmasq.
for _ in $(seq 1 100); do
  [ -n "$("$bin/berth" list demo -c 4 -f csv)" ] && break
  sleep 0.1
done
"$bin/berth" list
"$bin/berth" exec demo -- sh -c 'echo "hello from $(hostname), uid $(id -u) inside"; uname -srm'
# Its address inside, and its own name looked up through berthbr0's DNS.
"$bin/berth" exec demo -- sh -c 'ip -4 -o addr show eth0; nslookup demo.berth'
echo
echo "berthd is running on $dir/unix.socket. Try: $bin/berth monitor --pretty" >&2
echo "Stop it with: kill \$(cat $dir/berthd.pid)" >&2
