import assert from "node:assert/strict";
import { libc, linux } from "../ffi/libc.ts";
import { eventLoopTurn, PollSet } from "./poll.ts";
import { AdaptiveSpin } from "./spin.ts";

Deno.test("poll: a loop of blocking polls and event-loop turns still fires timers and accepts TCP connections", async () => {
  const set = new PollSet(); // nothing in it: each poll sleeps its whole timeout
  let ticks = 0;
  const timer = setInterval(() => ticks++, 20);
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  let accepted = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      accepted++;
      conn.close();
    }
  })().catch(() => {});
  const connecting = Deno.connect({ port: (listener.addr as Deno.NetAddr).port });
  try {
    // Until the timer has fired five times (100 ms of ticks), at most 3 s: a loaded
    // machine may deschedule this process, but a loop that starves timers never gets there.
    const end = performance.now() + 3000;
    while (performance.now() < end && (ticks < 5 || accepted < 1)) {
      set.block(5);
      await eventLoopTurn();
    }
    (await connecting).close();
  } finally {
    clearInterval(timer);
    listener.close();
    await accepting;
  }
  assert.ok(ticks >= 5, `a 20 ms interval fired ${ticks} times in 3 s`);
  assert.equal(accepted, 1);
});

Deno.test("poll: block reports the ready descriptor and a hang-up as broken", () => {
  const pair = new Int32Array(2);
  libc().socketpair(linux.AF_UNIX, linux.SOCK_STREAM, 0, new Uint8Array(pair.buffer));
  try {
    const set = new PollSet();
    for (let i = 0; i < 20; i++) set.add(pair[0]); // grows past its first buffer
    assert.equal(set.block(0), 0);
    libc().send(pair[1], new Uint8Array([7]), 1n, linux.MSG_DONTWAIT);
    assert.equal(set.block(1000), 20);
    assert.equal(set.revents(19) & linux.POLLIN, linux.POLLIN);
    assert.equal(set.broken(19), false);
    libc().close(pair[1]);
    pair[1] = -1;
    set.block(1000);
    assert.equal(set.broken(0), true);
  } finally {
    libc().close(pair[0]);
    if (pair[1] >= 0) libc().close(pair[1]);
  }
});

Deno.test("spin: finds work that is there, shrinks to nothing when it finds none, never spins with a limit of 0", () => {
  const spin = new AdaptiveSpin({ maxUs: 40 });
  assert.equal(spin.spin(() => true), true);
  assert.equal(spin.budgetUs, 40);
  let missed = 0;
  while (spin.budgetUs > 0 && missed < 10) {
    if (!spin.spin(() => false)) missed++;
  }
  assert.equal(spin.budgetUs, 0);
  // 40 → 20 → 10 → 5 → 2.5 µs: four misses, fewer if a preemption dropped it at once.
  assert.ok(missed >= 1 && missed <= 5, `${missed} missed spins before it stopped`);
  // Backed off: the next idle episodes do not even look.
  let looked = 0;
  spin.spin(() => (looked++, false));
  assert.equal(looked, 0);
  const never = new AdaptiveSpin({ maxUs: 0 });
  assert.equal(never.spin(() => true), false);
});
