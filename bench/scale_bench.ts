/**
 * Discovery at scale (issue 14): N exports served by one `aoe target
 * --config` process, by several, or by N vblade processes, and the initiator
 * (`aoe modprobe`) in another namespace, started in either order; on every
 * link kind, with the initiator's run-time tree (attribute files, sockets) on
 * tmpfs and on a disk filesystem. Prints a Markdown table with, per case:
 *
 * - start: how long the later side took to start (the targets until every
 *   start line, or `aoe modprobe`);
 * - all up: from the beginning of the later start until every device reads
 *   "up" in the attribute tree (nothing asks for a discovery meanwhile), or
 *   how many were up at the time-out;
 * - the daemon's RSS (and, when the initiator starts first, its growth per
 *   device over its empty size), the targets' RSS (summed);
 * - idle CPU over `--idle` seconds once all are up: the daemon's per device,
 *   the targets' in all;
 * - the time of `aoe status` and of `nbdinfo --list` through the NBD bridge;
 * - the initiator's refused devices, retransmissions and lost frames.
 *
 *   deno run -A bench/scale_bench.ts [--n 64,1000,4000] [--link ring,packet,pcap]
 *     [--tree tmpfs,disk,disk-in-place] [--cases one,one-later,several,several-later,vblade-later]
 *     [--procs 4] [--timeout 30] [--idle 3]
 *
 * Case names: `one` is one `aoe target` process started before the
 * initiator, `several` `--procs` processes; `-later` starts them after the
 * initiator; `vblade-later` starts N vblade processes after it (`vblade`
 * starts them before). Images are sparse files on tmpfs. Every case runs in
 * its own namespaces and cleans up on failure, time-out and Ctrl-C.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { LinkKind } from "../link/mod.ts";
import { TestInitiator } from "../testing/initiator.ts";
import { TestNet } from "../testing/netns.ts";
import type { Daemon } from "../testing/procs.ts";
import {
  AllUpTimeout,
  cpuSeconds,
  rssBytes,
  type ScaleExport,
  scaleExports,
  sparseImages,
  splitExports,
  startConfigTarget,
  startVblades,
  waitAllUp,
  writeScaleConfig,
} from "../testing/scale.ts";

const CASES = ["one", "one-later", "several", "several-later", "vblade", "vblade-later"] as const;
type Case = typeof CASES[number];
/**
 * Where the run directory is: on tmpfs, on a disk filesystem (the tree then
 * lives on /dev/shm behind a symlink, the default: driver/memory_tree.ts),
 * or on disk with the tree written there in place (AOE_TREE_IN_PLACE=1).
 */
const TREES = { tmpfs: "/dev/shm", disk: "/var/tmp", "disk-in-place": "/var/tmp" } as const;
type Tree = keyof typeof TREES;

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "64,1000,4000" },
    link: { type: "string", default: "ring,packet,pcap" },
    tree: { type: "string", default: "tmpfs,disk,disk-in-place" },
    cases: { type: "string", default: "one,one-later,several,several-later,vblade-later" },
    procs: { type: "string", default: "4" },
    timeout: { type: "string", default: "30" },
    idle: { type: "string", default: "3" },
    help: { type: "boolean", short: "h" },
  },
});

function fail(message: string): never {
  console.error(`scale_bench: ${message}`);
  Deno.exit(1);
}

if (values.help) {
  console.log(
    "deno run -A bench/scale_bench.ts [--n 64,1000,4000] [--link ring,packet,pcap] [--tree tmpfs,disk,disk-in-place] [--cases " +
      CASES.join(",") + "] [--procs 4] [--timeout 30] [--idle 3]",
  );
  Deno.exit(0);
}
const sizes = values.n!.split(",").map(Number);
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 65535 * 25)) {
  fail("--n: counts of exports");
}
const links = values.link!.split(",") as LinkKind[];
if (links.some((l) => !["ring", "packet", "pcap"].includes(l))) {
  fail("--link: ring, packet or pcap");
}
const trees = values.tree!.split(",") as Tree[];
if (trees.some((t) => !(t in TREES))) fail("--tree: tmpfs, disk or disk-in-place");
const cases = values.cases!.split(",") as Case[];
if (cases.some((c) => !CASES.includes(c))) fail(`--cases: ${CASES.join(", ")}`);
const procs = Number(values.procs);
const timeoutMs = Number(values.timeout) * 1000;
const idleMs = Number(values.idle) * 1000;
if (!(procs >= 1) || !(timeoutMs > 0) || !(idleMs > 0)) {
  fail("--procs, --timeout, --idle: positive numbers");
}

