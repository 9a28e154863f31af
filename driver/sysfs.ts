/**
 * The attribute tree, laid out like sysfs under the run directory:
 * `block/etherd!e9.0/{state,mac,netif,firmware-version,payload,size}` and
 * `module/aoe/parameters/aoe_*` (linux-aoe-driver.md §7). Files are written
 * only when their content changes.
 *
 * @module
 */

import type { AoeDevice } from "./device.ts";
import type { DriverParams } from "./params.ts";

/** The version the in-kernel driver reports. */
export const DRIVER_VERSION = "85";

/** Writes and removes the tree. */
export class SysfsTree {
  #written = new Map<string, string>();

  /** @param sysDir the tree's root */
  constructor(readonly sysDir: string) {}

  #write(path: string, content: string): void {
    if (this.#written.get(path) === content) return;
    const temporary = `${path}.tmp`;
    Deno.writeTextFileSync(temporary, content);
    Deno.renameSync(temporary, path);
    this.#written.set(path, content);
  }

  /** The directory of a device's attributes. */
  deviceDir(name: string): string {
    return `${this.sysDir}/block/etherd!${name}`;
  }

  /** Creates the module directories and writes the parameters. */
  init(params: DriverParams): void {
    Deno.mkdirSync(`${this.sysDir}/block`, { recursive: true });
    Deno.mkdirSync(`${this.sysDir}/module/aoe/parameters`, { recursive: true });
    this.#write(`${this.sysDir}/module/aoe/version`, `${DRIVER_VERSION}\n`);
    this.writeParams(params);
  }

  /** Path of the writable aoe_iflist parameter. */
  get iflistPath(): string {
    return `${this.sysDir}/module/aoe/parameters/aoe_iflist`;
  }

  writeParams(params: DriverParams): void {
    const dir = `${this.sysDir}/module/aoe/parameters`;
    this.#write(`${dir}/aoe_iflist`, `${params.iflist.join(" ")}\n`);
    this.#write(`${dir}/aoe_deadsecs`, `${params.deadsecs}\n`);
    this.#write(`${dir}/aoe_maxout`, `${params.maxout}\n`);
    this.#write(`${dir}/aoe_dyndevs`, `${params.dyndevs}\n`);
    this.#write(`${dir}/aoe_maxdevs`, `${params.maxdevs}\n`);
  }

  /** Writes a device's attributes; a device is visible only after its first IDENTIFY. */
  writeDevice(device: AoeDevice): void {
    if (!device.visible) return;
    const dir = this.deviceDir(device.name);
    Deno.mkdirSync(dir, { recursive: true });
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
