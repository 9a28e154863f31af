/**
 * An administrator runs `tcpdump -i eth0` on the target's host and expects to
 * see the replies: the ring link's replies pass through the qdisc and the
 * packet taps unless AOE_QDISC_BYPASS=1 asks otherwise.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AtaOp } from "../wire/mod.ts";
import { aoeCommand, Daemon } from "../testing/procs.ts";
import { clientIn, withNet, writePatternFile } from "../testing/target.ts";
import type { TestNet } from "../testing/netns.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Captures on the target's interface while a client reads; the replies tshark finds from the target. */
async function repliesSeen(net: TestNet, dir: string, daemons: Daemon[], env: string[]) {
  const capture = `${dir}/cap-${env.length}.pcap`;
  const dump = new Daemon(
    net.in(0, ["tcpdump", "-Z", "root", "--immediate-mode", "-i", "t1p0", "-U", "-w", capture]),
  );
  daemons.push(dump);
  await dump.waitFor(/listening on/);
  const target = new Daemon(
    net.in(0, ["env", ...env, ...aoeCommand("target", "9", "0", "t1p0", `${dir}/a.img`)]),
  );
  daemons.push(target);
  await target.waitFor(/e9\.0, \d+ sectors/);
  const client = clientIn(net, 1, "i0");
  let answered = 0;
  for (let i = 0; i < 5; i++) {
    const reply = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: i, count: 1 });
    if (reply) answered++;
  }
  client.link.close();
  await new Promise((r) => setTimeout(r, 200));
  await target.stop();
  await dump.stop();
  const targetMac = await net.mac(0, "t1p0");
  const fields = await net.run(0, [
    "tshark",
    "-r",
    capture,
    "-Y",
    `eth.src == ${targetMac} && aoe.response == 1 && aoe.cmd == 0`,
    "-T",
    "fields",
    "-e",
    "aoe.tag",
  ]);
  assert.equal(fields.code, 0, fields.stderr);
  const requests = await net.run(0, [
    "tshark",
    "-r",
    capture,
    "-Y",
    "aoe.response == 0 && aoe.cmd == 0",
  ]);
  return {
    answered,
    replies: fields.stdout.trim() === "" ? 0 : fields.stdout.trim().split("\n").length,
    requests: requests.stdout.trim() === "" ? 0 : requests.stdout.trim().split("\n").length,
  };
}

Deno.test(
  "tcpdump on the target's interface sees the ring link's replies (unless AOE_QDISC_BYPASS=1)",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 64);
      const seen = await repliesSeen(net, dir, daemons, []);
      assert.deepEqual(seen, { answered: 5, replies: 5, requests: 5 });
      // The switch: past the qdisc, the taps see the requests only.
      const bypassed = await repliesSeen(net, dir, daemons, ["AOE_QDISC_BYPASS=1"]);
      assert.deepEqual(bypassed, { answered: 5, replies: 0, requests: 5 });
    });
  },
);
