/**
 * The attribute tree, laid out like sysfs under the run directory:
 * `block/etherd!e9.0/{state,mac,netif,firmware-version,payload,size}` and
 * `module/aoe/parameters/aoe_*` (docs/driver.md §8). Files are written
 * only when their content changes. Device attributes are written off the hot
 * path: {@link SysfsTree.writeDevice} only marks the device, and the changes
 * of many events are written together on a short timer (or when the driver's
 * loop is idle, or before the daemon answers a request). Each file is replaced
 * by rename, and a new device's directory is filled aside and renamed into
 * place, so no reader sees a half-written file or a half-filled directory.
 * On a run directory on disk the tree's bytes live in memory, as sysfs's do
 * (driver/memory_tree.ts).
 *
 * @module
 */

import { type AccessPolicy, applyMode, MODES } from "./access.ts";
import type { AoeDevice } from "./device.ts";
import { prepareTree, removeTree } from "./memory_tree.ts";
import type { DriverParams } from "./params.ts";

/** The version the in-kernel driver reports. */
export const DRIVER_VERSION = "85";
/** Longest a device's changed attributes wait before they are written, in milliseconds. */
export const SYSFS_FLUSH_MS = 20;
/** Longest one lazy write of the tree holds the driver's loop, in milliseconds. */
export const SYSFS_FLUSH_BUDGET_MS = 5;

/** Writes and removes the tree. */
export class SysfsTree {
  #written = new Map<string, string>();
  /** Devices whose attributes changed since the last flush, by name (the latest object). */
  #dirty = new Map<string, AoeDevice>();
  /** Device directories that exist. */
  #made = new Set<string>();
  #timer?: ReturnType<typeof setTimeout>;
  /** Flushes that failed (a file could not be written); the tree is retried on the next change. */
  writeErrors = 0;
  /** Told of a failed write (the driver logs it once). */
  onError?: (error: unknown) => void;

  /**
   * A tree rooted at `sysDir`, written by {@link init}.
   *
   * @param sysDir the tree's root
   * @param access the group granted access, if any
   * @param options `inPlace`: write the tree at `sysDir` even on a disk
   *   filesystem (by default it then lives in memory: driver/memory_tree.ts)
   */
  constructor(
    readonly sysDir: string,
    readonly access: AccessPolicy = {},
    readonly options: { inPlace?: boolean } = {},
  ) {}

  /** Writes a file read-only for all but root (mode set explicitly: the umask never decides). */
  #write(path: string, content: string, mode: number = MODES.attribute): void {
    if (this.#written.get(path) === content) return;
    const temporary = `${path}.tmp`;
    Deno.writeTextFileSync(temporary, content);
    applyMode(temporary, mode);
    Deno.renameSync(temporary, path);
    this.#written.set(path, content);
  }

