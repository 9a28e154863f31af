#!/bin/bash
# Boots the test VM once with a guest script, on a private LAN: namespace
# $AOE_VM_NS holds a bridge joining qemu's tap and a veth whose other end,
# "aoevm1", is where host-side targets bind. Host commands given with --host
# run inside that namespace for the life of the VM. Everything is removed when
# the run ends, also on failure or timeout; the console is printed on failure.
#   vm/run.sh [--mtu N] [--timeout S] [--out DIR] [--veths N] [--host CMD]... GUEST_SCRIPT
# --veths 2 adds a second host-side port, "aoevm3" (MAC 02:77:00:00:00:03).
# --hostroot gives the guest the host's / (read-only over 9p, writes to RAM)
# with udev and fdisk on top, so the project and Deno run inside it.
# --host-drain S waits up to S seconds, once the VM is off, for each host
# command i to create $OUT/host-i.done (work the guest cannot wait for).
# Exit status: the guest script's; 124 on timeout; 125 if the VM died.
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
mtu=1500; timeout=300; out=""; hosts=(); veths=1; hostroot=0; drain=0
while [ $# -gt 1 ]; do
  case "$1" in
    --mtu) mtu=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --veths) veths=$2; shift 2 ;;
    --hostroot) hostroot=1; shift ;;
    --host-drain) drain=$2; shift 2 ;;
    --host) hosts+=("$2"); shift 2 ;;
    *) break ;;
  esac
done
guest=${1:?usage: vm/run.sh [options] GUEST_SCRIPT}
env_file=$("$here/prepare.sh") || exit 1
. "$env_file"
ns=${AOE_VM_NS:-aoevm$$}
[ -n "$out" ] || out=$(mktemp -d /tmp/aoe-vm.XXXXXX)
mkdir -p "$out"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
  rm -f "$out/initrd.cpio.gz"
}
trap cleanup EXIT

ip netns add "$ns"
n="ip -n $ns"
$n link set lo up
$n link add br0 type bridge stp_state 0 forward_delay 0
$n tuntap add dev tap0 mode tap
$n link add aoevm0 type veth peer name aoevm1
$n link set aoevm1 address 02:77:00:00:00:01
for i in tap0 aoevm0 aoevm1 br0; do $n link set "$i" mtu "$mtu"; done
$n link set tap0 master br0
$n link set aoevm0 master br0
for i in br0 tap0 aoevm0 aoevm1; do $n link set "$i" up; done
if [ "$veths" -ge 2 ]; then
  $n link add aoevm2 type veth peer name aoevm3
  $n link set aoevm3 address 02:77:00:00:00:03
  for i in aoevm2 aoevm3; do $n link set "$i" mtu "$mtu"; done
  $n link set aoevm2 master br0
  for i in aoevm2 aoevm3; do $n link set "$i" up; done
fi

# The guest script rides in a second cpio appended to the initramfs.
stage=$(mktemp -d); cp "$guest" "$stage/guest.sh"
( cd "$stage" && echo guest.sh | cpio -o -H newc --quiet ) | gzip -1 | cat "$AOE_VM_INITRD" - > "$out/initrd.cpio.gz"
rm -rf "$stage"

for i in "${!hosts[@]}"; do
  setsid ip netns exec "$ns" sh -c "${hosts[$i]}" > "$out/host-$i.log" 2>&1 &
  pids+=($!)
done
sleep "${AOE_VM_HOST_WAIT:-1}"

: > "$out/guest.log"
extra=(); append=""; mem=512
if [ "$hostroot" = 1 ]; then
  extra=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
         -virtfs "local,path=$AOE_VM_LAYER,mount_tag=layer,security_model=none,readonly=on")
  append=" aoevm.hostroot"; mem=1024
fi
setsid ip netns exec "$ns" timeout "$timeout" qemu-system-x86_64 -accel tcg -m "$mem" -smp 1 -no-reboot "${extra[@]}" \
  -display none -serial "file:$out/console.log" -serial "file:$out/guest.log" \
  -kernel "$AOE_VM_KERNEL" -initrd "$out/initrd.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet net.ifnames=0 aoevm.mtu=$mtu$append" \
  -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
  -device virtio-net-pci,netdev=n0,mac=52:54:00:77:00:02 > "$out/qemu.log" 2>&1
qrc=$?
deadline=$((SECONDS + drain))
if [ "$drain" -gt 0 ]; then
  for i in "${!hosts[@]}"; do
    while [ ! -e "$out/host-$i.done" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  done
fi
rc=$(sed -n 's/^AOE-VM-EXIT=\([0-9]*\).*/\1/p' "$out/guest.log" | tail -n 1)
if [ "$qrc" = 124 ]; then rc=124; elif [ -z "$rc" ]; then rc=125; fi
if [ "$rc" != 0 ]; then
  echo "vm: guest exited $rc; console:" >&2
  tail -n 40 "$out/console.log" >&2
  echo "vm: guest output:" >&2
  cat "$out/guest.log" >&2
fi
exit "$rc"
