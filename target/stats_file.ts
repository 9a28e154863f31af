/**
 * `aoe target --stats FILE`: the counters as JSON, replaced whole (written to
 * a new temporary file beside it, then renamed; mode 0644) every second and at exit. A path that cannot be
 * written is refused at start; a write that fails later (the directory
 * removed, a full disk) is reported once and the target goes on serving.
 *
 * @module
 */

import { errorMessage } from "../util/errors.ts";
import { writeFileAtomic } from "./state_dir.ts";

/** The stats file of `aoe target`. */
export class StatsFile {
  #failing = false;
  #log: (message: string) => void;

  /**
   * A stats file at `path`; nothing is written until {@link check} or {@link write}.
   *
   * @param path where the JSON goes
   * @param options where the one-line warnings go (default: stderr)
   */
  constructor(readonly path: string, options: { log?: (message: string) => void } = {}) {
    this.#log = options.log ?? ((message) => console.error(message));
  }

  /** Writes an empty object to the file; throws a one-line Error if it cannot. */
  check(): void {
    try {
      this.#replace("{}\n");
    } catch (error) {
      throw new Error(`--stats ${this.path}: ${errorMessage(error)}`);
    }
  }

  /**
   * Replaces the file with `stats` as JSON (or what the function `stats`
   * returns: an error in it is a failure like any other, never thrown);
   * returns whether it was written. The first failure is logged, later ones
   * only when writing worked in between.
   */
  write(stats: unknown): boolean {
    try {
      const value = typeof stats === "function" ? stats() : stats;
      this.#replace(JSON.stringify(value, null, 1));
    } catch (error) {
      if (!this.#failing) {
        this.#log(
          `aoe target: --stats ${this.path}: ${
            errorMessage(error)
          }; still serving, the counters are not written until this works again`,
        );
      }
      this.#failing = true;
      return false;
    }
    if (this.#failing) this.#log(`aoe target: --stats ${this.path}: written again`);
    this.#failing = false;
    return true;
  }

  #replace(text: string): void {
    // Never through a symlink planted at the temporary name (target/state_dir.ts).
    writeFileAtomic(this.path, text, { mode: 0o644, sync: false });
  }
}
