/**
 * One request at a time, as a netboot client, a database's synchronous
 * commits or `dd oflag=sync` do: round-trip latency (p50, p99) of a 2-sector
 * read against `aoe target` and Debian's vblade, with 0, 1 and 5 ms idle
 * between requests, side by side in one run.
 *
 * Every target runs at once on its own veth pair (a 64 MiB image on tmpfs);
 * the cells are interleaved over rounds, so load elsewhere on the machine
 * falls on all of them alike. The client is this process: it sends one
 * request, sleeps in poll (a blocking FFI call, woken directly by the
 * kernel) until the reply, and between requests sleeps in poll with no
 * descriptors, as a real client would: it never spins.
 *
 *   deno run -A bench/latency_bench.ts [--seconds 2] [--rounds 3] [--gaps 0,1,5]
 *                                      [--targets vblade,aoe,aoe-nospin] [--mtu 1500]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type FrameLink, inNetns, RingLink } from "../link/mod.ts";
import { PollSet } from "../reactor/poll.ts";
import {
  ATA_HEADER_LENGTH,
  AtaFlag,
  AtaOp,
  Command,
  encodeAta,
  encodeRequestHeader,
  readMac,
  readTag,
  writeLba,
  writeTag,
} from "../wire/mod.ts";
import { TestNet } from "../testing/netns.ts";
import { Daemon } from "../testing/procs.ts";
import { targetArgv } from "./targets.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "2" },
    rounds: { type: "string", default: "3" },
    gaps: { type: "string", default: "0,1,5" },
    targets: { type: "string", default: "vblade,aoe,aoe-nospin" },
    mtu: { type: "string", default: "1500" },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const gaps = values.gaps!.split(",").map(Number);
const targetNames = values.targets!.split(",");
const imageBytes = 64 << 20;
const capacity = imageBytes / 512;
const TIMEOUT_MS = 200;

/** A request's frame, rewritten per request (tag, LBA). */
function requestTemplate(link: FrameLink, dst: number): Uint8Array {
  const frame = new Uint8Array(ATA_HEADER_LENGTH);
  encodeRequestHeader(frame, {
    dst,
    src: link.mac,
    shelf: 9,
    slot: 0,
    command: Command.ata,
    tag: 0,
  });
  encodeAta(frame, {
    aflags: AtaFlag.extended,
    feature: 0,
    sectorCount: 2,
    command: AtaOp.readSectorsExt,
    lba: 0,
  });
  return frame;
}

const sleepSet = new PollSet(); // empty: block() is a plain sleep
let tagCounter = 1;

/** Round trips of one cell: one request at a time, `gapMs` asleep between them, for `ms`. */
function measure(link: FrameLink, template: Uint8Array, gapMs: number, ms: number) {
  const samples: number[] = [];
  const wait = new PollSet();
  wait.add(link.pollFd);
  let lost = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (gapMs > 0) sleepSet.block(gapMs);
    const tag = (tagCounter = (tagCounter + 1) & 0x7fffffff);
    const frame = link.txSlot();
    frame.set(template);
    writeTag(frame, tag);
    writeLba(frame, Math.floor(Math.random() * (capacity / 8)) * 8);
    const sent = performance.now();
    link.commit(template.length);
    link.flush();
    let answered = false;
    while (!answered) {
      const n = link.receive();
      for (let i = 0; i < n; i++) {
        const reply = link.rx[i];
        if (
          link.rxLength[i] >= ATA_HEADER_LENGTH && reply[14] & 0x08 &&
          readMac(reply, 0) === link.mac && readTag(reply) === tag
        ) answered = true;
      }
      if (answered) break;
      const left = sent + TIMEOUT_MS - performance.now();
      if (left <= 0) break;
      wait.block(left);
    }
    if (answered) samples.push((performance.now() - sent) * 1000);
    else lost++;
  }
  return { samples, lost };
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

