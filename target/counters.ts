/**
 * Live traffic counters of an export, as ggaoed keeps them: requests by kind,
 * bytes read and written, errors by kind, retransmissions answered, and the
 * most requests waiting for the export in one received batch (this target
 * answers each batch synchronously, so "outstanding" is what a batch brings;
 * between batches nothing is outstanding). And the table the administrator
 * reads (SIGUSR1, `--stats`).
 *
 * @module
 */

import { ATA_HEADER_LENGTH, AtaOp, Flag, readLba, SECTOR_SIZE } from "../wire/mod.ts";

/** Slots of the recent-request table that recognizes a retransmission (a power of two). */
const RECENT = 64;
/** A repeat within this many milliseconds counts as a retransmission answered. */
const REPEAT_MS = 2000;

/** An export's traffic. */
export interface TrafficCounters {
  requests: {
    read: number;
    write: number;
    flush: number;
    identify: number;
    trim: number;
    other: number;
  };
  bytesRead: number;
  bytesWritten: number;
  errors: {
    /** LBA past the end (ATA IDNF). */
    range: number;
    /** Aborted: I/O failure, read-only export, unsupported command, CRC mismatch (ATA ABRT). */
    aborted: number;
    /** AoE error replies (bad argument, reserved). */
    aoe: number;
  };
  /** A request equal (initiator, command, LBA, count) to one answered within 2 s: most likely a retransmission. */
  retransmissionsAnswered: number;
  /** Requests for this export in the received batch being answered. */
  outstanding: number;
  /** The most requests for this export one received batch held. */
  peakOutstanding: number;
}

/** Counts an export's ATA traffic. */
export class ExportTraffic {
  readonly counters: TrafficCounters = {
    requests: { read: 0, write: 0, flush: 0, identify: 0, trim: 0, other: 0 },
    bytesRead: 0,
    bytesWritten: 0,
    errors: { range: 0, aborted: 0, aoe: 0 },
    retransmissionsAnswered: 0,
    outstanding: 0,
    peakOutstanding: 0,
  };
  #batch = -1;
  #recentKey = new Float64Array(RECENT);
  #recentCount = new Uint16Array(RECENT);
  #recentAt = new Float64Array(RECENT);

  /** A request for this export arrived in received batch number `batch`. */
  arrived(batch: number): void {
    const c = this.counters;
    if (batch !== this.#batch) {
      this.#batch = batch;
      c.outstanding = 0;
    }
    c.outstanding++;
    if (c.outstanding > c.peakOutstanding) c.peakOutstanding = c.outstanding;
  }

  /** The batch is answered. */
  batchDone(): void {
    this.counters.outstanding = 0;
  }

  /** Counts an ATA request from `mac` and the reply of `n` bytes it got. */
  ata(request: Uint8Array, reply: Uint8Array, n: number, mac: number): void {
    const c = this.counters;
    const command = request[27];
    const count = request[26];
    let data = false;
    switch (command) {
      case AtaOp.readSectors:
      case AtaOp.readSectorsExt:
        c.requests.read++;
        data = true;
        break;
      case AtaOp.writeSectors:
      case AtaOp.writeSectorsExt:
        c.requests.write++;
        data = true;
        break;
      case AtaOp.flushCache:
      case AtaOp.flushCacheExt:
        c.requests.flush++;
        break;
      case AtaOp.identifyDevice:
        c.requests.identify++;
        break;
      case AtaOp.dataSetManagement:
        c.requests.trim++;
        break;
      default:
        c.requests.other++;
    }
    if (reply[14] & Flag.error) c.errors.aoe++;
    else if (reply[27] & 0x01) {
      if (reply[25] & 0x10) c.errors.range++;
      else c.errors.aborted++;
    } else if (data) {
      const bytes = count * SECTOR_SIZE;
      if (command === AtaOp.writeSectors || command === AtaOp.writeSectorsExt) {
        c.bytesWritten += bytes;
      } else c.bytesRead += Math.min(bytes, n - ATA_HEADER_LENGTH);
    }
    if (data) this.#noteRepeat(mac, command, readLba(request), count);
  }

