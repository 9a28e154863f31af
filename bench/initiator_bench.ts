/**
 * The initiator's throughput through its block interface (driver/blockdev.ts),
 * against Debian's vblade and `aoe target`, next to the link's limit measured
 * in the same run (bench/null_target.ts: a target that does no disk I/O).
 * Sequential reads and writes in 1 MiB requests, 4 KiB random reads, with
 * several requests in flight, at MTU 1500 and 9000. Images on tmpfs.
 *
 *   deno run -A bench/initiator_bench.ts [--seconds 3] [--mtu 1500,9000] [--inflight 8]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Driver } from "../driver/driver.ts";
import { DEFAULT_PARAMS } from "../driver/params.ts";
import { driverPaths } from "../driver/paths.ts";
import { inNetns, openLink } from "../link/mod.ts";
import { TestNet } from "../testing/netns.ts";
import { Daemon } from "../testing/procs.ts";
import { targetArgv } from "./targets.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    mtu: { type: "string", default: "1500,9000" },
    inflight: { type: "string", default: "8" },
    targets: { type: "string", default: "null,aoe,vblade" },
  },
});
const seconds = Number(values.seconds);
const inflight = Number(values.inflight);
const IMAGE = 256 << 20;
const SECTORS = IMAGE / 512;

type Workload = { name: string; size: number; kind: "read" | "write"; random: boolean };
const workloads: Workload[] = [
  { name: "seq read MB/s", size: 1 << 20, kind: "read", random: false },
  { name: "seq write MB/s", size: 1 << 20, kind: "write", random: false },
  { name: "4K rand read MB/s", size: 4096, kind: "read", random: true },
];

const results: {
  mtu: number;
  target: string;
  workload: string;
  mbs: number;
  retransmits: number;
}[] = [];
const shm = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "aoe-ibench-" });
try {
  for (const mtu of values.mtu!.split(",").map(Number)) {
    for (const target of values.targets!.split(",")) {
      const net = await TestNet.create({ mtu });
      const image = `${shm}/${target}.img`;
      Deno.writeFileSync(image, new Uint8Array(0));
      Deno.truncateSync(image, IMAGE);
      const daemon = new Daemon(net.in(0, targetArgv(target, { image, sectors: SECTORS })));
      const driver = new Driver({
        params: { ...DEFAULT_PARAMS, iflist: ["i0"] },
        paths: driverPaths({ runDir: `${shm}/run`, devDir: `${shm}/dev` }),
        openLink: (name) => inNetns(net.namespaces[1], () => openLink(name)),
        listInterfaces: () => ["i0"],
        files: false,
      });
      try {
        await daemon.waitFor(/sectors/);
        driver.start();
        const deadline = Date.now() + 10000;
        while (!driver.initiator.devices.get(9, 0)?.up) {
          if (Date.now() > deadline) throw new Error(`${target}: e9.0 not up`);
          driver.discover();
          await new Promise((r) => setTimeout(r, 100));
        }
        const dev = driver.blockDevice("e9.0")!;
        // Warm up: trains the RTT estimate and opens the windows.
        for (let i = 0; i < 32; i++) await dev.read(i << 20, 1 << 20);
        for (const w of workloads) {
          const before = driver.initiator.counters.retransmits;
          let bytes = 0;
          let next = 0;
          const end = performance.now() + seconds * 1000;
          const start = performance.now();
          const worker = async () => {
            const buffer = new Uint8Array(w.size).fill(0x33);
            while (performance.now() < end) {
              const offset = w.random
                ? Math.floor(Math.random() * (IMAGE / w.size)) * w.size
                : (next = (next + w.size) % IMAGE);
              if (w.kind === "read") await dev.read(offset, w.size, buffer);
              else await dev.write(offset, buffer);
              bytes += w.size;
            }
          };
          await Promise.all(Array.from({ length: w.random ? inflight * 4 : inflight }, worker));
          const mbs = bytes / ((performance.now() - start) / 1000) / 1e6;
          results.push({
            mtu,
            target,
            workload: w.name,
            mbs,
            retransmits: driver.initiator.counters.retransmits - before,
          });
          console.error(
            `mtu ${mtu} ${target} ${w.name}: ${mbs.toFixed(1)} (${
              driver.initiator.counters.retransmits - before
            } retransmits)`,
          );
        }
      } finally {
        await driver.stop();
        await daemon.stop();
        await net.close();
        Deno.removeSync(image);
      }
    }
  }
} finally {
  Deno.removeSync(shm, { recursive: true });
}

const targets = values.targets!.split(",");
const header = [
  "mtu",
  "workload",
  ...targets,
  ...targets.filter((t) => t !== "null").map((t) => `${t}/null`),
];
console.log(`| ${header.join(" | ")} |`);
console.log(`|${header.map(() => "---").join("|")}|`);
for (const mtu of values.mtu!.split(",").map(Number)) {
  for (const w of workloads) {
    const cell = (t: string) =>
      results.find((r) => r.mtu === mtu && r.target === t && r.workload === w.name)!.mbs;
    const row = [String(mtu), w.name, ...targets.map((t) => cell(t).toFixed(1))];
    if (targets.includes("null")) {
      row.push(
        ...targets.filter((t) => t !== "null").map((t) => (cell(t) / cell("null")).toFixed(2)),
      );
    }
    console.log(`| ${row.join(" | ")} |`);
  }
}
