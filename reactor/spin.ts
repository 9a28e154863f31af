/**
 * An adaptive spin before sleeping. Watching a ring for a few microseconds
 * pays when the next frame follows closely (a request right after its reply:
 * no sleep and no wake-up), and is waste when it does not, or theft when
 * another process needs the CPU. So the budget shrinks when spins find
 * nothing, drops to zero when this thread was preempted (involuntary context
 * switches, getrusage(RUSAGE_THREAD) ru_nivcsw), and is probed again now and then.
 *
 * @module
 */

import { libc, linux } from "../ffi/libc.ts";

/** The longest spin by default, in microseconds (`AOE_SPIN_US` overrides; 0 never spins). */
export const DEFAULT_SPIN_US = 50;
/** Below this budget a spin is not worth its clock reads: stop spinning. */
const MIN_SPIN_US = 3;
/** Idle episodes without a spin after spins stopped finding work. */
const MISSED_BACKOFF = 64;
/** Idle episodes without a spin after this thread was preempted. */
const PREEMPTED_BACKOFF = 1024;

const rusage = new BigInt64Array(18);
const rusageBytes = new Uint8Array(rusage.buffer);
/** struct rusage: two timevals (4 longs), then ru_maxrss ... ru_nivcsw is the 14th long. */
const NIVCSW_INDEX = 4 + 13;

/** Involuntary context switches of the calling thread so far. */
export function involuntarySwitches(): number {
  libc().getrusage(linux.RUSAGE_THREAD, rusageBytes);
  return Number(rusage[NIVCSW_INDEX]);
}

/** The spin limit from `AOE_SPIN_US`, or {@link DEFAULT_SPIN_US}. */
export function spinLimitUs(): number {
  const text = Deno.env.get("AOE_SPIN_US");
  const value = text === undefined ? NaN : Number(text);
  return Number.isFinite(value) && value >= 0 ? value : DEFAULT_SPIN_US;
}

/** What the spins did. */
export interface SpinCounters {
  /** Spins that found work. */
  found: number;
  /** Spins that ran out of budget. */
  missed: number;
  /** Times the budget was dropped because the thread had been preempted. */
  preempted: number;
}

/** A spin whose length follows what spinning has been finding. */
export class AdaptiveSpin {
  /** The longest spin, in microseconds; 0 disables spinning. */
  readonly maxUs: number;
  /** The current budget, in microseconds. */
  budgetUs: number;
  /** Spins that found work, spins that did not, and spins cut short by preemption. */
  readonly counters: SpinCounters = { found: 0, missed: 0, preempted: 0 };
  #backoff = 0;
  #involuntary: number;

  /**
   * A spin starting at its longest budget.
   *
   * @param options `maxUs`: the longest spin (default {@link spinLimitUs})
   */
  constructor(options: { maxUs?: number } = {}) {
    this.maxUs = options.maxUs ?? spinLimitUs();
    this.budgetUs = this.maxUs;
    this.#involuntary = this.maxUs > 0 ? involuntarySwitches() : 0;
  }

  /**
   * Calls `ready` until it returns true or the budget is spent; true if it
   * did. Call it when there is no work, just before sleeping.
   */
  spin(ready: () => boolean): boolean {
    if (this.maxUs <= 0) return false;
    const involuntary = involuntarySwitches();
    if (involuntary !== this.#involuntary) {
      // Preempted since the last spin: the CPU is contended, and a spin would take another's turn.
      this.#involuntary = involuntary;
      this.counters.preempted++;
      this.budgetUs = 0;
      this.#backoff = PREEMPTED_BACKOFF;
      return false;
    }
    if (this.budgetUs === 0) {
      if (--this.#backoff > 0) return false;
      this.budgetUs = this.maxUs; // probe: does spinning pay again?
    }
    const until = performance.now() + this.budgetUs / 1000;
    do {
      if (ready()) {
        this.counters.found++;
        this.budgetUs = Math.min(this.maxUs, this.budgetUs * 2);
        return true;
      }
    } while (performance.now() < until);
    this.counters.missed++;
    this.budgetUs /= 2;
    if (this.budgetUs < MIN_SPIN_US) {
      this.budgetUs = 0;
      this.#backoff = MISSED_BACKOFF;
    }
    return false;
  }
}
