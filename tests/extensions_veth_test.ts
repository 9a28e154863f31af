/**
 * The AoEx extensions end to end over veth (docs/extensions.md): the
 * project's initiator declaring to `aoe target` and falling back against
 * vblade; a Linux-driver-like initiator that never declares and is never
 * tracked, and the command line forcing tracking for a known MAC; freeze with
 * a shadow file by AoEde's signals while a client writes a known pattern,
 * with a SIGKILL and a restart in the middle.
 */
import assert from "node:assert/strict";
import { AtaOp, Command, encodeAta, readTag, SECTOR_SIZE } from "../wire/mod.ts";
import { randomBytes, sha256, TestInitiator } from "../testing/initiator.ts";
import { Daemon } from "../testing/procs.ts";
import { clientIn, sparseFile, startTarget, withNet } from "../testing/target.ts";
import type { TestClient } from "../testing/client.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function until(check: () => boolean, what: string, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// deno-lint-ignore no-explicit-any
function readStats(path: string): any {
  return JSON.parse(Deno.readTextFileSync(path));
}

Deno.test(
  "extensions veth: the initiator gets CRC32C and tag tracking from aoe target, plain AoE from vblade",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const stats = `${dir}/stats.json`;
      daemons.push(
        await startTarget(net, [
          "--stats",
          stats,
          "1",
          "0",
          "t1p0",
          sparseFile(`${dir}/a.img`, 8 << 20),
        ]),
      );
      const vblade = new Daemon(
        net.in(0, ["vblade", "2", "0", "t1p0", sparseFile(`${dir}/b.img`, 8 << 20)]),
      );
      daemons.push(vblade);
      await vblade.waitFor(/sectors/);
      const initiator = new TestInitiator(net, 1);
      try {
        await initiator.modprobe();
        await initiator.waitUp(["e1.0", "e2.0"]);
        const data = randomBytes(256 * 1024, 7);
        for (const name of ["e1.0", "e2.0"]) {
          await initiator.write(name, 4096, data);
          assert.equal(
            await sha256(await initiator.read(name, 4096, data.length)),
            await sha256(data),
            name,
          );
        }
        const status = await initiator.status() as unknown as {
          devices: { name: string; targets: { extensions: Record<string, string> }[] }[];
          extensions: Record<string, number>;
        };
        const byName = Object.fromEntries(status.devices.map((d) => [d.name, d]));
        assert.match(byName["e1.0"].targets[0].extensions.i0, /^active:/);
        assert.equal(byName["e2.0"].targets[0].extensions.i0, "unsupported");
        assert.equal(status.extensions.unsupported, 1);
        const table = await initiator.aoe(["status", "--counters"]);
        assert.equal(table.code, 0, table.stderr);
        assert.match(table.stdout, /^device +reads +writes/m);
        assert.match(table.stdout, /^e1\.0 +\d+ +\d+ +\d+ +0\.\d +0\.\d /m);
        const json = JSON.parse((await initiator.aoe(["status", "--counters", "--json"])).stdout);
        const e1 = json.devices.find((d: { name: string }) => d.name === "e1.0").counters;
        assert.ok(e1.writes >= 1 && e1.bytesWritten >= data.length, JSON.stringify(e1));
        assert.ok(e1.bytesRead >= data.length && e1.peakOutstanding >= 1, JSON.stringify(e1));
        await new Promise((r) => setTimeout(r, 1100)); // the stats file is rewritten every second
        const ext = readStats(stats).exports["e1.0"].extensions;
        const sessions = Object.values(ext.initiators) as Record<string, unknown>[];
        assert.equal(sessions.length, 1);
        assert.equal(sessions[0].crc, "crc32");
        assert.equal(sessions[0].trackRx, true);
        assert.ok(ext.crcWrites >= 256 && ext.crcReads >= 256, JSON.stringify(ext));
      } finally {
        await initiator.close();
      }
    });
  },
);

/** Sends one write of `count` sectors with an explicit tag and collects every reply to it. */
async function writeWithTag(
  client: TestClient,
  tag: number,
  lba: number,
  data: Uint8Array,
  copies = 1,
): Promise<number> {
  for (let i = 0; i < copies; i++) {
    const frame = client.link.txSlot();
    client.header(frame, 9, 0, Command.ata, tag);
    let n = encodeAta(frame, {
      aflags: 0x41,
      feature: 0,
      sectorCount: data.length / SECTOR_SIZE,
      command: AtaOp.writeSectorsExt,
      lba,
    });
    frame.set(data, n);
    n += data.length;
    client.link.commit(n);
  }
  client.link.flush();
  return (await client.waitTag(tag, { timeoutMs: 500, count: copies })).length;
}

