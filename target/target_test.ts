import assert from "node:assert/strict";
import { MemorySegment } from "../link/mod.ts";
import { TestClient } from "../testing/client.ts";
import {
  AoeError,
  AtaOp,
  Command,
  ConfigCommand,
  decodeConfig,
  decodeHeader,
  decodeIdentify,
  decodeMask,
  decodeReserve,
  encodeMask,
  encodeReserve,
} from "../wire/mod.ts";
import { MemoryStore } from "./backing.ts";
import { Export } from "./export.ts";
import { TargetServer } from "./server.ts";

const TARGET_MAC = 0x020000000001;
const CLIENT_MAC = 0x020000000002;
const OTHER_MAC = 0x020000000003;

async function withTarget(
  fn: (
    t: {
      client: TestClient;
      other: TestClient;
      store: MemoryStore;
      device: Export;
      server: TargetServer;
      segment: MemorySegment;
    },
  ) => Promise<void>,
  options: { readOnly?: boolean; masks?: number[]; mtu?: number; sectors?: number } = {},
) {
  const segment = new MemorySegment({ mtu: options.mtu ?? 1500 });
  const targetLink = segment.attach(TARGET_MAC, "eth0");
  const store = new MemoryStore(options.sectors ?? 2048, { readOnly: options.readOnly });
  const device = new Export({ shelf: 9, slot: 0, store, bufferCount: 16, masks: options.masks });
  const server = new TargetServer([device], [targetLink]);
  const client = new TestClient(segment.attach(CLIENT_MAC, "client"), TARGET_MAC);
  const other = new TestClient(segment.attach(OTHER_MAC, "other"), TARGET_MAC);
  server.run();
  try {
    await fn({ client, other, store, device, server, segment });
  } finally {
    await server.stop();
  }
}

function pattern(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

Deno.test("target: write then read back two sectors (LBA48), data on the store", async () => {
  await withTarget(async ({ client, store }) => {
    const data = pattern(1024, 7);
    const w = await client.ata(9, 0, { command: AtaOp.writeSectorsExt, lba: 100, count: 2, data });
    assert.ok(w);
    assert.equal(w[27], 0x40, "status DRDY");
    assert.equal(w[26], 0, "no sectors left");
    assert.deepEqual(store.data.subarray(100 * 512, 102 * 512), data);
    const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 100, count: 2 });
    assert.ok(r);
    assert.equal(r.length, 36 + 1024);
    assert.deepEqual(r.subarray(36), data);
    const h = decodeHeader(r);
    assert.equal(h.response, true);
    assert.equal(h.src, TARGET_MAC);
    assert.equal(h.dst, CLIENT_MAC);
  });
});

Deno.test("target: LBA28 read masks the device register in lba3", async () => {
  await withTarget(async ({ client, store }) => {
    store.data.set(pattern(512, 3), 5 * 512);
    const r = await client.ata(9, 0, {
      command: AtaOp.readSectors,
      aflags: 0,
      lba: 0xe0000005,
      count: 1,
    });
    assert.ok(r);
    assert.equal(r[27], 0x40);
    assert.deepEqual(r.subarray(36, 36 + 512), pattern(512, 3));
  });
});

Deno.test("target: errors in the ATA registers: past the end IDNF, unknown opcode ABRT, read-only ABRT", async () => {
  await withTarget(async ({ client }) => {
    const past = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 2047, count: 2 });
    assert.ok(past);
    assert.equal(past[27], 0x41);
    assert.equal(past[25], 0x10, "IDNF");
    assert.equal(past[14] & 0x04, 0, "no AoE error flag");
    assert.equal(past.length, 60, "padded to the Ethernet minimum");
    const unknown = await client.ata(9, 0, { command: AtaOp.smart, count: 0 });
    assert.ok(unknown);
    assert.equal(unknown[27], 0x41);
    assert.equal(unknown[25], 0x04, "ABRT");
    const power = await client.ata(9, 0, { command: AtaOp.checkPowerMode });
    assert.equal(power![27], 0x40);
    assert.equal(power![26], 0xff);
  });
  await withTarget(async ({ client, store }) => {
    const w = await client.ata(9, 0, {
      command: AtaOp.writeSectorsExt,
      lba: 0,
      count: 1,
      data: pattern(512, 1),
    });
    assert.ok(w);
    assert.equal(w[27], 0x41);
    assert.equal(w[25], 0x04);
    assert.equal(store.data[0], 0, "nothing written");
  }, { readOnly: true });
});

