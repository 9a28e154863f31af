/**
 * The initiator's counters per device, shown by `aoe status --counters`:
 * requests by kind, bytes, retransmissions, errors (ATA, CRC), and frames
 * outstanding now and at most.
 *
 * @module
 */

import type { AoeDevice } from "./device.ts";

/** One device's counters. */
export interface DeviceCounters {
  reads: number;
  writes: number;
  flushes: number;
  trims: number;
  bytesRead: number;
  bytesWritten: number;
  /** Requests that failed (EIO to the caller). */
  failed: number;
  retransmits: number;
  ataErrors: number;
  /** Read replies whose CRC did not match (retried). */
  crcReadErrors: number;
  /** Writes the target refused for a CRC mismatch (retried). */
  crcWriteErrors: number;
  /** Frames outstanding now (sent, not answered). */
  outstanding: number;
  peakOutstanding: number;
}

/** Counters of every device, created on first use. */
export class DeviceCounterTable {
  #table = new WeakMap<AoeDevice, DeviceCounters>();

  /** The counters of `device`. */
  of(device: AoeDevice): DeviceCounters {
    let c = this.#table.get(device);
    if (!c) {
      c = {
        reads: 0,
        writes: 0,
        flushes: 0,
        trims: 0,
        bytesRead: 0,
        bytesWritten: 0,
        failed: 0,
        retransmits: 0,
        ataErrors: 0,
        crcReadErrors: 0,
        crcWriteErrors: 0,
        outstanding: 0,
        peakOutstanding: 0,
      };
      this.#table.set(device, c);
    }
    return c;
  }

  /** A request was submitted. */
  submitted(device: AoeDevice, kind: "read" | "write" | "flush" | "trim", sectors: number): void {
    const c = this.of(device);
    if (kind === "read") {
      c.reads++;
      c.bytesRead += sectors * 512;
    } else if (kind === "write") {
      c.writes++;
      c.bytesWritten += sectors * 512;
    } else if (kind === "flush") c.flushes++;
    else c.trims++;
  }

  /** The frames now outstanding for `device`. */
  outstanding(device: AoeDevice, frames: number): void {
    const c = this.of(device);
    c.outstanding = frames;
    if (frames > c.peakOutstanding) c.peakOutstanding = frames;
  }
}

/** One interface's frame counters (the link's, docs/frame-io.md §8), as the daemon reports them. */
export interface InterfaceCounters {
  /** Frames received. */
  received: number;
  /** Frames sent. */
  sent: number;
  /** Frames the link could not send. */
  sendErrors: number;
  /** Frames the kernel dropped for want of receive room. */
  rxDrops: number;
}

/** The counters of interfaces as a table (`aoe err --counters`, `aoe status --counters`). */
export function formatInterfaceCounters(
  rows: { name: string; counters: InterfaceCounters }[],
): string {
  const head = ["interface", "received", "sent", "send err", "rx drops"];
  const lines = [head.map((h, i) => i === 0 ? h.padEnd(10) : h.padStart(9)).join(" ")];
  for (const { name, counters: c } of rows) {
    lines.push(
      [name.padEnd(10), c.received, c.sent, c.sendErrors, c.rxDrops]
        .map((v, i) => i === 0 ? String(v) : String(v).padStart(9)).join(" "),
    );
  }
  return lines.join("\n");
}

/** The counters of devices as a table (`aoe status --counters`). */
export function formatDeviceCounters(rows: { name: string; counters: DeviceCounters }[]): string {
  const head = [
    "device",
    "reads",
    "writes",
    "flushes",
    "MiB rd",
    "MiB wr",
    "failed",
    "rexmit",
    "ataerr",
    "crc rd/wr",
    "out/peak",
  ];
  const lines = [head.map((h, i) => i === 0 ? h.padEnd(10) : h.padStart(9)).join(" ")];
  for (const { name, counters: c } of rows) {
    lines.push(
      [
        name.padEnd(10),
        c.reads,
        c.writes,
        c.flushes,
        (c.bytesRead / 1048576).toFixed(1),
        (c.bytesWritten / 1048576).toFixed(1),
        c.failed,
        c.retransmits,
        c.ataErrors,
        `${c.crcReadErrors}/${c.crcWriteErrors}`,
        `${c.outstanding}/${c.peakOutstanding}`,
      ].map((v, i) => i === 0 ? String(v) : String(v).padStart(9)).join(" "),
    );
  }
  return lines.join("\n");
}
