/** Ordered writes (nbd/stream_io.ts): gathered writes resumed after partial ones, and on a real socket. */
import assert from "node:assert/strict";
import { libc } from "../ffi/libc.ts";
import { type ByteStream, socketPair } from "../reactor/mod.ts";
import { OrderedWriter } from "./stream_io.ts";

function bytes(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff);
}

Deno.test("OrderedWriter: a large payload and its header go out in gathered writes, resumed after partial ones, every byte in order", async () => {
  const written: number[] = [];
  let gathered = 0;
  // At most 4099 bytes a call, across part boundaries.
  const take = (parts: readonly Uint8Array[]) => {
    let budget = 4099;
    let n = 0;
    for (const part of parts) {
      const step = Math.min(budget, part.length);
      written.push(...part.subarray(0, step));
      budget -= step;
      n += step;
      if (budget === 0) break;
    }
    return Promise.resolve(n);
  };
  const stream: ByteStream = {
    read: () => Promise.resolve(null),
    write: (buffer) => take([buffer]),
    writev: (parts) => {
      gathered++;
      return take(parts);
    },
    close: () => {},
  };
  const writer = new OrderedWriter(stream);
  const parts = [bytes(16, 1), bytes(70_000, 2), bytes(16, 3), bytes(0, 4), bytes(3, 5)];
  await Promise.all([
    writer.write2(parts[0], parts[1]),
    writer.write2(parts[2], parts[3]),
    writer.write(parts[4]),
  ]);
  assert.equal(writer.failed, false);
  assert.deepEqual(written, parts.flatMap((p) => [...p]));
  assert.ok(gathered >= Math.ceil(70_035 / 4099), `${gathered} gathered writes`);
});

Deno.test("SocketStream.writev: a header and a 1 MiB payload arrive whole and in order on the other end", async () => {
  const [ours, theirs] = socketPair();
  try {
    const header = bytes(16, 9);
    const payload = bytes(1 << 20, 5);
    const writer = new OrderedWriter(ours);
    const sent = writer.write2(header, payload);
    const got = new Uint8Array(header.length + payload.length);
    let have = 0;
    while (have < got.length) {
      // The other end is blocking: read what is there while the writer waits for room.
      await new Promise((r) => setTimeout(r, 0));
      const n = Number(libc().recv(theirs, got.subarray(have), BigInt(got.length - have), 0x40));
      if (n > 0) have += n;
    }
    await sent;
    assert.equal(writer.failed, false);
    assert.deepEqual(got.subarray(0, 16), header);
    assert.ok(got.subarray(16).every((b, i) => b === payload[i]), "the payload byte for byte");
  } finally {
    ours.close();
    libc().close(theirs);
  }
});
