/**
 * Paced answers to a Query Config that many exports match, and paced start-up
 * announcements (docs/protocol.md §5.1). A broadcast Query Config (shelf
 * 0xFFFF or slot 0xFF) to a target with a thousand exports would otherwise
 * bring a thousand replies in one burst, more than an initiator's receive
 * ring holds (512 frames is typical): the kernel drops the rest, and as the
 * target answers in the same order every time, every rediscovery loses the
 * same devices.
 *
 * So the answers on an interface go through a window clocked by the
 * initiator: at most {@link PACE_WINDOW} may be unacknowledged, and a
 * request from the receiver for an answered device (the IDENTIFY an
 * initiator sends for a device it has just found) acknowledges its answer
 * and lets the next one go. An answer nobody acknowledges (a device the
 * initiator knows already, or nobody listening to an announcement) frees its
 * place after {@link PACE_EXPIRY_MS} plus a jitter of up to half that, drawn
 * from a generator seeded by the target's identity (its MAC and first
 * shelf.slot): the same schedule every time for one target, a different one
 * for each target process, so several processes on a segment drift apart.
 * The first window goes at once, so a target with fewer exports answers
 * exactly as before. Unicast requests, ATA I/O included, never wait: answers
 * are sent between two receive batches of the server's loop, which sleeps no
 * longer than until a place in a waiting window is freed.
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import {
  BROADCAST_SHELF,
  BROADCAST_SLOT,
  Command,
  readCommand,
  readShelf,
  readSlot,
  readSource,
} from "../wire/mod.ts";
import type { Export } from "./export.ts";

/**
 * Answers and announcements on one interface that no request has
 * acknowledged yet, at most: an eighth of a 512-frame receive ring per target
 * process, leaving room for other processes' answers and for the replies to
 * the initiator's own requests.
 */
export const PACE_WINDOW = 32;
/**
 * Milliseconds after which an answer nobody acknowledged frees its place in
 * the window (plus a per-target jitter of up to half of it): an initiator
 * that sends nothing back still gets about {@link PACE_WINDOW} answers per
 * this time.
 */
export const PACE_EXPIRY_MS = 200;
/** Paced requests waiting at most; more (a flood of broadcasts) are dropped and counted. */
export const MAX_PACED_REQUESTS = 64;

/** How a {@link ReplyPacer} paces. */
export interface PacingOptions {
  /** Unacknowledged answers per interface (default {@link PACE_WINDOW}). */
  window?: number;
  /** Milliseconds before an unacknowledged answer frees its place (default {@link PACE_EXPIRY_MS}). */
  expiryMs?: number;
  /**
   * Seeds the jitter, or tells it when the first answer goes (the server
   * derives it from its MAC and first shelf.slot, known only once exports are in).
   */
  seed?: number | (() => number);
  /** The clock, in milliseconds (default `performance.now`); tests pass a fake one. */
  now?: () => number;
}

/** What the pacer did. */
export interface PacingCounters {
  /** Query Config requests answered paced (more than one export matched). */
  requests: number;
  /** A repeat from the same initiator while its answers were being sent: folded into them. */
  merged: number;
  /** Requests dropped because {@link MAX_PACED_REQUESTS} were waiting. */
  overflow: number;
  /** Requests for an answered device that acknowledged its answer. */
  acks: number;
  /** Answers whose place in the window was freed by time, unacknowledged. */
  expired: number;
  /** Replies and announcements sent through the pacer. */
  replies: number;
  /** Announcements not sent because a discovery asked every export of the interface meanwhile. */
  superseded: number;
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
  /** The requester's MAC (-1 for announcements) and the address it asked, to fold repeats in. */
  source: number;
  shelf: number;
  slot: number;
  /** Next device to answer for, and how many are left (it wraps around). */
  cursor: number;
  remaining: number;
}

/** One answer in a window. */
interface Sent {
  /** shelf * 256 + slot. */
  key: number;
  /** Who may acknowledge it: the requester, or anyone (-1) for an announcement. */
  source: number;
  /** When its place is freed if nobody acknowledges it. */
  expires: number;
  acked: boolean;
}

/** The window of one interface. */
interface LinkWindow {
  /** Answers that may go now. */
  credit: number;
  /** Unacknowledged answers in the order sent (from `head`), for the expiry. */
  sent: Sent[];
  head: number;
  /** The latest unacknowledged answer of each device, for the acknowledgment. */
  byKey: Map<number, Sent>;
}

/** Sends the answers of multi-export Query Configs and announcements, clocked by their receivers. */
export class ReplyPacer {
  /** What it did. */
  readonly counters: PacingCounters = {
    requests: 0,
    merged: 0,
    overflow: 0,
    acks: 0,
    expired: 0,
    replies: 0,
    superseded: 0,
    peakWaiting: 0,
  };
  /** Unacknowledged answers per interface. */
  readonly window: number;
  /** Milliseconds before an unacknowledged answer frees its place, before the jitter. */
  readonly expiryMs: number;
  #jobs: Job[] = [];
  #windows = new Map<FrameLink, LinkWindow>();
  #random = 0;
  #seed: number | (() => number);
  #rotation = 0;
  #now: () => number;
  #touched = new Set<FrameLink>();

