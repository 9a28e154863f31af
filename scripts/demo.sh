#!/usr/bin/env bash
# The main job on an embedded default: two private network namespaces joined
# by a veth pair, a sparse 1 GiB image, `aoe target` exporting it as e9.0, and
# real AoE clients (aoetools) plus the project's initiator talking to it.
# Everything it creates is removed when it ends, also on failure.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
bash "$here/scripts/setup.sh"
aoe="$here/scripts/aoe"

id="aoedemo$$"
work=$(mktemp -d /tmp/aoe-demo.XXXXXX)
target_pid=""
cleanup() {
  if [ -f "$work/run/aoe.pid" ]; then kill "$(cat "$work/run/aoe.pid")" 2>/dev/null || true; fi
  [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null && wait "$target_pid" 2>/dev/null || true
  for ns in "${id}t" "${id}i"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "network: namespaces ${id}t (target) and ${id}i (initiator), veth eth1 <-> eth1"
ip netns add "${id}t"
ip netns add "${id}i"
ip link add eth1 netns "${id}t" type veth peer name eth1 netns "${id}i"
ip -n "${id}t" link set eth1 up
ip -n "${id}i" link set eth1 up

step "a sparse 1 GiB image with a greeting in sector 0"
truncate -s 1G "$work/disk.img"
printf 'hello from the AoE demo\n' | dd of="$work/disk.img" conv=notrunc status=none
du -h --apparent-size "$work/disk.img"; du -h "$work/disk.img"

step "aoe target 9 0 eth1 disk.img"
ip netns exec "${id}t" "$aoe" target 9 0 eth1 "$work/disk.img" > "$work/target.log" 2>&1 &
target_pid=$!
for _ in $(seq 1 100); do grep -q sectors "$work/target.log" && break; sleep 0.1; done
cat "$work/target.log"

step "aoeping -I 9 0 eth1 (aoetools, from the initiator namespace)"
ip netns exec "${id}i" timeout 10 aoeping -I 9 0 eth1

step "aoecfg: set and read the config string"
ip netns exec "${id}i" timeout 10 aoecfg -c set -s "demo rack 7" 9 0 eth1
ip netns exec "${id}i" timeout 10 aoecfg -c read 9 0 eth1

step "the initiator: aoe modprobe aoe_iflist=eth1 (a daemon in the initiator namespace)"
export AOE_RUNDIR="$work/run" AOE_DEVDIR="$work/dev"
ip netns exec "${id}i" "$aoe" modprobe aoe_iflist=eth1
ip netns exec "${id}i" "$aoe" status --wait e9.0
cat "$AOE_RUNDIR/sys/block/etherd!e9.0/state" "$AOE_RUNDIR/sys/block/etherd!e9.0/payload"

step "aoe status (aoe-stat's table) and status.sh"
ip netns exec "${id}i" "$aoe" status
sh "$here/status.sh"

step "the NBD export, read by real NBD clients (nbdinfo, nbdsh)"
sock="$AOE_RUNDIR/nbd.sock"
nbdinfo --list "nbd+unix:///?socket=$sock" | grep -E 'export=|export-size|can_trim'
/usr/bin/python3 -m nbd -u "nbd+unix:///e9.0?socket=$sock" -c 'print("sector 0 through NBD:", h.pread(512, 0)[:24].decode().strip())'
/usr/bin/python3 -m nbd -u "nbd+unix:///e9.0?socket=$sock" -c 'h.pwrite(b"written through NBD\n" + bytes(492), 512); h.flush()'
printf 'sector 1 in the image: '; dd if="$work/disk.img" bs=512 skip=1 count=1 status=none | head -c 19; echo

step "aoe rmmod"
ip netns exec "${id}i" "$aoe" rmmod
ls "$AOE_DEVDIR" 2>/dev/null || echo "control files removed"

step "the target as a service: one config file, a reload that adds an export"
kill "$target_pid" 2>/dev/null && wait "$target_pid" 2>/dev/null || true
target_pid=""
truncate -s 64M "$work/second.img"
conf() {
  cat <<CONF
[service]
state_dir = "$work/state"
control_socket = "$work/target.sock"

[defaults]
interfaces = ["eth1"]

[[export]]
shelf = 9
slot = 0
file = "$work/disk.img"
CONF
  if [ "${1:-}" = second ]; then printf '\n[[export]]\nshelf = 9\nslot = 1\nfile = "%s"\nread_only = true\n' "$work/second.img"; fi
}
conf > "$work/targets.conf"
cat "$work/targets.conf"
ip netns exec "${id}t" "$aoe" target --config "$work/targets.conf" > "$work/service.log" 2>&1 &
target_pid=$!
for _ in $(seq 1 100); do grep -q sectors "$work/service.log" && break; sleep 0.1; done
"$aoe" target-ctl --socket "$work/target.sock" list
printf 'a config string set now is kept in the state directory: '
ip netns exec "${id}i" timeout 10 aoecfg -c set -s "kept across restarts" 9 0 eth1 >/dev/null
ip netns exec "${id}i" timeout 10 aoecfg -c read 9 0 eth1
conf second > "$work/targets.conf"
echo "after adding e9.1 to the file: kill -HUP (systemctl reload aoe-targets)"
kill -HUP "$target_pid"
for _ in $(seq 1 100); do grep -q reloaded "$work/service.log" && break; sleep 0.1; done
grep reloaded "$work/service.log"
"$aoe" target-ctl --socket "$work/target.sock" list
ip netns exec "${id}i" timeout 10 aoeping -I 9 1 eth1 | head -3
echo 'a broken file is refused whole, nothing changes:'
echo 'shelf = "nine"' >> "$work/targets.conf"
"$aoe" target-ctl --socket "$work/target.sock" reload || true

step "done: the image is still sparse after the writes"
du -h "$work/disk.img"
