/**
 * The target's frame loop: receive batches on every interface, drop what is
 * not a request for one of our exports (counted), let each export answer, and
 * send the replies in batches.
 *
 * How it waits, in the three regimes of a storage host:
 * - loaded: frames wait, so it takes them in batches and never sleeps;
 * - idle: it sleeps in poll on its own thread, woken by the kernel directly
 *   (one wake-up, as vblade's blocking recv), for at most {@link IDLE_BLOCK_MS},
 *   then gives Deno's event loop a turn for timers and signals; after
 *   {@link LONG_IDLE_MS} without a frame it waits in the thread pool instead
 *   (no turn to pay every few milliseconds, the event loop free);
 * - in between, an adaptive spin (reactor/spin.ts) watches the ring a few
 *   microseconds before sleeping, only while that finds work and nobody else
 *   needs the CPU.
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import { blockForFrames, waitForFrames } from "../link/wait.ts";
import { eventLoopTurn } from "../reactor/poll.ts";
import { AdaptiveSpin } from "../reactor/spin.ts";
import {
  addressedToOther,
  checkHeader,
  Command,
  ConfigCommand,
  MaskCommand,
  readCommand,
  readConfigCommand,
  readMaskCommand,
  readReserveCommand,
  readShelf,
  readSlot,
  ReserveCommand,
} from "../wire/mod.ts";
import type { Export } from "./export.ts";
import { type PacingOptions, pacingSeed, ReplyPacer } from "./pacing.ts";

/** No export at an address. */
const NO_EXPORTS: readonly Export[] = [];

/** Frames dropped before any export saw them. */
export interface DispatchCounters {
  /** Frames received on every link. */
  received: number;
  /** Shorter than the AoE header, or another ethertype. */
  malformed: number;
  /** R flag set: responses are never answered. */
  responses: number;
  /** Version other than 1. */
  badVersion: number;
  /** Addressed to a shelf.slot no export has. */
  notForUs: number;
  /** Sent to another host's unicast MAC (seen through a bridge, promiscuous mode or veth). */
  otherHost: number;
  /** Frames whose handling threw: dropped, the first of each kind logged (docs/protocol.md §9). */
  failed: number;
}

/** How to create a {@link TargetServer}. */
export interface TargetServerOptions {
  /** Where the one line about the first failed frame of each kind goes (default: stderr). */
  log?: (message: string) => void;
  /** How answers to broadcasts and the start-up announcements are paced. */
  pacing?: PacingOptions;
}

/** Dispatch counters of one interface, and the largest batch it received. */
export interface InterfaceCounters {
  malformed: number;
  responses: number;
  badVersion: number;
  notForUs: number;
  /** Sent to another host's unicast MAC. */
  otherHost: number;
  /** Most frames one receive brought: the peak of requests outstanding on this interface. */
  peakBatch: number;
}
/**
 * Longest sleep on the thread before the event loop gets a turn, in
 * milliseconds: how late a timer or a signal (SIGTERM) may run while the
 * target is idle.
 */
export const IDLE_BLOCK_MS = 10;
/**
 * After this long without a frame, in milliseconds, the target waits for the
 * next one off its thread (a thread-pool poll, the event loop free) instead
 * of sleeping on it: each sleep's end costs an event-loop turn, and at one
 * per {@link IDLE_BLOCK_MS} an idle target spent 2-3 % of a CPU where
 * vblade's blocking recv costs none. The first frame after a long idle then
 * pays one more wake-up (a pool thread, then this one); the next are served
 * from the sleep on the thread again.
 */
export const LONG_IDLE_MS = 1000;
/** Longest wait off the thread in a long idle, in milliseconds. */
export const LONG_IDLE_WAIT_MS = 1000;
/** Longest run of frame handling before the event loop gets a turn, in milliseconds. */
export const BUSY_YIELD_MS = 20;

