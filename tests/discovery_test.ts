/**
 * Discovery over veth in any start order: Debian's vblade started after the
 * initiator, bursts of answers larger than the receive ring, drops counted.
 */
import assert from "node:assert/strict";
import { inNetns, PacketLink } from "../link/mod.ts";
import { BROADCAST_MAC, encodeHeader } from "../wire/mod.ts";
import { TestInitiator } from "../testing/initiator.ts";
import type { TestNet } from "../testing/netns.ts";
import { aoeCommand, Daemon } from "../testing/procs.ts";
import { scaleExports, sparseImages, startVblades, waitAllUp } from "../testing/scale.ts";
import { sparseFile, withNet } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function withInitiator(
  options: { hosts?: number; mtu?: number },
  fn: (net: TestNet, dir: string, daemons: Daemon[], initiator: TestInitiator) => Promise<void>,
): Promise<void> {
  await withNet(options, async (net, dir, daemons) => {
    const initiator = new TestInitiator(net, 1);
    try {
      await fn(net, dir, daemons, initiator);
    } finally {
      await initiator.close();
    }
  });
}

/** Polls the attribute tree (no discovery asked) until the device is up; returns the ms it took. */
async function upWithin(
  initiator: TestInitiator,
  name: string,
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    try {
      if (Deno.readTextFileSync(`${initiator.sysDir}/block/etherd!${name}/state`) === "up\n") {
        return performance.now() - started;
      }
    } catch { /* not visible yet */ }
    if (performance.now() - started > timeoutMs) {
      throw new Error(`${name} not up ${timeoutMs} ms after its target started`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test(
  "discovery: vblade started after the initiator is up within 1 s, from its announcement alone",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      await initiator.modprobe();
      // Let the load-time discovery pass: only vblade's own announcement can find it now.
      await new Promise((r) => setTimeout(r, 300));
      const vblade = new Daemon(
        net.in(0, ["vblade", "7", "3", "t1p0", sparseFile(`${dir}/v.img`, 8 << 20)]),
      );
      daemons.push(vblade);
      const ms = await upWithin(initiator, "e7.3", 1000);
      const status = await initiator.status();
      assert.equal(status.devices.find((d) => d.name === "e7.3")?.sectors, (8 << 20) / 512);
      assert.ok(ms < 1000, `up in ${ms.toFixed(0)} ms`);
    });
  },
);

Deno.test(
  "discovery: 150 vblade processes started one after another after the initiator all come up from their announcements (refusals past the burst are asked again)",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      await initiator.modprobe();
      await new Promise((r) => setTimeout(r, 300));
      const exports = scaleExports(150);
      const images = sparseImages(dir, exports, 1 << 20);
      daemons.push(...await startVblades(net, exports, { netif: "t1p0", images }));
      const started = performance.now();
      // Past the first NEW_DEVICE_BURST, announcements are refused for their rate and the
      // MAC is asked directly; announcements refused inside the ask interval must be asked
      // for too, or those devices wait for the 60 s discovery.
      const ms = await waitAllUp(initiator.sysDir, exports.map((e) => e.name), {
        since: started,
        timeoutMs: 5000,
      });
      const status = await initiator.status();
      assert.equal(status.devices.filter((d) => d.state === "up").length, 150);
      assert.ok(status.counters.refusedDevices > 0, "the burst limit was reached");
      console.log(`150 vblade: all up ${ms.toFixed(0)} ms after the last start`);
    });
  },
);

Deno.test(
  "discovery: kernel receive drops on a small ring show in aoe err --counters and on err",
  opts,
  async () => {
    await withInitiator({}, async (net, _dir, _daemons, initiator) => {
      await initiator.modprobe("--rx-frames", "32");
      const sender = inNetns(net.namespaces[0], () => new PacketLink("t1p0"));
      try {
        // Vendor-specific responses: the driver ignores them silently, as fast as it can.
        for (let i = 0; i < 20000; i++) {
          const frame = sender.txSlot();
          encodeHeader(frame, {
            dst: BROADCAST_MAC,
            src: sender.mac,
            version: 1,
            response: true,
            error: false,
            errorCode: 0,
            shelf: 1,
            slot: 1,
            command: 0xf5,
            tag: i,
          });
          sender.commit(60);
        }
        sender.flush();
      } finally {
        sender.close();
      }
      let status = await initiator.status();
      const deadline = Date.now() + 3000;
      // Drops are read on the timer tick: wait until every frame is accounted for.
      const settled = () => status.counters.ignored + status.counters.rxDrops === 20000;
      while (!settled() && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        status = await initiator.status();
      }
      const drops = status.counters.rxDrops;
      assert.ok(drops > 0, "the kernel dropped part of the burst and the driver read it");
      assert.equal(status.counters.ignored + drops, 20000, "every frame ignored or dropped");
      const err = await Deno.open(`${initiator.devDir}/err`, { read: true });
      const buf = new Uint8Array(4096);
      const lines = new TextDecoder().decode(buf.subarray(0, (await err.read(buf)) ?? 0));
      err.close();
      assert.match(lines, /^ {7}rx drops i0 n=\d+ total=\d+$/m);
      const shown = await initiator.aoe(["err", "--counters"]);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, new RegExp(`^rxDrops +${drops}$`, "m"));
      const row = shown.stdout.split("\n").find((l) => l.startsWith("i0 "));
      assert.ok(row, shown.stdout);
      assert.equal(Number(row.trim().split(/ +/).at(-1)), drops, "the interface's rx drops");
      const json = JSON.parse((await initiator.aoe(["status", "--counters", "--json"])).stdout);
      assert.equal(json.interfaces[0].name, "i0");
      assert.equal(json.interfaces[0].counters.rxDrops, drops);
    });
  },
);

Deno.test(
  "discovery: 300 exports of one aoe target answer into a 32-frame ring; the lost answers are asked again and all come up",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      const args: string[] = [];
      const names: string[] = [];
      for (let shelf = 1; shelf <= 12; shelf++) {
        for (let slot = 0; slot < 25; slot++) {
          if (args.length > 0) args.push("--and");
          args.push(
            String(shelf),
            String(slot),
            "t1p0",
            sparseFile(`${dir}/${shelf}-${slot}.img`, 1 << 20),
          );
          names.push(`e${shelf}.${slot}`);
        }
      }
      // Started by hand: startTarget's pattern for N start lines backtracks badly at this N.
      const target = new Daemon(net.in(0, aoeCommand("target", ...args)));
      daemons.push(target);
      await target.waitFor(/pid \d+: e12\.24, \d+ sectors/);
      const started = performance.now();
      await initiator.modprobe("--rx-frames", "32");
      let status = await initiator.status();
      const up = () => status.devices.filter((d) => d.state === "up").length;
      while (up() < names.length && performance.now() - started < 10_000) {
        await new Promise((r) => setTimeout(r, 100));
        status = await initiator.status();
      }
      assert.equal(
        up(),
        names.length,
        `${up()} of ${names.length} up (rx drops ${status.counters.rxDrops})`,
      );
      assert.ok(status.counters.rxDrops > 0, "the burst overran the ring");
      const ms = performance.now() - started;
      assert.ok(ms < 10_000, `all up in ${ms.toFixed(0)} ms`);
      console.log(
        `300 exports, 32-frame ring: all up in ${
          ms.toFixed(0)
        } ms, ${status.counters.rxDrops} drops`,
      );
    });
  },
);
