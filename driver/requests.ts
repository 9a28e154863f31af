/**
 * The request queue and completion (the block side of the kernel's aoecmd.c
 * and aoeblk.c): block requests are checked, queued per device, and settled
 * once every frame cut from them is answered (aoe_end_request). Cutting a
 * queued request into frames is the command engine's (driver/commands.ts,
 * aoecmd_work); docs/driver.md describes the order a flush and FUA keep.
 *
 * @module
 */

import { LBA28_MAX_SECTORS, SECTOR_SIZE } from "../wire/mod.ts";
import type { AoeDevice } from "./device.ts";
import type { DeviceCounterTable } from "./device_counters.ts";
import { errorMessage } from "../util/errors.ts";

/** Sectors LBA48 addresses: the lba field of the ATA header has 48 bits (docs/protocol.md §3). */
export const LBA48_MAX_SECTORS = 2 ** 48;

/** The capacity a device's addressing can reach: a larger claim in IDENTIFY is cut to it. */
export function addressableSectors(lba48: boolean): number {
  return lba48 ? LBA48_MAX_SECTORS : LBA28_MAX_SECTORS;
}

/** A block I/O request as the rest of the program submits it. */
export interface BlockRequest {
  /** What the request does. */
  kind: "read" | "write" | "flush" | "trim";
  /** First sector. */
  lba: number;
  /** Sectors. */
  sectors: number;
  /** Read destination or write source (sectors × 512 bytes). */
  data?: Uint8Array;
  /** Write: durable before completion (write, then FLUSH CACHE). */
  fua?: boolean;
}

/** A request in a device's queue, with what its frames have done so far. */
export interface QueuedRequest extends BlockRequest {
  /** Sectors already cut into frames. */
  sent: number;
  /** Frames sent for it and not yet answered, failed or given up. */
  framesOut: number;
  /** Why it fails, once one of its frames has failed. */
  failed?: string;
  /** A flush waits until every earlier frame is answered, then asks each target. */
  flushStage?: "waiting" | "sent";
  /** Settles the submitter's promise. */
  resolve: () => void;
  /** Fails the submitter's promise. */
  reject: (error: Error) => void;
}

/** What the queues need from the command engine (driver/commands.ts). */
export interface RequestEngine {
  /** Cuts the device's queued requests into frames while windows allow (aoecmd_work). */
  service(device: AoeDevice): void;
  /** Sends what the links hold (once per turn, after submissions). */
  flushLinks(): void;
}

/** Why a request cannot be carried by the device's addressing, or undefined if it can. */
export function invalidRequest(device: AoeDevice, request: BlockRequest): string | undefined {
  const { lba, sectors } = request;
  if (!Number.isSafeInteger(lba) || !Number.isSafeInteger(sectors) || lba < 0 || sectors < 0) {
    return `bad request: lba ${lba}, ${sectors} sectors`;
  }
  if (request.kind === "flush") return undefined;
  if (request.data && request.data.length < sectors * SECTOR_SIZE) {
    return `buffer of ${request.data.length} bytes for ${sectors} sectors`;
  }
  if (request.kind === "trim") return undefined; // lba and sectors count the range's 512-byte blocks
  const lba48 = device.identity?.lba48 !== false;
  if (lba + sectors > Math.min(device.sectors, addressableSectors(lba48))) {
    return `sectors ${lba}+${sectors} are past the end (${device.sectors} sectors${
      lba48 ? "" : ", LBA28"
    })`;
  }
  return undefined;
}

/** The per-device request queues (the kernel's d->rq_list) and the completion of their requests. */
export class RequestQueues {
  #queues = new Map<AoeDevice, QueuedRequest[]>();
  #flushScheduled = false;
  #engine: RequestEngine;
  #counters: DeviceCounterTable;

  /**
   * Empty queues.
   *
   * @param engine the command engine that cuts requests into frames
   * @param counters per-device counters (submissions, failures)
   */
  constructor(engine: RequestEngine, counters: DeviceCounterTable) {
    this.#engine = engine;
    this.#counters = counters;
  }

  /** Submits block I/O; resolves when done, rejects with an Error on failure (aoeblk_queue_rq). */
  submit(device: AoeDevice, request: BlockRequest): Promise<void> {
    if (!device.up) return Promise.reject(new Error(`device ${device.name} is not up`));
    // Refused before it touches any state: nothing is queued or registered for a bad request.
    const problem = invalidRequest(device, request);
    if (problem) return Promise.reject(new RangeError(`${device.name}: ${problem}`));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const queued: QueuedRequest = { ...request, sent: 0, framesOut: 0, resolve, reject };
    this.#counters.submitted(device, request.kind, request.sectors);
    let queue = this.#queues.get(device);
    if (!queue) this.#queues.set(device, queue = []);
    queue.push(queued);
    try {
      this.#engine.service(device);
    } catch (error) {
      // Never leave a queued promise nobody holds: whoever submitted gets the failure.
      if (queued.framesOut === 0) {
        const index = queue.indexOf(queued);
        if (index >= 0) queue.splice(index, 1);
        reject(error instanceof Error ? error : new Error(String(error)));
      } else queued.failed = errorMessage(error);
    }
    this.#scheduleFlush();
    return promise;
  }

  /** Sends what submissions queued, once per turn: requests parsed together go out in one batch. */
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      this.#engine.flushLinks();
    });
  }

  /** The device's queue, oldest first (undefined: nothing was ever queued). */
  queue(device: AoeDevice): QueuedRequest[] | undefined {
    return this.#queues.get(device);
  }

  /** Requests queued on the device and not yet settled. */
  pending(device: AoeDevice): number {
    return this.#queues.get(device)?.length ?? 0;
  }

  /** Requests submitted and not yet settled, on every device. */
  get size(): number {
    let n = 0;
    for (const queue of this.#queues.values()) n += queue.length;
    return n;
  }

  /** Settles a request once all its frames (and its flush, if it needs one) are answered (aoe_end_request). */
  finish(device: AoeDevice, request: QueuedRequest): void {
    if (request.framesOut > 0) return;
    if (!request.failed) {
      if (request.sent < request.sectors) return;
      const needsFlush = request.kind === "flush" || (request.fua && request.kind === "write");
      if (needsFlush && request.flushStage !== "sent") {
        this.#engine.service(device);
        return;
      }
    }
    const queue = this.#queues.get(device);
    const index = queue?.indexOf(request) ?? -1;
    if (index >= 0) queue!.splice(index, 1);
    if (request.failed) {
      this.#counters.of(device).failed++;
      request.reject(new Error(request.failed));
    } else request.resolve();
    if (index === 0 && queue!.length > 0) this.#engine.service(device);
  }

  /** Fails every request queued on the device and drops its queue (aoedev_downdev). */
  failAll(device: AoeDevice, failure: Error): void {
    const queue = this.#queues.get(device) ?? [];
    this.#queues.delete(device);
    for (const request of queue) request.reject(failure);
  }
}
