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
  AtaFlag,
  AtaOp,
  Command,
  ConfigCommand,
  decodeConfig,
  decodeMask,
  decodeReserve,
  DirectiveCommand,
  encodeAta,
  encodeConfig,
  encodeMask,
  encodeReserve,
  isError,
  MaskCommand,
  MaskError,
  readErrorCode,
  ReserveCommand,
} from "../wire/mod.ts";
import { Capability, encodeExtension, EXTENSION_COMMAND, ExtensionOp } from "../wire/mod.ts";
import { MemoryStore } from "./backing.ts";
import { Export } from "./export.ts";
import { TargetServer } from "./server.ts";
import { parseTargetArgs, UsageError } from "./options.ts";
import { parseConfig } from "./config_file.ts";
import { TargetService } from "./service.ts";

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

/** A store whose first flush fails (EIO from fdatasync), later ones succeed. */
class FlushFailsOnce extends MemoryStore {
  failures = 0;
  constructor(sectors: number, writeThrough: boolean) {
    super(sectors, { writeThrough });
  }
  override flush(): boolean {
    super.flush();
    if (this.flushes === 1) {
      this.failures++;
      return false;
    }
    return true;
  }
}

/** One export on one 1500-byte segment with a client. */
async function oneExport(
  store: MemoryStore,
  fn: (client: TestClient, device: Export, logged: string[]) => Promise<void>,
): Promise<void> {
  const segment = new MemorySegment({ mtu: 1500 });
  const link = segment.attach(TARGET_MAC, "eth0");
  const logged: string[] = [];
  const device = new Export({
    shelf: 9,
    slot: 0,
    store,
    bufferCount: 16,
    log: (m) => logged.push(m),
  });
  const server = new TargetServer([device], [link]);
  const client = new TestClient(segment.attach(SMALL_CLIENT, "c0"), TARGET_MAC);
  const running = server.run();
  try {
    await fn(client, device, logged);
  } finally {
    await server.stop();
    link.close();
  }
  await running;
}

Deno.test("fdatasync latch: after one failed FLUSH CACHE every later one fails until the export is reopened", async () => {
  const store = new FlushFailsOnce(64, false);
  const data = new Uint8Array(512).fill(7);
  await oneExport(store, async (client, device, logged) => {
    const w = await client.ata(9, 0, { command: AtaOp.writeSectorsExt, lba: 2, count: 1, data });
    assert.equal(w![27], 0x40);
    const first = await client.ata(9, 0, { command: AtaOp.flushCacheExt });
    assert.equal(first![27], 0x41, "the failed flush is reported");
    assert.equal(first![25], 0x04, "ABRT");
    for (const command of [AtaOp.flushCacheExt, AtaOp.flushCache]) {
      const later = await client.ata(9, 0, { command });
      assert.equal(later![27], 0x41, "a later flush still fails although fdatasync would succeed");
      assert.equal(later![25], 0x04);
    }
    const cached = await client.ata(9, 0, {
      command: AtaOp.writeSectorsExt,
      lba: 3,
      count: 1,
      data,
    });
    assert.equal(cached![27], 0x40, "a cached write is still taken (a later flush will fail)");
    assert.equal(device.counters.flushFailures, 3);
    assert.equal(logged.length, 1, logged.join("\n"));
    assert.match(logged[0], /e9\.0: flush of the store failed/);
  });
  await oneExport(store, async (client) => {
    const again = await client.ata(9, 0, { command: AtaOp.flushCacheExt });
    assert.equal(again![27], 0x40, "reopened: flushes succeed again");
  });
});

Deno.test("fdatasync latch: a write-through export refuses writes once a flush failed", async () => {
  const store = new FlushFailsOnce(64, true);
  const data = new Uint8Array(512).fill(9);
  await oneExport(store, async (client) => {
    assert.equal((await client.ata(9, 0, { command: AtaOp.flushCache }))![27], 0x41);
    const w = await client.ata(9, 0, { command: AtaOp.writeSectorsExt, lba: 5, count: 1, data });
    assert.equal(w![27], 0x41, "durable write refused");
    assert.equal(w![25], 0x04);
    assert.equal(store.data[5 * 512], 0, "not written");
    const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 5, count: 1 });
    assert.equal(r![27], 0x40, "reads go on");
  });
});

