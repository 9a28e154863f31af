import { memoryDriver } from "../testing/memory_driver.ts";
import assert from "node:assert/strict";
import { type Impairment, MemorySegment } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import type { ExtensionPolicy } from "../target/extensions.ts";
import { TargetServer } from "../target/server.ts";
import { AtaOp, Command, CRC_KINDS, EXTENSION_COMMAND, readTag } from "../wire/mod.ts";
import { Driver } from "./driver.ts";
import { type DriverParams } from "./params.ts";

const TARGET_MAC = 0x020000000001;
const INITIATOR_MAC = 0x020000000002;

interface Rig {
  dir: string;
  driver: Driver;
  store: MemoryStore;
  device: Export;
  server: TargetServer;
  segment: MemorySegment;
  errors: string[];
}

async function withRig(
  fn: (rig: Rig) => Promise<void>,
  options: {
    params?: Partial<DriverParams>;
    policy?: ExtensionPolicy;
    impair?: Impairment;
    mtu?: number;
  } = {},
) {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-ext-" });
  const segment = new MemorySegment({ mtu: options.mtu ?? 1500 });
  const store = new MemoryStore(4096);
  const logs: string[] = [];
  const device = new Export({
    shelf: 9,
    slot: 0,
    store,
    bufferCount: 16,
    extensions: options.policy,
  });
  (device.extensions as { log: (line: string) => void }).log = (line) => logs.push(line);
  const server = new TargetServer([device], [segment.attach(TARGET_MAC, "tgt0")]);
  server.run();
  const initiatorLink = segment.attach(INITIATOR_MAC, "eth1");
  const driver = memoryDriver(initiatorLink, dir, { params: options.params, files: false });
  const errors: string[] = [];
  (driver.initiator.hooks as { error: (line: string) => void }).error = (line) => errors.push(line);
  driver.start();
  try {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    // Warm the RTT estimate so a retransmission comes in milliseconds, not seconds.
    const warm = driver.blockDevice("e9.0")!;
    for (let i = 0; i < 200; i++) await warm.read(0, 1024);
    device.extensions.counters.duplicatesDropped = 0;
    segment.impair = options.impair;
    await fn({ dir, driver, store, device, server, segment, errors });
  } finally {
    segment.impair = undefined;
    await driver.stop();
    await server.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}

async function until(check: () => boolean, what: string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function pattern(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return out;
}

/** Flips one bit in the data of every `every`-th ATA frame carrying data (from either side). */
function flipper(every: number, counter = { n: 0 }): Impairment {
  return (frame) => {
    if (frame[19] === Command.ata && frame.length > 36 + 512) {
      if (++counter.n % every === 0) frame[36 + 100] ^= 0x10;
    }
    return 1;
  };
}

Deno.test("extensions: the initiator declares tags and CRC-32 (the default); the target grants them", async () => {
  await withRig(async ({ driver, device }) => {
    await until(() => device.extensions.sessions().length === 1, "a session");
    const s = device.extensions.sessions()[0];
    assert.equal(s.trackRx, true);
    assert.equal(s.trackWrite, true);
    assert.equal(s.crc, "crc32");
    const target = driver.initiator.devices.get(9, 0)!.targets[0];
    await until(
      () => driver.initiator.extensions.crcFor(target, driver.links.get("eth1")!) !== undefined,
      "active",
    );
    const dev = driver.blockDevice("e9.0")!;
    const data = pattern(64 * 1024, 1);
    await dev.write(0, data);
    assert.deepEqual(await dev.read(0, data.length), data);
    assert.ok(s.counters.crcWrites >= 64 && s.counters.crcReads >= 64, JSON.stringify(s.counters));
  });
});

Deno.test("extensions: bit flips in data come back wrong unprotected, right with CRC (retries counted)", async () => {
  // Unprotected: aoe_crc=none, the corruption reaches the disk and the reader.
  await withRig(async ({ driver, store }) => {
    const dev = driver.blockDevice("e9.0")!;
    const data = pattern(32 * 1024, 2);
    await dev.write(0, data);
    assert.notDeepEqual(store.data.subarray(0, data.length), data, "the flip reached the disk");
    store.data.set(data, 0);
    assert.notDeepEqual(await dev.read(0, data.length), data, "the flip reached the reader");
  }, { params: { crc: "none" }, impair: flipper(5) });
  for (const crc of CRC_KINDS) {
    await withRig(async ({ driver, store, device, errors }) => {
      const target = driver.initiator.devices.get(9, 0)!.targets[0];
      await until(
        () => driver.initiator.extensions.crcFor(target, driver.links.get("eth1")!) === crc,
        "active",
      );
      const dev = driver.blockDevice("e9.0")!;
      const data = pattern(32 * 1024, 3);
      await dev.write(0, data);
      assert.deepEqual(
        store.data.subarray(0, data.length),
        data,
        `${crc}: the disk holds the data`,
      );
      assert.deepEqual(await dev.read(0, data.length), data, `${crc}: the reader gets the data`);
      const c = driver.initiator.extensions.counters;
      assert.ok(c.crcWriteErrors > 0 && c.crcReadErrors > 0, JSON.stringify(c));
      assert.ok(device.extensions.counters.crcWriteErrors === c.crcWriteErrors);
      assert.ok(errors.some((line) => line.includes("crc mismatch") && line.includes("write")));
      assert.ok(errors.some((line) => line.includes("crc mismatch") && line.includes("read")));
    }, { params: { crc }, impair: flipper(5) });
  }
});

Deno.test("extensions: duplicated requests are dropped once declared, answered twice when not", async () => {
  const duplicate: Impairment = (
    frame,
  ) => (frame[14] & 0x08 ? 1 : frame[19] === Command.ata ? 2 : 1);
  await withRig(async ({ driver, device }) => {
    const dev = driver.blockDevice("e9.0")!;
    const data = pattern(16 * 1024, 4);
    await dev.write(0, data);
    assert.deepEqual(await dev.read(0, data.length), data);
    assert.ok(device.extensions.counters.duplicatesDropped >= 32);
    assert.equal(driver.initiator.counters.unexpected, 0, "no second answers");
  }, { impair: duplicate });
  await withRig(async ({ driver, device }) => {
    const dev = driver.blockDevice("e9.0")!;
    const data = pattern(16 * 1024, 5);
    await dev.write(0, data);
    assert.deepEqual(await dev.read(0, data.length), data);
    assert.equal(device.extensions.counters.duplicatesDropped, 0);
    assert.equal(
      device.extensions.sessions().length,
      0,
      "a kernel-like initiator is never tracked",
    );
    assert.ok(driver.initiator.counters.unexpected > 0, "each duplicate answered");
  }, { impair: duplicate, params: { tags: "kernel", crc: "none" } });
});

Deno.test("extensions: lost write replies are retransmitted under new tags and not refused", async () => {
  let dropped = 0;
  const dropReplies: Impairment = (frame) => {
    if (frame[14] & 0x08 && frame[19] === Command.ata && dropped < 1 && frame[27] === 0x40) {
      dropped++;
      return 0;
    }
    return 1;
  };
  await withRig(async ({ driver, store, device }) => {
    const dev = driver.blockDevice("e9.0")!;
    const data = pattern(8 * 1024, 6);
    await dev.write(0, data);
    assert.deepEqual(store.data.subarray(0, data.length), data);
    assert.ok(driver.initiator.counters.retransmits >= 1);
    assert.equal(device.extensions.counters.staleWritesRefused, 0);
  }, { impair: dropReplies });
});

Deno.test("extensions: an old write arriving after a newer one to the same sectors is refused", async () => {
  // Hold the first write frame back, and let it arrive only after a newer write to the same sector.
  let held: Uint8Array | undefined;
  let armed = true;
  const segmentRef: { seg?: MemorySegment } = {};
  const holdFirstWrite: Impairment = (frame) => {
    if (
      armed && !(frame[14] & 0x08) && frame[19] === Command.ata &&
      frame[27] === AtaOp.writeSectorsExt
    ) {
      armed = false;
      held = frame.slice();
      return 0;
    }
    return 1;
  };
  await withRig(async ({ driver, store, device, segment }) => {
    segmentRef.seg = segment;
    const dev = driver.blockDevice("e9.0")!;
    const old = pattern(1024, 7);
    const newer = pattern(1024, 8);
    await dev.write(0, old); // its first frame is held; the retransmission (new tag) lands
    await dev.write(0, newer);
    assert.deepEqual(store.data.subarray(0, 1024), newer);
    // Now the delayed original arrives.
    assert.ok(held, "a write was held");
    const tgt = segment.ports[0];
    tgt.enqueue(held!);
    await until(() => device.extensions.counters.staleWritesRefused === 1, "refused");
    assert.deepEqual(store.data.subarray(0, 1024), newer, "the newer data survive");
    assert.ok(readTag(held!) < 0x80000000);
  }, { impair: holdFirstWrite });
});

Deno.test("extensions: against a target that does not know them (vblade's answer), plain AoE", async () => {
  await withRig(async ({ driver, device }) => {
    const target = driver.initiator.devices.get(9, 0)!.targets[0];
    await until(() => driver.initiator.extensions.counters.unsupported === 1, "unsupported");
    assert.equal(driver.initiator.extensions.crcFor(target, driver.links.get("eth1")!), undefined);
    const dev = driver.blockDevice("e9.0")!;
    const data = pattern(16 * 1024, 9);
    await dev.write(0, data);
    assert.deepEqual(await dev.read(0, data.length), data);
    assert.ok(device.counters.unknownCommand >= 1);
    assert.equal(EXTENSION_COMMAND, 0xf0);
  }, { policy: { enabled: false } });
});

Deno.test("extensions: --track-rx forces tracking for a named MAC only", async () => {
  const duplicate: Impairment = (
    frame,
  ) => (frame[14] & 0x08 ? 1 : frame[19] === Command.ata ? 2 : 1);
  await withRig(async ({ driver, device }) => {
    const dev = driver.blockDevice("e9.0")!;
    await dev.write(0, pattern(4096, 10));
    assert.ok(device.extensions.counters.duplicatesDropped >= 4);
  }, {
    impair: duplicate,
    params: { tags: "counter", crc: "none" },
    policy: { enabled: false, forceRx: [INITIATOR_MAC] },
  });
  await withRig(async ({ driver, device }) => {
    const dev = driver.blockDevice("e9.0")!;
    await dev.write(0, pattern(4096, 11));
    assert.equal(device.extensions.counters.duplicatesDropped, 0);
  }, {
    impair: duplicate,
    params: { tags: "kernel", crc: "none" },
    policy: { forceRx: [0x020000000099] },
  });
});

Deno.test("extensions: CRC at MTU 9000 (17 sectors and the CRC fit a frame), corruption retried", async () => {
  await withRig(async ({ driver, store }) => {
    const device = driver.initiator.devices.get(9, 0)!;
    assert.equal(device.payload, 17 * 512);
    const target = device.targets[0];
    await until(
      () => driver.initiator.extensions.crcFor(target, driver.links.get("eth1")!) === "crc32",
      "active",
    );
    const dev = driver.blockDevice("e9.0")!;
    const data = pattern(17 * 512 * 20, 12);
    await dev.write(0, data);
    assert.deepEqual(store.data.subarray(0, data.length), data);
    assert.deepEqual(await dev.read(0, data.length), data);
    const c = driver.initiator.extensions.counters;
    assert.ok(c.crcWriteErrors > 0 && c.crcReadErrors > 0, JSON.stringify(c));
  }, { mtu: 9000, impair: flipper(7) });
});

Deno.test("extensions: a restarted target that forgot the declaration is declared to again; reads go on", async () => {
  await withRig(async ({ driver, store, server, segment }) => {
    const dev = driver.blockDevice("e9.0")!;
    const data = pattern(16 * 1024, 13);
    await dev.write(0, data);
    const target = driver.initiator.devices.get(9, 0)!.targets[0];
    assert.equal(driver.initiator.extensions.crcFor(target, driver.links.get("eth1")!), "crc32");
    // The target process restarts: same MAC, same image, no sessions; it does not announce.
    await server.stop();
    segment.ports[0].close();
    const restarted = new Export({ shelf: 9, slot: 0, store, bufferCount: 16 });
    (restarted.extensions as { log: (line: string) => void }).log = () => {};
    const again = new TargetServer([restarted], [segment.attach(TARGET_MAC, "tgt0")]);
    again.run();
    try {
      assert.deepEqual(await dev.read(0, data.length), data);
      assert.ok(driver.initiator.extensions.counters.redeclarations >= 1);
      assert.equal(restarted.extensions.sessions().length, 1, "declared again");
      assert.ok(restarted.extensions.counters.crcReads > 0, "and protected again");
    } finally {
      await again.stop();
    }
  });
});
