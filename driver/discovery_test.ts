/** Discovery's direct asks of a refused target (driver/discovery.ts), on an in-memory link. */
import assert from "node:assert/strict";
import { MemorySegment } from "../link/memory.ts";
import { readDestination, readTag } from "../wire/mod.ts";
import { ASK_INTERVAL_MS, ASKED_TARGETS, DiscoveryQueries, NEW_DEVICE_BURST } from "./discovery.ts";

const TARGET_MAC = 0x020000000009;

/** The tags of the frames the target's port has received, in order. */
function drainTags(port: ReturnType<MemorySegment["attach"]>): number[] {
  const tags: number[] = [];
  for (let n = port.receive(); n > 0; n = port.receive()) {
    for (let i = 0; i < n; i++) {
      assert.equal(readDestination(port.rx[i]), TARGET_MAC, "asked the target itself");
      tags.push(readTag(port.rx[i]));
    }
  }
  return tags;
}

Deno.test("discovery: a refusal inside the ask interval is asked when it is up, and the previous ask's answers still count", () => {
  const segment = new MemorySegment();
  const initiator = segment.attach(0x020000000001);
  const target = segment.attach(TARGET_MAC);
  const queries = new DiscoveryQueries(() => 100_000);
  const t0 = 1_000_000;
  for (let i = 0; i < NEW_DEVICE_BURST; i++) assert.equal(queries.admit(i, false, t0), "yes");
  assert.equal(queries.admit(NEW_DEVICE_BURST, false, t0), "rate");

  assert.equal(queries.askTarget(TARGET_MAC, initiator, t0), true);
  const [first] = drainTags(target);
  assert.ok(queries.solicited(first, TARGET_MAC, t0 + 1));

  // A target announcing one export after another: refused again inside the interval.
  assert.equal(queries.askTarget(TARGET_MAC, initiator, t0 + 10), false);
  assert.deepEqual(drainTags(target), [], "not asked twice inside the interval");
  assert.equal(queries.nextAskAt, t0 + ASK_INTERVAL_MS, "but held back, not dropped");
  assert.equal(queries.pumpAsks(t0 + ASK_INTERVAL_MS - 1), 0);
  assert.equal(queries.pumpAsks(t0 + ASK_INTERVAL_MS), 1);
  const [second] = drainTags(target);
  assert.notEqual(second, first);
  assert.equal(queries.nextAskAt, Infinity, "nothing left to ask");

  const later = t0 + ASK_INTERVAL_MS + 5;
  assert.ok(queries.solicited(second, TARGET_MAC, later), "the new ask's answers");
  assert.ok(queries.solicited(first, TARGET_MAC, later), "late answers to the ask before it");
  assert.ok(!queries.solicited(0, TARGET_MAC, later), "an announcement's tag 0 is never ours");
  assert.ok(!queries.solicited(first ^ 1, TARGET_MAC, later), "another tag is not");
});

Deno.test("discovery: at most ASKED_TARGETS MACs are asked at a time (forged answers from many MACs)", () => {
  const segment = new MemorySegment();
  const initiator = segment.attach(0x020000000001);
  const queries = new DiscoveryQueries(() => 100_000);
  let sent = 0;
  for (let i = 0; i < ASKED_TARGETS * 4; i++) {
    if (queries.askTarget(0x0200000a0000 + i, initiator, 5000)) sent++;
  }
  assert.equal(sent, ASKED_TARGETS);
  assert.equal(queries.nextAskAt, Infinity, "the refused MACs are not held for later either");
});
