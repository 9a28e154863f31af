# Guest half of tests/vm_test.ts, scenario 3 (host root mode): the project's
# initiator inside the guest, its NBD bridge attaching e9.0 to the guest
# kernel's nbd driver, udevd with the project's rules naming it. Needs
# PROJECT (the checkout) set by the caller. Prints RESULT lines.
aoe="$PROJECT/scripts/aoe"
export AOE_RUNDIR=/run/aoe AOE_DEVDIR=/dev/etherd
/lib/systemd/systemd-udevd --daemon
sh "$PROJECT/scripts/udev-install.sh" >/dev/null && echo "RESULT rules installed"
udevadm trigger --action=add && udevadm settle
modprobe nbd nbds_max=4 max_part=8
"$aoe" modprobe aoe_iflist=eth0 --nbd-attach yes || echo "RESULT modprobe failed: $(tail -3 /run/aoe/aoe.log)"
"$aoe" status --wait e9.0 --timeout 60 >/dev/null && echo "RESULT e9.0 up"
i=0; while [ ! -e /dev/etherd/e9.0 ] && [ $i -lt 100 ]; do sleep 0.2; udevadm settle; i=$((i+1)); done
link=$(readlink /dev/etherd/e9.0)
echo "RESULT link=$link"
nbd=${link##*/}
echo "RESULT backend=$(cat /sys/block/$nbd/backend 2>/dev/null)"
echo "RESULT group=$(stat -c %G /dev/$nbd) mode=$(stat -c %a /dev/$nbd)"
echo "RESULT md5=$(md5sum < /dev/etherd/e9.0 | cut -c1-32)"
printf 'start=2048, size=32768, type=83\n' | sfdisk -q /dev/etherd/e9.0 >/dev/null 2>&1
udevadm settle
i=0; while [ ! -e /dev/etherd/e9.0p1 ] && [ $i -lt 50 ]; do sleep 0.2; udevadm settle; i=$((i+1)); done
echo "RESULT part=$(readlink /dev/etherd/e9.0p1)"
mkfs.ext2 -q /dev/etherd/e9.0p1 && mkdir -p /mnt/e && mount /dev/etherd/e9.0p1 /mnt/e &&
  echo hooray > /mnt/e/hooray && umount /mnt/e && echo "RESULT fs ok"
sync
"$aoe" status | sed 's/^/STATUS /'
sh "$PROJECT/status.sh" | sed 's/^/STATUSSH /'
"$aoe" rmmod && echo "RESULT rmmod ok"
udevadm settle
sleep 1
[ -e /dev/etherd/e9.0 ] && echo "RESULT link still there" || echo "RESULT link gone"