interface Cell {
  samples: number[];
  lost: number;
  /** Per round: [p50, p99]. */
  perRound: [number, number][];
}
const cells = new Map<string, Cell>();
const key = (target: string, gap: number) => `${target}@${gap}`;

const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "aoe-lbench-" });
const net = await TestNet.create({ mtu: Number(values.mtu), pairs: targetNames.length });
const daemons: Daemon[] = [];
const links: FrameLink[] = [];
try {
  const templates: Uint8Array[] = [];
  for (const [i, target] of targetNames.entries()) {
    const image = `${dir}/${i}.img`;
    Deno.writeFileSync(image, new Uint8Array(imageBytes).fill(0x5a));
    const daemon = new Daemon(
      net.in(0, targetArgv(target, { image, sectors: capacity, ifname: `t1p${i}` })),
    );
    daemons.push(daemon);
    await daemon.waitFor(/e9\.0, \d+ sectors/);
    const link = inNetns(net.namespaces[1], () => new RingLink(`i${i}`));
    links.push(link);
    const dst = parseInt((await net.mac(0, `t1p${i}`)).replaceAll(":", ""), 16);
    templates.push(requestTemplate(link, dst));
    measure(link, templates[i], 0, 200); // warm up
  }
  for (let round = 0; round < rounds; round++) {
    for (const gap of gaps) {
      for (const [i, target] of targetNames.entries()) {
        const r = measure(links[i], templates[i], gap, seconds * 1000);
        const cell = cells.get(key(target, gap)) ?? { samples: [], lost: 0, perRound: [] };
        cells.set(key(target, gap), cell);
        cell.samples.push(...r.samples);
        cell.lost += r.lost;
        const sorted = r.samples.sort((a, b) => a - b);
        cell.perRound.push([percentile(sorted, 0.5), percentile(sorted, 0.99)]);
        console.error(
          `round ${round} gap ${gap} ms ${target}: p50 ${
            percentile(sorted, 0.5).toFixed(0)
          } µs, p99 ${
            percentile(sorted, 0.99).toFixed(0)
          } µs, ${r.samples.length} requests, ${r.lost} lost`,
        );
      }
    }
  }
} finally {
  for (const link of links) link.close();
  for (const daemon of daemons) await daemon.stop();
  await net.close();
  Deno.removeSync(dir, { recursive: true });
}

// Pooled percentiles per cell, then each target against vblade (the range over rounds in brackets).
const header = ["idle gap", ...targetNames.flatMap((t) => [`${t} p50 µs`, `${t} p99 µs`])];
const others = targetNames.filter((t) => t !== "vblade");
const withVblade = targetNames.includes("vblade");
if (withVblade) header.push(...others.flatMap((t) => [`${t}/vblade p50`, `${t}/vblade p99`]));
header.push("lost");
console.log(
  `MTU ${values.mtu}, one 2-sector read at a time, ${rounds} interleaved rounds of ${seconds} s a cell`,
);
console.log(`| ${header.join(" | ")} |`);
console.log(`|${header.map(() => "---").join("|")}|`);
for (const gap of gaps) {
  const line = [`${gap} ms`];
  const stats = (t: string) => {
    const cell = cells.get(key(t, gap))!;
    const sorted = cell.samples.sort((a, b) => a - b);
    return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), cell };
  };
  for (const t of targetNames) {
    const s = stats(t);
    line.push(s.p50.toFixed(0), s.p99.toFixed(0));
  }
  if (withVblade) {
    const v = stats("vblade");
    for (const t of others) {
      const s = stats(t);
      const range = (k: 0 | 1) => {
        const ratios = s.cell.perRound.map((r, i) => r[k] / v.cell.perRound[i][k]);
        return `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`;
      };
      line.push(
        `${(s.p50 / v.p50).toFixed(2)} (${range(0)})`,
        `${(s.p99 / v.p99).toFixed(2)} (${range(1)})`,
      );
    }
  }
  line.push(targetNames.map((t) => stats(t).cell.lost).join("/"));
  console.log(`| ${line.join(" | ")} |`);
}
