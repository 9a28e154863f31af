/**
 * Real clients and a real target that no one here wrote: aoetools' aoeping and
 * aoecfg, tshark's AoE dissector, and Debian's vblade answering the same
 * requests as `aoe target`.
 */
import assert from "node:assert/strict";
import { AtaOp, Command, ConfigCommand, encodeMask, encodeReserve } from "../wire/mod.ts";
import { Daemon } from "../testing/procs.ts";
import { clientIn, startTarget, withNet, writePatternFile } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Parses aoeping -i's hex dump into the 512 IDENTIFY bytes. */
function parseHexDump(text: string): Uint8Array {
  const bytes = text.split("\n").filter((l) => /^([0-9a-f]{2} )+$/.test(l.trim() + " "))
    .flatMap((l) => l.trim().split(/\s+/).map((h) => parseInt(h, 16)));
  return new Uint8Array(bytes);
}

Deno.test("aoeping: IDENTIFY with the right capacity, fields, from aoe target", opts, async () => {
  await withNet({}, async (net, dir, daemons) => {
    const image = `${dir}/disk.img`;
    Deno.writeFileSync(image, new Uint8Array(0));
    Deno.truncateSync(image, 3 * 1024 * 1024 * 1024 + 512 * 7); // 6291463 sectors
    daemons.push(await startTarget(net, ["9", "0", "t1p0", image]));
    const raw = await net.run(1, ["timeout", "10", "aoeping", "-i", "9", "0", "i0"]);
    assert.equal(raw.code, 0, raw.stderr);
    const data = parseHexDump(raw.stdout);
    assert.equal(data.length, 512);
    const words = new DataView(data.buffer);
    assert.equal(Number(words.getBigUint64(200, true)), 6291463, "LBA48 capacity, words 100-103");
    assert.equal(words.getUint32(120, true), 6291463, "LBA28 capacity, words 60-61");
    assert.equal(words.getUint16(98, true) & 0x200, 0x200, "word 49: LBA");
    const fields = await net.run(1, ["timeout", "10", "aoeping", "-I", "9", "0", "i0"]);
    assert.equal(fields.code, 0);
    assert.match(fields.stdout, /serial_number: 9\.0:/);
    assert.match(fields.stdout, /model: aoe target/);
    const verbose = await net.run(1, ["timeout", "10", "aoeping", "-v", "9", "0", "i0"]);
    assert.match(
      verbose.stdout,
      new RegExp(`found e9\\.0 with mac ${(await net.mac(0, "t1p0")).replaceAll(":", "")}`),
    );
  });
});

/** The aoecfg session run against both targets; replies stay ≥ 60 bytes so vblade's unpadded frames survive. */
const LONG = "rack-7/cabinet-2/some-config-string";
const OTHER = "another-config-string-of-some-length";
const aoecfgSession: string[][] = [
  ["-c", "fset", "-s", LONG],
  ["-c", "read"],
  ["-c", "test", "-s", LONG],
  ["-c", "test", "-s", LONG.slice(0, 12)],
  ["-c", "prefix", "-s", LONG.slice(0, 12)],
  ["-c", "prefix", "-s", OTHER],
  ["-c", "set", "-s", OTHER],
  ["-c", "set", "-s", LONG],
  ["-c", "fset", "-s", OTHER],
  ["-c", "read"],
];

Deno.test(
  "aoecfg: read, test, prefix, set, fset print the same against vblade and aoe target",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 2048);
      writePatternFile(`${dir}/b.img`, 2048);
      daemons.push(await startTarget(net, ["9", "0", "t1p0", `${dir}/a.img`]));
      const vblade = new Daemon(net.in(0, ["vblade", "9", "1", "t1p0", `${dir}/b.img`]));
      daemons.push(vblade);
      await vblade.waitFor(/e9\.1, 2048 sectors/);
      const outputs: Record<string, string[]> = { "0": [], "1": [] };
      for (const slot of ["0", "1"]) {
        for (const args of aoecfgSession) {
          const r = await net.run(1, ["aoecfg", "-t", "1", ...args, "9", slot, "i0"]);
          outputs[slot].push(`${r.code}:${r.stdout}`);
        }
      }
      assert.deepEqual(outputs["0"], outputs["1"]);
      // And the outputs say what they should, so equality is not vacuous.
      assert.equal(outputs["0"][0], `0:${LONG}\n`);
      assert.equal(outputs["0"][3], "0:", "test with another string: no answer");
      assert.equal(outputs["0"][6], "0:*badcfg*\n");
      assert.equal(outputs["0"][9], `0:${OTHER}\n`);
      // Broadcast: both answer with shelf.slot and their string.
      const all = await net.run(1, ["aoecfg", "-t", "1", "-c", "read", "i0"]);
      assert.match(all.stdout, new RegExp(`^9\\.0\\t${OTHER}$`, "m"));
      assert.match(all.stdout, new RegExp(`^9\\.1\\t${OTHER}$`, "m"));
    });
  },
);

