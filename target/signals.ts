/**
 * AoEde's freeze signals beside this target's counters signal (docs/extensions.md §5):
 * SIGUSR1 then SIGUSR2 freezes; SIGUSR1, SIGUSR1, SIGUSR2 unfreezes; a SIGUSR1
 * that no SIGUSR2 follows within a second logs the counters, as a lone
 * SIGUSR1 always did here.
 *
 * @module
 */

/** How long a SIGUSR2 that came alone waits for the SIGUSR1 sent just before it. */
const EARLY_MS = 100;

/** What the signal sequences do. */
export interface SignalActions {
  /** SIGUSR1 then SIGUSR2: freeze the export onto its shadow. */
  freeze(): void;
  /** SIGUSR1, SIGUSR1, SIGUSR2: unfreeze (merge the shadow back). */
  unfreeze(): void;
  /** A lone SIGUSR1: log the counters. */
  counters(): void;
  /** A sequence that means nothing (a SIGUSR2 alone, three SIGUSR1 then SIGUSR2). */
  ignored(why: string): void;
}

/** Recognizes the sequences; feed it each SIGUSR1 and SIGUSR2 as it arrives. */
export class SignalSequence {
  #usr1 = 0;
  #timer?: ReturnType<typeof setTimeout>;
  /** A SIGUSR2 that came first: signals of two kinds sent at once may be handled out of order. */
  #earlyUsr2 = false;

  /**
   * Makes a recognizer that calls `actions`.
   *
   * @param actions what to do
   * @param timeoutMs how long a SIGUSR1 waits for the rest of a sequence
   */
  constructor(readonly actions: SignalActions, readonly timeoutMs: number = 1000) {}

  /** One signal. */
  feed(signal: "SIGUSR1" | "SIGUSR2"): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (signal === "SIGUSR1" && this.#earlyUsr2) {
      this.#earlyUsr2 = false;
      this.#usr1 = 0;
      this.actions.freeze();
      return;
    }
    if (signal === "SIGUSR1") {
      this.#usr1++;
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#usr1 = 0;
        this.actions.counters();
      }, this.timeoutMs);
      return;
    }
    const n = this.#usr1;
    this.#usr1 = 0;
    if (n === 0) {
      this.#earlyUsr2 = true;
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#earlyUsr2 = false;
        this.actions.ignored("SIGUSR2 without SIGUSR1");
      }, EARLY_MS);
      return;
    }
    if (n === 1) this.actions.freeze();
    else if (n === 2) this.actions.unfreeze();
    else this.actions.ignored(`SIGUSR2 after ${n} SIGUSR1`);
  }

  /** Cancels a pending timeout. */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
