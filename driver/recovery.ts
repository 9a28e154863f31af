/**
 * Recovering the discovery answers a burst lost (docs/driver.md §2). One
 * broadcast Query Config brings one answer per export at once; when the
 * kernel drops part of such a burst (the link's `rxDrops`), asking the same
 * way again loses the same answers, since a target answers in the same order
 * every time. So the driver asks again in smaller pieces spread in time: a
 * Query Config per slot number (each reaches every shelf, so its answers are
 * at most one per shelf), in a shuffled order, spaced with jitter, and again
 * the IDENTIFY of every device whose answer may have been lost. A round that
 * sees drops again is followed by another, later and more widely spaced,
 * up to {@link RECOVERY_ROUNDS}.
 *
 * @module
 */

import { BROADCAST_SHELF, BROADCAST_SLOT } from "../wire/mod.ts";

/** How long after a discovery broadcast (or a recovery query) drops are taken as its answers' loss. */
export const DISCOVERY_WINDOW_MS = 3000;
/** Rounds of re-queries after one discovery, at most. */
export const RECOVERY_ROUNDS = 4;
/** Wait before the first round; it doubles each round (with jitter). */
export const RECOVERY_BACKOFF_MS = 50;
/** Spacing of the first round's queries; it doubles each round (with jitter). */
export const RECOVERY_SPACING_MS = 2;
/** IDENTIFYs resent per step of a round, so their replies come in bursts a ring holds. */
export const IDENTIFY_BATCH = 16;
/** Quiet time after a round's last query before its drops decide on another round. */
export const RECOVERY_SETTLE_MS = 250;

/** One thing a round does. */
export type RecoveryAction =
  | { kind: "query"; shelf: number; slot: number }
  | { kind: "identify" };

/** What the recovery asks of the initiator. */
export interface RecoveryHooks {
  /** Broadcast a Query Config for shelf.slot (either may be the broadcast value). */
  query(shelf: number, slot: number): void;
  /**
   * Resend the IDENTIFY of up to `max` devices still waiting for one (their
   * answers may be lost); returns how many were sent.
   */
  identifyPending(max: number): number;
  /** A line for the kernel log. */
  log(line: string): void;
  /** Slot numbers of the devices known: asked first, as the lost ones likely share them. */
  knownSlots(): Iterable<number>;
  /** A full discovery (broadcast, opening a window): drops outside any window may be lost announcements. */
  discover(): void;
}

/** Least time between discoveries that drops outside any window start, in ms. */
export const UNSOLICITED_DROPS_DISCOVERY_MS = 10_000;

/** The re-query schedule after discoveries whose answers were dropped. */
export class DiscoveryRecovery {
  /** Rounds started since the last discovery broadcast. */
  round = 0;
  /** Rounds run in all, and re-queries sent (for the counters). */
  readonly counters = { rounds: 0, queries: 0 };
  #windowUntil = -Infinity;
  #queue: RecoveryAction[] = [];
  #nextAt = Infinity;
  #spacing = RECOVERY_SPACING_MS;
  /** Drops seen since the current round began (or since the broadcast). */
  #dropsSeen = 0;
  /** When the running round's last action went out (it then settles). */
  #settleUntil = Infinity;
  #lastTriggered = -Infinity;

  /**
   * A schedule with nothing to do until a discovery's answers are dropped.
   *
   * @param hooks what a round does
   * @param random jitter source in [0, 1) (tests give a fixed one)
   */
  constructor(readonly hooks: RecoveryHooks, readonly random: () => number = Math.random) {}

  /** A discovery broadcast went out: a fresh window, no rounds yet. */
  broadcast(now: number): void {
    this.round = 0;
    this.#queue = [];
    this.#nextAt = Infinity;
    this.#settleUntil = Infinity;
    this.#dropsSeen = 0;
    this.#windowUntil = now + DISCOVERY_WINDOW_MS;
  }

  /** A query of ours other than a broadcast went out (a target asked directly): drops count too. */
  extend(now: number): void {
    this.#windowUntil = Math.max(this.#windowUntil, now + DISCOVERY_WINDOW_MS);
  }

