import { memoryDriver } from "../testing/memory_driver.ts";
import assert from "node:assert/strict";
import { HOLD, MemorySegment } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import { TargetServer } from "../target/server.ts";
import { Driver } from "./driver.ts";
import { type DriverParams } from "./params.ts";

const TARGET_MAC = 0x020000000001;
const INITIATOR_MAC = 0x020000000002;

interface Rig {
  driver: Driver;
  store: MemoryStore;
  server: TargetServer;
  segment: MemorySegment;
  dir: string;
}

async function withRig(
  fn: (rig: Rig) => Promise<void>,
  options: { params?: Partial<DriverParams>; mtu?: number; bufferCount?: number } = {},
) {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-driver-" });
  const segment = new MemorySegment({ mtu: options.mtu ?? 1500 });
  const store = new MemoryStore(4096);
  const server = new TargetServer(
    [new Export({ shelf: 9, slot: 0, store, bufferCount: options.bufferCount ?? 16 })],
    [segment.attach(TARGET_MAC, "tgt0")],
  );
  server.run();
  const initiatorLink = segment.attach(INITIATOR_MAC, "eth1");
  const driver = memoryDriver(initiatorLink, dir, { params: options.params });
  driver.start();
  try {
    await fn({ driver, store, server, segment, dir });
  } finally {
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

Deno.test("driver: discovery finds e9.0, IDENTIFY gives its size, sysfs shows it up", async () => {
  await withRig(async ({ driver, dir }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    const d = `${dir}/run/sys/block/etherd!e9.0`;
    // The tree is written lazily, within SYSFS_FLUSH_MS of the change.
    await until(
      () => {
        try {
          return Deno.readTextFileSync(`${d}/state`) === "up\n";
        } catch {
          return false;
        }
      },
      "the state file says up",
      1000,
    );
    assert.equal(Deno.readTextFileSync(`${d}/state`), "up\n");
    assert.equal(Deno.readTextFileSync(`${d}/size`), "4096\n");
    assert.equal(Deno.readTextFileSync(`${d}/mac`), "020000000001\n");
    assert.equal(Deno.readTextFileSync(`${d}/netif`), "eth1\n");
    assert.equal(Deno.readTextFileSync(`${d}/payload`), "1024\n");
    assert.equal(Deno.readTextFileSync(`${d}/firmware-version`), "0x4100\n");
    assert.equal(
      Deno.readTextFileSync(`${dir}/run/sys/module/aoe/parameters/aoe_deadsecs`),
      "180\n",
    );
  });
});

Deno.test("driver: block writes and reads many requests in flight; bytes equal", async () => {
  await withRig(async ({ driver, store }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    const dev = driver.blockDevice("e9.0")!;
    assert.equal(dev.size, 4096 * 512);
    const chunks = Array.from(
      { length: 16 },
      (_, i) => crypto.getRandomValues(new Uint8Array(64 * 1024)).map((b) => b ^ i),
    );
    await Promise.all(chunks.map((c, i) => dev.write(i * 65536, c)));
    for (let i = 0; i < 16; i++) {
      assert.deepEqual(store.data.subarray(i * 65536, (i + 1) * 65536), chunks[i]);
    }
    const back = await Promise.all(chunks.map((_, i) => dev.read(i * 65536, 65536)));
    back.forEach((b, i) => assert.deepEqual(b, chunks[i]));
    await dev.flush();
    assert.ok(store.flushes >= 1, "FLUSH CACHE reached the target");
    const before = store.flushes;
    await dev.write(0, new Uint8Array(512).fill(7), { fua: true });
    assert.ok(store.flushes > before, "FUA write flushed");
    await assert.rejects(() => dev.read(4096 * 512, 512), RangeError);
  }, { mtu: 9000 });
});

Deno.test("driver: lost frames are retransmitted and reported on err; data still right", async () => {
  let drop = 0;
  await withRig(async ({ driver, segment, dir }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    const device = driver.initiator.devices.get(9, 0)!;
    const dev = driver.blockDevice("e9.0")!;
    // Train the RTT estimate as traffic would, so the timeout falls from the fresh 16.5 s.
    for (let i = 0; i < 60; i++) await dev.read(0, 4096);
    assert.ok(driver.initiator.rto(device) < 3_000_000, `rto ${driver.initiator.rto(device)} µs`);
    let n = 0;
    segment.impair = (frame) =>
      (frame[14] & 0x08) === 0 && frame[19] === 0 && n++ % 5 === 1 ? (drop++, 0) : 1;
    const data = crypto.getRandomValues(new Uint8Array(32 * 1024));
    await dev.write(8192, data);
    assert.deepEqual(await dev.read(8192, data.length), data);
    segment.impair = undefined;
    assert.ok(drop > 0);
    assert.ok(
      driver.initiator.counters.retransmits >= drop,
      `${driver.initiator.counters.retransmits} retransmits for ${drop} drops`,
    );
    const err = await Deno.open(`${dir}/dev/err`, { read: true });
    const buf = new Uint8Array(4096);
    const got = new TextDecoder().decode(buf.subarray(0, (await err.read(buf)) ?? 0));
    err.close();
    assert.match(
      got,
      /^ {5}retransmit e9\.0 oldtag=[0-9a-f]{8}@[0-9a-f]{8} newtag=[0-9a-f]{8} s=020000000002 d=020000000001 nout=\d+$/m,
    );
  });
});

Deno.test("driver: a silent target goes down after aoe_deadsecs; pending reads fail; revalidate brings it back", async () => {
  await withRig(async ({ driver, segment, server }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    const device = driver.initiator.devices.get(9, 0)!;
    const dev = driver.blockDevice("e9.0")!;
    for (let i = 0; i < 300; i++) await dev.read(0, 1024);
    segment.impair = (frame) => ((frame[14] & 0x08) !== 0 ? 0 : 1); // every response lost
    const started = Date.now();
    await assert.rejects(() => dev.read(0, 4096), /not up/);
    assert.ok(Date.now() - started >= 1000, "waited aoe_deadsecs");
    assert.equal(device.state, "down");
    segment.impair = undefined;
    driver.revalidate("e9.0");
    await until(() => device.up, "e9.0 up again");
    assert.equal((await dev.read(0, 512)).length, 512);
    void server;
  }, { params: { deadsecs: 1 } });
});

Deno.test("driver: an aoe_iflist file caught empty mid-write is not taken; the written list is", async () => {
  await withRig(async ({ driver }) => {
    const file = driver.sysfs.iflistPath;
    Deno.writeTextFileSync(file, ""); // truncated, its data not yet written
    await new Promise((r) => setTimeout(r, 300)); // three ticks
    assert.deepEqual(driver.params.iflist, ["eth9"], "the list is unchanged");
    Deno.writeTextFileSync(file, "eth1 eth9\n");
    await until(() => driver.params.iflist.length === 2, "the written list taken");
    assert.equal(Deno.readTextFileSync(file), "eth1 eth9\n");
  }, { params: { iflist: ["eth9"] } });
});

Deno.test("driver: frames on an interface outside aoe_iflist are ignored", async () => {
  await withRig(async ({ driver }) => {
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(driver.initiator.devices.get(9, 0), undefined, "nothing discovered on eth1");
    assert.equal(driver.links.size, 0, "no link opened on eth1");
    driver.setInterfaces("eth1");
    driver.discover();
    await until(
      () => driver.initiator.devices.get(9, 0)?.up === true,
      "e9.0 up after allowing eth1",
    );
  }, { params: { iflist: ["eth9"] } });
});

Deno.test("driver: duplication, reordering and delay on the link; the same bytes come back", async () => {
  await withRig(async ({ driver, segment, store }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    const dev = driver.blockDevice("e9.0")!;
    let n = 0;
    segment.impair = () => {
      n++;
      if (n % 7 === 0) return 2; // duplicate
      if (n % 5 === 0) return HOLD; // reorder behind the next frame
      return 1;
    };
    segment.delayMs = 2;
    const data = new Uint8Array(256 * 1024).map((_, i) => (i * 7919) >> 3);
    await dev.write(0, data);
    assert.deepEqual(store.data.subarray(0, data.length), data);
    assert.deepEqual(await dev.read(0, data.length), data);
    assert.ok(
      driver.initiator.counters.unexpected > 0,
      "duplicates were seen and dropped as unexpected responses",
    );
  });
});

/** Overwrites IDENTIFY words of the rig's export (word n is bytes 2n, 2n+1, little-endian). */
function setIdentifyWords(server: TargetServer, words: Record<number, number>) {
  const identify = server.exports[0].identify;
  for (const [word, value] of Object.entries(words)) {
    identify[Number(word) * 2] = value & 0xff;
    identify[Number(word) * 2 + 1] = value >> 8;
  }
}

Deno.test("driver: a target claiming 2^50 sectors is capped at what LBA48 addresses; a read past it is refused before any frame", async () => {
  await withRig(async ({ driver, server }) => {
    setIdentifyWords(server, { 100: 0, 101: 0, 102: 0, 103: 0x0004 }); // 2^50 sectors
    driver.discover();
    await until(() => (driver.initiator.devices.get(9, 0)?.sectors ?? 4096) !== 4096, "new size");
    const dev = driver.blockDevice("e9.0")!;
    assert.equal(dev.size, 2 ** 48 * 512, "capacity capped at 2^48 sectors");
    await assert.rejects(() => dev.read(2 ** 58, 512), RangeError);
    await assert.rejects(
      () => driver.initiator.submit(dev.device, { kind: "read", lba: 2 ** 50, sectors: 1 }),
      RangeError,
    );
    await assert.rejects(
      () => driver.initiator.submit(dev.device, { kind: "read", lba: Number.NaN, sectors: 1 }),
      RangeError,
    );
    assert.equal(
      driver.initiator.outstandingFrames,
      0,
      "no frame registered for a refused request",
    );
    // Past aoe_deadsecs nothing orphaned fails, and the device still serves.
    await new Promise((r) => setTimeout(r, 1300));
    assert.equal(dev.up, true);
    assert.equal((await dev.read(0, 512)).length, 512);
  }, { params: { deadsecs: 1 } });
});

Deno.test("driver: without LBA48 the capacity is capped at 0x0FFFFFFF sectors and no request aliases past 2^28", async () => {
  await withRig(async ({ driver, server, store }) => {
    // No LBA48 bit in words 83 and 86; words 60-61 claim 0x10000100 sectors.
    setIdentifyWords(server, { 60: 0x0100, 61: 0x1000, 83: 0x7000, 86: 0x3000 });
    driver.discover();
    await until(() => driver.initiator.devices.get(9, 0)?.identity?.lba48 === false, "LBA28");
    const dev = driver.blockDevice("e9.0")!;
    assert.equal(dev.device.sectors, 0x0fffffff, "28-bit capacity capped");
    const before = store.data.slice(5 * 512, 6 * 512);
    await assert.rejects(() => dev.write(0x10000005 * 512, new Uint8Array(512).fill(0xee)));
    await assert.rejects(
      () =>
        driver.initiator.submit(dev.device, {
          kind: "write",
          lba: 0x0fffffff,
          sectors: 2,
          data: new Uint8Array(1024),
        }),
      RangeError,
    );
    assert.deepEqual(store.data.slice(5 * 512, 6 * 512), before, "sector 5 untouched");
    assert.equal(driver.initiator.outstandingFrames, 0);
  });
});

/** A Query Config answer as a target would send it, from `mac`, for shelf.slot. */
function configAnswer(shelf: number, slot: number, mac: number): Uint8Array {
  const frame = new Uint8Array(60);
  const view = new DataView(frame.buffer);
  view.setUint16(0, Math.floor(INITIATOR_MAC / 2 ** 32));
  view.setUint32(2, INITIATOR_MAC % 2 ** 32);
  view.setUint16(6, Math.floor(mac / 2 ** 32));
  view.setUint32(8, mac % 2 ** 32);
  view.setUint16(12, 0x88a2);
  frame[14] = 0x18; // version 1, response
  view.setUint16(16, shelf);
  frame[18] = slot;
  frame[19] = 1; // Query Config
  view.setUint16(24, 16); // buffer count
  frame[28] = 2; // sectors per command
  frame[29] = 0x10;
  return frame;
}

Deno.test("driver: spoofed Query Config answers cannot grow the device table without bound", async () => {
  await withRig(async ({ driver }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    const link = driver.links.get("eth1")!;
    for (let shelf = 100; shelf < 1100; shelf++) {
      const frame = configAnswer(shelf, 1, 0x02000000aa00 + (shelf & 0xff));
      driver.receive(frame, frame.length, link);
    }
    const { devices, counters } = driver.initiator;
    // aoe_maxdevs=40 bounds the table; e9.0 holds one entry.
    assert.equal(devices.list().length, 40);
    assert.equal(counters.refusedDevices, 1000 - 39);
    assert.ok(driver.messages.some((m) => /not added \(aoe_maxdevs=40/.test(m)));
    // Known devices are still answered: e9.0 keeps working.
    assert.equal((await driver.blockDevice("e9.0")!.read(0, 512)).length, 512);
  }, { params: { maxdevs: 40 } });
  await withRig(async ({ driver }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    const link = driver.links.get("eth1")!;
    // Answers to a discovery of ours (echoing its tag) are taken up to aoe_maxdevs; these
    // carry tag 0, as announcements and forgeries do, and are held to the rate limit, even
    // right after a discovery.
    assert.ok(driver.initiator.recovery.open(performance.now()), "a discovery's window is open");
    for (let shelf = 100; shelf < 1100; shelf++) {
      const frame = configAnswer(shelf, 1, 0x02000000aa00);
      driver.receive(frame, frame.length, link);
    }
    // Under the default bound, a burst is held to the rate limit.
    const created = driver.initiator.devices.list().length - 1;
    assert.ok(created >= 60 && created <= 70, `${created} devices created by one burst`);
    assert.equal(driver.initiator.counters.refusedDevices, 1000 - created);
  });
});

Deno.test("driver: an error while handling one frame is counted and logged once; the loop goes on", async () => {
  await withRig(async ({ driver, segment }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    driver.onDeviceChange = () => {
      throw new Error("boom");
    };
    const spoofer = segment.attach(0x0200000000cc, "spoof0");
    for (let i = 0; i < 3; i++) {
      const frame = configAnswer(77, i, 0x0200000000cc);
      spoofer.txSlot().set(frame);
      spoofer.commit(frame.length);
      spoofer.flush();
    }
    await until(() => driver.failures.frame >= 3, "three failed frames");
    assert.equal(driver.messages.filter((m) => /error handling a frame/.test(m)).length, 1);
    driver.onDeviceChange = undefined;
    assert.equal((await driver.blockDevice("e9.0")!.read(0, 512)).length, 512, "still serving");
  });
});

Deno.test("driver: shutting down answers outstanding writes and flushes them to the target first", async () => {
  const { drainDriver } = await import("./daemon.ts");
  await withRig(async ({ driver, segment, store }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    segment.delayMs = 200;
    const data = new Uint8Array(16 * 1024).fill(0x5a);
    const flushesBefore = store.flushes;
    let settled = "pending";
    const writing = driver.blockDevice("e9.0")!.write(4096, data).then(
      () => settled = "written",
      (error) => settled = `failed: ${error.message}`,
    );
    await drainDriver(driver, 10_000);
    await driver.stop(); // as the daemon does next
    await writing;
    assert.equal(settled, "written");
    assert.deepEqual(store.data.subarray(4096, 4096 + data.length), data);
    assert.ok(store.flushes > flushesBefore, "a final FLUSH CACHE reached the target");
  });
});

Deno.test("driver: a send that throws fails its request and leaves nothing queued to be rejected unheard", async () => {
  await withRig(async ({ driver }) => {
    await until(() => driver.initiator.devices.get(9, 0)?.up === true, "e9.0 up");
    const link = driver.links.get("eth1")!;
    const txSlot = link.txSlot;
    link.txSlot = () => {
      throw new Error("link gone");
    };
    await assert.rejects(() => driver.blockDevice("e9.0")!.read(0, 512), /link gone/);
    link.txSlot = txSlot;
    assert.equal(driver.initiator.queuedRequests, 0, "no orphaned request");
    assert.equal((await driver.blockDevice("e9.0")!.read(0, 512)).length, 512);
  });
});

Deno.test("driver: the daemon's last resort logs an unhandled rejection and an uncaught error and keeps the process", async () => {
  const { installLastResort } = await import("./daemon.ts");
  await withRig(async ({ driver }) => {
    const lastResort = installLastResort(driver);
    try {
      Promise.reject(new Error("nobody listens"));
      setTimeout(() => {
        throw new Error("nobody catches");
      }, 0);
      await until(
        () => driver.messages.some((m) => m === "aoe: uncaught error: nobody catches"),
        "the uncaught error logged",
      );
      assert.ok(driver.messages.includes("aoe: unhandled rejection: nobody listens"));
    } finally {
      lastResort.remove();
    }
  });
});
