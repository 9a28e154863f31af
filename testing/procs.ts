/**
 * Starting the project's `aoe` command (and other daemons) inside a test
 * namespace, waiting until they are ready, and stopping them.
 *
 * @module
 */

const here = new URL("../", import.meta.url).pathname;

/** The project's root directory. */
export const PROJECT_ROOT: string = here;

/** argv that runs the `aoe` command from this checkout. */
export function aoeCommand(...args: string[]): string[] {
  return [`${here}scripts/aoe`, ...args];
}

/** A background process with its collected output. */
export class Daemon {
  #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #pumps: Promise<void>[];
  readonly status: Promise<Deno.CommandStatus>;

  /** Starts `argv`. */
  constructor(argv: string[]) {
    this.#child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pumps = [
      this.#pump(this.#child.stdout, (t) => this.#stdout += t),
      this.#pump(this.#child.stderr, (t) => this.#stderr += t),
    ];
    this.status = this.#child.status;
  }

  async #pump(stream: ReadableStream<Uint8Array>, sink: (text: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
  }

  get pid(): number {
    return this.#child.pid;
  }
  get stdout(): string {
    return this.#stdout;
  }
  get stderr(): string {
    return this.#stderr;
  }

  /** Waits until stdout or stderr matches, or throws after `timeoutMs`. */
  async waitFor(pattern: RegExp, timeoutMs = 15000): Promise<void> {
    await this.waitForCount(pattern, 1, timeoutMs);
  }

  /** Waits until `pattern` matches `count` times in stdout or in stderr (each counted alone). */
  async waitForCount(pattern: RegExp, count: number, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.status.then(() => exited = true);
    const global = new RegExp(
      pattern.source,
      pattern.flags.includes("g") ? pattern.flags : `${pattern.flags}g`,
    );
    const matches = (text: string) => text.match(global)?.length ?? 0;
    while (matches(this.#stdout) < count && matches(this.#stderr) < count) {
      if (exited) {
        throw new Error(`process exited before ${pattern}: ${this.#stdout}${this.#stderr}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`timeout waiting for ${pattern}: ${this.#stdout}${this.#stderr}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Sends a signal; ignores a process that is gone. */
  signal(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch { /* gone */ }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status. */
  async stop(graceMs = 5000): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    const status = await this.status;
    clearTimeout(timer);
    await Promise.all(this.#pumps);
    return status;
  }
}
