/**
 * The one poll(2) of the project: a reusable pollfd array, and the two ways to
 * wait on it. {@link PollSet.block} sleeps on the calling (main) thread, so the
 * kernel wakes the process directly when a descriptor becomes ready: one
 * wake-up, as a blocking recv has. {@link PollSet.wait} polls for at most
 * `syncMs` on the thread and then moves the wait to Deno's thread pool, which
 * frees the event loop but costs a second wake-up (the pool thread's, then the
 * main thread's) when the descriptor becomes ready.
 *
 * @module
 */

import { libc, linux, POLL_BROKEN } from "../ffi/libc.ts";

export { POLL_BROKEN };

/** struct pollfd: int fd, short events, short revents. */
const POLLFD_BYTES = 8;

/** A pollfd array filled with {@link add} and waited on with {@link block} or {@link wait}. */
export class PollSet {
  #buffer = new Uint8Array(8 * POLLFD_BYTES);
  #view = new DataView(this.#buffer.buffer);
  /** Where the last wait's results are (a copy when the wait ran off the thread). */
  #results = this.#view;
  #count = 0;

  /** Descriptors in the set. */
  get size(): number {
    return this.#count;
  }

  /** Empties the set. */
  clear(): void {
    this.#count = 0;
    this.#results = this.#view;
  }

  /** Adds `fd` waiting for `events` (default POLLIN); returns its index. */
  add(fd: number, events: number = linux.POLLIN): number {
    if ((this.#count + 1) * POLLFD_BYTES > this.#buffer.length) {
      const larger = new Uint8Array(this.#buffer.length * 2);
      larger.set(this.#buffer);
      this.#buffer = larger;
      this.#view = new DataView(larger.buffer);
      this.#results = this.#view;
    }
    const at = this.#count * POLLFD_BYTES;
    this.#view.setInt32(at, fd, true);
    this.#view.setInt16(at + 4, events, true);
    this.#view.setInt16(at + 6, 0, true);
    return this.#count++;
  }

  /** The events the last wait reported for entry `index`. */
  revents(index: number): number {
    return this.#results.getInt16(index * POLLFD_BYTES + 6, true);
  }

  /** Whether entry `index` reported an error or hang-up. */
  broken(index: number): boolean {
    return (this.revents(index) & POLL_BROKEN) !== 0;
  }

  /**
   * Sleeps on this thread until a descriptor is ready or `timeoutMs` passes
   * (0: just look); returns how many are ready. Nothing else of the event loop
   * runs meanwhile, so callers bound the timeout and yield afterwards.
   */
  block(timeoutMs: number): number {
    this.#results = this.#view;
    return libc().poll(this.#buffer, BigInt(this.#count), Math.max(0, Math.ceil(timeoutMs)));
  }

  /**
   * Resolves when a descriptor is ready or `timeoutMs` passes, with how many
   * are ready: blocks the thread for at most `syncMs` (default 0), then waits
   * in Deno's thread pool, leaving the event loop free.
   */
  async wait(timeoutMs: number, options: { syncMs?: number } = {}): Promise<number> {
    timeoutMs = Math.max(0, Math.ceil(timeoutMs));
    const syncMs = Math.min(options.syncMs ?? 0, timeoutMs);
    const ready = this.block(syncMs);
    if (ready !== 0 || timeoutMs <= syncMs) return ready;
    // A copy: the set may be refilled by another waiter while this poll runs on a pool thread.
    const own = this.#buffer.slice(0, this.#count * POLLFD_BYTES);
    const result = await libc().poll_async(own, BigInt(this.#count), timeoutMs - syncMs);
    this.#results = new DataView(own.buffer);
    return result;
  }
}

const noDescriptors = new Uint8Array(POLLFD_BYTES);

/**
 * Lets Deno's event loop run its timers, signal handlers and sockets once:
 * a poll of nothing with no timeout, run in the thread pool, so the main
 * thread parks in the runtime while the pool answers (about 20 µs). A
 * MessageChannel turn is cheaper but does not reach the runtime's I/O driver:
 * a loop of blocking polls and MessageChannel turns never saw a timer fire or
 * a TCP connection arrive (setTimeout(0) does, but costs about 2 ms).
 */
export async function eventLoopTurn(): Promise<void> {
  await libc().poll_async(noDescriptors, 0n, 0);
}