/** One row of the table. */
interface Row {
  n: number;
  link: LinkKind;
  tree: Tree;
  kase: Case;
  startMs?: number;
  allUpMs?: number;
  up: number;
  daemonRss?: number;
  emptyRss?: number;
  targetRss?: number;
  idleDaemonPct?: number;
  idleTargetPct?: number;
  statusMs?: number;
  listMs?: number;
  notes: string[];
}

/** Cleanup of the case that runs, also on Ctrl-C. */
let cleanup: (() => Promise<void>) | undefined;
let interrupted = false;
const onSignal = async () => {
  if (interrupted) return;
  interrupted = true;
  console.error("scale_bench: interrupted, cleaning up");
  await cleanup?.();
  Deno.exit(130);
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

/** Rejects after `ms` with `what`, so that no step hangs a case. */
function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function daemonPid(initiator: TestInitiator): number {
  try {
    return Number(Deno.readTextFileSync(`${initiator.runDir}/aoe.pid`).trim());
  } catch {
    return NaN;
  }
}

/** SIGKILLs every process started with `--rundir=DIR` (this run's own directory, named after its pid). */
function killRunDirDaemons(runDir: string): void {
  const mark = `--rundir=${runDir}\0`;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes(mark)) Deno.kill(Number(entry.name), "SIGKILL");
    } catch { /* gone */ }
  }
}