Deno.test("target: more sectors than a frame carries, or short write data: AoE bad argument", async () => {
  await withTarget(async ({ client }) => {
    const big = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 3 });
    assert.ok(big);
    assert.equal(big[14] & 0x04, 0x04);
    assert.equal(big[15], AoeError.badArgument);
    const short = await client.ata(9, 0, {
      command: AtaOp.writeSectorsExt,
      lba: 0,
      count: 2,
      data: pattern(512, 0),
    });
    assert.equal(short![15], AoeError.badArgument);
  });
  await withTarget(async ({ client }) => {
    const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 17 });
    assert.equal(r![27], 0x40);
    assert.equal(r!.length, 36 + 17 * 512);
  }, { mtu: 9000 });
});

Deno.test("target: IDENTIFY states capacity and a write cache; FLUSH CACHE flushes the store", async () => {
  await withTarget(async ({ client, store }) => {
    const r = await client.ata(9, 0, { command: AtaOp.identifyDevice, count: 1, aflags: 0 });
    assert.ok(r);
    const info = decodeIdentify(r.subarray(36));
    assert.equal(info.sectors, 4096);
    assert.equal(info.lba48, true);
    for (const op of [AtaOp.flushCache, AtaOp.flushCacheExt]) {
      const f = await client.ata(9, 0, { command: op });
      assert.equal(f![27], 0x40);
    }
    assert.equal(store.flushes, 2);
  }, { sectors: 4096 });
});

Deno.test("target: TRIM through DATA SET MANAGEMENT zeroes the range", async () => {
  await withTarget(async ({ client, store }) => {
    store.data.fill(0xaa);
    const ranges = new Uint8Array(512);
    const view = new DataView(ranges.buffer);
    view.setUint32(0, 10, true);
    view.setUint16(6, 4, true);
    const r = await client.ata(9, 0, {
      command: AtaOp.dataSetManagement,
      feature: 1,
      count: 1,
      data: ranges,
    });
    assert.equal(r![27], 0x40);
    assert.ok(store.data.subarray(10 * 512, 14 * 512).every((b) => b === 0));
    assert.equal(store.data[9 * 512 + 511], 0xaa);
    assert.equal(store.data[14 * 512], 0xaa);
  });
});

Deno.test("target: Query Config read/test/prefix/set/fset as vblade", async () => {
  await withTarget(async ({ client, device }) => {
    const read = await client.config(9, 0, ConfigCommand.read);
    const arg = decodeConfig(read!);
    assert.equal(arg.bufferCount, 16);
    assert.equal(arg.sectorCount, 2);
    assert.equal(arg.aoeVersion, 1);
    assert.equal(arg.config.length, 0);
    assert.equal(read!.length, 60);
    const set = await client.config(9, 0, ConfigCommand.set, "alpha");
    assert.equal(new TextDecoder().decode(decodeConfig(set!).config), "alpha");
    const again = await client.config(9, 0, ConfigCommand.set, "alpha");
    assert.equal(again![14] & 0x04, 0, "setting the same string succeeds");
    const refused = await client.config(9, 0, ConfigCommand.set, "beta");
    assert.equal(refused![15], AoeError.configStringPresent);
    assert.equal(new TextDecoder().decode(decodeConfig(refused!).config), "alpha");
    assert.ok(await client.config(9, 0, ConfigCommand.test, "alpha"));
    assert.equal(
      await client.config(9, 0, ConfigCommand.test, "alph", 200),
      undefined,
      "test exact: silent",
    );
    assert.ok(await client.config(9, 0, ConfigCommand.testPrefix, "alph"));
    assert.equal(await client.config(9, 0, ConfigCommand.testPrefix, "alphabet", 200), undefined);
    const forced = await client.config(9, 0, ConfigCommand.forceSet, "gamma");
    assert.equal(new TextDecoder().decode(decodeConfig(forced!).config), "gamma");
    assert.equal(new TextDecoder().decode(device.config), "gamma");
    const bad = await client.config(9, 0, 9);
    assert.equal(bad![15], AoeError.badArgument);
  });
});

Deno.test("target: broadcast shelf and slot are answered with the real address", async () => {
  await withTarget(async ({ client }) => {
    const r = await client.config(0xffff, 0xff, ConfigCommand.read);
    const h = decodeHeader(r!);
    assert.equal(h.shelf, 9);
    assert.equal(h.slot, 0);
    assert.equal(
      await client.config(8, 0, ConfigCommand.read, "", 200),
      undefined,
      "other shelf: silent",
    );
  });
});

