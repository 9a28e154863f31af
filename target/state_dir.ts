/**
 * The state directory (`/var/lib/aoe`): what initiators set over the network
 * and an administrator expects to survive a restart, one file per export
 * (`e9.0.json`): its config string and its MAC mask list, as ggaoed keeps them.
 * Files are written atomically (temporary file, fsync, rename, fsync of the
 * directory) with mode 0600 in a directory of mode 0700.
 *
 * @module
 */

import { check, cString, libc, linux } from "../ffi/libc.ts";
import { formatMac, parseMac } from "../wire/mod.ts";

/** One export's kept state. */
export interface ExportState {
  /** The config string (AoE r11 §3.2) as bytes. */
  config: Uint8Array;
  /** The MAC mask list as it was last set. */
  masks: number[];
  /** The mask list the config file gave when this was written (to see an edit of it). */
  configuredMasks: number[];
}

/** Reads and writes export state in one directory. */
export class StateDir {
  /**
   * Opens the state directory.
   *
   * @param path the directory; created with mode 0700 if missing
   */
  constructor(readonly path: string) {
    Deno.mkdirSync(path, { recursive: true, mode: 0o700 });
    Deno.chmodSync(path, 0o700);
  }

  #file(name: string): string {
    return `${this.path}/${name}.json`;
  }

  /** The state of export `name` ("e9.0"), or undefined if none is kept or it is unreadable. */
  load(name: string): ExportState | undefined {
    let text: string;
    try {
      text = Deno.readTextFileSync(this.#file(name));
    } catch {
      return undefined;
    }
    try {
      const json = JSON.parse(text);
      const macs = (list: unknown): number[] =>
        Array.isArray(list)
          ? list.map((m) => parseMac(String(m))).filter((m) => !Number.isNaN(m))
          : [];
      return {
        config: Uint8Array.from(atob(String(json.config ?? "")), (c) => c.charCodeAt(0)),
        masks: macs(json.masks),
        configuredMasks: macs(json.configuredMasks),
      };
    } catch {
      return undefined;
    }
  }

  /** Writes the state of export `name` atomically. */
  save(name: string, state: ExportState): void {
    const json = {
      config: btoa(String.fromCharCode(...state.config)),
      configText: new TextDecoder().decode(state.config),
      masks: state.masks.map((m) => formatMac(m, ":")),
      configuredMasks: state.configuredMasks.map((m) => formatMac(m, ":")),
    };
    writeFileAtomic(this.#file(name), JSON.stringify(json, null, 1) + "\n", { mode: 0o600 });
  }
}

/**
 * Replaces `path` with `text` so a reader (or a crash) sees either the old or
 * the new content: write a temporary file beside it, fsync, rename, fsync the
 * directory. The temporary file is created anew (O_EXCL|O_NOFOLLOW, any
 * entry of that name removed first) and its mode set on the open descriptor,
 * so a symlink planted at its name in a directory others can write is never
 * followed. `sync: false` skips both fsyncs (a file rewritten every second).
 */
export function writeFileAtomic(
  path: string,
  text: string,
  options: { mode: number; sync?: boolean },
): void {
  const sync = options.sync ?? true;
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : ".";
  const base = path.slice(slash + 1);
  const temporary = `${dir}/.${base}.${Deno.pid}.tmp`;
  try {
    Deno.removeSync(temporary); // a stale one, or a planted symlink: the entry itself goes
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const flags = linux.O_WRONLY | linux.O_CREAT | linux.O_EXCL | linux.O_NOFOLLOW |
    linux.O_CLOEXEC;
  const fd = check(libc().open(cString(temporary), flags, options.mode), `open ${temporary}`);
  try {
    const bytes = new TextEncoder().encode(text);
    for (let done = 0; done < bytes.length;) {
      const rest = bytes.subarray(done);
      const n = check(
        libc().pwrite(fd, rest, BigInt(rest.length), BigInt(done)),
        `write ${temporary}`,
      );
      if (n === 0) throw new Error(`write ${temporary}: no progress`);
      done += n;
    }
    check(libc().fchmod(fd, options.mode), `chmod ${temporary}`);
    if (sync) check(libc().fsync(fd), `fsync ${temporary}`);
  } catch (error) {
    libc().close(fd);
    try {
      Deno.removeSync(temporary);
    } catch { /* gone */ }
    throw error;
  }
  libc().close(fd);
  Deno.renameSync(temporary, path);
  if (!sync) return;
  const directory = Deno.openSync(dir, { read: true });
  try {
    directory.syncSync();
  } finally {
    directory.close();
  }
}
