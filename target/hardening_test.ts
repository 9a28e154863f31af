/**
 * Issue 10's target items on in-memory links: what the target keeps fits
 * every interface, a frame whose handling throws is dropped and counted, and
 * the other hardening rules (latched flush errors, broadcast, foreign MACs,
 * reservations, administrator's mask lists).
 */
import assert from "node:assert/strict";
import { MemorySegment } from "../link/mod.ts";
import { TestClient } from "../testing/client.ts";
import {
  AoeError,
  AtaOp,
  Command,
  ConfigCommand,
  decodeConfig,
  decodeReserve,
  encodeReserve,
  isError,
  readErrorCode,
  ReserveCommand,
} from "../wire/mod.ts";
import { MemoryStore } from "./backing.ts";
import { Export } from "./export.ts";
import { TargetServer } from "./server.ts";

const TARGET_MAC = 0x020000000001;
const JUMBO_CLIENT = 0x020000000002;
const SMALL_CLIENT = 0x020000000003;

/** A target on a jumbo segment (eth0) and a small one (eth1), a client on each. */
async function twoMtus(
  fn: (t: {
    jumbo: TestClient;
    small: TestClient;
    device: Export;
    server: TargetServer;
    logged: string[];
  }) => Promise<void>,
  options: { smallMtu?: number; store?: MemoryStore } = {},
): Promise<void> {
  const big = new MemorySegment({ mtu: 9000 });
  const little = new MemorySegment({ mtu: options.smallMtu ?? 1500 });
  const links = [big.attach(TARGET_MAC, "eth0"), little.attach(TARGET_MAC, "eth1")];
  const store = options.store ?? new MemoryStore(256);
  const device = new Export({ shelf: 9, slot: 0, store, bufferCount: 16 });
  const logged: string[] = [];
  const server = new TargetServer([device], links, { log: (m) => logged.push(m) });
  const jumbo = new TestClient(big.attach(JUMBO_CLIENT, "c0"), TARGET_MAC);
  const small = new TestClient(little.attach(SMALL_CLIENT, "c1"), TARGET_MAC);
  const running = server.run();
  try {
    await fn({ jumbo, small, device, server, logged });
  } finally {
    await server.stop();
  }
  await running; // rejects if the loop died
}

function reserve(client: TestClient, rcmd: number, macs: number[]) {
  return client.exchange((frame, tag) => {
    client.header(frame, 9, 0, Command.reserve, tag);
    return encodeReserve(frame, { rcmd, macs });
  });
}

Deno.test("item 1: a 255-MAC reserve list from a jumbo interface is refused; a read on 1500 still works", async () => {
  await twoMtus(async ({ jumbo, small, device }) => {
    const macs = Array.from({ length: 255 }, (_, i) => 0x0a0000000000 + i);
    const set = await reserve(jumbo, ReserveCommand.set, macs);
    assert.ok(set, "the set is answered");
    assert.ok(isError(set));
    assert.equal(readErrorCode(set), AoeError.badArgument);
    assert.equal(device.reservations.length, 0, "nothing kept");
    const read = await reserve(small, ReserveCommand.read, []);
    assert.ok(read, "the read on the 1500 interface is answered");
    assert.equal(isError(read), false);
    assert.deepEqual(decodeReserve(read).macs, []);
    // The most that fits a 1500-byte MTU is accepted, and read back on both.
    const fits = macs.slice(0, 248);
    const ok = await reserve(jumbo, ReserveCommand.set, [
      JUMBO_CLIENT,
      SMALL_CLIENT,
      ...fits.slice(2),
    ]);
    assert.equal(isError(ok!), false);
    assert.equal(decodeReserve((await reserve(small, ReserveCommand.read, []))!).macs.length, 248);
    const r = await small.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 1, count: 1 });
    assert.ok(r, "still serving ATA");
  });
});

Deno.test("item 1: a config string longer than the smallest interface carries is refused", async () => {
  await twoMtus(async ({ jumbo, small, device }) => {
    const long = "x".repeat(1024);
    const set = await jumbo.config(9, 0, ConfigCommand.forceSet, long);
    assert.ok(set);
    assert.equal(readErrorCode(set), AoeError.badArgument);
    assert.equal(device.config.length, 0);
    const read = await small.config(9, 0, ConfigCommand.read);
    assert.ok(read, "read on the small interface answered");
    assert.equal(decodeConfig(read).config.length, 0);
    const fits = "y".repeat(1014 - 32);
    const ok = await jumbo.config(9, 0, ConfigCommand.set, fits);
    assert.equal(isError(ok!), false);
    const again = await small.config(9, 0, ConfigCommand.read);
    assert.equal(new TextDecoder().decode(decodeConfig(again!).config), fits);
  }, { smallMtu: 1000 });
});

class ThrowingStore extends MemoryStore {
  override read(into: Uint8Array, lba: number, count: number): number {
    if (lba === 13) throw new RangeError("the disk bit back");
    return super.read(into, lba, count);
  }
}

Deno.test("item 1: a frame whose handling throws is dropped, counted, logged once; the target goes on", async () => {
  await twoMtus(async ({ small, server, logged }) => {
    for (let i = 0; i < 3; i++) {
      const r = await small.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 13, count: 1 }, 200);
      assert.equal(r, undefined);
    }
    assert.equal(server.counters.failed, 3);
    assert.equal(logged.length, 1, logged.join("\n"));
    assert.match(logged[0], /RangeError: the disk bit back/);
    const r = await small.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 1, count: 1 });
    assert.ok(r, "still serving");
  }, { store: new ThrowingStore(64) });
});
