/**
 * The control files (the counterpart of the kernel's aoechr.c), as FIFOs in
 * the device directory so the shell usage is the kernel's: `cat err` blocks
 * until diagnostics arrive, `echo > discover` returns at once (the daemon
 * holds every FIFO open for reading and writing, so writers never block).
 *
 * @module
 */

import { cString, libc, linux } from "../ffi/libc.ts";
import { type AccessPolicy, applyMode, MODES } from "./access.ts";

/**
 * The control files and their modes (udev.txt: err 0440, the others 0220); the
 * group bits count only when a group is granted, else the files are root's alone.
 */
export const CONTROL_FILES = {
  err: 0o440,
  discover: 0o220,
  interfaces: 0o220,
  revalidate: 0o220,
  flush: 0o220,
} as const;
/** A writable control file. */
export type ControlCommand = Exclude<keyof typeof CONTROL_FILES, "err">;

/** Opens and serves the FIFOs. */
export class ControlFiles {
  #fds = new Map<ControlCommand, number>();
  #errFd = -1;
  #buffer = new Uint8Array(4096);

  /**
   * Control files that will live in `devDir` once {@link create} runs.
   *
   * @param devDir the device directory
   * @param access the group granted access, if any
   */
  constructor(readonly devDir: string, readonly access: AccessPolicy = {}) {}

  /** Creates the directory and the FIFOs (replacing stale ones) and opens them. */
  create(): void {
    Deno.mkdirSync(this.devDir, { recursive: true });
    applyMode(this.devDir, MODES.directory);
    const c = libc();
    for (const [name, mode] of Object.entries(CONTROL_FILES)) {
      const path = `${this.devDir}/${name}`;
      try {
        Deno.removeSync(path);
      } catch { /* none */ }
      if (c.mkfifo(cString(path), mode) !== 0) throw new Error(`mkfifo ${path} failed`);
      applyMode(path, mode, this.access);
      const fd = c.open(cString(path), linux.O_RDWR | linux.O_NONBLOCK | linux.O_CLOEXEC, 0);
      if (fd < 0) throw new Error(`open ${path} failed`);
      if (name === "err") this.#errFd = fd;
      else this.#fds.set(name as ControlCommand, fd);
    }
  }

  /** The fds to poll for commands. */
  get pollFds(): number[] {
    return [...this.#fds.values()];
  }

  /** Reads every pending write; one read() is taken as one write, as the kernel sees it. */
  drain(handle: (command: ControlCommand, text: string) => void): void {
    for (const [name, fd] of this.#fds) {
      for (;;) {
        const n = Number(libc().read(fd, this.#buffer, BigInt(this.#buffer.length)));
        if (n <= 0) break;
        handle(name, new TextDecoder().decode(this.#buffer.subarray(0, n)));
      }
    }
  }

  /** Queues a diagnostic line for readers of `err`; dropped when the FIFO is full, like the kernel's ring. */
  error(line: string): void {
    if (this.#errFd < 0) return;
    const bytes = new TextEncoder().encode(line.endsWith("\n") ? line : `${line}\n`);
    libc().write(this.#errFd, bytes, BigInt(bytes.length));
  }

  /** Closes and removes the FIFOs (and the directory if it is left empty). */
  remove(): void {
    const c = libc();
    for (const fd of this.#fds.values()) c.close(fd);
    if (this.#errFd >= 0) c.close(this.#errFd);
    this.#fds.clear();
    this.#errFd = -1;
    for (const name of Object.keys(CONTROL_FILES)) {
      try {
        Deno.removeSync(`${this.devDir}/${name}`);
      } catch { /* gone */ }
    }
    try {
      Deno.removeSync(this.devDir);
    } catch { /* not empty, or gone */ }
  }
}
