# Guest half of tests/vm_test.ts, scenario 4: the kernel's control files used
# as the kernel's aoe documentation (aoe.rst) shows them. The host stops the target after a while;
# `cat /dev/etherd/err` must then show a retransmit line.
modprobe aoe aoe_iflist=none0
echo eth0 > /dev/etherd/interfaces && echo "RESULT interfaces=$(cat /sys/module/aoe/parameters/aoe_iflist)"
echo > /dev/etherd/discover && echo "RESULT discover written"
d='/sys/block/etherd!e9.0'
i=0; while [ "$(cat $d/state 2>/dev/null)" != up ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
echo "RESULT state=$(cat $d/state)"
echo e9.0 > /dev/etherd/revalidate && echo "RESULT revalidate written"
cat /dev/etherd/err > /tmp/err &
# Reads teach the driver the round-trip time, so its retransmit timeout falls from 16 s.
while ! grep -q retransmit /tmp/err; do
  dd if=/dev/etherd/e9.0 of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null &
  sleep 1
  [ "$(cut -d. -f1 /proc/uptime)" -gt 90 ] && break
done
grep -m1 retransmit /tmp/err | sed 's/^/ERR /'