Deno.test("item 10: ATA commands that change data, sent to a broadcast shelf or slot, run on no export", async () => {
  const segment = new MemorySegment({ mtu: 1500 });
  const link = segment.attach(TARGET_MAC, "eth0");
  const stores = [new MemoryStore(64), new MemoryStore(64), new MemoryStore(64)];
  stores.forEach((store, i) => store.data.fill(0x11 * (i + 1)));
  const before = stores.map((store) => store.data.slice());
  const devices = [
    new Export({ shelf: 9, slot: 0, store: stores[0], bufferCount: 16 }),
    new Export({ shelf: 9, slot: 1, store: stores[1], bufferCount: 16 }),
    new Export({ shelf: 7, slot: 1, store: stores[2], bufferCount: 16 }),
  ];
  const server = new TargetServer(devices, [link]);
  const client = new TestClient(segment.attach(SMALL_CLIENT, "c0"), TARGET_MAC);
  const running = server.run();
  try {
    const data = new Uint8Array(1024).fill(0xee);
    const dsm = new Uint8Array(512);
    dsm.set([0, 0, 0, 0, 0, 0, 8, 0]); // TRIM lba 0, 8 sectors
    const requests = [
      { command: AtaOp.writeSectorsExt, lba: 0, count: 2, data },
      { command: AtaOp.writeSectors, aflags: 0, lba: 0xe0000004, count: 2, data },
      { command: AtaOp.dataSetManagement, feature: 1, count: 1, data: dsm },
      { command: AtaOp.flushCacheExt },
    ];
    for (const [shelf, slot, answering] of [[0xffff, 0xff, 3], [9, 0xff, 2], [0xffff, 1, 2]]) {
      for (const request of requests) {
        const tag = client.nextTag();
        client.sendRaw(buildAta(client, shelf, slot, tag, request));
        const replies = await client.waitTag(tag, { count: answering, timeoutMs: 500 });
        assert.equal(replies.length, answering, `${shelf}.${slot} ${request.command}`);
        for (const reply of replies) assert.equal(readErrorCode(reply), AoeError.badArgument);
      }
    }
    stores.forEach((store, i) => assert.deepEqual(store.data, before[i], `export ${i} unchanged`));
    assert.equal(devices[0].counters.broadcastRefused, 8);
    // Reads, IDENTIFY and Query Config still answer broadcast.
    const tag = client.nextTag();
    client.sendRaw(
      buildAta(client, 0xffff, 0xff, tag, { command: AtaOp.readSectorsExt, count: 1 }),
    );
    const reads = await client.waitTag(tag, { count: 3, timeoutMs: 1000 });
    assert.equal(reads.length, 3);
    for (const r of reads) assert.equal(isError(r), false);
    const qc = client.nextTag();
    const frame = new Uint8Array(60);
    client.header(frame, 0xffff, 0xff, Command.config, qc);
    client.sendRaw(frame);
    assert.equal((await client.waitTag(qc, { count: 3, timeoutMs: 1000 })).length, 3);
  } finally {
    await server.stop();
  }
  await running;
});

function buildAta(
  client: TestClient,
  shelf: number,
  slot: number,
  tag: number,
  request: {
    command: number;
    lba?: number;
    count?: number;
    aflags?: number;
    feature?: number;
    data?: Uint8Array;
  },
): Uint8Array {
  const frame = new Uint8Array(36 + (request.data?.length ?? 0) + 24);
  client.header(frame, shelf, slot, Command.ata, tag);
  let aflags = request.aflags ?? AtaFlag.extended;
  if (request.data) aflags |= AtaFlag.write;
  const n = encodeAta(frame, {
    aflags,
    feature: request.feature ?? 0,
    sectorCount: request.count ?? 0,
    command: request.command,
    lba: request.lba ?? 0,
  });
  if (request.data) frame.set(request.data, n);
  return frame.subarray(0, Math.max(60, n + (request.data?.length ?? 0)));
}

