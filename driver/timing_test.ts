import assert from "node:assert/strict";
import { AoeDevice, TargetPath } from "./device.ts";
import { MAX_TAINT, rto, rttSample, scorn, shrinkWindow } from "./timing.ts";

Deno.test("timing: a fresh device's timeout is the kernel's 16.5 s; samples bring it down", () => {
  const device = new AoeDevice(1, 0, 0);
  assert.equal(rto(device), 16_500_000);
  for (let i = 0; i < 1000; i++) rttSample(device, undefined, 200);
  assert.ok(rto(device) < 200_000, `${rto(device)} µs after 1000 samples of 200 µs`);
});

Deno.test("timing: slow start below ssthresh, congestion avoidance above, a loss halves", () => {
  const device = new AoeDevice(1, 0, 0);
  const t = new TargetPath(0x020000000001, 16);
  shrinkWindow(t); // 8 -> ssthresh 4, window 1
  assert.deepEqual([t.maxout, t.ssthresh], [1, 4]);
  for (let i = 0; i < 3; i++) rttSample(device, t, 100);
  assert.equal(t.maxout, 4, "one more per answer up to ssthresh");
  t.nextCwnd = 4;
  t.nout = t.maxout; // a full window
  for (let i = 0; i < 4; i++) rttSample(device, t, 100);
  assert.equal(t.maxout, 4, "not before a window's worth");
  rttSample(device, t, 100);
  assert.equal(t.maxout, 5);
});

Deno.test("timing: scorn roughly triples the taint, up to MAX_TAINT", () => {
  const t = new TargetPath(0x020000000001, 16);
  const seen: number[] = [];
  for (let i = 0; i < 8; i++) {
    scorn(t);
    seen.push(t.taint);
  }
  assert.deepEqual(seen.slice(0, 4), [3, 12, 39, 120]);
  assert.equal(t.taint, MAX_TAINT);
});
