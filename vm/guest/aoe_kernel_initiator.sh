# Guest half of tests/vm_test.ts, scenario 1: the kernel's aoe driver as the
# initiator of `aoe target` on the host. Prints ATTR/MD5/RESULT lines.
modprobe aoe
d='/sys/block/etherd!e9.0'
# No manual discover: the target's start-up announcement (or the driver's load-time broadcast) finds it.
i=0; while [ "$(cat $d/state 2>/dev/null)" != up ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
for f in state size mac netif payload firmware-version; do echo "ATTR $f=$(cat $d/$f 2>/dev/null)"; done
echo "MD5 $(md5sum /dev/etherd/e9.0 | cut -c1-32)"
# A write the host can find: the last sector.
last=$(( $(cat $d/size) - 1 ))
printf 'written by the guest kernel' | dd of=/dev/etherd/e9.0 bs=512 seek=$last conv=sync,fsync 2>/dev/null && echo "RESULT write ok"
# The kernel aoe documentation's example (aoe.rst), on the first 32 MiB: mkfs, mount, echo hooray, unmount.
modprobe ext4
mke2fs -q /dev/etherd/e9.0 32768 && mkdir -p /mnt/e && mount -t ext2 /dev/etherd/e9.0 /mnt/e &&
  echo hooray > /mnt/e/hooray && umount /mnt/e && echo "RESULT fs ok"
sync
