/**
 * The transmit slots of a batching link: fixed frame buffers handed out in
 * order, each committed with its padded length, all sent by the link's flush.
 * The packet, pcap and memory links share it; the ring link's slots are the
 * kernel's ring frames.
 *
 * @module
 */

import { padToMinimum } from "./types.ts";

/** Fixed transmit buffers and the lengths of the frames queued in them. */
export class TransmitSlots {
  /** The frame buffers, allocated once. */
  readonly slots: readonly Uint8Array[];
  /** Length (padded to 60 bytes) of each queued frame. */
  readonly lengths: Uint32Array;
  /** Frames queued: slots 0 to count - 1. */
  count = 0;

  /** Slots of `capacity` bytes each, or the given buffers. */
  constructor(slots: number | readonly Uint8Array[], capacity = 0) {
    this.slots = typeof slots === "number"
      ? Array.from({ length: slots }, () => new Uint8Array(capacity))
      : slots;
    this.lengths = new Uint32Array(this.slots.length);
  }

  /** Every slot holds a queued frame: the link must flush before the next. */
  get full(): boolean {
    return this.count === this.slots.length;
  }

  /** The slot the next frame is written into (check {@link full} first). */
  next(): Uint8Array {
    return this.slots[this.count];
  }

  /** Queues the frame written into {@link next}; pads it and returns its padded length. */
  commit(length: number): number {
    const padded = padToMinimum(this.slots[this.count], length);
    this.lengths[this.count++] = padded;
    return padded;
  }

  /** Forgets the queued frames once they are sent (or dropped). */
  clear(): void {
    this.count = 0;
  }
}
