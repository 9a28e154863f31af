/**
 * A task repeated on a timer (a stats file, a Prometheus textfile) whose
 * failure is logged once, not at every tick: again only after it worked in
 * between, and once when it works again.
 *
 * @module
 */

import { errorMessage } from "./errors.ts";

/** Runs a repeated task; logs its first failure and its recovery, never throws. */
export class FailureLatch {
  #failing = false;

  /**
   * A latch logging through `log`.
   *
   * @param log where the one-line messages go
   * @param options `failed`: the text of a failure from the error's message;
   *   `recovered`: the text logged when the task works again
   */
  constructor(
    readonly log: (message: string) => void,
    readonly options: { failed: (message: string) => string; recovered: string },
  ) {}

  /** Whether the last run failed. */
  get failing(): boolean {
    return this.#failing;
  }

  /** Runs `task`; returns whether it worked. */
  run(task: () => void): boolean {
    try {
      task();
    } catch (error) {
      if (!this.#failing) this.log(this.options.failed(errorMessage(error)));
      this.#failing = true;
      return false;
    }
    if (this.#failing) this.log(this.options.recovered);
    this.#failing = false;
    return true;
  }
}