/**
 * Replies sent per `send()` while a received batch of `batch` frames is
 * processed: one group per eighth of the batch, 2 to 8 replies. Few requests
 * outstanding want their replies out soon, so the initiator refills while the
 * rest are served (16 outstanding, MTU 1500: 1.16-1.64x the throughput of a
 * fixed 8); many outstanding keep both sides busy anyway, and larger groups
 * save send calls (64 outstanding: a fixed 2 was 0.84-1.05 of a fixed 8).
 * bench/target_bench.ts --qd 16,64, both load generators.
 */
export function flushGroup(batch: number): number {
  return Math.min(8, Math.max(2, batch >> 3));
}

/** Serves a set of exports on a set of links. */
export class TargetServer {
  /** Frames dropped before any export saw them. */
  readonly counters: DispatchCounters = {
    received: 0,
    malformed: 0,
    responses: 0,
    badVersion: 0,
    notForUs: 0,
    otherHost: 0,
    failed: 0,
  };
  /** Per interface (ggaoed's view): frames dropped by reason, peak batch. */
  readonly interfaceCounters = new Map<FrameLink, InterfaceCounters>();
  #batch = 0;
  #running = false;
  /** Why the loop ended by itself, if it did. */
  failure?: Error;
  #stopped: Promise<void> | undefined;
  /** Waits off the thread after {@link LONG_IDLE_MS} without a frame. */
  readonly waitCounters = { longIdle: 0 };
  /** The spin before sleeping (`AOE_SPIN_US` sets its limit; 0 never spins). */
  readonly spin = new AdaptiveSpin();
  #log: (message: string) => void;
  /** Kinds of failure already logged. */
  #failuresLogged = new Set<string>();
  /** Exports by shelf * 256 + slot, for unicast frames (rebuilt when the exports change). */
  #addressIndex: Map<number, Export[]> | undefined;
  #indexedCount = 0;

  /**
   * A server that does nothing until {@link run}.
   *
   * @param exports the shelf.slots served
   * @param links the interfaces
   * @param options where failures are logged, how answers to broadcasts are paced (target/pacing.ts)
   */
  constructor(
    readonly exports: readonly Export[],
    readonly links: readonly FrameLink[],
    options: TargetServerOptions = {},
  ) {
    this.#log = options.log ?? ((message) => console.error(message));
    this.pacer = new ReplyPacer(() => this.exports, {
      seed: () => pacingSeed(this.links[0]?.mac ?? 0, this.exports),
      ...options.pacing,
    });
  }

  /** Multi-export Query Config answers and announcements, in spaced batches (target/pacing.ts). */
  readonly pacer: ReplyPacer;

  /** Sends the start-up advertisement of `devices` (default: every export) on every link, paced. */
  announce(devices: readonly Export[] = this.exports): void {
    this.pacer.announce(devices, this.links);
  }

  /**
   * Handles one received frame. Whatever goes wrong while handling it is
   * counted (`failed`), logged once per kind, and the frame dropped: no frame
   * ends the process (docs/protocol.md §9).
   */
  dispatch(frame: Uint8Array, length: number, link: FrameLink): void {
    try {
      this.#dispatch(frame, length, link);
    } catch (error) {
      this.#failed(error, `a frame (command ${readCommand(frame)}) on ${link.name}`);
    }
  }

