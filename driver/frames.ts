/**
 * The initiator's frames in flight, indexed as the kernel keeps them
 * (docs/driver.md §3, §5): every active frame by tag, the active frames of
 * each device (the kernel's `factive`), each device's retransmit queue
 * (`rexmitq`) and each target path's probes (`nout_probes`). Every
 * per-device operation (the timer, going down, IDENTIFY, probes) costs what
 * that device has in flight, never what the other devices have.
 *
 * @module
 */

import type { AoeDevice, TargetPath } from "./device.ts";

/** What the table needs to know of a frame. */
export interface TableFrame {
  /** The tag it was last sent under; unique among active frames. */
  tag: number;
  /** The device it is for. */
  readonly device: AoeDevice;
  /** The target path it waits on. */
  target: TargetPath;
  /** A probe of a tainted target (docs/driver.md §5). */
  readonly probe: boolean;
}

const NONE: ReadonlySet<never> = new Set();

/** Active frames by tag, per device and per target path, and each device's retransmit queue. */
export class FrameTable<F extends TableFrame> {
  #byTag = new Map<number, F>();
  #byDevice = new Map<AoeDevice, Set<F>>();
  #probes = new Map<TargetPath, number>();
  #rexmit = new Map<AoeDevice, F[]>();

  /** Active frames on every device. */
  get size(): number {
    return this.#byTag.size;
  }

  /** Whether a frame is active under `tag`. */
  has(tag: number): boolean {
    return this.#byTag.has(tag);
  }

  /** The active frame under `tag`. */
  get(tag: number): F | undefined {
    return this.#byTag.get(tag);
  }

  /** Makes `f` active under its tag (which no other active frame has) on its target. */
  add(f: F): void {
    this.#byTag.set(f.tag, f);
    let set = this.#byDevice.get(f.device);
    if (!set) this.#byDevice.set(f.device, set = new Set());
    set.add(f);
    if (f.probe) this.#probes.set(f.target, (this.#probes.get(f.target) ?? 0) + 1);
  }

  /** Makes `f` inactive (answered, timed out, or unsent); false if it was not active. */
  remove(f: F): boolean {
    if (this.#byTag.get(f.tag) !== f) return false;
    this.#byTag.delete(f.tag);
    const set = this.#byDevice.get(f.device);
    if (set) {
      set.delete(f);
      if (set.size === 0) this.#byDevice.delete(f.device);
    }
    if (f.probe) {
      const n = (this.#probes.get(f.target) ?? 1) - 1;
      if (n > 0) this.#probes.set(f.target, n);
      else this.#probes.delete(f.target);
    }
    return true;
  }

  /** The device's active frames, oldest sent first (a live view: copy before removing). */
  active(device: AoeDevice): ReadonlySet<F> {
    return this.#byDevice.get(device) ?? NONE;
  }

  /** Active probes waiting on a target path. */
  probes(target: TargetPath): number {
    return this.#probes.get(target) ?? 0;
  }

  /** Queues a frame that timed out (or failed its CRC) for resending; it must not be active. */
  defer(f: F): void {
    let list = this.#rexmit.get(f.device);
    if (!list) this.#rexmit.set(f.device, list = []);
    list.push(f);
  }

  /** The device's retransmit queue, oldest first (live: the caller may splice it). */
  deferred(device: AoeDevice): F[] | undefined {
    return this.#rexmit.get(device);
  }

  /** Takes a queued frame by the tag it was last sent under (a late answer: getframe_deferred). */
  takeDeferred(device: AoeDevice, tag: number): F | undefined {
    const list = this.#rexmit.get(device);
    if (!list) return undefined;
    const index = list.findIndex((f) => f.tag === tag);
    if (index < 0) return undefined;
    const [f] = list.splice(index, 1);
    if (list.length === 0) this.#rexmit.delete(device);
    return f;
  }

  /** Frames of a device, active and queued. */
  outstanding(device: AoeDevice): number {
    return this.active(device).size + (this.#rexmit.get(device)?.length ?? 0);
  }

  /** Whether the device has anything active or queued (the timer has work for it). */
  busy(device: AoeDevice): boolean {
    return this.#byDevice.has(device) || (this.#rexmit.get(device)?.length ?? 0) > 0;
  }

  /** Forgets every frame of a device (aoedev_downdev) and returns the active ones. */
  clear(device: AoeDevice): F[] {
    const frames = [...this.active(device)];
    for (const f of frames) this.remove(f);
    this.#rexmit.delete(device);
    return frames;
  }
}
