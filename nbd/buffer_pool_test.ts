import assert from "node:assert/strict";
import { BufferPool } from "./buffer_pool.ts";

Deno.test("buffer pool: exact lengths, reuse by size class, and a cap on idle memory", () => {
  const pool = new BufferPool(3 << 20);
  const a = pool.take(1 << 20);
  assert.equal(a.length, 1 << 20);
  const small = pool.take(1000);
  assert.equal(small.length, 1000);
  assert.equal(small.buffer.byteLength, 4096);
  pool.give(a);
  assert.equal(pool.idleBytes, 1 << 20);
  const b = pool.take(600 * 1024); // same 1 MiB class: the same memory again
  assert.equal(b.buffer, a.buffer);
  assert.equal(b.length, 600 * 1024);
  assert.equal(pool.idleBytes, 0);
  // Beyond the cap, given buffers are left to the garbage collector.
  for (let i = 0; i < 5; i++) pool.give(new Uint8Array(new ArrayBuffer(1 << 20)));
  assert.equal(pool.idleBytes, 3 << 20);
  // A buffer that is not a whole size class is never pooled.
  pool.give(new Uint8Array(5000));
  assert.equal(pool.idleBytes, 3 << 20);
});
