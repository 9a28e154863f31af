import assert from "node:assert/strict";
import {
  AtaFlag,
  Capability,
  Command,
  crc32,
  crc32c,
  CRC_CAPABILITY,
  CRC_KINDS,
  dataCrc,
  decodeAta,
  decodeConfig,
  decodeHeader,
  decodeIdentify,
  decodeMask,
  decodeReserve,
  effectiveLba,
  effectiveSectorCount,
  encodeAta,
  encodeConfig,
  encodeHeader,
  encodeIdentify,
  encodeMask,
  encodeReserve,
  formatMac,
  grantedCrc,
  makeResponseHeader,
  parseMac,
  readMac,
  sectorsPerFrame,
  WireError,
  writeMac,
} from "./mod.ts";

const header = {
  dst: 0x0200000000aa,
  src: 0x5254001234ff,
  version: 1,
  response: false,
  error: false,
  errorCode: 0,
  shelf: 9,
  slot: 3,
  command: Command.ata,
  tag: 0x80000102,
};

Deno.test("header: encode then decode gives the same fields and the r11 byte layout", () => {
  const frame = new Uint8Array(60);
  assert.equal(encodeHeader(frame, header), 24);
  assert.deepEqual(decodeHeader(frame), header);
  assert.deepEqual([...frame.subarray(12, 24)], [0x88, 0xa2, 0x10, 0, 0, 9, 3, 0, 0x80, 0, 1, 2]);
});

Deno.test("header: short frames and other ethertypes are typed errors", () => {
  const frame = new Uint8Array(60);
  encodeHeader(frame, header);
  assert.throws(() => decodeHeader(frame, 23), (e) => e instanceof WireError && e.kind === "short");
  frame[13] = 0x00;
  assert.throws(() => decodeHeader(frame), (e) => e instanceof WireError && e.kind === "ethertype");
  assert.throws(() => encodeHeader(new Uint8Array(10), header), WireError);
  assert.throws(() => encodeHeader(new Uint8Array(60), { ...header, shelf: 0x10000 }), WireError);
});

Deno.test("response header: MACs swapped, real shelf/slot, R set, version kept", () => {
  const frame = new Uint8Array(60);
  encodeHeader(frame, { ...header, shelf: 0xffff, slot: 0xff });
  makeResponseHeader(frame, { mac: 0x020000000001, shelf: 7, slot: 2 });
  const decoded = decodeHeader(frame);
  assert.equal(decoded.dst, header.src);
  assert.equal(decoded.src, 0x020000000001);
  assert.equal(decoded.shelf, 7);
  assert.equal(decoded.slot, 2);
  assert.equal(decoded.response, true);
  assert.equal(decoded.version, 1);
  assert.equal(decoded.tag, header.tag);
});

Deno.test("mac: 48-bit numbers round-trip and format like the kernel's %pm", () => {
  const bytes = new Uint8Array(6);
  writeMac(bytes, 0, 0xffeeddccbbaa);
  assert.deepEqual([...bytes], [0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa]);
  assert.equal(readMac(bytes, 0), 0xffeeddccbbaa);
  assert.equal(formatMac(0x525400000001), "525400000001");
  assert.equal(formatMac(0x525400000001, ":"), "52:54:00:00:00:01");
  assert.equal(parseMac("52:54:00:00:00:01"), 0x525400000001);
  assert.equal(parseMac("525400ABCDEF"), 0x525400abcdef);
  assert.ok(Number.isNaN(parseMac("52:54:00")));
});

Deno.test("ata: 48-bit LBA little-endian, LBA28 masked to 28 bits", () => {
  const frame = new Uint8Array(60);
  encodeAta(frame, {
    aflags: AtaFlag.extended,
    feature: 0,
    sectorCount: 2,
    command: 0x24,
    lba: 0x123456789abc,
  });
  assert.deepEqual([...frame.subarray(28, 34)], [0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12]);
  const arg = decodeAta(frame);
  assert.equal(arg.lba, 0x123456789abc);
  assert.equal(arg.sectorCount, 2);
  assert.equal(arg.dataOffset, 36);
  assert.equal(arg.dataLength, 24);
  assert.equal(effectiveLba(arg.aflags, arg.lba), 0x123456789abc);
  // LBA28: lba3 carries 0xE0 | bits 24-27 (the device register).
  assert.equal(effectiveLba(0, 0xe5123456), 0x05123456);
  assert.throws(() => decodeAta(frame, 35), WireError);
  assert.throws(
    () => encodeAta(frame, { aflags: 0, feature: 0, sectorCount: 256, command: 0x20, lba: 0 }),
    WireError,
  );
  assert.throws(
    () => encodeAta(frame, { aflags: 0, feature: 0, sectorCount: 1, command: 0x20, lba: 2 ** 48 }),
    WireError,
  );
});

Deno.test("ata: sectors per frame from the MTU (docs/protocol.md §8)", () => {
  assert.equal(sectorsPerFrame(1500), 2);
  assert.equal(sectorsPerFrame(4096), 7);
  assert.equal(sectorsPerFrame(9000), 17);
  assert.equal(effectiveSectorCount(0), 2);
  assert.equal(effectiveSectorCount(17), 17);
});