Deno.test(
  "extensions veth: a Linux-driver-like initiator that never declares is never tracked; --track-write forces it for a known MAC",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = sparseFile(`${dir}/a.img`, 4 << 20);
      const stats = `${dir}/stats.json`;
      let target = await startTarget(net, ["--stats", stats, "9", "0", "t1p0", image]);
      daemons.push(target);
      const client = clientIn(net, 1, "i0");
      const older = new Uint8Array(1024).fill(0x11);
      const newer = new Uint8Array(1024).fill(0x22);
      // Kernel-style tags (bit 31 clear, not a counter): a duplicate is answered twice,
      // and an "older" tag after a "newer" one is applied.
      assert.equal(await writeWithTag(client, 0x00050000, 0, newer, 2), 2);
      assert.equal(await writeWithTag(client, 0x00040000, 0, older), 1);
      const back = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 2 });
      assert.deepEqual(back!.subarray(36, 36 + 1024), older);
      await new Promise((r) => setTimeout(r, 1100));
      let ext = readStats(stats).exports["e9.0"].extensions;
      assert.deepEqual(ext.initiators, {});
      assert.equal(ext.duplicatesDropped, 0);
      assert.equal(ext.staleWritesRefused, 0);
      await target.stop();

      // The same client forced by MAC: duplicates dropped, the stale write refused.
      const mac = await net.mac(1, "i0");
      target = await startTarget(net, [
        "--stats",
        stats,
        "--track-write",
        mac,
        "9",
        "0",
        "t1p0",
        image,
      ]);
      daemons.push(target);
      assert.equal(
        await writeWithTag(client, 0x00000100, 0, newer, 2),
        1,
        "one answer to two copies",
      );
      assert.equal(
        await writeWithTag(client, 0x000000ff, 0, older),
        0,
        "the stale write is not answered",
      );
      const after = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 2 });
      assert.deepEqual(after!.subarray(36, 36 + 1024), newer, "the newer data survive");
      await new Promise((r) => setTimeout(r, 1100));
      ext = readStats(stats).exports["e9.0"].extensions;
      assert.equal(ext.duplicatesDropped, 1);
      assert.equal(ext.staleWritesRefused, 1);
      assert.equal(
        readTag(after!) >>> 31,
        1,
        "the test client's own tags have bit 31 set: untracked",
      );
      client.link.close();
    });
  },
);

/** Writes generation `gen` into every sector of `lbas` and records it in `model`. */
async function writePattern(
  client: TestClient,
  lbas: number[],
  gen: number,
  model: Map<number, number>,
) {
  for (const lba of lbas) {
    const data = new Uint8Array(SECTOR_SIZE);
    const view = new DataView(data.buffer);
    for (let i = 0; i < SECTOR_SIZE; i += 8) {
      view.setUint32(i, lba, true);
      view.setUint32(i + 4, gen, true);
    }
    const r = await client.ata(9, 0, { command: AtaOp.writeSectorsExt, lba, count: 1, data });
    assert.ok(r && r[27] === 0x40, `write ${lba}`);
    model.set(lba, gen);
  }
}

async function verifyPattern(client: TestClient, model: Map<number, number>, what: string) {
  for (const [lba, gen] of model) {
    const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba, count: 1 });
    assert.ok(r, `${what}: read ${lba}`);
    const got = new DataView(r.buffer, r.byteOffset).getUint32(36 + 4, true);
    assert.equal(got, gen, `${what}: sector ${lba}`);
  }
}

Deno.test(
  "extensions veth: freeze and unfreeze by AoEde's signals while a client writes a pattern; SIGKILL while frozen; a lone SIGUSR1 logs counters",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = sparseFile(`${dir}/a.img`, 4 << 20);
      const shadow = `${dir}/shadow.img`;
      const stats = `${dir}/stats.json`;
      const args = ["--stats", stats, "-f", shadow, "9", "0", "t1p0", image];
      let target = await startTarget(net, args);
      daemons.push(target);
      const client = clientIn(net, 1, "i0");
      const model = new Map<number, number>();
      const lbas = Array.from({ length: 64 }, (_, i) => i * 97 % 8192);
      await writePattern(client, lbas, 1, model);

      target.signal("SIGUSR1");
      await new Promise((r) => setTimeout(r, 200));
      target.signal("SIGUSR2");
      await target.waitFor(/e9\.0: frozen/);
      assert.equal(Deno.statSync(shadow).mode! & 0o777, 0o600);
      const frozenImage = await sha256(Deno.readFileSync(image));
      await writePattern(client, lbas.slice(0, 40), 2, model);
      await verifyPattern(client, model, "frozen");
      const flush = await client.ata(9, 0, { command: AtaOp.flushCacheExt });
      assert.equal(flush![27], 0x40);
      assert.equal(await sha256(Deno.readFileSync(image)), frozenImage, "the image is unchanged");

      // Killed while frozen: the restart is still frozen and has every answered write.
      target.signal("SIGKILL");
      await target.status;
      target = await startTarget(net, args);
      daemons.push(target);
      await verifyPattern(client, model, "restarted frozen");
      await writePattern(client, lbas.slice(20, 50), 3, model);
      assert.equal(await sha256(Deno.readFileSync(image)), frozenImage);

      // Separate kill commands, as AoEde's README has them: two SIGUSR1 sent at once would merge.
      for (const signal of ["SIGUSR1", "SIGUSR1", "SIGUSR2"] as const) {
        target.signal(signal);
        await new Promise((r) => setTimeout(r, 200));
      }
      await writePattern(client, lbas.slice(30, 64), 4, model); // during the merge
      await target.waitFor(/e9\.0: merged and unfrozen/);
      await until(() => {
        try {
          Deno.statSync(shadow);
          return false;
        } catch {
          return true;
        }
      }, "the shadow removed");
      await verifyPattern(client, model, "merged");

      const before = target.stderr.length;
      target.signal("SIGUSR1");
      await target.waitFor(/"freeze":"normal"/);
      assert.ok(
        target.stderr.slice(before).includes('"exports"'),
        "a lone SIGUSR1 logs the counters",
      );
      await target.stop();
      // The image alone holds the pattern.
      const file = Deno.readFileSync(image);
      for (const [lba, gen] of model) {
        assert.equal(
          new DataView(file.buffer).getUint32(lba * 512 + 4, true),
          gen,
          `image sector ${lba}`,
        );
      }
      client.link.close();
    });
  },
);
