/**
 * Descriptor readiness for one event loop. Code that would block on a socket
 * asks for `readable(fd)` or `writable(fd)`; whoever runs the loop polls those
 * descriptors together with its own (the initiator's frame links) and
 * resolves the waiters. One poll for frames and for the NBD sockets means no
 * hop through Deno's thread pool per request while I/O flows (docs/frame-io.md §3:
 * synchronous calls while frames flow, an asynchronous wait only when idle).
 *
 * A reactor that nobody hosts drives itself with asynchronous polls.
 *
 * @module
 */

import { libc, linux, SystemError } from "../ffi/libc.ts";
import { POLL_BROKEN, PollSet } from "./poll.ts";

interface Waiters {
  read: (() => void)[];
  write: (() => void)[];
}

/** What one {@link Reactor.wait} saw. */
export interface WaitResult {
  /** Descriptors of the reactor's own waiters that became ready. */
  woke: number;
  /** Descriptors ready in all (the caller's, the waiters', the wake-up pair); 0 on timeout. */
  ready: number;
  /** Of the caller's extra descriptors, those reporting an error or hang-up. */
  broken: number[];
}

/**
 * A way to let every queued promise continuation run: a macrotask turn
 * without a timer's delay. Close it when done (an open channel keeps the
 * program alive).
 */
export class EventLoopYield {
  #channel = new MessageChannel();
  #resolvers: (() => void)[] = [];

  constructor() {
    this.#channel.port1.onmessage = () => this.#resolvers.shift()?.();
  }

  /** Resolves after the event loop has had a turn. */
  next(): Promise<void> {
    return new Promise((resolve) => {
      this.#resolvers.push(resolve);
      this.#channel.port2.postMessage(0);
    });
  }

  /** Releases the channel and resolves every waiting {@link next}. */
  close(): void {
    this.#channel.port1.close();
    this.#channel.port2.close();
    for (const resolve of this.#resolvers.splice(0)) resolve();
  }
}

/** Readiness waiters for descriptors, resolved by whoever polls them. */
export class Reactor {
  #waiters = new Map<number, Waiters>();
  /** A socket pair: writing one byte ends an asynchronous poll early. */
  #wake: [number, number];
  #wakeByte = new Uint8Array(1);
  #drainBuffer = new Uint8Array(64);
  #parked = false;
  #woken = false;
  #hosted = false;
  #selfDriven = false;
  /**
   * Set when this process also has sockets in Deno's own event loop (the NBD
   * server's TCP listener): a loop hosting the reactor must not then sleep on
   * its thread, which would hold those sockets back.
   */
  eventLoopIo = false;
  #set = new PollSet();
  #polled: number[] = [];

  constructor() {
    const pair = new Int32Array(2);
    const result = libc().socketpair(
      linux.AF_UNIX,
      linux.SOCK_STREAM | linux.SOCK_NONBLOCK | linux.SOCK_CLOEXEC,
      0,
      new Uint8Array(pair.buffer),
    );
    if (result < 0) throw new SystemError("socketpair");
    this.#wake = [pair[0], pair[1]];
  }

