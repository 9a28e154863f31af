import assert from "node:assert/strict";
import { AoeDevice, DeviceTable, TargetPath } from "./device.ts";
import { DeviceCounterTable } from "./device_counters.ts";
import {
  type DeviceLifeEngine,
  downDevice,
  forget,
  type FrameOfRequest,
  revalidate,
} from "./device_life.ts";
import { RequestQueues } from "./requests.ts";

/** An engine whose frames, IDENTIFY state and calls the test sees. */
function rig() {
  const devices = new DeviceTable(1);
  const device = devices.getOrCreate(1, 0)!;
  device.up = true;
  device.identity = { sectors: 100, lba48: true } as AoeDevice["identity"];
  const target = new TargetPath(0x020000000001, 16);
  target.nout = 3;
  target.maxout = 8;
  device.targets.push(target);
  const frames: FrameOfRequest[] = [];
  const awaiting = new Set<AoeDevice>();
  const calls: string[] = [];
  const requests = new RequestQueues(
    { service: () => {}, flushLinks: () => {} },
    new DeviceCounterTable(),
  );
  const engine: DeviceLifeEngine = {
    devices,
    requests,
    clearFrames: () => frames.splice(0),
    awaitIdentify: (d, on) => on ? awaiting.add(d) : awaiting.delete(d),
    discover: (shelf, slot) => calls.push(`discover ${shelf}.${slot}`),
    identify: (d) => calls.push(`identify ${d.name}`),
    changed: (d) => calls.push(`changed ${d.name}`),
  };
  return { engine, device, target, frames, awaiting, calls, requests };
}

Deno.test("device life: down fails outstanding and queued I/O, empties the windows, stops awaiting IDENTIFY", async () => {
  const { engine, device, target, frames, awaiting, calls, requests } = rig();
  const queued = requests.submit(device, { kind: "read", lba: 0, sectors: 1 });
  const carried: { failed?: string } = {};
  frames.push({ request: carried }, {});
  awaiting.add(device);
  downDevice(engine, device);
  assert.equal(carried.failed, "device e1.0 is not up");
  await assert.rejects(queued, /e1\.0 is not up/);
  assert.equal(requests.size, 0);
  assert.equal(frames.length, 0);
  assert.equal(target.nout, 0);
  assert.equal(target.maxout, 1, "the window starts over");
  assert.equal(awaiting.has(device), false);
  assert.equal(device.up, false);
  assert.deepEqual(calls, ["changed e1.0"]);
});

Deno.test("device life: revalidate asks Query Config and IDENTIFY; forget takes the device out of the table", () => {
  const { engine, device, awaiting, calls } = rig();
  revalidate(engine, device);
  assert.deepEqual(calls, ["discover 1.0", "identify e1.0"]);
  assert.ok(awaiting.has(device));
  forget(engine, device);
  assert.equal(engine.devices.get(1, 0), undefined);
  assert.equal(device.up, false);
});
