/**
 * Many exports in one `aoe target --config` process (CI-sized: 256; the
 * benchmark bench/scale_bench.ts runs 1,000 and 4,000): the process starts
 * under a low soft descriptor limit, refuses in one line under a low hard
 * one, and the initiator in another namespace sees every device up within a
 * few seconds whichever starts first, without asking for a discovery again;
 * 4,000 exports start and their paced answers to a broadcast all reach a
 * 512-frame receive ring that is read only every 50 ms.
 */
import assert from "node:assert/strict";
import { TestInitiator } from "../testing/initiator.ts";
import { TestClient } from "../testing/client.ts";
import { inNetns, RingLink } from "../link/mod.ts";
import {
  AtaOp,
  Command,
  ConfigCommand,
  readCommand,
  readShelf,
  readSlot,
  readTag,
} from "../wire/mod.ts";
import { aoeCommand } from "../testing/procs.ts";
import {
  scaleExports,
  sparseImages,
  startConfigTarget,
  waitAllUp,
  writeScaleConfig,
} from "../testing/scale.ts";
import { withNet } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const COUNT = 256;
/** "All up within a few seconds" of the later start. */
const ALL_UP_MS = 5000;

function config(dir: string, count: number, bytes = 64 << 20): { path: string; names: string[] } {
  const exports = scaleExports(count);
  const path = `${dir}/targets.conf`;
  writeScaleConfig(path, exports, { netif: "t1p0", images: sparseImages(dir, exports, bytes) });
  return { path, names: exports.map((e) => e.name) };
}

Deno.test(
  "scale: 300 exports start under a soft descriptor limit of 128 (raised to the hard limit)",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const { path } = config(dir, 300);
      daemons.push(await startConfigTarget(net, path, 300, { prlimit: ["--nofile=128:4096"] }));
      const limits = Deno.readTextFileSync(`/proc/${daemons[0].pid}/limits`);
      assert.match(limits, /Max open files\s+4096\s+4096/);
    });
  },
);

Deno.test(
  "scale: 300 exports under a hard descriptor limit of 128 are refused in one line, nothing started",
  opts,
  async () => {
    await withNet({}, async (net, dir) => {
      const { path } = config(dir, 300);
      const refused = await net.run(0, [
        "prlimit",
        "--nofile=128:128",
        ...aoeCommand("target", "--config", path),
      ]);
      assert.equal(refused.code, 1);
      assert.equal(refused.stdout, "", "no export started");
      const lines = refused.stderr.trim().split("\n");
      assert.equal(lines.length, 1, refused.stderr);
      assert.match(
        lines[0],
        /^aoe target: the exports need about 365 open files, but the hard limit is 128 \(RLIMIT_NOFILE/,
      );
    });
  },
);

Deno.test(
  "scale: 4,000 exports in one process start under a soft descriptor limit of 1,024 and answer a broadcast Query Config: every reply reaches a 512-frame ring read every 50 ms by a client that sends IDENTIFY for each",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const count = 4000;
      const { path, names } = config(dir, count, 1 << 20);
      const started = performance.now();
      daemons.push(
        await startConfigTarget(net, path, count, {
          prlimit: ["--nofile=1024:8192"],
          timeoutMs: 20000,
        }),
      );
      console.log(`${count} exports started in ${(performance.now() - started).toFixed(0)} ms`);
      const link = inNetns(net.namespaces[1], () => new RingLink("i0", { rxFrames: 512 }));
      const targetMac = Number("0x" + (await net.mac(0, "t1p0")).replaceAll(":", ""));
      const client = new TestClient(link);
      try {
        const frame = new Uint8Array(60);
        const tag = client.nextTag();
        client.header(frame, 0xffff, 0xff, Command.config, tag);
        frame[29] = 0x10 | ConfigCommand.read;
        client.sendRaw(frame, 60);
        client.dst = targetMac;
        const seen = new Set<string>();
        const deadline = performance.now() + 15000;
        const identify = new Uint8Array(60);
        while (seen.size < count && performance.now() < deadline) {
          // A busy receiver: nothing is read for 50 ms, then everything waiting,
          // and an IDENTIFY sent for each new device, as an initiator does.
          await new Promise((r) => setTimeout(r, 50));
          const found: [number, number][] = [];
          for (let n = link.receive(); n > 0; n = link.receive()) {
            for (let i = 0; i < n; i++) {
              const reply = link.rx[i].subarray(0, link.rxLength[i]);
              if (readTag(reply) !== tag || readCommand(reply) !== Command.config) continue;
              const name = `e${readShelf(reply)}.${readSlot(reply)}`;
              if (!seen.has(name)) found.push([readShelf(reply), readSlot(reply)]);
              seen.add(name);
            }
          }
          for (const [shelf, slot] of found) {
            client.header(identify, shelf, slot, Command.ata, client.nextTag());
            identify[25] = 1;
            identify[27] = AtaOp.identifyDevice;
            client.sendRaw(identify, 60);
          }
        }
        assert.equal(seen.size, count, `${count - seen.size} replies lost`);
        assert.deepEqual([...seen].sort(), [...names].sort());
      } finally {
        link.close();
      }
    });
  },
);

for (const order of ["target first", "initiator first"] as const) {
  Deno.test(
    {
      name: `scale: ${COUNT} exports in one target process, ${order}: all up within ${
        ALL_UP_MS / 1000
      } s`,
      ...opts,
    },
    async () => {
      await withNet({}, async (net, dir, daemons) => {
        const { path, names } = config(dir, COUNT);
        const initiator = new TestInitiator(net, 1, { under: "/dev/shm" });
        try {
          let since: number;
          if (order === "target first") {
            daemons.push(await startConfigTarget(net, path, COUNT));
            since = performance.now();
            await initiator.modprobe();
          } else {
            await initiator.modprobe();
            since = performance.now();
            daemons.push(await startConfigTarget(net, path, COUNT));
          }
          const ms = await waitAllUp(initiator.sysDir, names, { since, timeoutMs: ALL_UP_MS });
          console.log(`${COUNT} exports, ${order}: all up in ${ms.toFixed(0)} ms`);
          const status = await initiator.status();
          assert.equal(status.devices.filter((d) => d.state === "up").length, COUNT);
          // A device reads back what its image holds (zeros) through the driver.
          const data = await initiator.read(names[COUNT - 1], 0, 4096);
          assert.deepEqual(data, new Uint8Array(4096));
        } finally {
          await initiator.close();
        }
      });
    },
  );
}
