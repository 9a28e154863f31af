/**
 * The block I/O interface the rest of the program uses (the NBD bridge):
 * byte offsets and lengths in whole sectors, many requests in flight.
 *
 * @module
 */

import { encodeDsmRanges, SECTOR_SIZE } from "../wire/mod.ts";
import type { Initiator } from "./commands.ts";
import type { AoeDevice } from "./device.ts";

/** A handle on one initiator device. */
export class BlockDevice {
  /**
   * A handle on `device`, whose I/O `initiator` carries.
   *
   * @param initiator the engine
   * @param device the AoE device
   */
  constructor(readonly initiator: Initiator, readonly device: AoeDevice) {}

  /** The device name, e.g. "e9.0". */
  get name(): string {
    return this.device.name;
  }

  /** Capacity in bytes (0 while the device is down). */
  get size(): number {
    return this.device.sectors * SECTOR_SIZE;
  }

  /** Whether the device is up (I/O fails while it is down). */
  get up(): boolean {
    return this.device.up;
  }

  /** Marks the device open (rmmod refuses, size changes wait for revalidate). */
  open(): void {
    this.device.openCount++;
    this.initiator.hooks.changed(this.device);
  }

  /** Undoes one {@link open}. */
  close(): void {
    if (this.device.openCount > 0) this.device.openCount--;
    this.initiator.hooks.changed(this.device);
  }

  #check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`bad offset or length: ${offset}, ${length}`);
    }
    if (offset % SECTOR_SIZE || length % SECTOR_SIZE) {
      throw new RangeError("offset and length must be multiples of 512");
    }
    if (offset < 0 || offset + length > this.size) {
      throw new RangeError(`${offset}+${length} is past the end of ${this.name}`);
    }
  }

  /** Reads `length` bytes at `offset` into `into` (or a new buffer). */
  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#check(offset, length);
    const data = into ?? new Uint8Array(length);
    if (length > 0) {
      await this.initiator.submit(this.device, {
        kind: "read",
        lba: offset / SECTOR_SIZE,
        sectors: length / SECTOR_SIZE,
        data,
      });
    }
    return data;
  }

  /** Writes `data` at `offset`; with `fua` it is durable on the target before this resolves. */
  async write(offset: number, data: Uint8Array, options: { fua?: boolean } = {}): Promise<void> {
    this.#check(offset, data.length);
    if (data.length === 0) return;
    await this.initiator.submit(this.device, {
      kind: "write",
      lba: offset / SECTOR_SIZE,
      sectors: data.length / SECTOR_SIZE,
      data,
      fua: options.fua,
    });
  }

  /** The target said in IDENTIFY that it supports TRIM (DATA SET MANAGEMENT). */
  get canTrim(): boolean {
    return this.device.identity?.trim ?? false;
  }

  /** Trimmed sectors read back as zeros. */
  get trimReadsZeros(): boolean {
    return this.device.identity?.trimReadsZeros ?? false;
  }

  /** A write with `fua` is on the target's disk before it resolves (WRITE FUA, or a FLUSH after it). */
  get canFua(): boolean {
    return true;
  }

  /**
   * Every handle on the device goes through the same initiator, and FLUSH
   * reaches the target's disk: what one user completed, every user sees.
   */
  get canMultiConn(): boolean {
    return true;
  }

  /**
   * Deallocates a range with DATA SET MANAGEMENT / TRIM: blocks of range
   * entries (wire/dsm.ts, docs/protocol.md §3.1).
   */
  async trim(offset: number, length: number): Promise<void> {
    this.#check(offset, length);
    if (!this.canTrim) throw new Error(`${this.name} does not support TRIM`);
    if (length === 0) return;
    const data = encodeDsmRanges(offset / SECTOR_SIZE, length / SECTOR_SIZE);
    const blocks = data.length / SECTOR_SIZE;
    await this.initiator.submit(this.device, { kind: "trim", lba: 0, sectors: blocks, data });
  }

  /** Completes after every earlier write is durable on the targets (FLUSH CACHE). */
  flush(): Promise<void> {
    return this.initiator.submit(this.device, { kind: "flush", lba: 0, sectors: 0 });
  }
}