Deno.test("item 12: while a reservation is held only its holders change the config string, mask list or reservation", async () => {
  const segment = new MemorySegment({ mtu: 1500 });
  const link = segment.attach(TARGET_MAC, "eth0");
  const device = new Export({ shelf: 9, slot: 0, store: new MemoryStore(64), bufferCount: 16 });
  const server = new TargetServer([device], [link]);
  const holder = new TestClient(segment.attach(JUMBO_CLIENT, "c0"), TARGET_MAC);
  const other = new TestClient(segment.attach(SMALL_CLIENT, "c1"), TARGET_MAC);
  const mask = (who: TestClient, directives: { dcmd: number; mac: number }[]) =>
    who.exchange((frame, tag) => {
      who.header(frame, 9, 0, Command.macMask, tag);
      return encodeMask(frame, { mcmd: MaskCommand.edit, merror: 0, directives });
    });
  const running = server.run();
  try {
    assert.equal(isError((await holder.config(9, 0, ConfigCommand.set, "mine"))!), false);
    const held = await reserve(holder, ReserveCommand.set, [JUMBO_CLIENT]);
    assert.deepEqual(decodeReserve(held!).macs, [JUMBO_CLIENT]);

    for (const ccmd of [ConfigCommand.set, ConfigCommand.forceSet]) {
      const r = await other.config(9, 0, ccmd, "theirs");
      assert.equal(readErrorCode(r!), AoeError.targetReserved, `config ${ccmd}`);
      assert.equal(new TextDecoder().decode(decodeConfig(r!).config), "mine");
    }
    const read = await other.config(9, 0, ConfigCommand.read);
    assert.equal(isError(read!), false, "reading is still allowed");
    const lockOut = await mask(other, [{ dcmd: DirectiveCommand.add, mac: SMALL_CLIENT }]);
    assert.equal(readErrorCode(lockOut!), AoeError.targetReserved);
    assert.deepEqual(device.masks, []);
    for (const rcmd of [ReserveCommand.set, ReserveCommand.forceSet]) {
      const steal = await reserve(other, rcmd, [SMALL_CLIENT]);
      assert.equal(readErrorCode(steal!), AoeError.targetReserved, `reserve ${rcmd}`);
      assert.deepEqual(decodeReserve(steal!).macs, [JUMBO_CLIENT]);
    }
    assert.equal(new TextDecoder().decode(device.config), "mine");
    assert.deepEqual(device.reservations, [JUMBO_CLIENT]);
    assert.equal(device.counters.reserved, 5);

    // The holder may do all of it.
    const mine = await holder.config(9, 0, ConfigCommand.forceSet, "still mine");
    assert.equal(isError(mine!), false);
    const edit = await mask(holder, [{ dcmd: DirectiveCommand.add, mac: JUMBO_CLIENT }]);
    assert.equal(isError(edit!), false);
    assert.deepEqual(device.masks, [JUMBO_CLIENT]);
    const release = await reserve(holder, ReserveCommand.set, []);
    assert.equal(isError(release!), false);
    assert.deepEqual(device.reservations, []);
  } finally {
    await server.stop();
  }
  await running;
});