Deno.test("vblade and aoe target answer the same requests with the same bytes", opts, async () => {
  await withNet({}, async (net, dir, daemons) => {
    writePatternFile(`${dir}/a.img`, 2048, 4);
    writePatternFile(`${dir}/b.img`, 2048, 4);
    daemons.push(await startTarget(net, ["9", "0", "t1p0", `${dir}/a.img`]));
    const vblade = new Daemon(net.in(0, ["vblade", "9", "1", "t1p0", `${dir}/b.img`]));
    daemons.push(vblade);
    await vblade.waitFor(/e9\.1/);
    const client = clientIn(net, 1, "i0");
    const configString = "x".repeat(40);
    type Ask = (slot: number) => Promise<Uint8Array | undefined>;
    const cases: [string, Ask, number][] = [
      // name, request, bytes to compare (0 = the whole reply)
      [
        "read lba48",
        (s) => client.ata(9, s, { command: AtaOp.readSectorsExt, lba: 33, count: 2 }),
        0,
      ],
      [
        "read lba28",
        (s) =>
          client.ata(9, s, { command: AtaOp.readSectors, aflags: 0, lba: 0xe0000101, count: 1 }),
        0,
      ],
      [
        "write",
        (s) =>
          client.ata(9, s, {
            command: AtaOp.writeSectorsExt,
            lba: 60,
            count: 2,
            data: new Uint8Array(1024).fill(s + 1),
          }),
        36,
      ],
      [
        "read after write",
        (s) => client.ata(9, s, { command: AtaOp.readSectorsExt, lba: 60, count: 2 }),
        -1,
      ],
      [
        "past the end",
        (s) => client.ata(9, s, { command: AtaOp.readSectorsExt, lba: 2047, count: 2 }),
        36,
      ],
      [
        "too many sectors",
        (s) => client.ata(9, s, { command: AtaOp.readSectorsExt, lba: 0, count: 9 }),
        36,
      ],
      ["unknown ATA opcode", (s) => client.ata(9, s, { command: 0xb0, count: 0 }), 36],
      ["check power mode", (s) => client.ata(9, s, { command: AtaOp.checkPowerMode }), 36],
      ["config fset", (s) => client.config(9, s, ConfigCommand.forceSet, configString), -2],
      ["config set refused", (s) => client.config(9, s, ConfigCommand.set, "y".repeat(40)), -2],
      ["mask read", (s) =>
        client.exchange((f, tag) => {
          client.header(f, 9, s, Command.macMask, tag);
          return encodeMask(f, { mcmd: 0, merror: 0, directives: [] });
        }), 28],
      ["reserve read", (s) =>
        client.exchange((f, tag) => {
          client.header(f, 9, s, Command.reserve, tag);
          return encodeReserve(f, { rcmd: 0, macs: [] });
        }), 26],
      ["unknown AoE command", (s) =>
        client.exchange((f, tag) => {
          client.header(f, 9, s, 0x42, tag);
          return 60;
        }), 0],
    ];
    for (const [name, ask, compare] of cases) {
      const ours = await ask(0);
      const theirs = await ask(1);
      assert.ok(ours, `${name}: aoe target answered`);
      assert.ok(theirs, `${name}: vblade answered`);
      const a = ours.slice();
      const b = theirs.slice();
      a[18] = b[18] = 0; // the slot differs by design
      a.fill(0, 20, 24); // and each request had its own tag
      b.fill(0, 20, 24);
      if (compare === -1) {
        // Each wrote its own fill byte: compare headers, and data against what each wrote.
        assert.deepEqual(a.subarray(0, 36), b.subarray(0, 36), name);
        assert.ok(
          ours.subarray(36).every((x) => x === 1) && theirs.subarray(36).every((x) => x === 2),
          name,
        );
        continue;
      }
      if (compare === -2) {
        // Query Config: fields equal except buffer count and firmware version (each target's own).
        a.fill(0, 24, 28);
        b.fill(0, 24, 28);
        assert.deepEqual(a, b, name);
        continue;
      }
      const n = compare || Math.max(b.length, 60);
      assert.deepEqual(a.subarray(0, n), b.subarray(0, n), name);
      if (compare === 0) {
        assert.equal(ours.length, Math.max(theirs.length, 60), `${name}: length (padded to 60)`);
      }
    }
  });
});