  /** Whether answers now are answers to a query of ours (a broadcast or a round). */
  open(now: number): boolean {
    return now < this.#windowUntil;
  }

  /**
   * The kernel dropped `n` frames: within a discovery's window, they may be
   * its answers; outside one, start announcements (a target's start-up burst)
   * may be among them, and a discovery is broadcast (at most every
   * {@link UNSOLICITED_DROPS_DISCOVERY_MS}).
   */
  drops(n: number, now: number): void {
    if (n <= 0) return;
    if (!this.open(now)) {
      if (now - this.#lastTriggered < UNSOLICITED_DROPS_DISCOVERY_MS) return;
      this.#lastTriggered = now;
      this.hooks.log(`aoe: ${n} frames dropped; discovering again`);
      this.hooks.discover();
      return;
    }
    this.#dropsSeen += n;
    if (this.#nextAt === Infinity && this.#settleUntil === Infinity) this.#schedule(now);
  }

  /** When {@link pump} next has something to do (Infinity: nothing). */
  get nextAt(): number {
    return Math.min(this.#nextAt, this.#settleUntil);
  }

  /** Sends what is due; call it often (each loop turn) while {@link nextAt} is near. */
  pump(now: number): void {
    // One step per call, the next one spacing after it (never a catch-up burst after a busy spell).
    if (this.#queue.length > 0 && now >= this.#nextAt) {
      const action = this.#queue.shift()!;
      if (action.kind === "query") {
        this.counters.queries++;
        this.hooks.query(action.shelf, action.slot);
      } else if (this.hooks.identifyPending(IDENTIFY_BATCH) === IDENTIFY_BATCH) {
        this.#queue.unshift(action); // more wait: the next batch after the next spacing
      }
      this.#windowUntil = Math.max(this.#windowUntil, now + DISCOVERY_WINDOW_MS);
      if (this.#queue.length === 0) {
        this.#nextAt = Infinity;
        this.#settleUntil = now + RECOVERY_SETTLE_MS;
      } else this.#nextAt = now + this.#spacing * (0.5 + this.random());
    }
    if (now >= this.#settleUntil) {
      // The round is over: more drops since it began ask for another, later and wider.
      this.#settleUntil = Infinity;
      if (this.#dropsSeen > 0) this.#schedule(now);
    }
  }

  #shuffled(list: number[]): number[] {
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [list[i], list[j]] = [list[j], list[i]];
    }
    return list;
  }

  #schedule(now: number): void {
    if (this.round >= RECOVERY_ROUNDS) return;
    const dropped = this.#dropsSeen;
    this.#dropsSeen = 0;
    this.round++;
    this.counters.rounds++;
    const scale = 2 ** (this.round - 1);
    this.#spacing = RECOVERY_SPACING_MS * scale;
    this.hooks.log(
      `aoe: ${dropped} frames dropped while discovering; asking again by slot (round ${this.round})`,
    );
    // Every slot number, shuffled so no target's answers come in the order that lost them;
    // the slots of devices known first (shelves are usually filled alike), then the rest.
    const known = new Set<number>(this.hooks.knownSlots());
    const first = this.#shuffled([...known]);
    const rest = this.#shuffled(
      Array.from({ length: BROADCAST_SLOT }, (_, i) => i).filter((i) => !known.has(i)),
    );
    const slots = [...first, ...rest];
    const actions: RecoveryAction[] = [{ kind: "identify" }];
    for (const [i, slot] of slots.entries()) {
      actions.push({ kind: "query", shelf: BROADCAST_SHELF, slot });
      // IDENTIFY replies of the devices found meanwhile may be lost too: ask again now and then.
      if (i % 64 === 63) actions.push({ kind: "identify" });
    }
    actions.push({ kind: "identify" });
    this.#queue = actions;
    this.#nextAt = now + RECOVERY_BACKOFF_MS * scale * (0.5 + this.random());
  }
}
