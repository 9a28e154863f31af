/**
 * How an idle target waits (target/server.ts): after LONG_IDLE_MS without a
 * frame it waits off its thread and still answers the next frame; and an idle
 * target ends on SIGTERM at once, after short and long idle gaps, also on a
 * busy host (a sleep of 100 ms on the thread once kept signals from being
 * handled at all under a CPU hog).
 */
import assert from "node:assert/strict";
import { inNetns, PacketLink } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import { LONG_IDLE_MS, TargetServer } from "../target/server.ts";
import { AtaOp } from "../wire/mod.ts";
import { aoeCommand, Daemon } from "../testing/procs.ts";
import { clientIn, sparseFile, withNet } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test(
  "target idle: past LONG_IDLE_MS it waits off its thread, and the next read is answered",
  opts,
  async () => {
    await withNet({}, async (net) => {
      const link = inNetns(net.namespaces[0], () => new PacketLink("t1p0"));
      const device = new Export({ shelf: 9, slot: 0, store: new MemoryStore(64), bufferCount: 16 });
      const server = new TargetServer([device], [link]);
      const client = clientIn(net, 1, "i0");
      try {
        server.run();
        assert.ok(await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 1 }));
        assert.equal(server.waitCounters.longIdle, 0, "no long idle right after a frame");
        await sleep(LONG_IDLE_MS + 600);
        const waits = server.waitCounters.longIdle;
        assert.ok(waits > 0, "a long idle waits off the thread");
        const reply = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 1, count: 1 });
        assert.ok(reply, "the read after a long idle is answered");
      } finally {
        await server.stop();
        link.close();
        client.link.close();
      }
    });
  },
);

Deno.test(
  "target idle: SIGTERM after idle gaps of 0.1 to 1.8 s ends the target with 0, beside a CPU hog",
  opts,
  async () => {
    const hog = new Deno.Command("sh", { args: ["-c", "while :; do :; done"] }).spawn();
    try {
      await withNet({}, async (net, dir) => {
        const image = sparseFile(`${dir}/d.img`, 1 << 20);
        for (const gapMs of [100, 400, 900, 1300, 1800, 250]) {
          const target = new Daemon(
            net.in(0, aoeCommand("target", "--link", "ring", "9", "0", "t1p0", image)),
          );
          await target.waitFor(/sectors/);
          await sleep(gapMs);
          const status = await target.stop(3000);
          assert.equal(status.code, 0, `after ${gapMs} ms idle: ${target.stderr}`);
        }
      });
    } finally {
      hog.kill("SIGKILL");
      await hog.status;
    }
  },
);