  /** Counts a failure while handling `what`, and logs the first of each kind. */
  #failed(error: unknown, what: string): void {
    this.counters.failed++;
    const e = error instanceof Error ? error : new Error(String(error));
    const kind = `${e.name}:${(e as { kind?: string }).kind ?? ""}:${what}`;
    if (this.#failuresLogged.has(kind)) return;
    this.#failuresLogged.add(kind);
    this.#log(
      `aoe target: dropped ${what}: ${e.name}: ${
        e.message.split("\n")[0]
      } (further ones of this kind are only counted: dispatch.failed)`,
    );
  }

  /**
   * Says that `exports` changed in place (a reload added, replaced or removed
   * one): the address index is rebuilt at the next frame.
   */
  exportsChanged(): void {
    this.#addressIndex = undefined;
  }

  #byAddress(): Map<number, Export[]> {
    if (this.#addressIndex && this.#indexedCount === this.exports.length) return this.#addressIndex;
    const index = new Map<number, Export[]>();
    for (const device of this.exports) {
      const key = device.shelf * 256 + device.slot;
      const list = index.get(key);
      if (list) list.push(device);
      else index.set(key, [device]);
    }
    this.#indexedCount = this.exports.length;
    return this.#addressIndex = index;
  }

  #dispatch(frame: Uint8Array, length: number, link: FrameLink): void {
    this.counters.received++;
    const perLink = this.#interface(link);
    const problem = checkHeader(frame, length, false);
    if (problem !== undefined) {
      if (problem === "direction") {
        this.counters.responses++;
        perLink.responses++;
      } else if (problem === "version") {
        this.counters.badVersion++;
        perLink.badVersion++;
      } else {
        this.counters.malformed++;
        perLink.malformed++;
      }
      return;
    }
    if (addressedToOther(frame, link.mac)) {
      // Another host's request: executing it would answer for a target it was not meant for.
      this.counters.otherHost++;
      perLink.otherHost++;
      return;
    }
    const shelf = readShelf(frame);
    const slot = readSlot(frame);
    if (changesState(frame)) {
      // What the export is about to keep must fit every interface it serves (§5-§7).
      for (const device of this.exports) {
        if (device.matches(shelf, slot)) device.smallestMtu = this.#smallestMtu(device);
      }
    }
    // No object per frame here: the pacer reads the address itself, and only for broadcasts.
    const broadcast = shelf === 0xffff || slot === 0xff;
    if (broadcast && this.pacer.take(frame, length, link)) return;
    if (this.pacer.pending) this.pacer.heard(frame, link);
    let answered = false;
    // A unicast address is looked up; only a broadcast visits every export.
    const candidates = broadcast
      ? this.exports
      : this.#byAddress().get(shelf * 256 + slot) ?? NO_EXPORTS;
    for (const device of candidates) {
      if (!device.matches(shelf, slot) || !device.servesOn(link.name)) continue;
      device.traffic.arrived(this.#batch);
      device.handle(frame, length, link);
      answered = true;
    }
    if (!answered) {
      this.counters.notForUs++;
      perLink.notForUs++;
    }
  }

  /** The smallest MTU among the links `device` is served on. */
  #smallestMtu(device: Export): number {
    let mtu = Infinity;
    for (const link of this.links) if (device.servesOn(link.name) && link.mtu < mtu) mtu = link.mtu;
    return mtu;
  }

  #interface(link: FrameLink): InterfaceCounters {
    let c = this.interfaceCounters.get(link);
    if (!c) {
      c = { malformed: 0, responses: 0, badVersion: 0, notForUs: 0, otherHost: 0, peakBatch: 0 };
      this.interfaceCounters.set(link, c);
    }
    return c;
  }

  /** Processes whatever frames wait on every link, without blocking; returns how many were handled. */
  pollOnce(): number {
    let total = 0;
    try {
      this.pacer.run();
    } catch (error) {
      this.#failed(error, "a paced answer");
    }
    for (const link of this.links) {
      const n = link.receive();
      this.#batch++;
      if (n > 0) {
        const perLink = this.#interface(link);
        if (n > perLink.peakBatch) perLink.peakBatch = n;
      }
      const group = flushGroup(n);
      for (let i = 0; i < n; i++) {
        this.dispatch(link.rx[i], link.rxLength[i], link);
        // Send replies in small groups: the initiator gets work back while the rest of the
        // batch is processed, instead of both sides taking turns.
        if ((i + 1) % group === 0) link.flush();
      }
      link.flush();
      if (n > 0) { for (const device of this.exports) device.traffic.batchDone(); }
      total += n;
    }
    return total;
  }

  /** Runs until {@link stop}. */
  run(): Promise<void> {
    if (this.#stopped) return this.#stopped;
    this.#running = true;
    this.#stopped = this.#loop();
    return this.#stopped;
  }

  async #loop(): Promise<void> {
    const links = this.links;
    const canSpin = links.length > 0 && links.every((link) => link.ready !== undefined);
    const framesWait = () => links.some((link) => link.ready!());
    let lastYield = performance.now();
    let lastFrame = lastYield;
    while (this.#running) {
      if (this.pollOnce() > 0) {
        lastFrame = performance.now();
        // Busy: stay synchronous, but let timers and signal handlers run now and then.
        if (lastFrame - lastYield > BUSY_YIELD_MS) {
          await eventLoopTurn();
          lastYield = performance.now();
        }
        continue;
      }
      // Nothing waits: the replies are out, so this is when the event loop's turn costs no
      // request anything. (Taken after a wake-up instead, it would delay the request that
      // woke us by a thread-pool round trip.)
      if (performance.now() - lastYield > BUSY_YIELD_MS) {
        await eventLoopTurn();
        lastYield = performance.now();
        continue;
      }
      if (canSpin && this.spin.spin(framesWait)) continue;
      let gone: FrameLink[];
      const longIdle = performance.now() - lastFrame > LONG_IDLE_MS && !this.pacer.pending;
      const blocked = longIdle
        ? undefined
        : blockForFrames(links, this.pacer.sleepMs(IDLE_BLOCK_MS));
      if (blocked) {
        gone = blocked.gone;
        if (!blocked.ready) {
          await eventLoopTurn();
          lastYield = performance.now();
        }
      } else {
        // A long idle, or in-memory links (no descriptor): wait off the thread, the event
        // loop free for timers, signals and sockets meanwhile.
        if (longIdle) this.waitCounters.longIdle++;
        gone = await waitForFrames(links, longIdle ? LONG_IDLE_WAIT_MS : this.pacer.sleepMs(200));
        lastYield = performance.now();
      }
      if (gone.length > 0) {
        // The interface went away: stop, as vblade exits on a network read error.
        this.failure = new Error(
          `network interface ${gone.map((l) => l.name).join(", ")} went away`,
        );
        this.#running = false;
      }
    }
  }

  /** Stops the loop; resolves when it has ended. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#stopped;
  }

  /** All counters, for the administrator. */
  stats(): Record<string, unknown> {
    return {
      dispatch: { ...this.counters },
      spin: { ...this.spin.counters, budgetUs: this.spin.budgetUs },
      wait: { ...this.waitCounters },
      pacing: { ...this.pacer.counters },
      links: Object.fromEntries(this.links.map((link) => [link.name, { ...link.counters }])),
      interfaces: Object.fromEntries(
        this.links.map((link) => [link.name, { ...this.#interface(link) }]),
      ),
      exports: Object.fromEntries(
        this.exports.map((
          device,
        ) => [device.name, {
          ...device.counters,
          freeze: device.freezeState,
          traffic: structuredClone(device.traffic.counters),
          extensions: device.extensions.stats(),
        }]),
      ),
    };
  }
}

/** A Query Config set, a MAC Mask edit or a Reserve/Release set: a request that changes what an export keeps. */
function changesState(frame: Uint8Array): boolean {
  switch (readCommand(frame)) {
    case Command.config: {
      const ccmd = readConfigCommand(frame);
      return ccmd === ConfigCommand.set || ccmd === ConfigCommand.forceSet;
    }
    case Command.macMask:
      return readMaskCommand(frame) === MaskCommand.edit;
    case Command.reserve: {
      const rcmd = readReserveCommand(frame);
      return rcmd === ReserveCommand.set || rcmd === ReserveCommand.forceSet;
    }
    default:
      return false;
  }
}
