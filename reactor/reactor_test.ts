import assert from "node:assert/strict";
import { libc, linux } from "../ffi/libc.ts";
import { Reactor } from "./reactor.ts";
import { socketPair, UnixListener } from "./socket.ts";

function sendRaw(fd: number, bytes: Uint8Array): number {
  return Number(libc().send(fd, bytes, BigInt(bytes.length), linux.MSG_DONTWAIT));
}

function recvRaw(fd: number, into: Uint8Array): number {
  return Number(libc().recv(fd, into, BigInt(into.length), linux.MSG_DONTWAIT));
}

Deno.test("reactor: a read waits for data and ends at end of stream, driven by the reactor itself", async () => {
  const reactor = new Reactor();
  const [ours, theirs] = socketPair(reactor);
  try {
    const buffer = new Uint8Array(16);
    const pending = ours.read(buffer);
    setTimeout(() => sendRaw(theirs, new TextEncoder().encode("hello")), 20);
    assert.equal(await pending, 5);
    assert.equal(new TextDecoder().decode(buffer.subarray(0, 5)), "hello");
    const ended = ours.read(buffer);
    setTimeout(() => libc().close(theirs), 20);
    assert.equal(await ended, null);
  } finally {
    ours.close();
    reactor.close();
  }
});

Deno.test("reactor: a write blocked by a full socket completes once the peer drains it, with every byte in order", async () => {
  const reactor = new Reactor();
  const [ours, theirs] = socketPair(reactor);
  try {
    const payload = new Uint8Array(4 << 20).map((_, i) => (i * 7) & 0xff);
    const written = (async () => {
      for (let done = 0; done < payload.length;) done += await ours.write(payload.subarray(done));
    })();
    const received = new Uint8Array(payload.length);
    let have = 0;
    const chunk = new Uint8Array(256 * 1024);
    while (have < payload.length) {
      const n = recvRaw(theirs, chunk);
      if (n > 0) {
        received.set(chunk.subarray(0, n), have);
        have += n;
      } else await new Promise((r) => setTimeout(r, 1));
    }
    await written;
    assert.deepEqual(received, payload);
  } finally {
    ours.close();
    libc().close(theirs);
    reactor.close();
  }
});

Deno.test("reactor: a hosting loop's wait resolves waiters and reports its own broken descriptors", async () => {
  const reactor = new Reactor();
  reactor.host(true);
  const [ours, theirs] = socketPair(reactor);
  const [hungUp, peer] = socketPair(reactor);
  try {
    const pending = ours.read(new Uint8Array(8));
    sendRaw(theirs, new Uint8Array([1, 2, 3]));
    libc().close(peer); // the caller's descriptor now reports a hang-up
    const result = await reactor.wait([hungUp.fd], 1000);
    assert.equal(result.woke, 1);
    assert.deepEqual(result.broken, [hungUp.fd]);
    assert.equal(await pending, 3);
    // Nothing left to wait for: the poll times out with nothing woken.
    assert.deepEqual(await reactor.wait([], 10), { woke: 0, ready: 0, broken: [] });
  } finally {
    ours.close();
    hungUp.close();
    libc().close(theirs);
    reactor.close();
  }
});

Deno.test("reactor: a Unix listener accepts connections and closing it ends the accept loop", async () => {
  const dir = Deno.makeTempDirSync();
  const reactor = new Reactor();
  const listener = new UnixListener(`${dir}/s.sock`, reactor);
  try {
    const client = Deno.connect({ transport: "unix", path: `${dir}/s.sock` });
    const conn = await listener.accept();
    assert.ok(conn);
    const c = await client;
    await c.write(new TextEncoder().encode("ping"));
    const buffer = new Uint8Array(4);
    assert.equal(await conn.read(buffer), 4);
    assert.equal(new TextDecoder().decode(buffer), "ping");
    await conn.write(new TextEncoder().encode("pong"));
    const back = new Uint8Array(4);
    assert.equal(await c.read(back), 4);
    assert.equal(new TextDecoder().decode(back), "pong");
    c.close();
    assert.equal(await conn.read(buffer), null);
    conn.close();
    const next = listener.accept();
    listener.close();
    assert.equal(await next, undefined);
  } finally {
    listener.close();
    reactor.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
