import assert from "node:assert/strict";
import { TestClient } from "../testing/client.ts";
import { MemorySegment } from "../link/mod.ts";
import { AtaOp } from "../wire/mod.ts";
import { MemoryStore } from "./backing.ts";
import { formatStatsTable, type TrafficCounters } from "./counters.ts";
import { Export } from "./export.ts";
import { TargetServer } from "./server.ts";

Deno.test("counters: requests by kind, bytes, errors by kind, retransmissions, peak batch; as a table", async () => {
  const segment = new MemorySegment();
  const device = new Export({ shelf: 9, slot: 0, store: new MemoryStore(64), bufferCount: 16 });
  const server = new TargetServer([device], [segment.attach(0x020000000001, "tgt0")]);
  const client = new TestClient(segment.attach(0x020000000002, "eth1"));
  const run = async (request: Parameters<TestClient["ata"]>[2]) => {
    const pending = client.ata(9, 0, request, 500);
    await new Promise((r) => setTimeout(r, 0));
    server.pollOnce();
    return await pending;
  };
  await run({ command: AtaOp.writeSectorsExt, lba: 0, count: 2, data: new Uint8Array(1024) });
  await run({ command: AtaOp.readSectorsExt, lba: 0, count: 2 });
  await run({ command: AtaOp.readSectorsExt, lba: 0, count: 2 }); // the same again: a retransmission
  await run({ command: AtaOp.readSectorsExt, lba: 63, count: 2 }); // past the end
  await run({ command: AtaOp.flushCacheExt });
  await run({ command: AtaOp.readSectorsExt, lba: 0, count: 9 }); // more than a frame: bad argument
  const stats = server.stats();
  // deno-lint-ignore no-explicit-any
  const t = (stats.exports as any)["e9.0"].traffic as TrafficCounters;
  assert.deepEqual(t.requests, { read: 4, write: 1, flush: 1, identify: 0, trim: 0, other: 0 });
  assert.equal(t.bytesWritten, 1024);
  assert.equal(t.bytesRead, 2048);
  assert.deepEqual(t.errors, { range: 1, aborted: 0, aoe: 1 });
  assert.equal(t.retransmissionsAnswered, 1);
  assert.equal(t.peakOutstanding, 1);
  const table = formatStatsTable(stats);
  assert.match(table, /^export +reads +writes/m);
  assert.match(table, /^e9\.0 +4 +1 +1 +0 +0\.0 +0\.0 +1\/0\/1 +0 +0 +0 +1 +0\/1 +normal$/m);
  assert.match(table, /^tgt0 +6 +6 +0 +0 +0 +0 +0 +0 +1$/m);
});