Deno.test("config: round trip, string bounded by the frame", () => {
  const frame = new Uint8Array(100);
  const value = new TextEncoder().encode("hello");
  const n = encodeConfig(frame, {
    bufferCount: 64,
    firmwareVersion: 0x4019,
    sectorCount: 2,
    aoeVersion: 1,
    ccmd: 3,
    config: value,
  });
  assert.equal(n, 37);
  const arg = decodeConfig(frame, n);
  assert.equal(arg.bufferCount, 64);
  assert.equal(arg.firmwareVersion, 0x4019);
  assert.equal(arg.ccmd, 3);
  assert.equal(arg.aoeVersion, 1);
  assert.equal(new TextDecoder().decode(arg.config), "hello");
  // A length field larger than the frame yields only the bytes present.
  frame[31] = 200;
  assert.equal(decodeConfig(frame, n).config.length, 5);
  assert.equal(decodeConfig(frame, n).configLength, 200);
  assert.throws(() => decodeConfig(frame, 31), WireError);
  assert.throws(
    () =>
      encodeConfig(new Uint8Array(2000), {
        bufferCount: 0,
        firmwareVersion: 0,
        sectorCount: 0,
        aoeVersion: 1,
        ccmd: 0,
        config: new Uint8Array(1025),
      }),
    WireError,
  );
});

Deno.test("mask: directives round trip; a count past the frame is a length error", () => {
  const frame = new Uint8Array(60);
  const n = encodeMask(frame, {
    mcmd: 1,
    merror: 0,
    directives: [{ dcmd: 1, mac: 0x020000000002 }, { dcmd: 2, mac: 0x020000000003 }],
  });
  assert.equal(n, 44);
  const arg = decodeMask(frame, n);
  assert.equal(arg.mcmd, 1);
  assert.deepEqual(arg.directives, [{ dcmd: 1, mac: 0x020000000002 }, {
    dcmd: 2,
    mac: 0x020000000003,
  }]);
  frame[27] = 5;
  assert.throws(() => decodeMask(frame, n), (e) => e instanceof WireError && e.kind === "length");
});

Deno.test("reserve: MAC list round trip; NMacs past the frame is a length error", () => {
  const frame = new Uint8Array(60);
  const n = encodeReserve(frame, { rcmd: 1, macs: [0x020000000009] });
  assert.equal(n, 32);
  assert.deepEqual(decodeReserve(frame, n), { rcmd: 1, macs: [0x020000000009] });
  frame[25] = 9;
  assert.throws(() => decodeReserve(frame, n), WireError);
});

Deno.test("identify: capacity in LBA28 (capped) and LBA48 words, strings byte-swapped", () => {
  const data = new Uint8Array(512);
  const sectors = 0x123456789;
  encodeIdentify(data, {
    sectors,
    model: "Model X",
    serial: "9.0:host",
    firmware: "V1",
    writeCache: true,
    trim: true,
    trimReadsZeros: true,
  });
  const words = new DataView(data.buffer);
  assert.equal(words.getUint16(49 * 2, true) & 0x0200, 0x0200, "LBA supported");
  assert.equal(words.getUint32(60 * 2, true), 0x0fffffff, "LBA28 capacity capped");
  assert.equal(words.getUint16(83 * 2, true) & 0x0400, 0x0400, "LBA48 supported");
  assert.equal(words.getUint16(86 * 2, true) & 0x0400, 0x0400, "LBA48 enabled");
  assert.equal(Number(words.getBigUint64(100 * 2, true)), sectors);
  assert.equal(
    String.fromCharCode(data[27 * 2 + 1], data[27 * 2]),
    "Mo",
    "first char in the high byte",
  );
  const info = decodeIdentify(data);
  assert.equal(info.sectors, sectors);
  assert.equal(info.lba48, true);
  assert.equal(info.model, "Model X");
  assert.equal(info.serial, "9.0:host");
  assert.equal(info.firmware, "V1");
  assert.equal(info.writeCache, true);
  assert.equal(info.trim, true);
  encodeIdentify(data, {
    sectors: 1000,
    model: "",
    serial: "",
    firmware: "",
    writeCache: false,
    trim: false,
    trimReadsZeros: false,
  });
  assert.equal(words.getUint32(60 * 2, true), 1000);
  assert.equal(decodeIdentify(data).writeCache, false);
  assert.throws(() => decodeIdentify(new Uint8Array(100)), WireError);
});

Deno.test("crc: the check values of CRC-32 and CRC32C; each kind has its own capability bit", () => {
  const check = new TextEncoder().encode("123456789");
  assert.equal(crc32(check), 0xcbf43926);
  assert.equal(crc32c(check), 0xe3069283);
  assert.equal(dataCrc("crc32", check), 0xcbf43926);
  for (const kind of CRC_KINDS) assert.equal(grantedCrc(CRC_CAPABILITY[kind]), kind);
  assert.equal(grantedCrc(Capability.monotonicTags), undefined);
});