  #mkdir(path: string): void {
    Deno.mkdirSync(path, { recursive: true });
    // Every level from the tree's root down gets the directory mode.
    for (let dir = path; dir.startsWith(this.sysDir); dir = dir.slice(0, dir.lastIndexOf("/"))) {
      applyMode(dir, MODES.directory);
      if (dir === this.sysDir) break;
    }
  }

  /** The directory of a device's attributes. */
  deviceDir(name: string): string {
    return `${this.sysDir}/block/etherd!${name}`;
  }

  /**
   * Removes what an earlier daemon left at the tree's root, places the tree
   * (in memory when the run directory is on disk: driver/memory_tree.ts),
   * creates the module directories and writes the parameters.
   */
  init(params: DriverParams): void {
    prepareTree(this.sysDir, { inPlace: this.options.inPlace });
    this.#mkdir(`${this.sysDir}/block`);
    this.#mkdir(`${this.sysDir}/module/aoe/parameters`);
    this.#mkdir(`${this.sysDir}/.new`);
    this.#write(`${this.sysDir}/module/aoe/version`, `${DRIVER_VERSION}\n`);
    this.writeParams(params);
  }

  /** Path of the writable aoe_iflist parameter. */
  get iflistPath(): string {
    return `${this.sysDir}/module/aoe/parameters/aoe_iflist`;
  }

  /** Writes the module parameter files. */
  writeParams(params: DriverParams): void {
    const dir = `${this.sysDir}/module/aoe/parameters`;
    // The daemon re-reads aoe_iflist: only root may write it.
    this.#write(`${dir}/aoe_iflist`, `${params.iflist.join(" ")}\n`, MODES.writableParameter);
    this.#write(`${dir}/aoe_deadsecs`, `${params.deadsecs}\n`);
    this.#write(`${dir}/aoe_maxout`, `${params.maxout}\n`);
    this.#write(`${dir}/aoe_dyndevs`, `${params.dyndevs}\n`);
    this.#write(`${dir}/aoe_maxdevs`, `${params.maxdevs}\n`);
  }

  /**
   * Marks a device's attributes for writing (within {@link SYSFS_FLUSH_MS});
   * a device is visible only after its first IDENTIFY. Touches no file.
   */
  writeDevice(device: AoeDevice): void {
    if (!device.visible) return;
    this.#dirty.set(device.name, device);
    this.#schedule();
  }

  /** Whether changed attributes wait to be written. */
  get pending(): boolean {
    return this.#dirty.size > 0;
  }

  /**
   * Writes the changed devices' attributes now (the timer, an idle loop,
   * shutdown), for at most `budgetMs` (default: all of them); what is left
   * waits for the timer.
   */
  flush(budgetMs: number = Infinity): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const started = performance.now();
    for (const [name, device] of this.#dirty) {
      this.#dirty.delete(name);
      try {
        this.#writeDeviceNow(device);
      } catch (error) {
        this.writeErrors++;
        this.onError?.(error);
      }
      if (performance.now() - started > budgetMs) break;
    }
    if (this.#dirty.size > 0) this.#schedule(0); // the rest at the next turn
  }

  #schedule(delayMs = SYSFS_FLUSH_MS): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.flush(SYSFS_FLUSH_BUDGET_MS);
    }, delayMs);
  }

  #attributes(device: AoeDevice): [string, string][] {
    return [
      ["state", `${device.state}\n`],
      ["mac", `${device.macText}\n`],
      ["netif", `${device.netifText}\n`],
      ["firmware-version", `0x${device.firmwareVersion.toString(16).padStart(4, "0")}\n`],
      ["payload", `${device.payload}\n`],
      ["size", `${device.sectors}\n`],
    ];
  }

  #writeDeviceNow(device: AoeDevice): void {
    const dir = this.deviceDir(device.name);
    const attributes = this.#attributes(device);
    if (this.#made.has(dir)) {
      for (const [name, content] of attributes) this.#write(`${dir}/${name}`, content);
      return;
    }
    // A new directory is filled aside and renamed into place whole.
    const staging = `${this.sysDir}/.new/etherd!${device.name}`;
    Deno.mkdirSync(staging, { recursive: true });
    applyMode(staging, MODES.directory);
    for (const [name, content] of attributes) {
      Deno.writeTextFileSync(`${staging}/${name}`, content);
      applyMode(`${staging}/${name}`, MODES.attribute);
    }
    try {
      Deno.renameSync(staging, dir);
    } catch (error) {
      // Left behind by an earlier run: replace it file by file instead.
      Deno.removeSync(staging, { recursive: true });
      if (!(error instanceof Deno.errors.AlreadyExists) && !isNotEmpty(error)) throw error;
      for (const [name, content] of attributes) this.#write(`${dir}/${name}`, content);
    }
    this.#made.add(dir);
    for (const [name, content] of attributes) this.#written.set(`${dir}/${name}`, content);
  }

  /** Removes a device's attribute directory. */
  removeDevice(name: string): void {
    const dir = this.deviceDir(name);
    this.#dirty.delete(name);
    this.#made.delete(dir);
    for (const key of [...this.#written.keys()]) {
      if (key.startsWith(`${dir}/`)) this.#written.delete(key);
    }
    Deno.removeSync(dir, { recursive: true });
  }

  /** Removes the whole tree. */
  remove(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dirty.clear();
    this.#made.clear();
    this.#written.clear();
    try {
      removeTree(this.sysDir);
    } catch { /* already gone */ }
  }
}

/** Whether a rename failed because its target is a directory with entries (ENOTEMPTY). */
function isNotEmpty(error: unknown): boolean {
  return error instanceof Error && /not empty/i.test(error.message);
}
