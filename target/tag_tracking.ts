/**
 * Tag tracking for an initiator whose ATA tags are a monotonic counter
 * (docs/extensions.md §3; AoEde's "RX tags tracking" and "WRITE tags
 * tracking"). Tags are compared as 31-bit serial numbers (RFC 1982 style), so
 * the counter may wrap; tags with bit 31 set (userland tools) are never
 * tracked.
 *
 * @module
 */

/** Tags remembered behind the newest: a request older than this is taken as a duplicate. */
export const TAG_WINDOW = 4096;
/** Sectors whose last write tag is remembered; the oldest half is forgotten past this. */
export const WRITE_MEMORY = 1 << 16;

const SERIAL_MASK = 0x7fffffff;
const HALF = 0x40000000;

/** How many tags `tag` is ahead of `than` (negative: behind), in 31-bit serial arithmetic. */
export function tagDistance(tag: number, than: number): number {
  const d = (tag - than) & SERIAL_MASK;
  return d < HALF ? d : d - SERIAL_MASK - 1;
}

/** RX tag tracking: remembers which recent tags were admitted. */
export class RxTagTracker {
  #started = false;
  #newest = 0;
  #seen = new Uint32Array(TAG_WINDOW / 32);

  /** Forgets every tag (a new session). */
  reset(): void {
    this.#started = false;
    this.#seen.fill(0);
  }

  /** True if `tag` is new (and remembers it); false for a duplicate or one older than the window. */
  admit(tag: number): boolean {
    if (tag & 0x80000000) return true;
    if (!this.#started) {
      this.#started = true;
      this.#newest = tag;
      this.#seen.fill(0);
      this.#mark(tag);
      return true;
    }
    const ahead = tagDistance(tag, this.#newest);
    if (ahead > 0) {
      if (ahead >= TAG_WINDOW) this.#seen.fill(0);
      else for (let i = 1; i <= ahead; i++) this.#clear((this.#newest + i) & SERIAL_MASK);
      this.#newest = tag;
      this.#mark(tag);
      return true;
    }
    if (-ahead >= TAG_WINDOW || this.#has(tag)) return false;
    this.#mark(tag);
    return true;
  }

  #mark(tag: number): void {
    const bit = tag % TAG_WINDOW;
    this.#seen[bit >>> 5] |= 1 << (bit & 31);
  }

  #clear(tag: number): void {
    const bit = tag % TAG_WINDOW;
    this.#seen[bit >>> 5] &= ~(1 << (bit & 31));
  }

  #has(tag: number): boolean {
    const bit = tag % TAG_WINDOW;
    return (this.#seen[bit >>> 5] & (1 << (bit & 31))) !== 0;
  }
}

/** WRITE tag tracking: the tag of the last write applied to each recently written sector. */
export class WriteTagTracker {
  #last = new Map<number, number>();

  /** Forgets every sector (a new session). */
  reset(): void {
    this.#last.clear();
  }

  /**
   * True if a write with `tag` to `count` sectors at `lba` is not older than
   * a write already applied to any of them (and records it); false if it is stale.
   */
  admit(tag: number, lba: number, count: number): boolean {
    if (tag & 0x80000000) return true;
    for (let s = 0; s < count; s++) {
      const previous = this.#last.get(lba + s);
      if (previous !== undefined && tagDistance(tag, previous) < 0) return false;
    }
    for (let s = 0; s < count; s++) {
      this.#last.delete(lba + s); // re-insert: iteration order is then age order
      this.#last.set(lba + s, tag);
    }
    if (this.#last.size > WRITE_MEMORY) {
      let drop = this.#last.size - WRITE_MEMORY / 2;
      for (const key of this.#last.keys()) {
        if (drop-- <= 0) break;
        this.#last.delete(key);
      }
    }
    return true;
  }

  /** Sectors remembered. */
  get size(): number {
    return this.#last.size;
  }
}
