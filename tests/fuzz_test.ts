/**
 * 100,000 random and malformed frames thrown at a running `aoe target` over
 * veth: the process must survive, count what it dropped, and answer correctly
 * afterwards.
 */
import assert from "node:assert/strict";
import {
  AtaOp,
  Command,
  ConfigCommand,
  decodeConfig,
  decodeIdentify,
  decodeReserve,
  encodeReserve,
  writeMac,
} from "../wire/mod.ts";
import {
  clientIn,
  patternSectors,
  startTarget,
  withNet,
  writePatternFile,
} from "../testing/target.ts";

const FRAMES = 100_000;

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes one hostile frame into `frame`; returns its length. */
function hostileFrame(frame: Uint8Array, next: () => number, dst: number): number {
  const int = (n: number) => Math.floor(next() * n);
  const length = [24 + int(40), 60 + int(100), int(1514)][int(3)];
  for (let i = 0; i < length; i++) frame[i] = int(256);
  writeMac(frame, 0, next() < 0.9 ? dst : 0xffffffffffff);
  frame[12] = 0x88;
  frame[13] = 0xa2;
  const kind = int(6);
  if (kind === 0) return Math.max(length, 14); // anything at all after the ethertype
  frame[14] = next() < 0.85 ? 0x10 : int(256); // mostly version 1, no flags
  frame[16] = 0;
  frame[17] = next() < 0.5 ? 9 : int(256);
  frame[18] = next() < 0.5 ? 0 : 0xff;
  frame[19] = [Command.ata, Command.config, Command.macMask, Command.reserve, int(256)][int(5)];
  if (frame[19] === Command.macMask && frame[25] === 1) {
    // Edits may delete but never add: an added random MAC would lock the checker out (as in vblade).
    for (let at = 28 + 1; at < length; at += 8) if (frame[at] === 1) frame[at] = 2;
  }
  if (frame[19] === Command.ata && next() < 0.7) {
    frame[27] = [
      AtaOp.readSectorsExt,
      AtaOp.readSectors,
      AtaOp.writeSectorsExt,
      AtaOp.writeSectors,
      AtaOp.identifyDevice,
      AtaOp.flushCache,
      AtaOp.dataSetManagement,
      int(256),
    ][int(8)];
    frame[26] = next() < 0.7 ? int(4) : int(256);
    if (next() < 0.5) frame.fill(0, 31, 34); // small LBAs, inside the image
  }
  return Math.max(length, 24);
}

Deno.test("fuzz: 100,000 hostile frames, no crash, dropped frames counted, correct answers after", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await withNet({}, async (net, dir, daemons) => {
    const image = `${dir}/disk.img`;
    writePatternFile(image, 4096);
    const stats = `${dir}/stats.json`;
    const target = await startTarget(net, ["--stats", stats, "9", "0", "t1p0", image]);
    daemons.push(target);
    const client = clientIn(net, 1, "i0");
    const link = client.link;
    const targetMac = parseInt((await net.mac(0, "t1p0")).replaceAll(":", ""), 16);
    const next = random(20261123);
    for (let sent = 0; sent < FRAMES; sent++) {
      const slot = link.txSlot();
      link.commit(hostileFrame(slot, next, targetMac));
      if (sent % 64 === 63) {
        link.flush();
        while (link.receive() > 0) { /* drain replies */ }
        if (sent % 1024 === 1023) await new Promise((r) => setTimeout(r, 1));
      }
    }
    link.flush();
    await new Promise((r) => setTimeout(r, 500));
    while (link.receive() > 0) { /* drain */ }

    let exited = false;
    target.status.then(() => exited = true);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(exited, false, `target still running (stderr: ${target.stderr})`);

    // Clear any reservation the fuzz set (only a holder may: docs/protocol.md §7, so the
    // release is sent with a holder's MAC as its source), then check real answers.
    const held = await client.exchange((f, tag) => (
      client.header(f, 9, 0, Command.reserve, tag), encodeReserve(f, { rcmd: 0, macs: [] })
    ));
    const holders = decodeReserve(held!).macs;
    if (holders.length > 0) {
      const release = new Uint8Array(60);
      client.header(release, 9, 0, Command.reserve, 1);
      encodeReserve(release, { rcmd: 2, macs: [] });
      writeMac(release, 6, holders[0]);
      client.sendRaw(release);
      await new Promise((r) => setTimeout(r, 100));
    }
    const ident = await client.ata(9, 0, { command: AtaOp.identifyDevice, count: 1 });
    assert.equal(decodeIdentify(ident!.subarray(36)).sectors, 4096);
    const data = patternSectors(4242, 2, 77);
    const w = await client.ata(9, 0, { command: AtaOp.writeSectorsExt, lba: 3000, count: 2, data });
    assert.equal(w![27], 0x40);
    const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 3000, count: 2 });
    assert.deepEqual(r!.subarray(36), data);
    const qc = await client.config(9, 0, ConfigCommand.read);
    assert.equal(decodeConfig(qc!).aoeVersion, 1);

    await target.stop();
    daemons.pop();
    assert.equal(target.stderr.includes("error"), false, target.stderr);
    const counters = JSON.parse(Deno.readTextFileSync(stats));
    const d = counters.dispatch;
    assert.ok(d.received > FRAMES * 0.5, `received ${d.received}`);
    assert.ok(
      d.badVersion + d.responses > 1000,
      `version/response drops counted: ${JSON.stringify(d)}`,
    );
    assert.ok(d.notForUs > 1000, `other shelves counted: ${d.notForUs}`);
    const e = counters.exports["e9.0"];
    assert.ok(e.malformed > 0, `malformed counted: ${e.malformed}`);
    assert.ok(e.unknownCommand > 100, `unknown commands counted: ${e.unknownCommand}`);
  });
});
