/**
 * Paced answers to a Query Config that many exports match, and paced start-up
 * announcements (docs/protocol.md §5.1). A broadcast Query Config (shelf
 * 0xFFFF or slot 0xFF) to a target with a thousand exports would otherwise
 * bring a thousand replies in one burst, more than an initiator's receive
 * ring holds (512 frames for this project's ring link): the kernel drops the
 * rest, and as the target answers in the same order every time, every
 * rediscovery loses the same devices.
 *
 * So at most {@link PACE_BATCH} replies go out at once; the next batch follows
 * {@link PACE_INTERVAL_MS} later plus a jitter of up to half that, drawn from
 * a generator seeded by the target's identity (its MAC and first shelf.slot):
 * the same schedule every time for one target, a different one for each
 * target process, so several processes on a segment drift apart instead of
 * bursting together. The first batch goes at once, so a target with fewer
 * exports than a batch answers exactly as before. Unicast requests, ATA I/O
 * included, never wait: batches are sent between two receive batches of the
 * server's loop, which sleeps no longer than until the next batch is due.
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import { BROADCAST_SHELF, BROADCAST_SLOT, Command, readCommand, readSource } from "../wire/mod.ts";
import type { Export } from "./export.ts";

/** Replies (or announcements) sent in one batch: an eighth of a 512-frame receive ring. */
export const PACE_BATCH = 64;
/** Milliseconds between two batches, before the jitter (which adds up to half of it). */
export const PACE_INTERVAL_MS = 20;
/** Paced requests waiting at most; more (a flood of broadcasts) are dropped and counted. */
export const MAX_PACED_REQUESTS = 64;

/** How a {@link ReplyPacer} paces. */
export interface PacingOptions {
  /** Replies per batch (default {@link PACE_BATCH}). */
  batch?: number;
  /** Milliseconds between batches before the jitter (default {@link PACE_INTERVAL_MS}). */
  intervalMs?: number;
  /**
   * Seeds the jitter, or tells it when the first batch goes (the server
   * derives it from its MAC and first shelf.slot, known only once exports are in).
   */
  seed?: number | (() => number);
  /** The clock, in milliseconds (default `performance.now`); tests pass a fake one. */
  now?: () => number;
}

/** What the pacer did. */
export interface PacingCounters {
  /** Query Config requests answered in batches (more than one export matched). */
  requests: number;
  /** A repeat from the same initiator while its answers were being sent: folded into them. */
  merged: number;
  /** Requests dropped because {@link MAX_PACED_REQUESTS} were waiting. */
  overflow: number;
  /** Batches sent. */
  batches: number;
  /** Replies and announcements sent through the pacer. */
  replies: number;
  /** Most requests and announcement rounds waiting at once. */
  peakWaiting: number;
}

/** One paced answer: a request to answer for every device of a list, or an announcement round. */
interface Job {
  link: FrameLink;
  devices: Export[];
  /** The request (a copy), or undefined for announcements. */
  request?: Uint8Array;
  length: number;
  /** The requester's MAC and the address it asked, to fold repeats in. */
  source: number;
  shelf: number;
  slot: number;
  /** Next device to answer for, and how many are left (it wraps around). */
  cursor: number;
  remaining: number;
}

/** Sends the answers of multi-export Query Configs and announcements in spaced batches. */
export class ReplyPacer {
  /** What it did. */
  readonly counters: PacingCounters = {
    requests: 0,
    merged: 0,
    overflow: 0,
    batches: 0,
    replies: 0,
    peakWaiting: 0,
  };
  /** Replies per batch. */
  readonly batch: number;
  /** Milliseconds between batches before the jitter. */
  readonly intervalMs: number;
  #jobs: Job[] = [];
  #nextAt = -Infinity;
  #random = 0;
  #seed: number | (() => number);
  #rotation = 0;
  #now: () => number;
  #touched = new Set<FrameLink>();

