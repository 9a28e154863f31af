/**
 * An in-memory Ethernet segment for unit tests: every frame a port sends is
 * delivered to every other port (a hub), optionally through an impairment hook.
 *
 * @module
 */

import { TransmitSlots } from "./tx_slots.ts";
import { type FrameLink, type LinkCounters, slotSizeFor } from "./types.ts";

/**
 * Decides the fate of one frame on the segment: how many copies to deliver
 * (0 drops it, 2 duplicates it), or {@link HOLD} to deliver it after the next
 * frame (reordering).
 */
export type Impairment = (frame: Uint8Array, from: MemoryLink) => number;

/** An {@link Impairment} result: hold the frame back behind the next one. */
export const HOLD: number = -1;

/** Options for {@link MemorySegment}. */
export interface MemorySegmentOptions {
  /** MTU of every port (default 1500). */
  mtu?: number;
  /** Frames per receive batch (default 32). */
  batch?: number;
  /** Per-frame impairment (drop, duplicate, reorder). */
  impair?: Impairment;
  /** Delay every frame by this many milliseconds. */
  delayMs?: number;
  /**
   * Frames a port's receive queue holds (default: unbounded); more are dropped
   * and counted, as a kernel's full receive ring drops them.
   */
  rxQueue?: number;
}

/** A shared segment joining {@link MemoryLink} ports. */
export class MemorySegment {
  /** The ports attached, in order. */
  readonly ports: MemoryLink[] = [];
  /** The MTU of every port. */
  readonly mtu: number;
  /** Frames per receive batch. */
  readonly batch: number;
  /** Per-frame impairment, changeable while running. */
  impair?: Impairment;
  /** Delay of every frame in milliseconds, changeable while running. */
  delayMs: number;
  /** Frames a port's receive queue holds, changeable while running. */
  rxQueue: number;
  #held: { frame: Uint8Array; from: MemoryLink }[] = [];

  /**
   * An empty segment.
   *
   * @param options segment settings
   */
  constructor(options: MemorySegmentOptions = {}) {
    this.mtu = options.mtu ?? 1500;
    this.batch = options.batch ?? 32;
    this.impair = options.impair;
    this.delayMs = options.delayMs ?? 0;
    this.rxQueue = options.rxQueue ?? Infinity;
  }

  /** Adds a port with the given MAC (48-bit number) and interface name. */
  attach(mac: number, name = `mem${this.ports.length}`): MemoryLink {
    const port = new MemoryLink(this, name, mac);
    this.ports.push(port);
    return port;
  }

  /** Delivers a frame from one port to the others. */
  deliver(frame: Uint8Array, from: MemoryLink): void {
    const copies = this.impair ? this.impair(frame, from) : 1;
    if (copies === HOLD) {
      this.#held.push({ frame: frame.slice(), from });
      return;
    }
    this.#send(frame, from, copies);
    for (const held of this.#held.splice(0)) this.#send(held.frame, held.from, 1);
  }

  #send(frame: Uint8Array, from: MemoryLink, copies: number): void {
    for (const port of this.ports) {
      if (port === from || port.closed) continue;
      for (let i = 0; i < copies; i++) {
        const copy = frame.slice();
        if (this.delayMs > 0) setTimeout(() => port.enqueue(copy), this.delayMs);
        else port.enqueue(copy);
      }
    }
  }
}

/** One port of a {@link MemorySegment}. */
export class MemoryLink implements FrameLink {
  readonly mtu: number;
  readonly frameCapacity: number;
  readonly rx: Uint8Array[];
  readonly rxLength: Uint32Array;
  /** No descriptor: in-memory links are waited for with {@link wait}. */
  readonly pollFd: number = -1;
  readonly counters: LinkCounters = { received: 0, sent: 0, sendErrors: 0, rxDrops: 0 };
  /** Closed ports receive nothing. */
  closed = false;
  #queue: Uint8Array[] = [];
  #waiters: (() => void)[] = [];
  #tx: TransmitSlots;
  #drops = 0;

  /** Use {@link MemorySegment.attach}. */
  constructor(readonly segment: MemorySegment, readonly name: string, readonly mac: number) {
    this.mtu = segment.mtu;
    this.frameCapacity = slotSizeFor(this.mtu);
    this.rx = Array.from({ length: segment.batch }, () => new Uint8Array(this.frameCapacity));
    this.rxLength = new Uint32Array(segment.batch);
    this.#tx = new TransmitSlots(segment.batch, this.frameCapacity);
  }

  /** Puts a frame on this port's receive queue (used by the segment and tests). */
  enqueue(frame: Uint8Array): void {
    if (this.closed || frame.length > this.frameCapacity) return;
    if (this.#queue.length >= this.segment.rxQueue) {
      this.#drops++;
      return;
    }
    this.#queue.push(frame);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  receive(): number {
    let n = 0;
    while (n < this.rx.length && this.#queue.length > 0) {
      const frame = this.#queue.shift()!;
      this.rx[n].set(frame);
      this.rxLength[n] = frame.length;
      n++;
    }
    this.counters.received += n;
    return n;
  }

  txSlot(): Uint8Array {
    if (this.#tx.full) this.flush();
    return this.#tx.next();
  }

  commit(length: number): void {
    this.#tx.commit(length);
  }

  flush(): void {
    const tx = this.#tx;
    for (let i = 0; i < tx.count; i++) {
      this.segment.deliver(tx.slots[i].subarray(0, tx.lengths[i]), this);
    }
    this.counters.sent += tx.count;
    tx.clear();
  }

  readDrops(): number {
    const n = this.#drops;
    this.#drops = 0;
    this.counters.rxDrops += n;
    return n;
  }

  wait(timeoutMs: number): Promise<void> {
    if (this.#queue.length > 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#waiters.push(done);
    });
  }

  close(): void {
    this.closed = true;
    for (const wake of this.#waiters) wake();
    this.#waiters = [];
  }
}