Deno.test("target: MAC mask list read, edit and enforced", async () => {
  await withTarget(async ({ client, other, server }) => {
    const mask = (mcmd: number, directives: { dcmd: number; mac: number }[], who = client) =>
      who.exchange((frame, tag) => {
        who.header(frame, 9, 0, Command.macMask, tag);
        return encodeMask(frame, { mcmd, merror: 0, directives });
      }, 300);
    const added = await mask(1, [{ dcmd: 1, mac: CLIENT_MAC }]);
    assert.deepEqual(decodeMask(added!).directives, [{ dcmd: 0, mac: CLIENT_MAC }]);
    assert.equal(await other.config(9, 0, 0, "", 200), undefined, "masked MAC ignored");
    assert.ok(await client.config(9, 0, 0));
    assert.ok(server.exports[0].counters.masked >= 1);
    const bad = await mask(1, [{ dcmd: 1, mac: OTHER_MAC }, { dcmd: 7, mac: 1 }]);
    const decoded = decodeMask(bad!);
    assert.equal(decoded.merror, 2, "bad directive");
    assert.equal(decoded.dirCount, 1, "index of the failing directive");
    const removed = await mask(1, [{ dcmd: 2, mac: CLIENT_MAC }, { dcmd: 2, mac: OTHER_MAC }]);
    assert.equal(decodeMask(removed!).directives.length, 0);
    assert.ok(await other.config(9, 0, 0), "list empty again: open to all");
  });
});

Deno.test("target: reserve/release enforced for ATA, IDENTIFY still answered", async () => {
  await withTarget(async ({ client, other }) => {
    const reserve = (who: TestClient, rcmd: number, macs: number[]) =>
      who.exchange((frame, tag) => {
        who.header(frame, 9, 0, Command.reserve, tag);
        return encodeReserve(frame, { rcmd, macs });
      });
    const set = await reserve(client, 1, [CLIENT_MAC]);
    assert.deepEqual(decodeReserve(set!).macs, [CLIENT_MAC]);
    const denied = await other.ata(9, 0, { command: AtaOp.readSectorsExt, count: 1 });
    assert.equal(denied![15], AoeError.targetReserved);
    const ident = await other.ata(9, 0, { command: AtaOp.identifyDevice, count: 1 });
    assert.equal(ident![27], 0x40);
    const steal = await reserve(other, 1, [OTHER_MAC]);
    assert.equal(steal![15], AoeError.targetReserved);
    assert.deepEqual(decodeReserve(steal!).macs, [CLIENT_MAC]);
    const ok = await client.ata(9, 0, { command: AtaOp.readSectorsExt, count: 1 });
    assert.equal(ok![27], 0x40);
    const forced = await reserve(other, 2, []);
    assert.equal(forced![15], AoeError.targetReserved, "a non-holder cannot force it either");
    assert.deepEqual(decodeReserve(forced!).macs, [CLIENT_MAC]);
    const released = await reserve(client, 2, []);
    assert.deepEqual(decodeReserve(released!).macs, []);
    const open = await other.ata(9, 0, { command: AtaOp.readSectorsExt, count: 1 });
    assert.equal(open![27], 0x40);
  });
});

Deno.test("target: responses, other versions and short frames are dropped and counted", async () => {
  await withTarget(async ({ client, server, segment }) => {
    const frame = new Uint8Array(60);
    client.header(frame, 9, 0, Command.config, 1);
    frame[14] = 0x18; // a response
    client.sendRaw(frame);
    frame[14] = 0x20; // version 2
    client.sendRaw(frame);
    segment.ports[0].enqueue(frame.slice(0, 20)); // shorter than the header (a link would pad it)
    frame[14] = 0x10;
    frame[19] = 0x42; // unknown command: E + error 1
    client.sendRaw(frame);
    const unknownReply = await client.waitTag(1, { timeoutMs: 500 });
    assert.equal(unknownReply.length, 1);
    assert.equal(unknownReply[0][15], AoeError.unrecognizedCommand);
    assert.equal(server.counters.responses, 1);
    assert.equal(server.counters.badVersion, 1);
    assert.equal(server.counters.malformed, 1);
    assert.equal(server.exports[0].counters.unknownCommand, 1);
  });
});

Deno.test("target: announces itself with a Query Config response to broadcast", () => {
  const segment = new MemorySegment();
  const targetLink = segment.attach(TARGET_MAC);
  const listener = segment.attach(CLIENT_MAC);
  const device = new Export({ shelf: 3, slot: 1, store: new MemoryStore(8), bufferCount: 16 });
  new TargetServer([device], [targetLink]).announce();
  assert.equal(listener.receive(), 1);
  const frame = listener.rx[0].subarray(0, listener.rxLength[0]);
  const h = decodeHeader(frame);
  assert.equal(h.response, true);
  assert.equal(h.dst, 0xffffffffffff);
  assert.equal(h.tag, 0);
  assert.equal(h.command, Command.config);
  assert.equal(h.shelf, 3);
  assert.equal(frame.length, 60);
});
