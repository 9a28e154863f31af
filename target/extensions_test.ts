import assert from "node:assert/strict";
import { MemorySegment } from "../link/mod.ts";
import {
  Capability,
  decodeExtension,
  encodeExtension,
  encodeRequestHeader,
  EXTENSION_COMMAND,
  ExtensionOp,
} from "../wire/mod.ts";
import { ExtensionTable, MAX_SESSIONS } from "./extensions.ts";
import { RxTagTracker, TAG_WINDOW, tagDistance, WriteTagTracker } from "./tag_tracking.ts";

Deno.test("tag tracking: duplicates and tags older than the window are refused; the counter may wrap", () => {
  const rx = new RxTagTracker();
  assert.ok(rx.admit(100));
  assert.ok(!rx.admit(100), "a duplicate");
  assert.ok(rx.admit(102));
  assert.ok(rx.admit(101), "reordered but new");
  assert.ok(!rx.admit(101));
  assert.ok(rx.admit(100 + TAG_WINDOW + 5));
  assert.ok(!rx.admit(102), "older than the window");
  assert.ok(rx.admit(0x80000005) && rx.admit(0x80000005), "bit 31 (userland tools) is not tracked");
  rx.reset();
  assert.ok(rx.admit(0x7ffffffe));
  assert.ok(rx.admit(0x7fffffff));
  assert.ok(rx.admit(0), "wraps from 2^31-1 to 0");
  assert.ok(rx.admit(1));
  assert.ok(!rx.admit(0x7fffffff), "a duplicate from before the wrap");
  assert.equal(tagDistance(0, 0x7fffffff), 1);
  assert.equal(tagDistance(0x7fffffff, 0), -1);
});

Deno.test("tag tracking: an older write to any sector of a newer one is stale; disjoint ones are not", () => {
  const w = new WriteTagTracker();
  assert.ok(w.admit(10, 100, 4));
  assert.ok(w.admit(12, 104, 4), "disjoint");
  assert.ok(!w.admit(9, 103, 2), "overlaps sector 103 written by tag 10");
  assert.ok(w.admit(11, 96, 4), "older than 12 but disjoint from it and newer than nothing there");
  assert.ok(w.admit(13, 100, 8));
  assert.ok(!w.admit(12, 107, 1));
});

function request(op: number, session: number, capabilities: number, src = 0x020000000002) {
  const frame = new Uint8Array(64);
  encodeRequestHeader(frame, {
    dst: 0x020000000001,
    src,
    shelf: 1,
    slot: 0,
    command: EXTENSION_COMMAND,
    tag: 7,
  });
  return {
    frame,
    length: encodeExtension(frame, { op, leaseSeconds: 0, session, capabilities, supported: 0 }),
  };
}

function exchange(table: ExtensionTable, r: { frame: Uint8Array; length: number }) {
  const segment = new MemorySegment();
  const link = segment.attach(0x020000000001, "tgt0");
  const peer = segment.attach(0x020000000002, "eth1");
  const handled = table.handleCommand(r.frame, r.length, link, {
    mac: link.mac,
    shelf: 1,
    slot: 0,
  });
  link.flush();
  const n = peer.receive();
  return { handled, link, reply: n > 0 ? peer.rx[0].slice(0, peer.rxLength[0]) : undefined };
}

Deno.test("extension command: grants the policy's first CRC, write order only with tags; withdraw; disabled", () => {
  const table = new ExtensionTable({ crc: ["crc8x4", "crc32c"] }, () => {});
  const all = Capability.monotonicTags | Capability.writeOrder | Capability.crc32c |
    Capability.crc8x4;
  const { reply, link } = exchange(table, request(ExtensionOp.declare, 5, all));
  const arg = decodeExtension(reply!);
  assert.equal(
    arg.capabilities,
    Capability.monotonicTags | Capability.writeOrder | Capability.crc8x4,
  );
  assert.equal(arg.supported, all);
  assert.equal(arg.leaseSeconds, 60);
  assert.equal(reply![14] & 0x0c, 0x08, "R set, E clear");

  const lone = new ExtensionTable({}, () => {});
  const r2 = exchange(lone, request(ExtensionOp.declare, 5, Capability.writeOrder)).reply!;
  assert.equal(decodeExtension(r2).capabilities, 0, "write order needs monotonic tags");

  // The session lapses without renewal.
  const s = table.sessions()[0];
  assert.equal(table.session(0x020000000002, s.link)?.crc, "crc8x4");
  s.expires = 0;
  assert.equal(table.session(0x020000000002, s.link), undefined);
  assert.ok(link);

  const off = new ExtensionTable({ enabled: false }, () => {});
  assert.equal(exchange(off, request(ExtensionOp.declare, 5, all)).handled, false);
  const other = request(ExtensionOp.declare, 5, all);
  other.frame[24] = 0x58; // another vendor's 0xF0: no AoEx magic
  assert.equal(exchange(table, other).handled, false);
  const bad = exchange(table, request(9, 5, all)).reply!;
  assert.equal(bad[14] & 0x04, 0x04, "an unknown op is a bad argument");
  assert.equal(bad[15], 2);
});

Deno.test("extension command: a flood of declarations from spoofed MACs is bounded: sessions, log lines, stats", async () => {
  const logged: string[] = [];
  const table = new ExtensionTable({}, (line) => logged.push(line));
  const all = Capability.monotonicTags | Capability.crc32;
  const segment = new MemorySegment();
  const link = segment.attach(0x020000000001, "tgt0");
  const declare = (src: number) => {
    const r = request(ExtensionOp.declare, 1, all, src);
    table.handleCommand(r.frame, r.length, link, { mac: link.mac, shelf: 1, slot: 0 });
    link.flush();
  };
  const frames = 150_000;
  for (let i = 0; i < frames; i++) declare(0x020000100000 + i);
  assert.ok(table.sessions().length <= MAX_SESSIONS, `${table.sessions().length} sessions`);
  assert.ok(logged.length <= 20, `${logged.length} log lines`);
  const stats = table.stats() as { sessionsRefused: number; initiators: object };
  assert.equal(stats.sessionsRefused, frames - MAX_SESSIONS);
  assert.equal(Object.keys(stats.initiators).length, MAX_SESSIONS);
  // A refused path gets nothing granted, and plain AoE.
  const late = request(ExtensionOp.declare, 1, all, 0x02000f000000);
  const { reply } = exchange(table, late);
  assert.equal(decodeExtension(reply!).capabilities, 0);
  assert.equal(table.session(0x02000f000000, link), undefined);
  // Lapsed sessions make room for a new one.
  // Lapsed sessions are dropped when the table is full, at most once a second.
  for (const s of table.sessions().slice(0, 10)) s.expires = 0;
  await new Promise((resolve) => setTimeout(resolve, 1100));
  declare(0x02000f000001);
  assert.equal(table.session(0x02000f000001, link)?.crc, "crc32");
});
