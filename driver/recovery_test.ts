/**
 * A discovery burst larger than the receive queue (docs/driver.md §2): the
 * answers dropped are asked for again, by slot and spread in time, until
 * every device is up; with nothing dropped nothing is asked again.
 */
import { memoryDriver } from "../testing/memory_driver.ts";
import assert from "node:assert/strict";
import { MemorySegment } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import { TargetServer } from "../target/server.ts";
import { Driver } from "./driver.ts";

const SHELVES = 10;
const SLOTS = 20;

async function withBurst(
  rxQueue: number,
  fn: (driver: Driver, segment: MemorySegment) => Promise<void>,
) {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-recovery-" });
  const segment = new MemorySegment({ rxQueue });
  const exports: Export[] = [];
  for (let shelf = 1; shelf <= SHELVES; shelf++) {
    for (let slot = 0; slot < SLOTS; slot++) {
      exports.push(new Export({ shelf, slot, store: new MemoryStore(64), bufferCount: 16 }));
    }
  }
  const server = new TargetServer(exports, [segment.attach(0x020000000001, "tgt0")]);
  server.run();
  const link = segment.attach(0x020000000002, "eth1");
  const driver = memoryDriver(link, dir, { files: false });
  driver.start();
  try {
    await fn(driver, segment);
  } finally {
    await driver.stop();
    await server.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}

function upCount(driver: Driver): number {
  return driver.initiator.devices.list().filter((d) => d.up).length;
}

async function allUp(driver: Driver, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (upCount(driver) < SHELVES * SLOTS) {
    if (performance.now() - started > timeoutMs) {
      throw new Error(`${upCount(driver)} of ${SHELVES * SLOTS} up after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - started;
}

Deno.test("recovery: 200 answers into a 32-frame receive queue; the dropped ones are asked again and every device comes up", async () => {
  await withBurst(32, async (driver) => {
    const ms = await allUp(driver, 5000);
    const { counters, recovery } = driver.initiator;
    assert.ok(counters.rxDrops > 0, "the burst overran the queue");
    assert.ok(recovery.counters.rounds >= 1, "a recovery round ran");
    assert.ok(recovery.counters.queries > 0, "slots asked for again");
    assert.ok(driver.messages.some((m) => /frames dropped while discovering/.test(m)));
    assert.ok(ms < 5000, `all up in ${ms.toFixed(0)} ms`);
  });
});

Deno.test("recovery: nothing dropped, nothing asked again", async () => {
  await withBurst(Infinity, async (driver) => {
    await allUp(driver, 3000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(driver.initiator.counters.rxDrops, 0);
    assert.equal(driver.initiator.recovery.counters.rounds, 0);
    assert.equal(
      driver.initiator.counters.refusedDevices,
      0,
      "answers to our discovery are all taken",
    );
  });
});

Deno.test("timer: idle devices cost the 100 ms tick nothing; a busy one is visited", async () => {
  await withBurst(Infinity, async (driver) => {
    await allUp(driver, 3000);
    const initiator = driver.initiator;
    // Wait out any IDENTIFY still in flight, then count the timer's visits over many ticks.
    await new Promise((r) => setTimeout(r, 200));
    const before = initiator.timerRuns;
    for (let i = 0; i < 50; i++) initiator.tick();
    assert.equal(initiator.timerRuns - before, 0, "no device visited while all are idle");
    const reading = driver.blockDevice("e1.0")!.read(0, 32 * 1024);
    initiator.tick();
    assert.equal(initiator.timerRuns - before, 1, "only the device with frames in flight");
    await reading;
  });
});

async function announceAfter(rxQueue: number, timeoutMs: number) {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-announce-many-" });
  const segment = new MemorySegment({ rxQueue });
  const link = segment.attach(0x020000000002, "eth1");
  const driver = memoryDriver(link, dir, { files: false });
  driver.start();
  const exports: Export[] = [];
  for (let shelf = 1; shelf <= SHELVES; shelf++) {
    for (let slot = 0; slot < SLOTS; slot++) {
      exports.push(new Export({ shelf, slot, store: new MemoryStore(64), bufferCount: 16 }));
    }
  }
  const server = new TargetServer(exports, [segment.attach(0x020000000001, "tgt0")]);
  try {
    await new Promise((r) => setTimeout(r, 100)); // the load-time discovery found nobody
    if (rxQueue !== Infinity) {
      // Past the load-time discovery's window: only the direct ask can make drops count.
      while (driver.initiator.recovery.open(performance.now())) {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    server.run();
    server.announce();
    const ms = await allUp(driver, timeoutMs);
    // The announcements (tag 0) ran past the rate limit; the target asked under its own tag answered.
    if (rxQueue === Infinity) assert.ok(driver.initiator.counters.refusedDevices > 0);
    else assert.ok(driver.initiator.counters.rxDrops > 0, "the announcements overran the queue");
    assert.ok(ms < timeoutMs, `all up ${ms.toFixed(0)} ms after the announcements`);
  } finally {
    await driver.stop();
    await server.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("discovery: a target announcing 200 exports after the initiator started is asked directly and all come up at once", async () => {
  await announceAfter(Infinity, 1000);
});

Deno.test("discovery: the same into a 32-frame receive queue: the direct ask's lost answers are recovered too", async () => {
  await announceAfter(32, 5000);
});
