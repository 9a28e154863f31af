/**
 * Where a target's CPU goes, per request, under the same load as
 * bench/target_bench.ts: `perf record` samples the target process while the
 * load generator keeps requests outstanding, and each sample is put in one
 * bucket by the kernel functions on its stack. The buckets are turned into
 * microseconds per request with the target's measured CPU time.
 *
 *   deno run -A bench/target_cpu_split.ts [--mtu 9000] [--qd 16] [--seconds 3]
 *                                         [--targets vblade,aoe,null] [--modes read,randread]
 *
 * Buckets, each sample counted once, in this order:
 * - "delivery": softirq work done on the target's CPU while it sends (veth hands
 *   a frame to the peer's stack in the sender's context: the initiator's packet
 *   socket copies the reply into its ring and is woken). Any target pays it.
 * - "disk read" / "disk write": pread / pwrite on the image, the page-cache copy.
 * - "frame receive": the receive system calls (the ring link makes none).
 * - "frame send": the rest of the send system calls (building the sk_buff, veth).
 * - "other kernel": poll, page faults, interrupts, the other system calls.
 * - "user": samples with no kernel frame (the target's own code, libc).
 *
 * Needs `perf` (Debian: linux-perf). @module
 */

import { parseArgs } from "node:util";
import { cpuSeconds } from "./cpu.ts";
import { inNetns, RingLink } from "../link/mod.ts";
import { sectorsPerFrame } from "../wire/mod.ts";
import { TestNet } from "../testing/netns.ts";
import { Daemon } from "../testing/procs.ts";
import { targetArgv } from "./targets.ts";
import { runLoad } from "./loadgen.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    mtu: { type: "string", default: "9000" },
    qd: { type: "string", default: "16" },
    targets: { type: "string", default: "vblade,aoe,null" },
    modes: { type: "string", default: "read,randread" },
  },
});
const seconds = Number(values.seconds);
const mtu = Number(values.mtu);
const queueDepth = Number(values.qd);
const targets = values.targets!.split(",");
const modes = values.modes!.split(",") as ("read" | "write" | "randread")[];
const imageBytes = 256 << 20;
const capacity = imageBytes / 512;

/** Buckets in priority order: a sample goes to the first whose function is on its stack. */
const BUCKETS: [string, RegExp][] = [
  ["delivery", /^(net_rx_action|__napi_poll|process_backlog)$/],
  ["disk read", /^(__x64_sys_pread64|__x64_sys_preadv2?)$/],
  ["disk write", /^(__x64_sys_pwrite64|__x64_sys_pwritev2?)$/],
  [
    "frame receive",
    /^(ksys_read|__x64_sys_read|__x64_sys_recvfrom|__x64_sys_recvmmsg|__x64_sys_recvmsg)$/,
  ],
  [
    "frame send",
    /^(ksys_write|__x64_sys_write|__x64_sys_sendto|__x64_sys_sendmmsg|__x64_sys_sendmsg)$/,
  ],
];

/** Reads `perf script` stacks and counts samples per bucket (user: no kernel frame matched). */
async function splitSamples(data: string): Promise<Map<string, number>> {
  const out = await new Deno.Command("perf", {
    args: ["script", "-i", data, "-F", "ip,sym,dso"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const counts = new Map<string, number>();
  const text = new TextDecoder().decode(out.stdout);
  for (const sample of text.split("\n\n")) {
    const lines = sample.split("\n").filter((line) => line.trim() !== "");
    if (lines.length === 0) continue;
    const symbols = lines.map((line) => line.trim().split(/\s+/)[1] ?? "");
    let bucket = lines.some((line) => line.includes("[kernel.kallsyms]")) ? "other kernel" : "user";
    for (const [name, pattern] of BUCKETS) {
      if (symbols.some((s) => pattern.test(s))) {
        bucket = name;
        break;
      }
    }
    counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
  }
  return counts;
}

const rows: {
  target: string;
  mode: string;
  rate: number;
  us: number;
  split: Map<string, number>;
}[] = [];
const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "aoe-split-" });
const net = await TestNet.create({ mtu });
try {
  const link = inNetns(net.namespaces[1], () => new RingLink("i0"));
  const dst = parseInt((await net.mac(0, "t1p0")).replaceAll(":", ""), 16);
  const sectors = sectorsPerFrame(mtu);
  for (const target of targets) {
    const image = `${dir}/${target}.img`;
    Deno.writeFileSync(image, new Uint8Array(imageBytes).fill(0x5a));
    const daemon = new Daemon(net.in(0, targetArgv(target, { image, sectors: capacity })));
    await daemon.waitFor(/e9\.0, \d+ sectors/);
    const load = (mode: "read" | "write" | "randread", durationMs: number) =>
      runLoad(link, {
        dst,
        shelf: 9,
        slot: 0,
        mode,
        queueDepth,
        sectors,
        ioSectors: 8,
        capacity,
        durationMs,
      });
    await load("read", 300);
    for (const mode of modes) {
      const data = `${dir}/perf.data`;
      const perf = new Deno.Command("perf", {
        args: ["record", "-e", "cpu-clock", "-g", "-o", data, "-p", String(daemon.pid)],
        stdout: "null",
        stderr: "null",
      }).spawn();
      await new Promise((resolve) => setTimeout(resolve, 300)); // perf attached
      const cpuBefore = cpuSeconds(daemon.pid);
      const r = await load(mode, seconds * 1000);
      const cpu = cpuSeconds(daemon.pid) - cpuBefore;
      perf.kill("SIGINT");
      await perf.status;
      const split = await splitSamples(data);
      rows.push({
        target,
        mode,
        rate: r.requests / r.seconds,
        us: (cpu / r.requests) * 1e6,
        split,
      });
      console.error(`${target} ${mode}: ${(r.requests / r.seconds).toFixed(0)} req/s`);
    }
    await daemon.stop();
    Deno.removeSync(image);
  }
  link.close();
} finally {
  await net.close();
  Deno.removeSync(dir, { recursive: true });
}

const names = [...BUCKETS.map(([name]) => name), "other kernel", "user"];
console.log(`MTU ${mtu}, ${queueDepth} requests outstanding; target CPU µs per request:\n`);
console.log(`| target | workload | requests/s | total | ${names.join(" | ")} |`);
console.log(`|${["", "", "", "", ...names].map(() => "---").join("|")}|`);
for (const row of rows) {
  const samples = [...row.split.values()].reduce((a, b) => a + b, 0) || 1;
  const parts = names.map((name) => ((row.us * (row.split.get(name) ?? 0)) / samples).toFixed(2));
  console.log(
    `| ${row.target} | ${row.mode} | ${row.rate.toFixed(0)} | ${row.us.toFixed(2)} | ${
      parts.join(" | ")
    } |`,
  );
}
