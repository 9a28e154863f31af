/**
 * Query Config answers for one known device from many spoofed source MACs:
 * each used to add a target path (and an IDENTIFY) without bound, and the
 * device's I/O was then spread over paths that do not exist.
 */
import { memoryDriver } from "../testing/memory_driver.ts";
import assert from "node:assert/strict";
import { MemorySegment } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import { TargetServer } from "../target/server.ts";
import { BROADCAST_MAC, Command, encodeConfig, encodeHeader } from "../wire/mod.ts";
import { MAX_TARGET_PATHS } from "./commands.ts";

const TARGET_MAC = 0x020000000001;
const INITIATOR_MAC = 0x020000000002;

function answer(src: number): Uint8Array {
  const frame = new Uint8Array(60);
  encodeHeader(frame, {
    dst: BROADCAST_MAC,
    src,
    version: 1,
    response: true,
    error: false,
    errorCode: 0,
    shelf: 9,
    slot: 4,
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
  return frame;
}

Deno.test("initiator: spoofed Query Config answers for a known device add at most MAX_TARGET_PATHS paths, counted", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-spoof-" });
  const segment = new MemorySegment();
  const initiatorLink = segment.attach(INITIATOR_MAC, "eth1");
  const driver = memoryDriver(initiatorLink, dir);
  const server = new TargetServer(
    [new Export({ shelf: 9, slot: 4, store: new MemoryStore(2048), bufferCount: 16 })],
    [segment.attach(TARGET_MAC, "tgt0")],
  );
  server.run();
  driver.start();
  try {
    const deadline = Date.now() + 3000;
    while (driver.initiator.devices.get(9, 4)?.up !== true && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(driver.initiator.devices.get(9, 4)?.up, true);
    const frames = 5000;
    for (let i = 0; i < frames; i++) {
      initiatorLink.enqueue(answer(0x0a0000000000 + i));
      if (i % 100 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await new Promise((r) => setTimeout(r, 500));
    const paths = driver.initiator.devices.get(9, 4)!.targets.length;
    assert.equal(
      paths,
      MAX_TARGET_PATHS,
      `${paths} target paths on e9.4 after ${frames} spoofed answers`,
    );
    assert.equal(driver.initiator.counters.refusedPaths, frames - (MAX_TARGET_PATHS - 1));
  } finally {
    await driver.stop();
    await server.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});
