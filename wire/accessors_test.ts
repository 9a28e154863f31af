import assert from "node:assert/strict";
import {
  AOE_VERSION,
  AoeError,
  checkHeader,
  Command,
  DSM_ENTRIES_PER_BLOCK,
  DSM_MAX_SECTORS,
  encodeAta,
  encodeConfig,
  encodeDsmRanges,
  encodeHeader,
  encodeMask,
  encodeRequestHeader,
  isError,
  isResponse,
  readAtaCommand,
  readAtaFlags,
  readAtaSectorCount,
  readBufferCount,
  readCommand,
  readConfigCommand,
  readConfigLength,
  readConfigSectorCount,
  readDestination,
  readDirectiveCommand,
  readDirectiveCount,
  readDirectiveMac,
  readDsmLba,
  readDsmSectors,
  readErrorCode,
  readFirmwareVersion,
  readMaskCommand,
  readShelf,
  readSlot,
  readSource,
  readVersion,
  setAoeError,
  writeDsmEntry,
} from "./mod.ts";

const request = { dst: 0x525400000001, src: 0x525400000002, shelf: 9, slot: 3, tag: 7 };

Deno.test("accessors: header fields read as encoded", () => {
  const frame = new Uint8Array(60);
  encodeHeader(frame, {
    ...request,
    version: AOE_VERSION,
    response: true,
    error: false,
    errorCode: 0,
    command: Command.config,
  });
  setAoeError(frame, AoeError.badArgument);
  assert.equal(readDestination(frame), request.dst);
  assert.equal(readSource(frame), request.src);
  assert.equal(readVersion(frame), 1);
  assert.equal(isResponse(frame), true);
  assert.equal(isError(frame), true);
  assert.equal(readErrorCode(frame), AoeError.badArgument);
  assert.equal(readShelf(frame), 9);
  assert.equal(readSlot(frame), 3);
  assert.equal(readCommand(frame), Command.config);
});

Deno.test("checkHeader: one reason, in the order short, ethertype, direction, version", () => {
  const frame = new Uint8Array(60);
  encodeRequestHeader(frame, { ...request, command: Command.ata });
  assert.equal(checkHeader(frame, 60, false), undefined);
  assert.equal(checkHeader(frame, 23, false), "short");
  assert.equal(checkHeader(new Uint8Array(10), 60, false), "short");
  assert.equal(checkHeader(frame, 60, true), "direction");
  frame[14] = 0x20; // version 2, a request
  assert.equal(checkHeader(frame, 60, false), "version");
  frame[13] = 0x00;
  assert.equal(checkHeader(frame, 60, false), "ethertype");
});

Deno.test("accessors: ATA, Query Config and MAC mask arguments read as encoded", () => {
  const frame = new Uint8Array(128);
  encodeAta(frame, { aflags: 0x41, feature: 0, sectorCount: 17, command: 0x34, lba: 5 });
  assert.equal(readAtaFlags(frame), 0x41);
  assert.equal(readAtaSectorCount(frame), 17);
  assert.equal(readAtaCommand(frame), 0x34);
  encodeConfig(frame, {
    bufferCount: 300,
    firmwareVersion: 0x4100,
    sectorCount: 17,
    aoeVersion: 1,
    ccmd: 3,
    config: new TextEncoder().encode("rack"),
  });
  assert.equal(readBufferCount(frame), 300);
  assert.equal(readFirmwareVersion(frame), 0x4100);
  assert.equal(readConfigSectorCount(frame), 17);
  assert.equal(readConfigCommand(frame), 3);
  assert.equal(readConfigLength(frame), 4);
  encodeMask(frame, {
    mcmd: 1,
    merror: 0,
    directives: [{ dcmd: 1, mac: 0x0a0b0c0d0e0f }, { dcmd: 2, mac: 0x525400abcdef }],
  });
  assert.equal(readMaskCommand(frame), 1);
  assert.equal(readDirectiveCount(frame), 2);
  assert.equal(readDirectiveCommand(frame, 1), 2);
  assert.equal(readDirectiveMac(frame, 0), 0x0a0b0c0d0e0f);
  assert.equal(readDirectiveMac(frame, 1), 0x525400abcdef);
});

Deno.test("dsm: ranges cut at 65535 sectors, 64 entries a block, 48-bit little-endian LBAs", () => {
  const lba = 0x123456789a;
  const sectors = DSM_MAX_SECTORS * 70 + 5;
  const data = encodeDsmRanges(lba, sectors);
  assert.equal(data.length, 2 * 512); // 71 entries: two blocks
  let at = lba;
  let total = 0;
  for (let i = 0; i < 2 * DSM_ENTRIES_PER_BLOCK; i++) {
    const n = readDsmSectors(data, i);
    if (n === 0) continue;
    assert.equal(readDsmLba(data, i), at);
    at += n;
    total += n;
  }
  assert.equal(total, sectors);
  // The byte layout itself: LBA bytes 0-5 and count bytes 6-7, little-endian.
  const one = new Uint8Array(8);
  writeDsmEntry(one, 0, { lba: 0x060504030201, sectors: 0x0807 });
  assert.deepEqual([...one], [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(encodeDsmRanges(0, 0).length, 0);
});
