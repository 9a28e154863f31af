/**
 * What an idle target costs: the CPU of each target (vblade, `aoe target`, or
 * another checkout's with `aoe@DIR`) serving one export that nobody uses,
 * all started at once on their own veth pairs and measured over the same
 * seconds, side by side. vblade sleeps in a blocking recv and costs nothing;
 * a target that wakes on a timer pays for every wake-up.
 *
 *   deno run -A bench/idle_bench.ts [--seconds 10] [--targets vblade,aoe,aoe@DIR]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cpuSeconds } from "./cpu.ts";
import { targetArgv } from "./targets.ts";
import { TestNet } from "../testing/netns.ts";
import { Daemon } from "../testing/procs.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    targets: { type: "string", default: "vblade,aoe" },
  },
});
const seconds = Number(values.seconds);
const names = values.targets!.split(",");
if (!(seconds > 0) || names.length === 0) {
  console.error("idle_bench: --seconds N (N > 0) --targets a,b,...");
  Deno.exit(1);
}

const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "aoe-ibench-" });
const net = await TestNet.create({ pairs: names.length });
const daemons: Daemon[] = [];
const used: number[] = [];
try {
  const sectors = (64 << 20) / 512;
  for (const [i, name] of names.entries()) {
    const image = `${dir}/${i}.img`;
    Deno.openSync(image, { write: true, create: true }).truncateSync(64 << 20);
    const daemon = new Daemon(net.in(0, targetArgv(name, { image, sectors, ifname: `t1p${i}` })));
    daemons.push(daemon);
    await daemon.waitFor(/e9\.0, \d+ sectors/);
  }
  // Past start-up (the first sleeps, JIT warm-up), then the same seconds for all.
  await new Promise((r) => setTimeout(r, 2000));
  const before = daemons.map((d) => cpuSeconds(d.pid));
  const start = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const elapsed = (performance.now() - start) / 1000;
  for (const [i, d] of daemons.entries()) used.push(cpuSeconds(d.pid) - before[i]);
  console.log(
    `idle for ${elapsed.toFixed(1)} s, one export each, CPU % of one core (USER_HZ ticks)`,
  );
  console.log(`| target | CPU s | CPU % |`);
  console.log(`|---|---|---|`);
  for (const [i, name] of names.entries()) {
    console.log(`| ${name} | ${used[i].toFixed(2)} | ${(used[i] / elapsed * 100).toFixed(2)} |`);
  }
} finally {
  for (const daemon of daemons) await daemon.stop();
  await net.close();
  Deno.removeSync(dir, { recursive: true });
}
