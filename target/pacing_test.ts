import assert from "node:assert/strict";
import { type MemoryLink, MemorySegment } from "../link/mod.ts";
import { TestClient } from "../testing/client.ts";
import { AtaOp, Command, ConfigCommand, decodeHeader } from "../wire/mod.ts";
import { MemoryStore } from "./backing.ts";
import { Export } from "./export.ts";
import { MAX_PACED_REQUESTS, PACE_EXPIRY_MS, PACE_WINDOW } from "./pacing.ts";
import { TargetServer } from "./server.ts";

const TARGET_MAC = 0x020000000001;
const CLIENT_MAC = 0x020000000002;

/** `count` exports on shelves of 25 slots (as the 40 × 25), sharing one tiny store. */
function exports(count: number, firstShelf = 1): Export[] {
  const store = new MemoryStore(8);
  return Array.from(
    { length: count },
    (_, i) =>
      new Export({
        shelf: firstShelf + Math.floor(i / 25),
        slot: i % 25,
        store,
        bufferCount: 16,
      }),
  );
}

/** Drains every frame waiting on `link`, as [shelf.slot, tag, dst] of each Query Config response. */
function drain(link: MemoryLink): { name: string; tag: number; dst: number }[] {
  const out = [];
  for (let n = link.receive(); n > 0; n = link.receive()) {
    for (let i = 0; i < n; i++) {
      const h = decodeHeader(link.rx[i].subarray(0, link.rxLength[i]));
      if (h.response && h.command === Command.config) {
        out.push({ name: `e${h.shelf}.${h.slot}`, tag: h.tag, dst: h.dst });
      }
    }
  }
  return out;
}

function setup(count: number, seed?: number) {
  let clock = 1000;
  const segment = new MemorySegment();
  const targetLink = segment.attach(TARGET_MAC, "eth0");
  const server = new TargetServer(exports(count), [targetLink], {
    pacing: { now: () => clock, seed },
  });
  const client = new TestClient(segment.attach(CLIENT_MAC, "client"), TARGET_MAC);
  return {
    server,
    client,
    advance: (ms: number) => clock += ms,
    now: () => clock,
  };
}

function broadcastConfig(client: TestClient, tag: number): void {
  const frame = new Uint8Array(60);
  client.dst = 0xffffffffffff;
  client.header(frame, 0xffff, 0xff, Command.config, tag);
  frame[29] = 0x10 | ConfigCommand.read;
  client.sendRaw(frame, 60);
}

Deno.test("pacing: 1,000 exports answer a broadcast Query Config to a silent initiator: never more than the window per expiry time, every reply arrives once", () => {
  const { server, client, advance, now } = setup(1000);
  broadcastConfig(client, 0x1234);
  const seen = new Map<string, number>();
  const times: number[] = [];
  server.pollOnce();
  for (let step = 0; step < 20000 && seen.size < 1000; step++) {
    for (const reply of drain(client.link as MemoryLink)) {
      assert.equal(reply.tag, 0x1234);
      assert.equal(reply.dst, CLIENT_MAC);
      seen.set(reply.name, (seen.get(reply.name) ?? 0) + 1);
      times.push(now());
    }
    advance(1);
    server.pollOnce();
  }
  assert.equal(seen.size, 1000, "every export answered");
  assert.ok([...seen.values()].every((n) => n === 1), "each exactly once");
  assert.equal(times.filter((t) => t === times[0]).length, PACE_WINDOW, "the first window at once");
  // Within any span shorter than the expiry, at most a window's worth went out.
  for (let i = PACE_WINDOW; i < times.length; i++) {
    assert.ok(times[i] - times[i - PACE_WINDOW] >= PACE_EXPIRY_MS, `answer ${i} at ${times[i]}`);
  }
  // And the expiry's jitter (up to half of it) spreads them.
  const span = times[times.length - 1] - times[0];
  assert.ok(span >= ((1000 - PACE_WINDOW) / PACE_WINDOW) * PACE_EXPIRY_MS, `span ${span}`);
  assert.ok(span <= ((1000 / PACE_WINDOW) + 1) * PACE_EXPIRY_MS * 1.5, `span ${span}`);
  assert.equal(server.pacer.counters.requests, 1);
  assert.equal(server.pacer.counters.replies, 1000);
  assert.equal(server.pacer.pending, false);
});

Deno.test("pacing: an initiator that sends IDENTIFY for what it was answered clocks the answers: never more than the window outstanding", () => {
  const { server, client } = setup(1000);
  broadcastConfig(client, 5);
  server.pollOnce();
  const seen = new Set<string>();
  const outstanding = drain(client.link as MemoryLink).map((r) => r.name);
  assert.equal(outstanding.length, PACE_WINDOW);
  // The clock stands still: only the initiator's requests let answers go.
  for (let round = 0; round < 200 && seen.size < 1000; round++) {
    const take = outstanding.splice(0, 5);
    for (const name of take) {
      seen.add(name);
      const [shelf, slot] = name.slice(1).split(".").map(Number);
      const frame = new Uint8Array(60);
      client.dst = TARGET_MAC;
      client.header(frame, shelf, slot, Command.ata, 0x100 + round);
      frame[25] = 1;
      frame[27] = AtaOp.identifyDevice;
      client.sendRaw(frame, 60);
    }
    server.pollOnce();
    const more = drain(client.link as MemoryLink).map((r) => r.name);
    outstanding.push(...more);
    assert.ok(outstanding.length <= PACE_WINDOW, `${outstanding.length} outstanding`);
    if (take.length === 0) break;
  }
  outstanding.forEach((name) => seen.add(name));
  assert.equal(seen.size, 1000, "every export answered without the clock moving");
  assert.ok(server.pacer.counters.acks >= 1000 - PACE_WINDOW);
  assert.equal(server.pacer.counters.expired, 0);
});