Deno.test(
  "tshark dissects every kind of frame aoe target sends, none malformed",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 2048);
      const capture = `${dir}/cap.pcap`;
      const dump = new Daemon(
        net.in(1, [
          "tcpdump",
          "-Z",
          "root",
          "--immediate-mode",
          "-i",
          "i0",
          "-U",
          "-w",
          capture,
          "ether",
          "proto",
          "0x88a2",
        ]),
      );
      daemons.push(dump);
      await dump.waitFor(/listening on/);
      daemons.push(await startTarget(net, ["9", "0", "t1p0", `${dir}/a.img`]));
      const client = clientIn(net, 1, "i0");
      await client.config(9, 0, ConfigCommand.read);
      await client.config(9, 0, ConfigCommand.set, "abc");
      await client.config(9, 0, ConfigCommand.set, "abd"); // E + error 4
      await client.ata(9, 0, { command: AtaOp.identifyDevice, count: 1 });
      await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 5, count: 2 });
      await client.ata(9, 0, { command: AtaOp.readSectors, aflags: 0, lba: 0xe0000005, count: 1 });
      await client.ata(9, 0, {
        command: AtaOp.writeSectorsExt,
        lba: 5,
        count: 1,
        data: new Uint8Array(512),
      });
      await client.ata(9, 0, { command: AtaOp.flushCache });
      await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 4000, count: 1 }); // IDNF
      await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 5 }); // E + error 2
      await client.exchange((
        f,
        tag,
      ) => (client.header(f, 9, 0, Command.macMask, tag),
        encodeMask(f, { mcmd: 0, merror: 0, directives: [] }))
      );
      await client.exchange((
        f,
        tag,
      ) => (client.header(f, 9, 0, Command.reserve, tag), encodeReserve(f, { rcmd: 0, macs: [] })));
      await client.exchange((f, tag) => (client.header(f, 9, 0, 0x42, tag), 60));
      await new Promise((r) => setTimeout(r, 300));
      await dump.stop();
      const targetMac = await net.mac(0, "t1p0");
      const fields = await net.run(1, [
        "tshark",
        "-r",
        capture,
        "-Y",
        `eth.src == ${targetMac}`,
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "frame.len",
        "-e",
        "aoe.response",
        "-e",
        "aoe.cmd",
        "-e",
        "aoe.flags_error",
        "-e",
        "aoe.ata.status",
        "-e",
        "_ws.malformed",
        "-e",
        "aoe.tag",
      ]);
      assert.equal(fields.code, 0, fields.stderr);
      const rows = fields.stdout.trim().split("\n").map((l) => l.split(","));
      assert.equal(rows.length, 14, `frames from the target:\n${fields.stdout}`);
      for (const [len, response, , , , malformed] of rows) {
        assert.ok(Number(len) >= 60, `frame length ${len}`);
        assert.ok(response === "1" || response === "True", `response flag: ${response}`);
        assert.equal(malformed, "", "no malformed mark");
      }
      const commands = rows.map((r) => Number(r[2]));
      assert.deepEqual([...new Set(commands)].sort(), [0, 1, 2, 3, 0x42]);
      assert.ok(rows.some((r) => r[4] === "0x40"), "ATA success status dissected");
      assert.ok(rows.some((r) => r[4] === "0x41"), "ATA error status dissected");
      assert.ok(
        rows.filter((r) => r[3] === "1" || r[3] === "True").length >= 3,
        "E-flagged replies dissected",
      );
      assert.ok(rows.some((r) => r[6] === "0x00000000"), "the start-up announcement (tag 0)");
      const all = await net.run(1, ["tshark", "-r", capture, "-Y", "_ws.malformed"]);
      assert.equal(all.stdout.trim(), "", "no malformed frame in the whole capture");
    });
  },
);