  #noteRepeat(mac: number, command: number, lba: number, count: number): void {
    // One number for (initiator, command, LBA): MACs are 48 bits, so mix rather than concatenate.
    const key = (mac % 0x100000) * 0x100000000 + command * 0x1000000 + (lba % 0x1000000);
    // A direct-mapped table: one slot per hash, O(1) per request.
    const at = (lba ^ (lba >>> 6) ^ command ^ mac) & (RECENT - 1);
    const now = performance.now();
    if (
      this.#recentKey[at] === key && this.#recentCount[at] === count &&
      now - this.#recentAt[at] < REPEAT_MS
    ) {
      this.counters.retransmissionsAnswered++;
    }
    this.#recentKey[at] = key;
    this.#recentCount[at] = count;
    this.#recentAt[at] = now;
  }
}

/** The counters of TargetServer.stats() as a table, one line per export and per interface. */
export function formatStatsTable(stats: Record<string, unknown>): string {
  const lines: string[] = [];
  // deno-lint-ignore no-explicit-any
  const exports = (stats.exports ?? {}) as Record<string, any>;
  lines.push(
    [
      "export",
      "reads",
      "writes",
      "flush",
      "other",
      "MiB rd",
      "MiB wr",
      "err rng/abrt/aoe",
      "dup",
      "stale",
      "crc",
      "rexmit",
      "out/peak",
      "freeze",
    ].map((h, i) => i === 0 ? h.padEnd(8) : h.padStart(i === 7 ? 17 : 8)).join(" "),
  );
  for (const [name, e] of Object.entries(exports)) {
    const t = e.traffic as TrafficCounters | undefined;
    const x = e.extensions ?? {};
    if (!t) continue;
    const mib = (bytes: number) => (bytes / 1048576).toFixed(1);
    lines.push(
      [
        name.padEnd(8),
        t.requests.read,
        t.requests.write,
        t.requests.flush,
        t.requests.identify + t.requests.trim + t.requests.other,
        mib(t.bytesRead),
        mib(t.bytesWritten),
        `${t.errors.range}/${t.errors.aborted}/${t.errors.aoe}`.padStart(17),
        x.duplicatesDropped ?? 0,
        x.staleWritesRefused ?? 0,
        x.crcWriteErrors ?? 0,
        t.retransmissionsAnswered,
        `${t.outstanding}/${t.peakOutstanding}`,
        e.freeze ?? "normal",
      ].map((v, i) => (i === 0 || i === 7 ? String(v) : String(v).padStart(8))).join(" "),
    );
  }
  // deno-lint-ignore no-explicit-any
  const links = (stats.links ?? {}) as Record<string, any>;
  // deno-lint-ignore no-explicit-any
  const perLink = (stats.interfaces ?? {}) as Record<string, any>;
  lines.push(
    [
      "netif",
      "rx",
      "tx",
      "txerr",
      "malformed",
      "response",
      "version",
      "notForUs",
      "otherHost",
      "peak",
    ]
      .map((h, i) => i === 0 ? h.padEnd(8) : h.padStart(9)).join(" "),
  );
  for (const [name, l] of Object.entries(links)) {
    const d = perLink[name] ?? {};
    lines.push(
      [
        name.padEnd(8),
        l.received,
        l.sent,
        l.sendErrors,
        d.malformed ?? 0,
        d.responses ?? 0,
        d.badVersion ?? 0,
        d.notForUs ?? 0,
        d.otherHost ?? 0,
        d.peakBatch ?? 0,
      ].map((v, i) => (i === 0 ? String(v) : String(v).padStart(9))).join(" "),
    );
  }
  return lines.join("\n");
}
