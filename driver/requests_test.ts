import assert from "node:assert/strict";
import { AoeDevice } from "./device.ts";
import { DeviceCounterTable } from "./device_counters.ts";
import { invalidRequest, type QueuedRequest, RequestQueues } from "./requests.ts";

/** A device that is up with `sectors` sectors, LBA48. */
function upDevice(sectors: number): AoeDevice {
  const device = new AoeDevice(1, 0, 0);
  device.up = true;
  device.identity = { sectors, lba48: true } as AoeDevice["identity"];
  return device;
}

Deno.test("requests: a bad request is refused before anything is queued", async () => {
  const device = upDevice(100);
  let serviced = 0;
  const queues = new RequestQueues(
    { service: () => serviced++, flushLinks: () => {} },
    new DeviceCounterTable(),
  );
  assert.match(invalidRequest(device, { kind: "read", lba: 99, sectors: 2 })!, /past the end/);
  assert.match(invalidRequest(device, { kind: "read", lba: -1, sectors: 1 })!, /bad request/);
  assert.equal(invalidRequest(device, { kind: "flush", lba: 0, sectors: 0 }), undefined);
  await assert.rejects(queues.submit(device, { kind: "read", lba: 99, sectors: 2 }), RangeError);
  assert.equal(queues.size, 0);
  assert.equal(serviced, 0);
  device.up = false;
  await assert.rejects(queues.submit(device, { kind: "read", lba: 0, sectors: 1 }), /not up/);
  assert.equal(queues.size, 0);
});

Deno.test("requests: a request settles once its frames are answered; the queue runs on; failAll fails the rest", async () => {
  const device = upDevice(100);
  const counters = new DeviceCounterTable();
  let serviced = 0;
  let flushed = 0;
  const queues = new RequestQueues({
    service: () => serviced++,
    flushLinks: () => flushed++,
  }, counters);
  const first = queues.submit(device, { kind: "read", lba: 0, sectors: 2 });
  const second = queues.submit(device, { kind: "write", lba: 2, sectors: 1 });
  const third = queues.submit(device, { kind: "read", lba: 3, sectors: 1 });
  assert.equal(serviced, 3, "every submission runs the queue");
  assert.equal(queues.pending(device), 3);
  // The engine cut the first request into two frames: it settles when both are answered.
  const head = queues.queue(device)![0] as QueuedRequest;
  head.sent = 2;
  head.framesOut = 1;
  queues.finish(device, head);
  assert.equal(queues.pending(device), 3, "a frame still out");
  head.framesOut = 0;
  queues.finish(device, head);
  await first;
  assert.equal(queues.pending(device), 2);
  assert.equal(serviced, 4, "the head settled: the queue runs again");
  // A failed frame fails its request, counted.
  const next = queues.queue(device)![0];
  next.sent = 1;
  next.failed = "ATA error";
  queues.finish(device, next);
  await assert.rejects(second, /ATA error/);
  assert.equal(counters.of(device).failed, 1);
  queues.failAll(device, new Error("device e1.0 is not up"));
  await assert.rejects(third, /not up/);
  assert.equal(queues.size, 0);
  await Promise.resolve();
  assert.equal(flushed, 1, "submissions in one turn are flushed once");
});