Deno.test("item 8: more than 32 MACs in -m or a config file is refused with one line", () => {
  const macs = Array.from(
    { length: 33 },
    (_, i) => `02:00:00:00:01:${i.toString(16).padStart(2, "0")}`,
  );
  assert.throws(
    () => parseTargetArgs(["-m", macs.join(","), "9", "0", "eth0", "disk.img"]),
    (e: Error) =>
      e instanceof UsageError &&
      /-m: 33 MACs given, the MAC mask list holds at most 32/.test(e.message),
  );
  assert.equal(
    parseTargetArgs(["-m", macs.slice(0, 32).join(","), "9", "0", "eth0", "f"]).exports[0].masks
      .length,
    32,
  );
  const text = `[[export]]\nshelf = 9\nslot = 0\nfile = "/x"\ninterfaces = ["eth0"]\nmasks = ${
    JSON.stringify(macs)
  }\n`;
  assert.throws(() => parseConfig(text, "t.conf"), (e: Error) => {
    assert.match(e.message, /masks.*33 MACs, the MAC mask list holds at most 32/);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
});

Deno.test("item 8: MAC Mask edits from the network cannot delete the administrator's entries or empty the list", async () => {
  const segment = new MemorySegment({ mtu: 1500 });
  const link = segment.attach(TARGET_MAC, "eth0");
  const device = new Export({
    shelf: 9,
    slot: 0,
    store: new MemoryStore(64),
    bufferCount: 16,
    masks: [JUMBO_CLIENT],
    policyMasks: [JUMBO_CLIENT],
  });
  const server = new TargetServer([device], [link]);
  const listed = new TestClient(segment.attach(JUMBO_CLIENT, "c0"), TARGET_MAC);
  const outsider = new TestClient(segment.attach(SMALL_CLIENT, "c1"), TARGET_MAC);
  const edit = (directives: { dcmd: number; mac: number }[]) =>
    listed.exchange((frame, tag) => {
      listed.header(frame, 9, 0, Command.macMask, tag);
      return encodeMask(frame, { mcmd: MaskCommand.edit, merror: 0, directives });
    });
  const running = server.run();
  try {
    const wipe = await edit([{ dcmd: DirectiveCommand.delete, mac: JUMBO_CLIENT }]);
    const decoded = decodeMask(wipe!);
    assert.equal(decoded.merror, MaskError.unspecified);
    assert.equal(decoded.dirCount, 0, "index of the refused directive");
    assert.deepEqual(device.masks, [JUMBO_CLIENT], "the list is not emptied");
    assert.equal(
      await outsider.config(9, 0, ConfigCommand.read, "", 300),
      undefined,
      "still masked",
    );
    // A MAC added from the network may be removed again; the administrator's stays.
    const OTHER = 0x020000000077;
    await edit([{ dcmd: DirectiveCommand.add, mac: OTHER }]);
    assert.deepEqual(device.masks, [JUMBO_CLIENT, OTHER]);
    const removed = await edit([{ dcmd: DirectiveCommand.delete, mac: OTHER }]);
    assert.equal(decodeMask(removed!).merror, MaskError.none);
    assert.deepEqual(device.masks, [JUMBO_CLIENT]);
  } finally {
    await server.stop();
  }
  await running;
});

Deno.test("service: close reports an export whose flush failed (latched), so the service exits 1", async () => {
  const dir = Deno.makeTempDirSync({ dir: Deno.cwd(), prefix: ".aoe-svc-" });
  const segment = new MemorySegment({ mtu: 1500 });
  try {
    Deno.writeFileSync(`${dir}/a.img`, new Uint8Array(64 * 512));
    Deno.writeFileSync(`${dir}/b.img`, new Uint8Array(64 * 512));
    const text = `[service]\nstate_dir = ""\n[defaults]\ninterfaces = ["eth0"]\n` +
      `[[export]]\nshelf = 9\nslot = 0\nfile = "${dir}/a.img"\n` +
      `[[export]]\nshelf = 9\nslot = 1\nfile = "${dir}/b.img"\n`;
    const service = new TargetService(parseConfig(text, "t.conf"), {
      openLink: (name) => segment.attach(TARGET_MAC, name),
      log: () => {},
    });
    service.export("e9.1")!.flushFailed = true;
    assert.deepEqual(await service.close(), ["e9.1"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("item 1: a broadcast config string set, answered in paced batches, is still held to the smallest interface", async () => {
  const big = new MemorySegment({ mtu: 9000 });
  const little = new MemorySegment({ mtu: 1000 });
  const links = [big.attach(TARGET_MAC, "eth0"), little.attach(TARGET_MAC, "eth1")];
  const devices = [0, 1, 2].map((slot) =>
    new Export({ shelf: 9, slot, store: new MemoryStore(64), bufferCount: 16 })
  );
  const server = new TargetServer(devices, links, { log: () => {} });
  const jumbo = new TestClient(big.attach(JUMBO_CLIENT, "c0"), TARGET_MAC);
  const running = server.run();
  try {
    const tag = jumbo.nextTag();
    const frame = new Uint8Array(32 + 1024);
    jumbo.header(frame, 0xffff, 0xff, Command.config, tag);
    encodeConfig(frame, {
      bufferCount: 0,
      firmwareVersion: 0,
      sectorCount: 0,
      aoeVersion: 1,
      ccmd: ConfigCommand.forceSet,
      config: new Uint8Array(1024).fill(0x78),
    });
    jumbo.sendRaw(frame);
    const replies = await jumbo.waitTag(tag, { count: 3, timeoutMs: 2000 });
    assert.equal(replies.length, 3);
    for (const reply of replies) assert.equal(readErrorCode(reply), AoeError.badArgument);
    for (const device of devices) assert.equal(device.config.length, 0);
  } finally {
    await server.stop();
  }
  await running;
});

Deno.test("service: a state directory that cannot be written is logged once, not every second, and once when it works again", async () => {
  const dir = Deno.makeTempDirSync({ dir: Deno.cwd(), prefix: ".aoe-svc-" });
  const segment = new MemorySegment({ mtu: 1500 });
  const logged: string[] = [];
  try {
    Deno.writeFileSync(`${dir}/a.img`, new Uint8Array(64 * 512));
    Deno.writeFileSync(`${dir}/b.img`, new Uint8Array(64 * 512));
    const text = `[service]\nstate_dir = "${dir}/state"\n[defaults]\ninterfaces = ["eth0"]\n` +
      `[[export]]\nshelf = 9\nslot = 0\nfile = "${dir}/a.img"\n` +
      `[[export]]\nshelf = 9\nslot = 1\nfile = "${dir}/b.img"\n`;
    const service = new TargetService(parseConfig(text, "t.conf"), {
      openLink: (name) => segment.attach(TARGET_MAC, name),
      log: (m) => logged.push(m),
    });
    const client = new TestClient(segment.attach(SMALL_CLIENT, "c0"), TARGET_MAC);
    try {
      Deno.removeSync(`${dir}/state`, { recursive: true });
      Deno.writeTextFileSync(`${dir}/state`, "in the way\n");
      for (let i = 0; i < 4; i++) {
        // Both exports' strings change every turn: each save fails.
        await client.config(9, 0, ConfigCommand.forceSet, `zero ${i}`);
        await client.config(9, 1, ConfigCommand.forceSet, `one ${i}`);
        await new Promise((r) => setTimeout(r, 1100));
      }
      assert.equal(logged.length, 1, logged.join("\n"));
      assert.match(logged[0], /cannot keep the state of e9\.\d: .*still serving/);
      Deno.removeSync(`${dir}/state`);
      Deno.mkdirSync(`${dir}/state`);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(logged.length, 2, logged.join("\n"));
      assert.match(logged[1], /state .*written again/);
      assert.match(Deno.readTextFileSync(`${dir}/state/e9.1.json`), /one 3/);
    } finally {
      await service.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** A store on a full disk: writes fail with ENOSPC until `full` is cleared. */
class FullDisk extends MemoryStore {
  full = true;
  lastError: string | undefined;
  override write(from: Uint8Array, lba: number, count: number): number {
    if (!this.full) return super.write(from, lba, count);
    this.lastError = "pwrite: No space left on device";
    return 0;
  }
}

Deno.test("failing disk: a failed write is answered ABRT, logged once with its reason, counted; logged again after it works", async () => {
  const store = new FullDisk(64, { writeThrough: false });
  await oneExport(store, async (client, device, logged) => {
    const write = (lba: number) =>
      client.ata(9, 0, {
        command: AtaOp.writeSectorsExt,
        lba,
        count: 2,
        data: new Uint8Array(1024).fill(lba),
      });
    for (let i = 0; i < 5; i++) {
      const r = await write(i);
      assert.ok(r && (r[27] & 1) === 1 && r[25] === 0x04, "ABRT");
    }
    assert.equal(device.counters.ioErrors, 5);
    assert.equal(logged.length, 1, logged.join("\n"));
    assert.match(
      logged[0],
      /e9\.0: write of 2 sectors at 0 failed: pwrite: No space left on device/,
    );
    store.full = false;
    const ok = await write(8);
    assert.ok(ok && (ok[27] & 1) === 0);
    assert.equal(logged.length, 2, logged.join("\n"));
    assert.match(logged[1], /e9\.0: .*work again.*5 failed/);
    store.full = true;
    await write(9);
    assert.equal(logged.length, 3, logged.join("\n"));
  });
});

Deno.test("extension declarations are logged through the export's log (the service's journal), not straight to stderr", async () => {
  await oneExport(new MemoryStore(64), async (client, _device, logged) => {
    const reply = await client.exchange((frame, tag) => {
      client.header(frame, 9, 0, EXTENSION_COMMAND, tag);
      return encodeExtension(frame, {
        op: ExtensionOp.declare,
        leaseSeconds: 0,
        session: 5,
        capabilities: Capability.monotonicTags,
        supported: 0,
      });
    });
    assert.ok(reply, "answered");
    assert.equal(logged.length, 1, logged.join("\n"));
    assert.match(logged[0], /^aoe target: .* declares tags$/);
  });
});