async function runCase(n: number, link: LinkKind, tree: Tree, kase: Case): Promise<Row> {
  const row: Row = { n, link, tree, kase, up: 0, notes: [] };
  const exports = scaleExports(n);
  const names = exports.map((e) => e.name);
  const images = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "aoe-scale-" });
  const net = await TestNet.create({});
  const initiator = new TestInitiator(net, 1, {
    under: TREES[tree],
    treeInPlace: tree === "disk-in-place",
  });
  const targets: Daemon[] = [];
  let closing: Promise<void> | undefined;
  // Ctrl-C during the cleanup waits for the same cleanup.
  const close = () =>
    closing ??= (async () => {
      await Promise.all(targets.map((d) => d.stop(2000).catch(() => {})));
      await deadline(initiator.close(), 15000, "rmmod").catch(() => {});
      await net.close();
      // A daemon that `aoe modprobe` forked while the namespace's processes were killed.
      killRunDirDaemons(initiator.runDir);
      Deno.removeSync(images, { recursive: true });
      try {
        Deno.removeSync(initiator.runDir, { recursive: true });
      } catch { /* removed by rmmod */ }
    })();
  cleanup = close;
  try {
    const paths = sparseImages(images, exports, 64 << 20);
    const groups: ScaleExport[][] = kase.startsWith("several") ? splitExports(n, procs) : [exports];
    const startTargets = async () => {
      if (kase.startsWith("vblade")) {
        targets.push(
          ...await startVblades(net, exports, { netif: "t1p0", images: paths, timeoutMs }),
        );
        return;
      }
      const started = groups.map((group, i) => {
        const config = `${images}/targets${i}.conf`;
        writeScaleConfig(config, group, { netif: "t1p0", images: paths, link });
        return startConfigTarget(net, config, group.length, { timeoutMs });
      });
      const settled = await Promise.allSettled(started);
      for (const s of settled) if (s.status === "fulfilled") targets.push(s.value);
      const failed = settled.find((s) => s.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    };
    const modprobe = () =>
      deadline(
        initiator.modprobe(`--link=${link}`, `aoe_maxdevs=${Math.max(1024, n)}`),
        timeoutMs,
        "aoe modprobe",
      );
    let since: number;
    if (kase.endsWith("-later")) {
      await modprobe();
      await sleep(500);
      row.emptyRss = rssBytes(daemonPid(initiator));
      since = performance.now();
      row.startMs = (await timed(startTargets)).ms;
    } else {
      await startTargets();
      since = performance.now();
      row.startMs = (await timed(modprobe)).ms;
    }
    try {
      row.allUpMs = await waitAllUp(initiator.sysDir, names, { since, timeoutMs });
      row.up = n;
    } catch (error) {
      if (!(error instanceof AllUpTimeout)) throw error;
      row.up = error.up;
      row.notes.push(
        `not up: ${error.missing.slice(0, 3).join(" ")}${error.missing.length > 3 ? " ..." : ""}`,
      );
    }
    await sleep(1000);
    const pid = daemonPid(initiator);
    const targetPids = targets.map((d) => d.pid);
    const daemonCpu0 = cpuSeconds(pid);
    const targetCpu0 = targetPids.reduce((sum, p) => sum + cpuSeconds(p), 0);
    const idleStart = performance.now();
    await sleep(idleMs);
    const idleSeconds = (performance.now() - idleStart) / 1000;
    row.idleDaemonPct = (cpuSeconds(pid) - daemonCpu0) / idleSeconds * 100 / n;
    row.idleTargetPct = (targetPids.reduce((sum, p) => sum + cpuSeconds(p), 0) - targetCpu0) /
      idleSeconds * 100;
    row.daemonRss = rssBytes(pid);
    row.targetRss = targetPids.reduce((sum, p) => sum + rssBytes(p), 0);

    const status = await timed(() => deadline(initiator.aoe(["status"]), timeoutMs, "aoe status"));
    row.statusMs = status.ms;
    if (status.value.code !== 0) row.notes.push(`aoe status exit ${status.value.code}`);
    const list = await timed(() =>
      deadline(
        net.run(1, ["nbdinfo", "--list", `nbd+unix:///?socket=${initiator.runDir}/nbd.sock`]),
        timeoutMs,
        "nbdinfo --list",
      )
    );
    row.listMs = list.ms;
    const listed = (list.value.stdout.match(/^export="/gm) ?? []).length;
    if (list.value.code !== 0) row.notes.push(`nbdinfo exit ${list.value.code}`);
    else if (listed !== row.up) row.notes.push(`nbdinfo listed ${listed}`);
    const counters = (await deadline(initiator.status(), timeoutMs, "status")).counters;
    for (const key of Object.keys(counters).sort()) {
      const value = counters[key];
      if (value > 0 && /refused|retransmit|drop|lost|overrun|malformed/i.test(key)) {
        row.notes.push(`${key} ${value}`);
      }
    }
  } catch (error) {
    row.notes.push(`failed: ${(error as Error).message.split("\n")[0].slice(0, 120)}`);
  } finally {
    await close();
    cleanup = undefined;
  }
  return row;
}

const mb = (bytes?: number) => bytes === undefined || isNaN(bytes) ? "-" : (bytes / 1e6).toFixed(0);
const sec = (ms?: number) => ms === undefined ? "-" : (ms / 1000).toFixed(2);
const pct = (value?: number, digits = 4) =>
  value === undefined || isNaN(value) ? "-" : value.toFixed(digits);

const header = [
  "N",
  "link",
  "tree",
  "case",
  "start s",
  "all up s",
  "up",
  "daemon RSS MB",
  "daemon KB/device",
  "targets RSS MB",
  "daemon idle CPU %/device",
  "targets idle CPU %",
  "aoe status s",
  "nbdinfo --list s",
  "notes",
];
const rows: string[] = [];
for (const n of sizes) {
  for (const link of links) {
    for (const tree of trees) {
      for (const kase of cases) {
        if (interrupted) break;
        console.error(`scale_bench: N=${n} link=${link} tree=${tree} case=${kase} ...`);
        const r = await runCase(n, link, tree, kase);
        const perDevice = r.emptyRss !== undefined && r.daemonRss !== undefined && r.up > 0
          ? ((r.daemonRss - r.emptyRss) / 1024 / r.up).toFixed(0)
          : "-";
        const line = `| ${
          [
            r.n,
            r.link,
            r.tree,
            r.kase,
            sec(r.startMs),
            r.allUpMs === undefined ? "timeout" : sec(r.allUpMs),
            `${r.up}/${r.n}`,
            mb(r.daemonRss),
            perDevice,
            mb(r.targetRss),
            pct(r.idleDaemonPct),
            pct(r.idleTargetPct, 2),
            sec(r.statusMs),
            sec(r.listMs),
            r.notes.join("; ") || "",
          ].join(" | ")
        } |`;
        console.error(line);
        rows.push(line);
      }
    }
  }
}
console.log(`| ${header.join(" | ")} |`);
console.log(`|${header.map(() => "---").join("|")}|`);
for (const line of rows) console.log(line);
Deno.removeSignalListener("SIGINT", onSignal);
Deno.removeSignalListener("SIGTERM", onSignal);
