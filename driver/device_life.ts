/**
 * Device life (the kernel's aoedev.c): a device goes down and fails its I/O
 * (aoedev_downdev), is revalidated with fresh estimates (revalidate, from
 * aoechr.c), or is forgotten (the per-device part of aoedev_flush). The frames
 * and queues it touches belong to the command engine and the request queues;
 * they are reached through {@link DeviceLifeEngine} (docs/driver.md).
 *
 * @module
 */

import type { AoeDevice, DeviceTable } from "./device.ts";
import type { RequestQueues } from "./requests.ts";

/** A frame as device life sees it: the request it carries, to be failed with the device. */
export interface FrameOfRequest {
  /** The request the frame carries (none for IDENTIFY and probes). */
  request?: { failed?: string };
}

/** What device life needs from the command engine (driver/commands.ts). */
export interface DeviceLifeEngine {
  /** The devices by shelf.slot. */
  readonly devices: DeviceTable;
  /** The per-device request queues (driver/requests.ts). */
  readonly requests: RequestQueues;
  /** Takes every frame of the device off the frame table, active and deferred, and returns them. */
  clearFrames(device: AoeDevice): Iterable<FrameOfRequest>;
  /** Records that the device awaits an IDENTIFY answer (true) or no longer does (false). */
  awaitIdentify(device: AoeDevice, awaiting: boolean): void;
  /** Broadcasts Query Config for one shelf.slot (aoecmd_cfg). */
  discover(shelf: number, slot: number): void;
  /** Sends IDENTIFY to the device's first target (aoecmd_ata_id). */
  identify(device: AoeDevice): void;
  /** The device's visible attributes changed. */
  changed(device: AoeDevice): void;
}

/** Marks a device down: all queued and outstanding I/O fails (aoedev_downdev). */
export function downDevice(engine: DeviceLifeEngine, device: AoeDevice): void {
  const failure = new Error(`device ${device.name} is not up`);
  for (const f of engine.clearFrames(device)) {
    if (f.request) f.request.failed = failure.message;
  }
  for (const t of device.targets) {
    t.nout = 0;
    t.resetWindow();
  }
  engine.requests.failAll(device, failure);
  engine.awaitIdentify(device, false);
  device.up = false;
  device.kickme = false;
  engine.changed(device);
}

/** Revalidate: fresh estimates, Query Config for the device and IDENTIFY (aoechr.c revalidate). */
export function revalidate(engine: DeviceLifeEngine, device: AoeDevice): void {
  device.cleanSlate();
  engine.discover(device.shelf, device.slot);
  engine.awaitIdentify(device, true);
  if (device.targets.length > 0) engine.identify(device);
}

/** Forgets a device entirely: down, then out of the table (flush, aoedev_flush). */
export function forget(engine: DeviceLifeEngine, device: AoeDevice): void {
  downDevice(engine, device);
  engine.devices.remove(device);
}
