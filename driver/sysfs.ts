/**
 * The attribute tree, laid out like sysfs under the run directory:
 * `block/etherd!e9.0/{state,mac,netif,firmware-version,payload,size}` and
 * `module/aoe/parameters/aoe_*` (docs/driver.md §8). Files are written
 * only when their content changes.
 *
 * @module
 */

import { type AccessPolicy, applyMode, MODES } from "./access.ts";
import type { AoeDevice } from "./device.ts";
import type { DriverParams } from "./params.ts";

/** The version the in-kernel driver reports. */
export const DRIVER_VERSION = "85";

/** Writes and removes the tree. */
export class SysfsTree {
  #written = new Map<string, string>();

  /**
   * A tree rooted at `sysDir`, written by {@link init}.
   *
   * @param sysDir the tree's root
   * @param access the group granted access, if any
   */
  constructor(readonly sysDir: string, readonly access: AccessPolicy = {}) {}

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

  /** Creates the module directories and writes the parameters. */
  init(params: DriverParams): void {
    this.#mkdir(`${this.sysDir}/block`);
    this.#mkdir(`${this.sysDir}/module/aoe/parameters`);
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

  /** Writes a device's attributes; a device is visible only after its first IDENTIFY. */
  writeDevice(device: AoeDevice): void {
    if (!device.visible) return;
    const dir = this.deviceDir(device.name);
    this.#mkdir(dir);
    this.#write(`${dir}/state`, `${device.state}\n`);
    this.#write(`${dir}/mac`, `${device.macText}\n`);
    this.#write(`${dir}/netif`, `${device.netifText}\n`);
    this.#write(
      `${dir}/firmware-version`,
      `0x${device.firmwareVersion.toString(16).padStart(4, "0")}\n`,
    );
    this.#write(`${dir}/payload`, `${device.payload}\n`);
    this.#write(`${dir}/size`, `${device.sectors}\n`);
  }

  /** Removes a device's attribute directory. */
  removeDevice(name: string): void {
    const dir = this.deviceDir(name);
    for (const key of [...this.#written.keys()]) {
      if (key.startsWith(`${dir}/`)) this.#written.delete(key);
    }
    Deno.removeSync(dir, { recursive: true });
  }

  /** Removes the whole tree. */
  remove(): void {
    this.#written.clear();
    try {
      Deno.removeSync(this.sysDir, { recursive: true });
    } catch { /* already gone */ }
  }
}
