/**
 * Device life (the counterpart of the kernel's aoedev.c): devices e{shelf}.{slot},
 * their targets (one per MAC address, "aoetgt") and each target's interfaces
 * ("aoeif"), minor numbers, and the state strings sysfs shows.
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import { formatMac, type IdentifyInfo } from "../wire/mod.ts";

/** Most interfaces one target keeps (NAOEIFS). */
export const MAX_TARGET_INTERFACES = 8;
/** Payload when a path's MTU allows no whole sector (DEFAULTBCNT). */
export const DEFAULT_PAYLOAD = 1024;
/** Minors per disk: the device and 15 partitions. */
export const PARTITIONS_PER_DEVICE = 16;

/** One local interface through which a target answers. */
export interface TargetInterface {
  /** The local link. */
  link: FrameLink;
  /** Payload bytes per frame on this path. */
  payload: number;
  /** Frames lost in a row on this path. */
  lost: number;
}

/**
 * One MAC address serving a device (the kernel's aoetgt): the initiator's path
 * to one target, with its own window and interfaces. Not the target program
 * (`TargetServer`).
 */
export class TargetPath {
  /** The local interfaces this target answers on (at most {@link MAX_TARGET_INTERFACES}). */
  readonly interfaces: TargetInterface[] = [];
  /** Buffer count advertised, capped by aoe_maxout. */
  nframes: number;
  /** Congestion window: frames allowed outstanding. */
  maxout: number;
  /** Slow-start threshold: below it the window grows by one per answer. */
  ssthresh: number;
  /** Answers left before the window grows in congestion avoidance. */
  nextCwnd: number;
  /** Frames outstanding now. */
  nout = 0;
  /** Demerits for slow answers; a tainted target is avoided while others serve. */
  taint = 0;
  /** Index of the next interface to send on (ifrotate). */
  rotate = 0;
  /** Read frames answered. */
  readCount = 0;
  /** Write frames answered. */
  writeCount = 0;

  /**
   * A target with a window of half its buffer count.
   *
   * @param mac the target's MAC
   * @param nframes its advertised buffer count, capped
   */
  constructor(readonly mac: number, nframes: number) {
    this.nframes = nframes;
    this.maxout = Math.floor(nframes / 2);
    this.ssthresh = Math.floor(nframes / 2);
    this.nextCwnd = nframes;
  }

  /** Window reset after loss or a smaller buffer count (aoecmd_wreset). */
  resetWindow(): void {
    this.maxout = 1;
    this.ssthresh = Math.floor(this.nframes / 2);
    this.nextCwnd = this.nframes;
  }

  /** The smallest payload over this target's interfaces. */
  get payload(): number {
    let min = 0;
    for (const ifc of this.interfaces) if (min === 0 || ifc.payload < min) min = ifc.payload;
    return min;
  }

  /** The interface to use for the next frame, rotating (ifrotate). */
  nextInterface(): TargetInterface | undefined {
    if (this.interfaces.length === 0) return undefined;
    this.rotate = (this.rotate + 1) % this.interfaces.length;
    return this.interfaces[this.rotate];
  }

  /** The interface through `link`, if this target has one. */
  interfaceFor(link: FrameLink): TargetInterface | undefined {
    return this.interfaces.find((ifc) => ifc.link === link);
  }

  /** Adds or updates an interface; false if the target already has the maximum. */
  setInterface(link: FrameLink, payload: number): boolean {
    const existing = this.interfaceFor(link);
    if (existing) {
      existing.payload = payload;
      return true;
    }
    if (this.interfaces.length >= MAX_TARGET_INTERFACES) return false;
    this.interfaces.push({ link, payload, lost: 0 });
    return true;
  }

  /** Drops an interface (ejectif). */
  ejectInterface(ifc: TargetInterface): void {
    const index = this.interfaces.indexOf(ifc);
    if (index >= 0) this.interfaces.splice(index, 1);
    if (this.rotate >= this.interfaces.length) this.rotate = 0;
  }
}

/** What a device knows from IDENTIFY: what the target stated, read as the kernel reads it. */
export interface DeviceIdentity extends IdentifyInfo {
  /** LBA48 commands are used (bit 10 of word 83 or 86). */
  lba48: boolean;
  /** The 512 bytes as received. */
  raw: Uint8Array;
}

/** One AoE device e{shelf}.{slot}. */
export class AoeDevice {
  /** The targets (one per MAC address) serving this device. */
  readonly targets: TargetPath[] = [];
  /** Round-robin position over targets. */
  targetRotate = 0;
  /** Minor number of the block device. */
  minor: number;
  /** Visible: its first IDENTIFY succeeded. */
  visible = false;
  /** Up: I/O may be submitted. */
  up = false;
  /** Queue could not send and nothing was outstanding: rerun it on the next tick. */
  kickme = false;
  /** Opened by a user (the NBD bridge or a block I/O client). */
  openCount = 0;
  /** Firmware version from the last Query Config reply, when closed. */
  firmwareVersion = 0;
  /** Device payload (maxbcnt): min over targets; 0 until known. */
  payload = 0;
  /** What the last IDENTIFY said; undefined until the first arrives. */
  identity?: DeviceIdentity;
  /** RTT average in µs, scaled by 2^8 (RTTSCALE), as aoe.h. */
  rttavg: number = RTTAVG_INIT;
  /** RTT deviation in µs, scaled by 2^3 (RTTDSCALE). */
  rttdev: number = RTTDEV_INIT;
  /** Last tag counter (15 bits used). */
  lastTag = 0;

