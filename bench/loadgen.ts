/**
 * A load generator for AoE targets: keeps a fixed number of ATA requests
 * outstanding on a link and counts completions, retransmitting after a
 * timeout. Used by the benchmarks; not a general initiator.
 *
 * @module
 */

import type { FrameLink } from "../link/mod.ts";
import {
  ATA_HEADER_LENGTH,
  AtaFlag,
  AtaOp,
  Command,
  encodeAta,
  encodeRequestHeader,
  readMac,
  readTag,
  SECTOR_SIZE,
  writeLba,
  writeTag,
} from "../wire/mod.ts";

/** What to run. */
export interface LoadOptions {
  /** Target MAC. */
  dst: number;
  shelf: number;
  slot: number;
  mode: "read" | "write" | "randread";
  /** Requests (frames) outstanding. */
  queueDepth: number;
  /** Sectors per frame. */
  sectors: number;
  /** Sectors of one random I/O (8 = 4 KiB); it is split into frames of `sectors`. */
  ioSectors?: number;
  /** Image capacity in sectors. */
  capacity: number;
  durationMs: number;
  /** Retransmit a request unanswered this long (default 200 ms). */
  timeoutMs?: number;
}

/** What happened. */
export interface LoadResult {
  requests: number;
  bytes: number;
  seconds: number;
  retransmits: number;
  errors: number;
}

/** Runs the load; resolves when `durationMs` has passed and the window drained. */
export async function runLoad(link: FrameLink, options: LoadOptions): Promise<LoadResult> {
  const depth = options.queueDepth;
  const sectors = options.sectors;
  const isWrite = options.mode === "write";
  const frameLength = ATA_HEADER_LENGTH + (isWrite ? sectors * SECTOR_SIZE : 0);
  const template = new Uint8Array(frameLength);
  encodeRequestHeader(template, {
    dst: options.dst,
    src: link.mac,
    shelf: options.shelf,
    slot: options.slot,
    command: Command.ata,
    tag: 0,
  });
  encodeAta(template, {
    aflags: AtaFlag.extended | (isWrite ? AtaFlag.write : 0),
    feature: 0,
    sectorCount: sectors,
    command: isWrite ? AtaOp.writeSectorsExt : AtaOp.readSectorsExt,
    lba: 0,
  });
  for (let i = ATA_HEADER_LENGTH; i < frameLength; i++) template[i] = i & 0xff;

  const tags = new Uint32Array(depth);
  const lbas = new Float64Array(depth);
  const sentAt = new Float64Array(depth);
  const active = new Uint8Array(depth);
  let generation = 0;
  let nextLba = 0;
  let ioLeft = 0;
  const ioFrames = Math.max(1, Math.ceil((options.ioSectors ?? sectors) / sectors));
  const span = options.capacity - sectors * ioFrames;
  const result: LoadResult = { requests: 0, bytes: 0, seconds: 0, retransmits: 0, errors: 0 };

  const pickLba = (): number => {
    if (options.mode === "randread") {
      if (ioLeft === 0) {
        nextLba = Math.floor(Math.random() * (span / 8)) * 8;
        ioLeft = ioFrames;
      }
      ioLeft--;
      const lba = nextLba;
      nextLba += sectors;
      return lba;
    }
    const lba = nextLba;
    nextLba = nextLba + sectors > options.capacity - sectors ? 0 : nextLba + sectors;
    return lba;
  };
  const send = (slot: number, lba: number) => {
    generation = (generation + 1) & 0x7fff;
    const tag = (0x80000000 | generation << 16 | slot) >>> 0;
    tags[slot] = tag;
    lbas[slot] = lba;
    sentAt[slot] = performance.now();
    active[slot] = 1;
    const frame = link.txSlot();
    frame.set(template);
    writeTag(frame, tag);
    writeLba(frame, lba);
    link.commit(frameLength);
  };

  const start = performance.now();
  const end = start + options.durationMs;
  for (let slot = 0; slot < depth; slot++) send(slot, pickLba());
  link.flush();
  let outstanding = depth;
  let lastYield = start;
  let lastCheck = start;
  const timeout = options.timeoutMs ?? 200;
  while (outstanding > 0) {
    const n = link.receive();
    const now = performance.now();
    const refill = now < end;
    for (let i = 0; i < n; i++) {
      const frame = link.rx[i];
      if (
        link.rxLength[i] < ATA_HEADER_LENGTH || !(frame[14] & 0x08) ||
        readMac(frame, 0) !== link.mac
      ) continue;
      const tag = readTag(frame);
      const slot = tag & 0xffff;
      if (slot >= depth || !active[slot] || tags[slot] !== tag) continue; // late duplicate
      if (frame[27] !== 0x40 || frame[14] & 0x04) result.errors++;
      result.requests++;
      result.bytes += sectors * SECTOR_SIZE;
      active[slot] = 0;
      outstanding--;
      if (refill) {
        send(slot, pickLba());
        outstanding++;
      }
    }
    if (now - lastCheck > timeout / 4) {
      lastCheck = now;
      for (let slot = 0; slot < depth; slot++) {
        if (active[slot] && now - sentAt[slot] > timeout) {
          result.retransmits++;
          send(slot, lbas[slot]);
        }
      }
    }
    link.flush();
    if (n === 0) {
      await link.wait(Math.min(5, timeout));
      lastYield = performance.now();
    } else if (now - lastYield > 50) {
      await new Promise((r) => setTimeout(r, 0));
      lastYield = performance.now();
    }
    if (now > end + 5000) break; // a target that stopped answering
  }
  result.seconds = (performance.now() - start) / 1000;
  return result;
}
