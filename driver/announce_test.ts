import { memoryDriver } from "../testing/memory_driver.ts";
import assert from "node:assert/strict";
import { MemorySegment } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import { TargetServer } from "../target/server.ts";
import { BROADCAST_MAC, Command, encodeConfig, encodeHeader } from "../wire/mod.ts";

const TARGET_MAC = 0x020000000001;
const INITIATOR_MAC = 0x020000000002;

async function until(check: () => boolean, what: string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * vblade's start-up announcement as its aoead() builds it: the header zeroed,
 * then only the broadcast destination, its MAC, the ethertype, the R flag (so
 * version 0), shelf, slot and Query Config; tag 0.
 */
function vbladeAnnouncement(shelf: number, slot: number): Uint8Array {
  const frame = new Uint8Array(60);
  encodeHeader(frame, {
    dst: BROADCAST_MAC,
    src: TARGET_MAC,
    version: 0,
    response: true,
    error: false,
    errorCode: 0,
    shelf,
    slot,
    command: Command.config,
    tag: 0,
  });
  encodeConfig(frame, {
    bufferCount: 16,
    firmwareVersion: 0x4019,
    sectorCount: 2,
    aoeVersion: 1,
    ccmd: 0,
    config: new Uint8Array(0),
  });
  assert.equal(frame[14], 0x08, "only the response flag: version nibble 0");
  return frame;
}

Deno.test("driver: vblade's version-0 announcement brings the device up with no discovery", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-announce-" });
  const segment = new MemorySegment();
  const initiatorLink = segment.attach(INITIATOR_MAC, "eth1");
  const driver = memoryDriver(initiatorLink, dir);
  // The initiator starts first: its discovery broadcast finds nobody.
  driver.start();
  const server = new TargetServer(
    [new Export({ shelf: 9, slot: 4, store: new MemoryStore(2048), bufferCount: 16 })],
    [segment.attach(TARGET_MAC, "tgt0")],
  );
  try {
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(driver.initiator.devices.get(9, 4), undefined, "nothing found yet");
    server.run();
    const started = performance.now();
    initiatorLink.enqueue(vbladeAnnouncement(9, 4));
    await until(() => driver.initiator.devices.get(9, 4)?.up === true, "e9.4 up", 1000);
    assert.ok(performance.now() - started < 1000);
    assert.equal(driver.initiator.devices.get(9, 4)?.sectors, 2048);
    assert.equal(driver.initiator.devices.get(9, 4)?.firmwareVersion, 0x4019);
    assert.equal(driver.initiator.counters.malformed, 0);
  } finally {
    await driver.stop();
    await server.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("driver: what the kernel drops too is still counted malformed (short, another ethertype)", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-announce-" });
  const segment = new MemorySegment();
  const initiatorLink = segment.attach(INITIATOR_MAC, "eth1");
  const driver = memoryDriver(initiatorLink, dir, { files: false });
  driver.start();
  try {
    const short = vbladeAnnouncement(9, 4).slice(0, 20);
    const other = vbladeAnnouncement(9, 4);
    other[13] = 0x00;
    const cut = vbladeAnnouncement(9, 4).slice(0, 28); // header, but not the Query Config argument
    for (const f of [short, other, cut]) initiatorLink.enqueue(f);
    await until(() => driver.initiator.counters.received >= 3, "three frames");
    assert.equal(driver.initiator.counters.malformed, 3);
    assert.equal(driver.initiator.devices.get(9, 4), undefined);
  } finally {
    await driver.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});
