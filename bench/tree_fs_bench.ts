/**
 * What the initiator's attribute tree costs the filesystem under it: for N
 * devices, a directory of six attribute files each, written as
 * driver/sysfs.ts writes a new device (filled in a staging directory, then
 * renamed into `block/` whole), and for comparison filled in place and as
 * six files in one existing directory. Side by side on tmpfs (/dev/shm) and
 * a disk filesystem (/var/tmp), interleaved over rounds; prints a Markdown
 * table of milliseconds per 1,000 devices. It shows where bench/scale_bench.ts's
 * "all up" time on a disk tree goes: the filesystem, not discovery.
 *
 *   deno run -A bench/tree_fs_bench.ts [--n 1000] [--rounds 3]
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { n: { type: "string", default: "1000" }, rounds: { type: "string", default: "3" } },
});
const N = Number(values.n);
const ROUNDS = Number(values.rounds);
const ATTRIBUTES = ["state", "mac", "netif", "firmware-version", "payload", "size"];
const TREES = { tmpfs: "/dev/shm", disk: "/var/tmp" } as const;
const WAYS = [
  "staged and renamed (driver/sysfs.ts)",
  "directory filled in place",
  "files only",
] as const;
type Way = typeof WAYS[number];

function writeDevices(root: string, way: Way): number {
  Deno.mkdirSync(`${root}/block`);
  Deno.mkdirSync(`${root}/.new`);
  Deno.mkdirSync(`${root}/flat`);
  const started = performance.now();
  for (let i = 0; i < N; i++) {
    if (way === "files only") {
      for (const name of ATTRIBUTES) Deno.writeTextFileSync(`${root}/flat/${name}${i}`, "up\n");
      continue;
    }
    const final = `${root}/block/etherd!e${i >> 8}.${i & 0xff}`;
    const dir = way === "directory filled in place" ? final : `${root}/.new/etherd!${i}`;
    Deno.mkdirSync(dir);
    Deno.chmodSync(dir, 0o755);
    for (const name of ATTRIBUTES) {
      Deno.writeTextFileSync(`${dir}/${name}`, "up\n");
      Deno.chmodSync(`${dir}/${name}`, 0o644);
    }
    if (dir !== final) Deno.renameSync(dir, final);
  }
  return performance.now() - started;
}

const results = new Map<string, number[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const way of WAYS) {
    for (const [tree, base] of Object.entries(TREES)) {
      const root = Deno.makeTempDirSync({ dir: base, prefix: "aoe-treebench-" });
      try {
        const ms = writeDevices(root, way);
        const key = `${way}|${tree}`;
        results.set(key, [...results.get(key) ?? [], ms * 1000 / N]);
      } finally {
        Deno.removeSync(root, { recursive: true });
      }
    }
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`${N} devices, medians of ${ROUNDS} interleaved rounds, ms per 1,000 devices`);
console.log("| way | tmpfs | disk | disk / tmpfs |");
console.log("|---|---|---|---|");
for (const way of WAYS) {
  const tmpfs = median(results.get(`${way}|tmpfs`)!);
  const disk = median(results.get(`${way}|disk`)!);
  console.log(
    `| ${way} | ${tmpfs.toFixed(0)} | ${disk.toFixed(0)} | ${(disk / tmpfs).toFixed(1)} |`,
  );
}