  /**
   * A pacer with nothing to send.
   *
   * @param live the exports now served (a device removed meanwhile is skipped)
   * @param options window, expiry, seed, clock
   */
  constructor(readonly live: () => readonly Export[], options: PacingOptions = {}) {
    this.window = Math.max(1, options.window ?? PACE_WINDOW);
    this.expiryMs = Math.max(0, options.expiryMs ?? PACE_EXPIRY_MS);
    this.#seed = options.seed ?? 1;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Whether answers wait to be sent. */
  get pending(): boolean {
    return this.#jobs.length > 0;
  }

  /**
   * How long the server's loop may sleep: `limitMs`, 0 when answers may go
   * now, or until a place in a waiting window is freed by time (rounded up
   * to whole milliseconds, as poll(2) takes them).
   */
  sleepMs(limitMs: number): number {
    if (this.#jobs.length === 0) return limitMs;
    let until = limitMs;
    const now = this.#now();
    for (const job of this.#jobs) {
      const window = this.#window(job.link);
      if (window.credit > 0) return 0;
      const first = window.sent[window.head];
      if (first) until = Math.min(until, Math.max(0, Math.ceil(first.expires - now)));
    }
    return until;
  }

  /**
   * Takes a request addressed to a broadcast shelf or slot if it is a Query
   * Config that more than one export on `link` matches: answers what the
   * window allows now, queues the rest. False leaves the request to the
   * server (any other command, or one export at most).
   */
  take(request: Uint8Array, length: number, link: FrameLink): boolean {
    const shelf = readShelf(request);
    const slot = readSlot(request);
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
    if (shelf === BROADCAST_SHELF && slot === BROADCAST_SLOT) {
      // Announcements still going out were not taken by anyone (an initiator
      // that listens acknowledges them): this discovery's answers replace them.
      for (const job of this.#jobs) {
        if (job.request || job.link !== link) continue;
        this.counters.superseded += job.remaining;
        job.remaining = 0;
      }
      this.#jobs = this.#jobs.filter((job) => job.remaining > 0);
    }
    // Start each answer elsewhere in the list, so that a receiver that still
    // loses some does not lose the same ones every time.
    const cursor = (this.#rotation++ * this.window) % devices.length;
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

  /** Announces `devices` on `links` (each device on the links it serves), paced as answers are. */
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

  /**
   * A request that the server answers itself (not one the pacer took) came
   * in: if it is for a device answered to its sender (announced: to anyone),
   * the answer was taken and its place in the window is free.
   */
  heard(request: Uint8Array, link: FrameLink): void {
    const window = this.#windows.get(link);
    const sent = window?.byKey.get(readShelf(request) * 256 + readSlot(request));
    if (!window || !sent || sent.acked) return;
    if (sent.source !== -1 && sent.source !== readSource(request)) return;
    sent.acked = true;
    window.byKey.delete(sent.key);
    window.credit++;
    this.counters.acks++;
  }

  #window(link: FrameLink): LinkWindow {
    let window = this.#windows.get(link);
    if (!window) {
      window = { credit: this.window, sent: [], head: 0, byKey: new Map() };
      this.#windows.set(link, window);
    }
    return window;
  }

  #queue(job: Job): void {
    this.#jobs.push(job);
    if (this.#jobs.length > this.counters.peakWaiting) {
      this.counters.peakWaiting = this.#jobs.length;
    }
    this.run();
  }

  /** Frees the places of answers acknowledged or expired at the head of a window. */
  #expire(window: LinkWindow, now: number): void {
    const sent = window.sent;
    while (window.head < sent.length) {
      const first = sent[window.head];
      if (!first.acked) {
        if (first.expires > now) break;
        first.acked = true;
        if (window.byKey.get(first.key) === first) window.byKey.delete(first.key);
        window.credit++;
        this.counters.expired++;
      }
      window.head++;
    }
    if (window.head > 1024 && window.head * 2 > sent.length) {
      window.sent = sent.slice(window.head);
      window.head = 0;
    }
  }

  /** Sends what the windows allow; returns how many answers it sent. */
  run(): number {
    if (this.#jobs.length === 0) return 0;
    const now = this.#now();
    for (const window of this.#windows.values()) this.#expire(window, now);
    let live: Set<Export> | undefined;
    let sent = 0;
    for (const job of this.#jobs) {
      const window = this.#window(job.link);
      while (window.credit > 0 && job.remaining > 0) {
        const device = job.devices[job.cursor];
        job.cursor = (job.cursor + 1) % job.devices.length;
        job.remaining--;
        live ??= new Set(this.live());
        if (!live.has(device)) continue;
        if (job.request) device.handle(job.request, job.length, job.link);
        else device.announce(job.link);
        const entry: Sent = {
          key: device.shelf * 256 + device.slot,
          source: job.source,
          expires: now + this.#expiry(),
          acked: false,
        };
        window.sent.push(entry);
        window.byKey.set(entry.key, entry);
        window.credit--;
        this.#touched.add(job.link);
        sent++;
      }
    }
    if (this.#jobs.some((job) => job.remaining === 0)) {
      this.#jobs = this.#jobs.filter((job) => job.remaining > 0);
    }
    // Requests on one interface share its window in turn.
    if (this.#jobs.length > 1) this.#jobs.push(this.#jobs.shift()!);
    if (sent === 0) return 0;
    for (const link of this.#touched) link.flush();
    this.#touched.clear();
    this.counters.replies += sent;
    return sent;
  }

  /** The expiry plus a jitter of up to half of it, from a per-target xorshift32 sequence. */
  #expiry(): number {
    if (this.#random === 0) {
      const seed = typeof this.#seed === "function" ? this.#seed() : this.#seed;
      this.#random = seed >>> 0 || 1;
    }
    let x = this.#random;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#random = x >>> 0;
    return this.expiryMs * (1 + 0.5 * (this.#random / 0x100000000));
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
