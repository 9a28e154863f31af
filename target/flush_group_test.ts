import assert from "node:assert/strict";
import { TestClient } from "../testing/client.ts";
import { MemorySegment } from "../link/mod.ts";
import { AtaOp } from "../wire/mod.ts";
import { MemoryStore } from "./backing.ts";
import { Export } from "./export.ts";
import { flushGroup, TargetServer } from "./server.ts";

/** Replies per send while the server answers `outstanding` reads that arrived together. */
async function repliesPerSend(outstanding: number): Promise<number[]> {
  const segment = new MemorySegment({ batch: 64 });
  const device = new Export({ shelf: 9, slot: 0, store: new MemoryStore(256), bufferCount: 64 });
  const link = segment.attach(0x020000000001, "tgt0");
  const server = new TargetServer([device], [link]);
  const client = new TestClient(segment.attach(0x020000000002, "eth1"));
  const groups: number[] = [];
  const flush = link.flush.bind(link);
  link.flush = () => {
    const before = link.counters.sent;
    flush();
    if (link.counters.sent > before) groups.push(link.counters.sent - before);
  };
  const replies = Array.from(
    { length: outstanding },
    (_, i) => client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: i * 2, count: 2 }, 500),
  );
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(server.pollOnce(), outstanding);
  const answers = await Promise.all(replies);
  assert.equal(answers.length, outstanding);
  return groups;
}

Deno.test("flush groups: a few outstanding go out in twos, many in eights", async () => {
  assert.deepEqual([1, 16, 32, 64].map(flushGroup), [2, 2, 4, 8]);
  // 16 at once (a queue depth of 16): replies leave two by two while the rest are served.
  assert.deepEqual(await repliesPerSend(16), Array(8).fill(2));
  // 64 at once: larger groups, fewer sends.
  assert.deepEqual(await repliesPerSend(64), Array(8).fill(8));
  // An odd remainder leaves with the batch's last send.
  assert.deepEqual(await repliesPerSend(5), [2, 2, 1]);
});
