/**
 * What the CRC extension costs per MiB (docs/extensions.md §4), side by side:
 * CRC32C (this project's default) and AoEde's CRC8x4, at the data sizes of
 * an MTU 1500 frame (2 sectors) and an MTU 9000 frame (17 sectors):
 *
 * * the checksum alone;
 * * the target's end: screening a write frame (CRC check) and finishing a read
 *   reply (CRC appended), against a session without a checksum;
 * * the initiator's end: appending a write's CRC and verifying a read reply's.
 *
 * And, with --e2e, writes and reads through the whole in-memory stack
 * (target and initiator in this process) with each checksum and none.
 *
 *   deno run -A bench/crc_bench.ts [--mib 64] [--e2e]
 *
 * @module
 */

import { memoryDriver } from "../testing/memory_driver.ts";
import { parseArgs } from "node:util";
import { InitiatorExtensions } from "../driver/extensions.ts";
import { MemorySegment } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import { ExtensionTable, Session } from "../target/extensions.ts";
import { TargetServer } from "../target/server.ts";
import {
  appendCrc,
  ATA_HEADER_LENGTH,
  AtaOp,
  CRC_KINDS,
  type CrcKind,
  dataCrc,
  encodeAta,
  encodeRequestHeader,
} from "../wire/mod.ts";
import { cpuSeconds } from "./cpu.ts";

const { values } = parseArgs({
  options: { mib: { type: "string", default: "64" }, e2e: { type: "boolean", default: false } },
});
const MIB = Number(values.mib);
const KINDS: (CrcKind | undefined)[] = [undefined, ...CRC_KINDS];
const label = (kind: CrcKind | undefined) => kind ?? "none";

/** Runs `fn` over `frames` frames of `bytes` data bytes; returns ms of CPU per MiB. */
function perMiB(bytes: number, fn: () => void): number {
  const frames = Math.ceil((MIB * 1048576) / bytes);
  for (let i = 0; i < Math.min(frames, 2000); i++) fn(); // warm-up
  const cpu0 = cpuSeconds("self");
  const t0 = performance.now();
  for (let i = 0; i < frames; i++) fn();
  const wall = performance.now() - t0;
  const cpu = (cpuSeconds("self") - cpu0) * 1000;
  return Math.max(wall, cpu) / MIB;
}

function frame(bytes: number, command: number): Uint8Array {
  const f = new Uint8Array(ATA_HEADER_LENGTH + bytes + 4);
  encodeRequestHeader(f, { dst: 1, src: 2, shelf: 1, slot: 0, command: 0, tag: 1 });
  encodeAta(f, { aflags: 0x41, feature: 0, sectorCount: bytes / 512, command, lba: 0 });
  for (let i = ATA_HEADER_LENGTH; i < ATA_HEADER_LENGTH + bytes; i++) f[i] = i * 7;
  return f;
}

const rows: string[][] = [];
for (const bytes of [1024, 8704]) {
  for (const kind of KINDS) {
    const write = frame(bytes, AtaOp.writeSectorsExt);
    const read = frame(bytes, AtaOp.readSectorsExt);
    if (kind) appendCrc(kind, write, ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + bytes);
    const data = write.subarray(ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + bytes);
    const alone = kind ? perMiB(bytes, () => dataCrc(kind, data)) : 0;
    // The target's end.
    const table = new ExtensionTable({}, () => {});
    const session = new Session(2, { name: "bench" } as never);
    session.crc = kind;
    const reply = new Uint8Array(write.length);
    const length = write.length;
    const target = perMiB(bytes, () => {
      table.screenAta(session, write, length, reply);
      reply[27] = 0x40;
      table.finishAta(session, read, reply, ATA_HEADER_LENGTH + bytes);
    });
    // The initiator's end.
    const ext = new InitiatorExtensions({ tags: "counter", crc: kind ?? "none" }, () => {});
    const replyFrame = read.slice();
    replyFrame[27] = 0x40;
    if (kind) appendCrc(kind, replyFrame, ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + bytes);
    const sentRead = { isRead: true, isWrite: false, bytes };
    const initiator = perMiB(bytes, () => {
      if (kind) appendCrc(kind, write, ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + bytes);
      ext.verify(kind, replyFrame, replyFrame.length, sentRead);
    });
    rows.push([
      `${bytes / 512} sectors`,
      label(kind),
      alone.toFixed(3),
      target.toFixed(3),
      initiator.toFixed(3),
    ]);
  }
}
console.log(`CPU ms per MiB of data (${MIB} MiB each; a write and a read per MiB at each end)`);
console.log(
  ["frame", "crc", "checksum", "target end", "initiator end"].map((h) => h.padStart(14)).join(""),
);
for (const row of rows) console.log(row.map((v) => v.padStart(14)).join(""));

if (values.e2e) {
  console.log("\nthrough the in-memory stack: ms per MiB written then read (wall, one process)");
  for (const kind of KINDS) {
    const ms = await endToEnd(kind);
    console.log(`${label(kind).padStart(14)}${ms.toFixed(2).padStart(14)}`);
  }
}

async function endToEnd(kind: CrcKind | undefined): Promise<number> {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-crc-bench-" });
  const segment = new MemorySegment({ mtu: 9000 });
  const store = new MemoryStore(65536);
  const server = new TargetServer(
    [new Export({ shelf: 1, slot: 0, store, bufferCount: 64 })],
    [segment.attach(1, "tgt0")],
  );
  server.run();
  const link = segment.attach(2, "eth1");
  const driver = memoryDriver(link, dir, { params: { crc: kind ?? "none" }, files: false });
  driver.start();
  try {
    while (!driver.initiator.devices.get(1, 0)?.up) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100)); // the declaration's answer
    const dev = driver.blockDevice("e1.0")!;
    const chunk = new Uint8Array(1 << 20).fill(0x5a);
    const t0 = performance.now();
    for (let i = 0; i < MIB; i++) {
      await dev.write((i % 32) << 20, chunk);
      await dev.read((i % 32) << 20, chunk.length);
    }
    return (performance.now() - t0) / MIB;
  } finally {
    await driver.stop();
    await server.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}