  /** Resolves when `fd` has data (or end of stream, or an error). */
  readable(fd: number): Promise<void> {
    return new Promise((resolve) => this.#add(fd, "read", resolve));
  }

  /** Resolves when `fd` can take more data (or has an error). */
  writable(fd: number): Promise<void> {
    return new Promise((resolve) => this.#add(fd, "write", resolve));
  }

  /** Wakes everything waiting on `fd`; call it before closing the descriptor. */
  forget(fd: number): void {
    const waiters = this.#waiters.get(fd);
    if (!waiters) return;
    this.#waiters.delete(fd);
    for (const resolve of [...waiters.read, ...waiters.write]) resolve();
    if (this.#parked) this.#wakeUp();
  }

  /**
   * Marks the reactor as polled by another loop (the initiator's), which then
   * calls {@link wait} with its own descriptors; `false` hands it back to its own loop.
   */
  host(hosted: boolean): void {
    this.#hosted = hosted;
    if (!hosted) this.#driveSelf();
    else this.#wakeUp();
  }

  #add(fd: number, kind: keyof Waiters, resolve: () => void): void {
    let waiters = this.#waiters.get(fd);
    if (!waiters) {
      waiters = { read: [], write: [] };
      this.#waiters.set(fd, waiters);
    }
    waiters[kind].push(resolve);
    // A poll already under way does not watch this descriptor: end it early.
    if (this.#parked) this.#wakeUp();
    if (!this.#hosted) this.#driveSelf();
  }

  #wakeUp(): void {
    if (this.#woken) return;
    this.#woken = true;
    libc().send(this.#wake[1], this.#wakeByte, 1n, linux.MSG_DONTWAIT | linux.MSG_NOSIGNAL);
  }

  /**
   * Polls the caller's `extra` descriptors (for reading) and every waited-on
   * descriptor, blocking the thread for at most `syncMs` and then waiting off
   * the thread up to `timeoutMs` in all; resolves the waiters that are ready.
   * With `block`, the whole wait sleeps on the thread instead (one direct
   * wake-up; nothing else of the event loop runs meanwhile, so keep it short).
   */
  async wait(
    extra: readonly number[],
    timeoutMs: number,
    options: { syncMs?: number; block?: boolean } = {},
  ): Promise<WaitResult> {
    if (options.block) return this.waitBlocking(extra, timeoutMs);
    // Its own set: another wait may refill the shared one while this one runs on a pool thread.
    const set = new PollSet();
    const polled: number[] = [];
    this.#fill(extra, set, polled);
    this.#parked = true;
    let ready: number;
    try {
      ready = await set.wait(timeoutMs, { syncMs: options.syncMs ?? 0 });
    } finally {
      this.#parked = false;
    }
    return this.#collect(extra, ready, set, polled);
  }

  /**
   * {@link wait} with `block`, without a promise: sleeps on the thread for up
   * to `timeoutMs` and resolves the ready waiters (their continuations run
   * once the caller yields to the event loop).
   */
  waitBlocking(extra: readonly number[], timeoutMs: number): WaitResult {
    this.#fill(extra, this.#set, this.#polled);
    const ready = this.#set.block(timeoutMs);
    return this.#collect(extra, ready, this.#set, this.#polled);
  }

  #fill(extra: readonly number[], set: PollSet, polled: number[]): void {
    set.clear();
    for (const fd of extra) set.add(fd);
    set.add(this.#wake[0]);
    polled.length = 0;
    for (const [fd, waiters] of this.#waiters) {
      set.add(
        fd,
        (waiters.read.length ? linux.POLLIN : 0) | (waiters.write.length ? linux.POLLOUT : 0),
      );
      polled.push(fd);
    }
  }

  #collect(
    extra: readonly number[],
    ready: number,
    set: PollSet,
    polled: readonly number[],
  ): WaitResult {
    const result: WaitResult = { woke: 0, ready: Math.max(0, ready), broken: [] };
    if (ready <= 0) return result;
    for (let k = 0; k < extra.length; k++) if (set.broken(k)) result.broken.push(extra[k]);
    if (set.revents(extra.length) !== 0) {
      this.#woken = false;
      while (Number(libc().recv(this.#wake[0], this.#drainBuffer, 64n, linux.MSG_DONTWAIT)) > 0);
    }
    polled.forEach((fd, k) => {
      const events = set.revents(extra.length + 1 + k);
      if (events === 0) return;
      const waiters = this.#waiters.get(fd);
      if (!waiters) return;
      let resolved: (() => void)[] = [];
      if (events & (linux.POLLIN | POLL_BROKEN)) {
        resolved = waiters.read;
        waiters.read = [];
      }
      if (events & (linux.POLLOUT | POLL_BROKEN)) {
        resolved = resolved.concat(waiters.write);
        waiters.write = [];
      }
      if (waiters.read.length === 0 && waiters.write.length === 0) this.#waiters.delete(fd);
      for (const resolve of resolved) resolve();
      result.woke++;
    });
    return result;
  }

  /** Polls on its own while nobody hosts the reactor and something waits. */
  async #driveSelf(): Promise<void> {
    if (this.#selfDriven) return;
    this.#selfDriven = true;
    const turn = new EventLoopYield();
    try {
      while (!this.#hosted && this.#waiters.size > 0) {
        await this.wait([], 1000);
        await turn.next();
      }
    } finally {
      turn.close();
      this.#selfDriven = false;
    }
  }

  /** Wakes every waiter and releases the wake-up descriptors. */
  close(): void {
    for (const fd of [...this.#waiters.keys()]) this.forget(fd);
    libc().close(this.#wake[0]);
    libc().close(this.#wake[1]);
  }
}

/** The reactor of code that has no loop of its own to host one. */
let shared: Reactor | undefined;
/** A process-wide reactor that drives itself unless a loop hosts it. */
export function sharedReactor(): Reactor {
  return shared ??= new Reactor();
}
