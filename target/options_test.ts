import assert from "node:assert/strict";
import { DEFAULT_BUFFER_COUNT, parseTargetArgs, UsageError } from "./options.ts";

Deno.test("options: vblade's order and letters, options before or after the positionals", () => {
  const a = parseTargetArgs([
    "-b",
    "32",
    "-s",
    "-r",
    "-m",
    "52:54:00:00:00:01,525400000002",
    "9",
    "0",
    "eth0",
    "disk.img",
  ]);
  const b = parseTargetArgs([
    "9",
    "0",
    "eth0",
    "disk.img",
    "-rs",
    "-b32",
    "-m",
    "52:54:00:00:00:01,525400000002",
  ]);
  assert.deepEqual(a, b);
  const spec = a.exports[0];
  assert.equal(spec.shelf, 9);
  assert.equal(spec.slot, 0);
  assert.deepEqual(spec.interfaces, ["eth0"]);
  assert.equal(spec.file, "disk.img");
  assert.equal(spec.bufferCount, 32);
  assert.equal(spec.sync, true);
  assert.equal(spec.readOnly, true);
  assert.deepEqual(spec.masks, [0x525400000001, 0x525400000002]);
});

Deno.test("options: several interfaces, -o/-l in strtoll base 0, defaults, --and groups", () => {
  const c = parseTargetArgs([
    "-o",
    "0x10",
    "-l",
    "010",
    "1",
    "2",
    "eth0",
    "eth1",
    "f.img",
    "--and",
    "-d",
    "1",
    "3",
    "eth1",
    "g.img",
  ]);
  assert.equal(c.exports.length, 2);
  assert.deepEqual(c.exports[0].interfaces, ["eth0", "eth1"]);
  assert.equal(c.exports[0].offset, 16);
  assert.equal(c.exports[0].length, 8);
  assert.equal(c.exports[0].bufferCount, DEFAULT_BUFFER_COUNT);
  assert.equal(c.exports[1].direct, true);
  assert.equal(c.exports[1].slot, 3);
});

Deno.test("options: mistakes are UsageErrors with one-line messages", () => {
  for (
    const [args, message] of [
      [["9", "0", "eth0"], /expected shelf slot/],
      [["-b", "1", "9", "0", "e", "f"], /buffer count/],
      [["65535", "0", "e", "f"], /shelf 65535/],
      [["1", "255", "e", "f"], /slot 255/],
      [["-q", "1", "2", "e", "f"], /unknown option -q/],
      [["1", "2", "e", "f", "--and", "1", "2", "e", "g"], /e1\.2 is given twice/],
      [["--link", "carrier-pigeon", "1", "2", "e", "f"], /--link must be/],
    ] as [string[], RegExp][]
  ) {
    assert.throws(
      () => parseTargetArgs(args),
      (e) => e instanceof UsageError && message.test(e.message) && !e.message.includes("\n"),
    );
  }
  assert.equal(parseTargetArgs(["--help"]).help, true);
});

Deno.test("options: AoEde's -f shadow and the extension options, per export", () => {
  const c = parseTargetArgs([
    "-f",
    "/var/shadow.img",
    "--crc",
    "crc8x4",
    "--track-write",
    "52:54:00:00:00:01",
    "9",
    "0",
    "eth0",
    "a.img",
    "--and",
    "--no-extensions",
    "--track-rx",
    "525400000002,525400000003",
    "9",
    "1",
    "eth0",
    "b.img",
  ]);
  assert.equal(c.exports[0].shadow, "/var/shadow.img");
  assert.deepEqual(c.exports[0].extensions, { crc: ["crc8x4"], forceWrite: [0x525400000001] });
  assert.equal(c.exports[1].shadow, undefined);
  assert.deepEqual(c.exports[1].extensions, {
    enabled: false,
    forceRx: [0x525400000002, 0x525400000003],
  });
  assert.deepEqual(parseTargetArgs(["--crc", "none", "1", "0", "e", "f"]).exports[0].extensions, {
    crc: [],
  });
  assert.throws(() => parseTargetArgs(["--crc", "md5", "1", "0", "e", "f"]), /--crc: expected/);
  assert.throws(() => parseTargetArgs(["--track-rx", "zz", "1", "0", "e", "f"]), /not a MAC/);
  assert.throws(() => parseTargetArgs(["-f"]), UsageError);
});
