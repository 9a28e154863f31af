import assert from "node:assert/strict";
import {
  DEFAULT_PARAMS,
  optionsFromModprobeFile,
  parseIflist,
  resolveParams,
  splitOptions,
} from "./params.ts";

Deno.test("params: kernel documentation defaults", () => {
  assert.deepEqual(DEFAULT_PARAMS, {
    iflist: [],
    deadsecs: 180,
    maxout: 128,
    dyndevs: 1,
    maxdevs: 1024,
    // This project's own (docs/extensions.md): monotonic tags declared, CRC32C asked for.
    tags: "counter",
    crc: "crc32",
  });
});

Deno.test("params: aoe_iflist splits on space, tab, newline, \\v, \\f and comma; NULs (aoetools) dropped", () => {
  assert.deepEqual(parseIflist("eth1 eth3"), ["eth1", "eth3"]);
  assert.deepEqual(parseIflist("eth1,eth2\teth3\neth4\v\feth5\0"), [
    "eth1",
    "eth2",
    "eth3",
    "eth4",
    "eth5",
  ]);
  assert.deepEqual(parseIflist(""), []);
  assert.throws(() => parseIflist("x".repeat(1024)), /too many interfaces/);
});

Deno.test("params: modprobe.d options, then explicit words win; bad values are one-line errors", () => {
  const file =
    '# comment\noptions aoe aoe_iflist="eth1 eth2" aoe_deadsecs=30\noptions nbd max_part=8\n';
  assert.deepEqual(optionsFromModprobeFile(file), ['aoe_iflist="eth1 eth2"', "aoe_deadsecs=30"]);
  const p = resolveParams(["aoe_deadsecs=0", "aoe_dyndevs=0"], file);
  assert.deepEqual(p, {
    iflist: ["eth1", "eth2"],
    deadsecs: 0,
    maxout: 128,
    dyndevs: 0,
    maxdevs: 1024,
    tags: "counter",
    crc: "crc32",
  });
  assert.equal(resolveParams(["aoe_tags=kernel"]).tags, "kernel");
  assert.equal(resolveParams(["aoe_crc=none"]).crc, "none");
  assert.throws(() => resolveParams(["aoe_tags=random"]), /counter or kernel/);
  assert.throws(() => resolveParams(["aoe_crc=md5"]), /crc32c, crc8x4 or none/);
  assert.deepEqual(splitOptions('aoe_iflist="a b" x=1'), ['aoe_iflist="a b"', "x=1"]);
  assert.throws(() => resolveParams(["aoe_maxout=0"]), /at least 1/);
  assert.throws(() => resolveParams(["aoe_dyndevs=2"]), /0 or 1/);
  assert.throws(() => resolveParams(["aoe_frob=1"]), /unknown parameter "aoe_frob"/);
  assert.throws(() => resolveParams(["aoe_deadsecs"]), /expected name=value/);
  // Integers as the kernel's module parameters take them: C ints, never 1e20.
  assert.throws(() => resolveParams(["aoe_maxout=99999999999999999999"]), /out of range/);
  assert.throws(() => resolveParams(["aoe_deadsecs=2147483648"]), /out of range/);
  assert.equal(resolveParams(["aoe_deadsecs=2147483647"]).deadsecs, 2147483647);
  assert.throws(() => resolveParams(["aoe_maxout=-1"]), /not a non-negative integer/);
  assert.throws(() => resolveParams(["aoe_maxout=1.5"]), /not a non-negative integer/);
  assert.throws(() => resolveParams(["aoe_maxdevs=0"]), /at least 1/);
  assert.equal(resolveParams(["aoe_maxdevs=16"]).maxdevs, 16);
});
