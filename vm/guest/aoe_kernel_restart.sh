# Guest half of tests/vm_test.ts, scenario 2: one `aoe target` process exports
# e9.0 and e10.1 on two host ports (two MACs); the host restarts it while the
# guest reads. Prints ATTR/MD5 lines.
modprobe aoe
for dev in e9.0 e10.1; do
  d="/sys/block/etherd!$dev"
  i=0; while [ "$(cat $d/state 2>/dev/null)" != up ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  echo "ATTR $dev state=$(cat $d/state) size=$(cat $d/size) mac=$(cat $d/mac)"
done
sleep 1
echo "ATTR e9.0 netif=$(cat '/sys/block/etherd!e9.0/netif')"
echo "MD5 e10.1 $(md5sum /dev/etherd/e10.1 | cut -c1-32)"
# Read e9.0 over and over while the host stops and restarts the target.
n=0
while [ $n -lt 6 ]; do
  echo "MD5 e9.0 $(dd if=/dev/etherd/e9.0 bs=1M iflag=direct 2>/dev/null | md5sum | cut -c1-32) t=$(cut -d' ' -f1 /proc/uptime)"
  n=$((n+1))
done
