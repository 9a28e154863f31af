import assert from "node:assert/strict";
import { AoeDevice, TargetPath } from "./device.ts";
import { FrameTable, type TableFrame } from "./frames.ts";

function frame(tag: number, device: AoeDevice, target: TargetPath, probe = false): TableFrame {
  return { tag, device, target, probe };
}

Deno.test("frames: active frames by tag and per device; probes per target; retransmit queues per device", () => {
  const d1 = new AoeDevice(1, 0, 0);
  const d2 = new AoeDevice(1, 1, 16);
  const t1 = new TargetPath(0x020000000001, 16);
  const t2 = new TargetPath(0x020000000002, 16);
  const table = new FrameTable<TableFrame>();
  const a = frame(1, d1, t1);
  const b = frame(2, d1, t1, true);
  const c = frame(3, d2, t2);
  for (const f of [a, b, c]) table.add(f);
  assert.equal(table.size, 3);
  assert.equal(table.get(2), b);
  assert.deepEqual([...table.active(d1)], [a, b], "oldest first");
  assert.deepEqual([...table.active(d2)], [c]);
  assert.equal(table.probes(t1), 1);
  assert.equal(table.probes(t2), 0);
  // A timeout: off the active set, onto the device's retransmit queue; resent under a new tag.
  assert.ok(table.remove(a));
  assert.equal(table.remove(a), false, "not active twice");
  table.defer(a);
  assert.equal(table.outstanding(d1), 2);
  assert.ok(table.busy(d1));
  assert.equal(table.takeDeferred(d1, 1), a, "a late answer under the tag it was sent with");
  assert.equal(table.deferred(d1), undefined);
  a.tag = 9;
  table.add(a);
  assert.equal(table.get(9), a);
  assert.equal(table.has(1), false);
  // Going down clears one device and leaves the other alone.
  assert.deepEqual(table.clear(d1).sort((x, y) => x.tag - y.tag), [b, a]);
  assert.equal(table.probes(t1), 0);
  assert.equal(table.busy(d1), false);
  assert.equal(table.size, 1);
  assert.deepEqual([...table.active(d2)], [c]);
});
