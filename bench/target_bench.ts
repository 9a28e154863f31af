/**
 * `aoe target` against Debian's vblade, side by side in one run with the same
 * load (bench/loadgen.ts over the project's TPACKET ring link): sequential read
 * and write MB/s, 4 KiB random read IOPS, and the target's CPU time per
 * request, at MTU 1500 and 9000, with 1, 16 and 64 requests outstanding.
 * Images live on tmpfs so the numbers measure the targets, not a disk.
 *
 *   deno run -A bench/target_bench.ts [--seconds 2] [--mtu 1500,9000] [--qd 1,16,64]
 *                                     [--targets vblade,aoe,aoe-packet,aoe-pcap]
 *
 * "aoe" is the default link (ring); aoe-packet and aoe-pcap are the other kinds.
 * "null" is bench/null_target.ts, a target with no disk I/O: what this load
 * generator and link can carry at all, the ceiling of any ratio shown.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cpuSeconds } from "./cpu.ts";
import { inNetns, RingLink } from "../link/mod.ts";
import { sectorsPerFrame } from "../wire/mod.ts";
import { TestNet } from "../tests/helpers/netns.ts";
import { Daemon } from "../tests/helpers/procs.ts";
import { targetArgv } from "./targets.ts";
import { runLoad } from "./loadgen.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "2" },
    mtu: { type: "string", default: "1500,9000" },
    qd: { type: "string", default: "1,16,64" },
    targets: { type: "string", default: "vblade,aoe,aoe-packet,aoe-pcap" },
    "image-mib": { type: "string", default: "256" },
  },
});
const seconds = Number(values.seconds);
const mtus = values.mtu!.split(",").map(Number);
const depths = values.qd!.split(",").map(Number);
const targetNames = values.targets!.split(",");
const imageBytes = Number(values["image-mib"]) * 1024 * 1024;
const capacity = imageBytes / 512;
interface Cell {
  mtu: number;
  workload: string;
  qd: number;
  target: string;
  value: number; // MB/s or IOPS
  cpuUs: number; // target CPU µs per request
  retransmits: number;
}

const workloads = [
  { name: "seq read MB/s", mode: "read" as const },
  { name: "seq write MB/s", mode: "write" as const },
  { name: "4K rand read IOPS", mode: "randread" as const },
];

const cells: Cell[] = [];
const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "aoe-bench-" });
try {
  for (const mtu of mtus) {
    const net = await TestNet.create({ mtu });
    try {
      const sectors = sectorsPerFrame(mtu);
      const link = inNetns(net.namespaces[1], () => new RingLink("i0"));
      const dst = parseInt((await net.mac(0, "t1p0")).replaceAll(":", ""), 16);
      for (const target of targetNames) {
        const image = `${dir}/${target}.img`;
        const file = await Deno.open(image, { write: true, create: true, truncate: true });
        await file.truncate(imageBytes);
        // Fill it, so reads find data in the page cache as writes leave it.
        const chunk = new Uint8Array(1 << 20).fill(0x5a);
        for (let at = 0; at < imageBytes; at += chunk.length) await file.write(chunk);
        file.close();
        const daemon = new Daemon(net.in(0, targetArgv(target, { image, sectors: capacity })));
        await daemon.waitFor(/e9\.0, \d+ sectors/);
        await runLoad(link, {
          dst,
          shelf: 9,
          slot: 0,
          mode: "read",
          queueDepth: 16,
          sectors,
          capacity,
          durationMs: 300,
        });
        for (const workload of workloads) {
          for (const qd of depths) {
            const cpuBefore = cpuSeconds(daemon.pid);
            const r = await runLoad(link, {
              dst,
              shelf: 9,
              slot: 0,
              mode: workload.mode,
              queueDepth: qd,
              sectors,
              ioSectors: 8,
              capacity,
              durationMs: seconds * 1000,
            });
            const cpu = cpuSeconds(daemon.pid) - cpuBefore;
            const perIo = workload.mode === "randread" ? Math.max(1, Math.ceil(8 / sectors)) : 1;
            const value = workload.mode === "randread"
              ? r.requests / perIo / r.seconds
              : r.bytes / r.seconds / 1e6;
            cells.push({
              mtu,
              workload: workload.name,
              qd,
              target,
              value,
              cpuUs: (cpu / r.requests) * 1e6,
              retransmits: r.retransmits,
            });
            console.error(
              `mtu ${mtu} ${target} ${workload.name} qd ${qd}: ${value.toFixed(0)} (${
                ((cpu / r.requests) * 1e6).toFixed(2)
              } us/req, ${r.retransmits} rexmit, ${r.errors} errors)`,
            );
          }
        }
        await daemon.stop();
        Deno.removeSync(image);
      }
      link.close();
    } finally {
      await net.close();
    }
  }
} finally {
  Deno.removeSync(dir, { recursive: true });
}

// The table: each cell's value and CPU per request per target, then aoe / vblade ratios.
const header = ["mtu", "workload", "qd", ...targetNames.flatMap((t) => [t, `${t} us/req`])];
const ratioTargets = targetNames.filter((t) => t !== "vblade");
if (targetNames.includes("vblade")) {
  header.push(...ratioTargets.flatMap((t) => [`${t}/vblade`, `${t} cpu/vblade`]));
}
console.log(`| ${header.join(" | ")} |`);
console.log(`|${header.map(() => "---").join("|")}|`);
for (const mtu of mtus) {
  for (const workload of workloads) {
    for (const qd of depths) {
      const row = (t: string) =>
        cells.find((c) =>
          c.mtu === mtu && c.workload === workload.name && c.qd === qd && c.target === t
        )!;
      const line: string[] = [String(mtu), workload.name, String(qd)];
      for (const t of targetNames) line.push(row(t).value.toFixed(0), row(t).cpuUs.toFixed(2));
      if (targetNames.includes("vblade")) {
        for (const t of ratioTargets) {
          line.push(
            (row(t).value / row("vblade").value).toFixed(2),
            (row(t).cpuUs / row("vblade").cpuUs).toFixed(2),
          );
        }
      }
      console.log(`| ${line.join(" | ")} |`);
    }
  }
}
