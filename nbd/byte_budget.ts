/**
 * A count of bytes that may be held at once (request payloads and reply
 * buffers in flight), shared by whoever takes from it. Taking what is free
 * costs no promise; a taker that does not fit waits, first come first served.
 *
 * @module
 */

/** Bytes that may be in use at once. */
export class ByteBudget {
  #free: number;
  #waiters: { bytes: number; resolve: () => void }[] = [];

  /**
   * A budget with everything free.
   * @param limit the most bytes held at once
   */
  constructor(readonly limit: number) {
    this.#free = limit;
  }

  /** Bytes held now. */
  get used(): number {
    return this.limit - this.#free;
  }

  /** Takes `bytes` if they are free and nobody waits; false otherwise. */
  tryTake(bytes: number): boolean {
    if (this.#waiters.length > 0 || bytes > this.#free) return false;
    this.#free -= bytes;
    return true;
  }

  /** Resolves once `bytes` are taken (at most the limit: a larger take is clamped to it). */
  take(bytes: number): Promise<void> {
    const want = Math.min(bytes, this.limit);
    if (this.tryTake(want)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ bytes: want, resolve }));
  }

  /** Gives back what a take took (the same `bytes`). */
  give(bytes: number): void {
    this.#free += Math.min(bytes, this.limit);
    while (this.#waiters.length > 0 && this.#waiters[0].bytes <= this.#free) {
      const waiter = this.#waiters.shift()!;
      this.#free -= waiter.bytes;
      waiter.resolve();
    }
  }
}