Deno.test("pacing: unicast ATA is answered at once while a broadcast's answers are paced", async () => {
  const { server, client } = setup(500);
  broadcastConfig(client, 7);
  server.pollOnce();
  assert.equal(drain(client.link as MemoryLink).length, PACE_WINDOW);
  assert.ok(server.pacer.pending);
  // The clock stands still: no further answer may go, but the IDENTIFY (of a
  // device not answered yet, so no acknowledgment) is answered.
  client.dst = TARGET_MAC;
  const reply = client.ata(20, 0, { command: AtaOp.identifyDevice, count: 1 }, 200);
  server.pollOnce();
  const answer = await reply;
  assert.ok(answer, "IDENTIFY answered");
  assert.equal(decodeHeader(answer).shelf, 20);
  assert.equal(
    client.unmatched.length + drain(client.link as MemoryLink).length,
    0,
    "no Query Config reply meanwhile",
  );
});

Deno.test("pacing: a target with fewer exports than the window answers everything at once, as before", () => {
  const { server, client } = setup(PACE_WINDOW - 2);
  broadcastConfig(client, 9);
  server.pollOnce();
  assert.equal(drain(client.link as MemoryLink).length, PACE_WINDOW - 2);
  assert.equal(server.pacer.pending, false);
});

Deno.test("pacing: a repeated broadcast from the same initiator is folded in; every export answers the newer tag", () => {
  const { server, client, advance } = setup(200);
  broadcastConfig(client, 1);
  server.pollOnce();
  const first = drain(client.link as MemoryLink);
  assert.equal(first.length, PACE_WINDOW);
  broadcastConfig(client, 2);
  const after = new Map<string, number>();
  for (let step = 0; step < 5000; step++) {
    advance(1);
    server.pollOnce();
    for (const reply of drain(client.link as MemoryLink)) after.set(reply.name, reply.tag);
  }
  assert.equal(server.pacer.counters.merged, 1);
  assert.equal(after.size, 200, "every export answered again");
  assert.ok([...after.values()].every((tag) => tag === 2));
});

Deno.test("pacing: a flood of broadcasts from many initiators is bounded", () => {
  const { server, client } = setup(100);
  const frame = new Uint8Array(60);
  for (let i = 0; i < MAX_PACED_REQUESTS + 10; i++) {
    client.dst = 0xffffffffffff;
    client.header(frame, 0xffff, 0xff, Command.config, i);
    frame[6 + 5] = i; // a different source MAC each time
    frame[29] = 0x10;
    client.sendRaw(frame, 60);
    server.pollOnce();
  }
  assert.ok(server.pacer.counters.overflow >= 10);
  assert.ok(server.pacer.counters.peakWaiting <= MAX_PACED_REQUESTS);
});

Deno.test("pacing: start-up announcements are paced too", () => {
  const { server, client, advance } = setup(300);
  server.announce();
  const names = new Set<string>();
  const first = drain(client.link as MemoryLink);
  assert.equal(first.length, PACE_WINDOW);
  assert.ok(first.every((a) => a.dst === 0xffffffffffff && a.tag === 0));
  first.forEach((a) => names.add(a.name));
  for (let step = 0; step < 5000; step++) {
    advance(1);
    server.pollOnce();
    for (const a of drain(client.link as MemoryLink)) names.add(a.name);
  }
  assert.equal(names.size, 300);
});

Deno.test("pacing: a discovery of every export replaces the announcements nobody took", () => {
  const { server, client } = setup(300);
  server.announce();
  assert.equal(drain(client.link as MemoryLink).length, PACE_WINDOW);
  broadcastConfig(client, 3);
  server.pollOnce();
  assert.equal(server.pacer.counters.superseded, 300 - PACE_WINDOW);
  assert.equal(server.pacer.counters.requests, 1);
});

Deno.test("pacing: two targets' schedules differ (deterministic per target), one target's repeats", () => {
  const schedule = (seed: number) => {
    const { server, client, advance, now } = setup(640, seed);
    broadcastConfig(client, 1);
    server.pollOnce();
    const times: number[] = [];
    for (let step = 0; step < 1000; step++) {
      if (drain(client.link as MemoryLink).length > 0) times.push(now());
      advance(1);
      server.pollOnce();
    }
    return times;
  };
  assert.deepEqual(schedule(11), schedule(11));
  assert.notDeepEqual(schedule(11), schedule(12));
});
