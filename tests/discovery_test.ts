/**
 * Discovery over veth in any start order: Debian's vblade started after the
 * initiator, bursts of answers larger than the receive ring, drops counted.
 */
import assert from "node:assert/strict";
import { TestInitiator } from "../testing/initiator.ts";
import type { TestNet } from "../testing/netns.ts";
import { Daemon } from "../testing/procs.ts";
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
async function upWithin(initiator: TestInitiator, name: string, timeoutMs: number): Promise<number> {
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