  /**
   * A pacer with nothing to send.
   *
   * @param live the exports now served (a device removed meanwhile is skipped)
   * @param options batch size, spacing, seed, clock
   */
  constructor(readonly live: () => readonly Export[], options: PacingOptions = {}) {
    this.batch = Math.max(1, options.batch ?? PACE_BATCH);
    this.intervalMs = Math.max(0, options.intervalMs ?? PACE_INTERVAL_MS);
    this.#seed = options.seed ?? 1;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Whether answers wait to be sent. */
  get pending(): boolean {
    return this.#jobs.length > 0;
  }

  /** When the next batch may go, on the pacer's clock. */
  get nextAt(): number {
    return this.#nextAt;
  }

  /**
   * How long the server's loop may sleep: `limitMs`, or less when a batch is
   * due sooner (rounded up to whole milliseconds, as poll(2) takes them).
   */
  sleepMs(limitMs: number): number {
    if (this.#jobs.length === 0) return limitMs;
    return Math.max(0, Math.min(limitMs, Math.ceil(this.#nextAt - this.#now())));
  }

  /**
   * Takes a request addressed to a broadcast shelf or slot if it is a Query
   * Config that more than one export on `link` matches: answers the first
   * batch now if one may go, queues the rest. False leaves the request to
   * the server (any other command, or one export at most).
   */
  take(request: Uint8Array, length: number, link: FrameLink, address: {
    shelf: number;
    slot: number;
  }): boolean {
    const { shelf, slot } = address;
    if (shelf !== BROADCAST_SHELF && slot !== BROADCAST_SLOT) return false;
    if (readCommand(request) !== Command.config) return false;
    const devices = this.live().filter((device) =>
      device.matches(shelf, slot) && device.servesOn(link.name)
    );
    if (devices.length <= 1) return false;
    const source = readSource(request);
    // The same initiator asking again (a retransmitted discovery): every device
    // answers the newer request, continuing from where the answers are.
    const repeat = this.#jobs.find((job) =>
      job.request && job.link === link && job.source === source && job.shelf === shelf &&
      job.slot === slot
    );
    if (repeat) {
      repeat.request = request.slice(0, length);
      repeat.length = length;
      repeat.devices = devices;
      repeat.cursor %= devices.length;
      repeat.remaining = devices.length;
      this.counters.merged++;
      return true;
    }
    if (this.#jobs.length >= MAX_PACED_REQUESTS) {
      this.counters.overflow++;
      return true;
    }
    this.counters.requests++;
    // Start each answer elsewhere in the list, so that a receiver that still
    // loses some does not lose the same ones every time.
    const cursor = (this.#rotation++ * this.batch) % devices.length;
    this.#queue({
      link,
      devices,
      request: request.slice(0, length),
      length,
      source,
      shelf,
      slot,
      cursor,
      remaining: devices.length,
    });
    return true;
  }

  /** Announces `devices` on `links` (each device on the links it serves), in batches. */
  announce(devices: readonly Export[], links: readonly FrameLink[]): void {
    for (const link of links) {
      const serving = devices.filter((device) => device.servesOn(link.name));
      if (serving.length === 0) continue;
      this.#queue({
        link,
        devices: serving,
        length: 0,
        source: -1,
        shelf: -1,
        slot: -1,
        cursor: 0,
        remaining: serving.length,
      });
    }
  }

  #queue(job: Job): void {
    this.#jobs.push(job);
    if (this.#jobs.length > this.counters.peakWaiting) {
      this.counters.peakWaiting = this.#jobs.length;
    }
    this.run();
  }

  /** Sends one batch if one is due; returns how many answers it sent. */
  run(): number {
    if (this.#jobs.length === 0) return 0;
    const now = this.#now();
    if (now < this.#nextAt) return 0;
    const live = new Set(this.live());
    let budget = this.batch;
    let sent = 0;
    while (budget > 0 && this.#jobs.length > 0) {
      const job = this.#jobs[0];
      while (budget > 0 && job.remaining > 0) {
        const device = job.devices[job.cursor];
        job.cursor = (job.cursor + 1) % job.devices.length;
        job.remaining--;
        if (!live.has(device)) continue;
        if (job.request) device.handle(job.request, job.length, job.link);
        else device.announce(job.link);
        this.#touched.add(job.link);
        budget--;
        sent++;
      }
      this.#jobs.shift();
      // Requests share the batches in turn; an unfinished one goes to the back.
      if (job.remaining > 0) this.#jobs.push(job);
    }
    for (const link of this.#touched) link.flush();
    this.#touched.clear();
    this.counters.batches++;
    this.counters.replies += sent;
    this.#nextAt = now + this.#gap();
    return sent;
  }

  /** The interval plus a jitter of up to half of it, from a per-target xorshift32 sequence. */
  #gap(): number {
    if (this.#random === 0) {
      const seed = typeof this.#seed === "function" ? this.#seed() : this.#seed;
      this.#random = seed >>> 0 || 1;
    }
    let x = this.#random;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#random = x >>> 0;
    return this.intervalMs * (1 + 0.5 * (this.#random / 0x100000000));
  }
}

/** A jitter seed from a target's identity: its first interface's MAC and its first shelf.slot. */
export function pacingSeed(mac: number, exports: readonly Export[]): number {
  let seed = 0x9e3779b9 ^ (mac % 0x100000000) ^
    Math.imul(Math.floor(mac / 0x100000000), 0x85ebca6b);
  const first = exports[0];
  if (first) seed = Math.imul(seed ^ (first.shelf * 256 + first.slot), 0xc2b2ae35);
  return (seed >>> 0) || 1;
}
