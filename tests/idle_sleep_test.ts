/**
 * The target's idle sleep (target/server.ts): longer while nothing comes, short
 * again at the first frame, short while something needs the event loop.
 * In-process, on a packet socket in a test namespace (the blocking idle wait
 * needs a descriptor; in-memory links wait otherwise).
 */
import assert from "node:assert/strict";
import { inNetns, PacketLink } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import { IDLE_BLOCK_MAX_MS, IDLE_BLOCK_MS, TargetServer } from "../target/server.ts";
import { AtaOp } from "../wire/mod.ts";
import { clientIn, withNet } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test(
  "target idle sleep: grows to its longest while idle, back to the shortest at a frame, short while the event loop is wanted",
  opts,
  async () => {
    await withNet({}, async (net) => {
      const link = inNetns(net.namespaces[0], () => new PacketLink("t1p0"));
      const device = new Export({ shelf: 9, slot: 0, store: new MemoryStore(64), bufferCount: 16 });
      const server = new TargetServer([device], [link]);
      const client = clientIn(net, 1, "i0");
      try {
        server.run();
        // 10 + 20 + 40 + 80 ms of sleeps reach the longest; the timers below run between them.
        for (let i = 0; i < 50 && server.idleSleepMs < IDLE_BLOCK_MAX_MS; i++) await sleep(20);
        assert.equal(server.idleSleepMs, IDLE_BLOCK_MAX_MS, "idle: the longest sleep");

        const reply = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 1 });
        assert.ok(reply, "the read is answered from the longest sleep");
        assert.ok(
          server.idleSleepMs < IDLE_BLOCK_MAX_MS,
          `after a frame: ${server.idleSleepMs} ms`,
        );

        server.eventLoopWanted = () => true;
        for (let i = 0; i < 10; i++) await sleep(30);
        assert.equal(server.idleSleepMs, IDLE_BLOCK_MS, "wanted: the shortest sleep, idle or not");
      } finally {
        await server.stop();
        link.close();
        client.link.close();
      }
    });
  },
);
