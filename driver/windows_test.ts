/**
 * Windows, taint and probes with two targets on one in-memory segment
 * (docs/driver.md §4, §5): slow start after a loss, congestion windows per
 * target path, a silent target scorned, its frames moved, a probe left on it,
 * and its taint redeemed once it answers again.
 */
import { memoryDriver } from "../testing/memory_driver.ts";
import assert from "node:assert/strict";
import { MemorySegment } from "../link/mod.ts";
import { MemoryStore } from "../target/backing.ts";
import { Export } from "../target/export.ts";
import { TargetServer } from "../target/server.ts";
import {
  ATA_HEADER_LENGTH,
  AtaOp,
  Command,
  isResponse,
  readAtaCommand,
  readCommand,
  readDestination,
  readLba,
} from "../wire/mod.ts";
import { Driver } from "./driver.ts";
import { type DriverParams } from "./params.ts";

const A_MAC = 0x020000000001;
const B_MAC = 0x020000000003;
const INITIATOR_MAC = 0x020000000002;

async function until(check: () => boolean, what: string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Rig {
  driver: Driver;
  segment: MemorySegment;
  store: MemoryStore;
  servers: TargetServer[];
}

/** One device e9.0 served from one store by `macs.length` targets on one segment. */
async function withTargets(
  macs: number[],
  fn: (rig: Rig) => Promise<void>,
  options: { params?: Partial<DriverParams>; bufferCount?: number } = {},
) {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-windows-" });
  const segment = new MemorySegment();
  const store = new MemoryStore(1 << 16);
  const servers = macs.map((mac, i) =>
    new TargetServer(
      [new Export({ shelf: 9, slot: 0, store, bufferCount: options.bufferCount ?? 32 })],
      [segment.attach(mac, `tgt${i}`)],
    )
  );
  for (const s of servers) s.run();
  const link = segment.attach(INITIATOR_MAC, "eth1");
  const driver = memoryDriver(link, dir, { params: options.params, files: false });
  driver.start();
  try {
    await until(
      () =>
        driver.initiator.devices.get(9, 0)?.up === true &&
        driver.initiator.devices.get(9, 0)!.targets.length === macs.length,
      "e9.0 up on every target",
    );
    await fn({ driver, segment, store, servers });
  } finally {
    segment.impair = undefined;
    await driver.stop();
    for (const s of servers) await s.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Trains the RTT estimate with answered frames so the timeout is short (docs/driver.md §5). */
async function train(driver: Driver, bytes = 1 << 20) {
  const dev = driver.blockDevice("e9.0")!;
  for (let off = 0; off < 4 * bytes; off += bytes) await dev.read(0, bytes);
  const rto = driver.initiator.rto(driver.initiator.devices.get(9, 0)!);
  assert.ok(rto < 300_000, `rto ${rto} µs after training`);
}

Deno.test("windows: after a loss the window restarts at 1 and slow start regrows it to ssthresh", async () => {
  await withTargets([A_MAC], async ({ driver, segment }) => {
    await train(driver);
    const device = driver.initiator.devices.get(9, 0)!;
    const t = device.targets[0];
    assert.equal(t.nframes, 32);
    const open = t.maxout;
    assert.ok(open >= 16, `the window opened from half the buffer count: ${open}`);
    // Every request is lost for a moment: the first timeout halves the threshold, window 1.
    let lost = 0;
    segment.impair = (frame) =>
      !isResponse(frame) && readCommand(frame) === Command.ata ? (lost++, 0) : 1;
    const dev = driver.blockDevice("e9.0")!;
    const reading = dev.read(0, 64 * 1024); // 64 frames of 1024 bytes
    await until(() => t.maxout === 1, "the window closed to 1 after the timeout", 3000);
    assert.equal(t.ssthresh, Math.floor(open / 2), "ssthresh is half the window at the loss");
    segment.impair = undefined;
    // Most of the 64 frames are answered after the loss: each answer below ssthresh opens the window by one.
    await reading;
    assert.ok(lost > 0);
    assert.ok(
      t.maxout >= t.ssthresh,
      `slow start: window ${t.maxout} reached ssthresh ${t.ssthresh} within 64 answers`,
    );
    // Congestion avoidance past ssthresh: a window's worth of answers with the window full adds one.
    const before = t.maxout;
    for (let i = 0; i < 8; i++) await dev.read(0, 256 * 1024);
    assert.ok(t.maxout > before, `congestion avoidance grew ${before} to ${t.maxout}`);
    assert.ok(t.maxout <= t.nframes, "never past the buffer count");
  });
});

Deno.test("windows: two targets of one device; a silent one is scorned, its frames move, a probe tests it, and answers redeem it", async () => {
  await withTargets([A_MAC, B_MAC], async ({ driver, segment, store, servers }) => {
    await train(driver);
    const device = driver.initiator.devices.get(9, 0)!;
    const a = device.targets.find((t) => t.mac === A_MAC)!;
    const b = device.targets.find((t) => t.mac === B_MAC)!;
    assert.ok(a.readCount > 0 && b.readCount > 0, "round robin over both targets");
    const pattern = crypto.getRandomValues(new Uint8Array(64 * 1024));
    store.write(pattern, 1000, pattern.length / 512);
    // B goes silent: nothing reaches it.
    let probes = 0;
    segment.impair = (frame) => {
      if (readDestination(frame) !== B_MAC) return 1;
      if (
        readCommand(frame) === Command.ata && readAtaCommand(frame) === AtaOp.readSectorsExt &&
        readLba(frame) === 0 && frame.length >= ATA_HEADER_LENGTH + device.payload
      ) probes++;
      return 0;
    };
    const dev = driver.blockDevice("e9.0")!;
    const started = performance.now();
    const back = await dev.read(1000 * 512, pattern.length);
    assert.deepEqual(back, pattern, "every frame answered, by A");
    // Frames that waited on B past aoe_deadsecs / 2 scorned it (the taint roughly triples).
    assert.ok(b.taint >= 3, `B tainted: ${b.taint}`);
    assert.equal(a.taint, 0);
    assert.equal(b.maxout, 1, "B's window closed by its timeouts");
    assert.ok(a.maxout > 1, `A's window is its own: ${a.maxout}`);
    assert.ok(device.up, "the device stayed up");
    assert.ok(performance.now() - started < 4000);
    // While B is tainted new frames avoid it; a probe with a full payload of zeros tests it.
    const bReads = b.readCount;
    await dev.read(0, 128 * 1024);
    assert.equal(b.readCount, bReads, "no frame was answered by B");
    await until(() => probes > 0, "a probe to B");
    // B answers again: each good answer takes one off its taint, with a new probe while it stays tainted.
    segment.impair = undefined;
    await until(() => b.taint === 0, "B redeemed", 5000);
    const served = servers[1].counters;
    await dev.read(0, 256 * 1024);
    assert.ok(b.readCount > bReads, "B serves reads again");
    assert.ok(served.received > 0);
  }, { params: { deadsecs: 3 } });
});
