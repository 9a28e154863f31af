/**
 * `aoe target` against Debian's vblade, side by side in one run with the same
 * load (bench/loadgen.ts over the project's TPACKET ring link): sequential read
 * and write MB/s, 4 KiB random read IOPS, and the target's CPU time per
 * request, at MTU 1500 and 9000, with 1, 16 and 64 requests outstanding.
 * Images live on tmpfs so the numbers measure the targets, not a disk.
 *
 *   deno run -A bench/target_bench.ts [--seconds 2] [--mtu 1500,9000] [--qd 1,16,64]
 *                                     [--targets vblade,aoe,aoe-packet,aoe-pcap]
 *                                     [--loadgen ts|c] [--hog] [--cpus 0,1] [--rounds 1]
 *
 * `--loadgen c` replaces bench/loadgen.ts by bench/cload.c (plain AF_PACKET,
 * sendmmsg/recvmmsg, compiled with gcc into a temporary directory): a second,
 * independent load generator. `--hog` is a busy host: one CPU-bound process
 * (a shell loop) beside the target; then the target and the hog are pinned
 * with taskset to the first CPU of `--cpus`, the load generator to the second
 * (the whole benchmark process when it is bench/loadgen.ts). Retransmissions
 * (requests unanswered after 200 ms, counted by either load generator) are
 * reported per cell. `--rounds N` repeats every cell N times, the targets
 * interleaved, and reports the median.
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
import { TestNet } from "../testing/netns.ts";
import { Daemon } from "../testing/procs.ts";
import { targetArgv } from "./targets.ts";
import { type LoadOptions, type LoadResult, runLoad } from "./loadgen.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "2" },
    mtu: { type: "string", default: "1500,9000" },
    qd: { type: "string", default: "1,16,64" },
    targets: { type: "string", default: "vblade,aoe,aoe-packet,aoe-pcap" },
    "image-mib": { type: "string", default: "256" },
    loadgen: { type: "string", default: "ts" },
    hog: { type: "boolean", default: false },
    cpus: { type: "string", default: "0,1" },
    rounds: { type: "string", default: "1" },
  },
});
const useC = values.loadgen === "c";
if (!useC && values.loadgen !== "ts") throw new Error("--loadgen must be ts or c");
const [targetCpu, loadCpu] = values.cpus!.split(",");
const rounds = Number(values.rounds);
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

/** bench/cload.c, compiled into the temporary directory. */
async function compileCload(): Promise<string> {
  const binary = `${dir}/cload`;
  const source = new URL("./cload.c", import.meta.url).pathname;
  const out = await new Deno.Command("gcc", {
    args: ["-O2", "-Wall", "-o", binary, source],
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`gcc: ${new TextDecoder().decode(out.stderr)}`);
  return binary;
}

/** Runs bench/cload.c in the initiator's namespace. */
async function runCload(
  net: TestNet,
  binary: string,
  dstMac: string,
  options: Omit<LoadOptions, "dst" | "shelf" | "slot">,
): Promise<LoadResult> {
  const pin = values.hog ? ["taskset", "-c", loadCpu] : [];
  const argv = net.in(1, [
    ...pin,
    binary,
    "i0",
    dstMac,
    "9",
    "0",
    options.mode,
    String(options.queueDepth),
    String(options.sectors),
    String(options.ioSectors ?? options.sectors),
    String(options.capacity),
    String(options.durationMs),
    String(options.timeoutMs ?? 200),
  ]);
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) throw new Error(`cload: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let hog: Daemon | undefined;
try {
  const cload = useC ? await compileCload() : "";
  if (values.hog) {
    hog = new Daemon(["taskset", "-c", targetCpu, "bash", "-c", "while :; do :; done"]);
    // bench/loadgen.ts runs in this process: pin every thread of it.
    if (!useC) {
      await new Deno.Command("taskset", {
        args: ["-a", "-cp", loadCpu, String(Deno.pid)],
        stdout: "null",
      })
        .output();
    }
  }
  for (const mtu of mtus) {
    const net = await TestNet.create({ mtu });
    try {
      const sectors = sectorsPerFrame(mtu);
      const link = useC ? undefined : inNetns(net.namespaces[1], () => new RingLink("i0"));
      const dstMac = await net.mac(0, "t1p0");
      const dst = parseInt(dstMac.replaceAll(":", ""), 16);
      const load = (options: Omit<LoadOptions, "dst" | "shelf" | "slot">) =>
        link
          ? runLoad(link, { dst, shelf: 9, slot: 0, ...options })
          : runCload(net, cload, dstMac, options);
      for (const target of targetNames) {
        const image = `${dir}/${target.replaceAll("/", "_")}.img`;
        const file = await Deno.open(image, { write: true, create: true, truncate: true });
        await file.truncate(imageBytes);
        // Fill it, so reads find data in the page cache as writes leave it.
        const chunk = new Uint8Array(1 << 20).fill(0x5a);
        for (let at = 0; at < imageBytes; at += chunk.length) await file.write(chunk);
        file.close();
      }
      for (let round = 0; round < rounds; round++) {
        for (const target of targetNames) {
          const image = `${dir}/${target.replaceAll("/", "_")}.img`;
          const pin = values.hog ? ["taskset", "-c", targetCpu] : [];
          const daemon = new Daemon(
            net.in(0, [...pin, ...targetArgv(target, { image, sectors: capacity })]),
          );
          await daemon.waitFor(/e9\.0, \d+ sectors/);
          await load({ mode: "read", queueDepth: 16, sectors, capacity, durationMs: 300 });
          for (const workload of workloads) {
            for (const qd of depths) {
              const cpuBefore = cpuSeconds(daemon.pid);
              const r = await load({
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
                `round ${round} mtu ${mtu} ${target} ${workload.name} qd ${qd}: ${
                  value.toFixed(0)
                } (${
                  ((cpu / r.requests) * 1e6).toFixed(2)
                } us/req, ${r.retransmits} rexmit, ${r.errors} errors)`,
              );
            }
          }
          await daemon.stop();
        }
      }
      link?.close();
    } finally {
      await net.close();
    }
  }
} finally {
  await hog?.stop();
  Deno.removeSync(dir, { recursive: true });
}

// The table: each cell's value and CPU per request per target, then aoe / vblade ratios.
console.log(
  `load generator ${useC ? "bench/cload.c" : "bench/loadgen.ts"}${
    values.hog
      ? `, a CPU hog beside the target (target and hog on CPU ${targetCpu}, load on CPU ${loadCpu})`
      : ""
  }, ${seconds} s a cell, ${rounds > 1 ? `medians of ${rounds} interleaved rounds` : "one round"}`,
);
const header = [
  "mtu",
  "workload",
  "qd",
  ...targetNames.flatMap((t) => [t, `${t} us/req`, `${t} rexmit`]),
];
const ratioTargets = targetNames.filter((t) => t !== "vblade");
if (targetNames.includes("vblade")) {
  header.push(...ratioTargets.flatMap((t) => [`${t}/vblade`, `${t} cpu/vblade`]));
}
console.log(`| ${header.join(" | ")} |`);
console.log(`|${header.map(() => "---").join("|")}|`);
for (const mtu of mtus) {
  for (const workload of workloads) {
    for (const qd of depths) {
      const row = (t: string) => {
        const mine = cells.filter((c) =>
          c.mtu === mtu && c.workload === workload.name && c.qd === qd && c.target === t
        );
        return {
          value: median(mine.map((c) => c.value)),
          cpuUs: median(mine.map((c) => c.cpuUs)),
          retransmits: median(mine.map((c) => c.retransmits)),
        };
      };
      const line: string[] = [String(mtu), workload.name, String(qd)];
      for (const t of targetNames) {
        line.push(row(t).value.toFixed(0), row(t).cpuUs.toFixed(2), String(row(t).retransmits));
      }
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
