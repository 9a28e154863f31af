/**
 * Round-trip estimates, the retransmit timeout and the window arithmetic of
 * one answer or one loss (the kernel's calc_rttavg, rto, the timeout half of
 * rexmit_timer and scorn; docs/driver.md §4, §5). Pure functions of a device's
 * and a target path's fields.
 *
 * @module
 */

import { type AoeDevice, RTTDSCALE, RTTSCALE, type TargetPath } from "./device.ts";

/** Largest taint (MAX_TAINT). */
export const MAX_TAINT = 1000;

/**
 * One round-trip sample of `rttUs` microseconds: the Jacobson/Karels
 * estimates of the device in the kernel's fixed point, and, when the answer
 * came from `target` (not a late answer to a frame already resent), its
 * window: one more per answer below ssthresh (slow start), else one more
 * after a full window's worth of answers (congestion avoidance), never past
 * its buffer count (calc_rttavg).
 */
export function rttSample(device: AoeDevice, target: TargetPath | undefined, rttUs: number): void {
  let n = Math.floor(rttUs) - Math.floor(device.rttavg / 2 ** RTTSCALE);
  device.rttavg += n;
  if (n < 0) n = -n;
  n -= Math.floor(device.rttdev / 2 ** RTTDSCALE);
  device.rttdev += n;
  if (!target || target.maxout >= target.nframes) return;
  if (target.maxout < target.ssthresh) target.maxout++;
  else if (target.nout === target.maxout && target.nextCwnd-- === 0) {
    target.maxout++;
    target.nextCwnd = target.maxout;
  }
}

/** The retransmit timeout in µs: 2 × average + 8 × deviation (rto). */
export function rto(device: AoeDevice): number {
  const t = Math.floor((2 * device.rttavg) / 2 ** RTTSCALE) +
    Math.floor((8 * device.rttdev) / 2 ** RTTDSCALE);
  return t === 0 ? 1 : t;
}

/** A frame timed out on `target`: ssthresh to half the window, the window to 1 (rexmit_timer). */
export function shrinkWindow(target: TargetPath): void {
  if (target.maxout === 1) return;
  target.ssthresh = Math.floor(target.maxout / 2);
  target.maxout = 1;
}

/** An aoetgt gathers demerits quickly (the taint roughly triples); good answers redeem it slowly (scorn). */
export function scorn(t: TargetPath): void {
  const n = t.taint++;
  t.taint += t.taint * 2;
  if (n > t.taint) t.taint = n;
  if (t.taint > MAX_TAINT) t.taint = MAX_TAINT;
}