  /**
   * A device with no targets yet, down.
   *
   * @param shelf major
   * @param slot minor
   * @param minor block minor number
   */
  constructor(readonly shelf: number, readonly slot: number, minor: number) {
    this.minor = minor;
  }

  /** "e9.0" */
  get name(): string {
    return `e${this.shelf}.${this.slot}`;
  }

  /** Capacity in sectors (0 while down). */
  get sectors(): number {
    return this.up && this.identity ? this.identity.sectors : 0;
  }

  /** The sysfs `state` string (aoeblk.c aoedisk_show_state). */
  get state(): string {
    const base = this.up ? "up" : "down";
    if (this.kickme) return `${base},kickme`;
    if (!this.up && this.openCount > 0) return `${base},closewait`;
    return base;
  }

  /** The sysfs `mac` string: the first target's MAC, or none. */
  get macText(): string {
    return this.targets.length > 0 ? formatMac(this.targets[0].mac) : "none";
  }

  /** The sysfs `netif` string: the union of the targets' interfaces, comma separated. */
  get netifText(): string {
    const names: string[] = [];
    for (const t of this.targets) {
      for (const ifc of t.interfaces) if (!names.includes(ifc.link.name)) names.push(ifc.link.name);
    }
    return names.length > 0 ? names.slice(0, MAX_TARGET_INTERFACES).join(",") : "none";
  }

  /** The target with this MAC address, if any. */
  targetFor(mac: number): TargetPath | undefined {
    return this.targets.find((t) => t.mac === mac);
  }

  /** Recomputes the device payload as the minimum over its targets (setdbcnt); true if changed. */
  updatePayload(): boolean {
    let min = 0;
    for (const t of this.targets) {
      const p = t.payload;
      if (p > 0 && (min === 0 || p < min)) min = p;
    }
    if (min === this.payload) return false;
    this.payload = min;
    return true;
  }

  /** Resets RTT estimates, windows and payload (aoecmd_cleanslate). */
  cleanSlate(): void {
    this.rttavg = RTTAVG_INIT;
    this.rttdev = RTTDEV_INIT;
    this.payload = 0;
    for (const t of this.targets) t.resetWindow();
    this.updatePayload();
  }
}

/** RTT scale shifts and initial values (aoe.h: RTTSCALE 8, RTTDSCALE 3, 250 ms average). */
export const RTTSCALE = 8;
export const RTTDSCALE = 3;
export const RTTAVG_INIT = (1_000_000 / 4) * 2 ** RTTSCALE;
export const RTTDEV_INIT = RTTAVG_INIT / 4;

/** The devices and their minors. */
export class DeviceTable {
  /** Devices by "shelf.slot". */
  readonly devices = new Map<string, AoeDevice>();
  #usedMinors = new Set<number>();

  /**
   * An empty table.
   *
   * @param dyndevs aoe_dyndevs: 1 for discovery order, 0 for fixed minors
   */
  constructor(readonly dyndevs: number) {}

  /** The device at shelf.slot, if known. */
  get(shelf: number, slot: number): AoeDevice | undefined {
    return this.devices.get(`${shelf}.${slot}`);
  }

  /** The device named "eX.Y", if known. */
  byName(name: string): AoeDevice | undefined {
    const m = name.trim().match(/^e(\d+)\.(\d+)$/);
    return m ? this.get(Number(m[1]), Number(m[2])) : undefined;
  }

  /** Finds or creates a device; undefined when no minor can be given (static minors need slot < 16, shelf < 4096). */
  getOrCreate(shelf: number, slot: number): AoeDevice | undefined {
    const existing = this.get(shelf, slot);
    if (existing) return existing;
    let minor: number;
    if (this.dyndevs) {
      let n = 0;
      while (this.#usedMinors.has(n * PARTITIONS_PER_DEVICE)) n++;
      minor = n * PARTITIONS_PER_DEVICE;
    } else {
      if (slot >= 16 || shelf >= 4096) return undefined;
      minor = (shelf * 16 + slot) * PARTITIONS_PER_DEVICE;
    }
    this.#usedMinors.add(minor);
    const device = new AoeDevice(shelf, slot, minor);
    this.devices.set(`${shelf}.${slot}`, device);
    return device;
  }

  /** Removes a device and frees its minor. */
  remove(device: AoeDevice): void {
    this.devices.delete(`${device.shelf}.${device.slot}`);
    this.#usedMinors.delete(device.minor);
  }

  /** Devices sorted by shelf then slot. */
  list(): AoeDevice[] {
    return [...this.devices.values()].sort((a, b) => a.shelf - b.shelf || a.slot - b.slot);
  }
}
