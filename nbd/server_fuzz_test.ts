/**
 * Fuzzing the NBD server: random and malformed handshakes, options and
 * requests, each on its own connection, for a few seconds. The server must
 * not crash (no uncaught error or unhandled rejection fails the test), not
 * hang (every connection ends once the client has sent its bytes and shut
 * its side), hold no bytes afterwards, and still serve a good client.
 */
import assert from "node:assert/strict";
import { Cmd, encodeRequest, IHAVEOPT, Option } from "./protocol.ts";
import { rawClient, withServer } from "./testdata/client.ts";

/** A small seeded PRNG (mulberry32), so a failing run can be repeated. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  // Noise is cut from one seeded megabyte (generating each byte anew would be the test's cost).
  const noise = Uint8Array.from({ length: 1 << 20 }, () => int(256));
  const bytes = (n: number) => {
    const at = int(noise.length - Math.min(n, noise.length) + 1);
    return noise.subarray(at, at + n);
  };
  const pick = <T>(items: readonly T[]) => items[int(items.length)];
  return { next, int, bytes, pick };
}

type Rng = ReturnType<typeof random>;

function option(opt: number, data: Uint8Array, claimedLength = data.length): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, IHAVEOPT);
  view.setUint32(8, opt);
  view.setUint32(12, claimedLength);
  out.set(data, 16);
  return out;
}

function infoData(rng: Rng): Uint8Array {
  const name = new TextEncoder().encode(
    rng.next() < 0.8 ? "e9.0" : rng.pick(["e9.1", "", "nope", "e9.0\0"]),
  );
  const count = rng.int(4);
  const out = new Uint8Array(4 + name.length + 2 + count * 2);
  const view = new DataView(out.buffer);
  view.setUint32(0, rng.next() < 0.97 ? name.length : rng.int(1 << 16));
  out.set(name, 4);
  view.setUint16(4 + name.length, rng.next() < 0.97 ? count : rng.int(1 << 16));
  for (let i = 0; i < count; i++) view.setUint16(6 + name.length + i * 2, rng.int(6));
  return out;
}

/** One connection's bytes: a plausible start, then noise of the kind that goes wrong. */
function session(rng: Rng): Uint8Array[] {
  const parts: Uint8Array[] = [];
  const flags = rng.next() < 0.95 ? rng.pick([1, 3]) : rng.int(1 << 30);
  parts.push(
    new Uint8Array([flags >>> 24, (flags >>> 16) & 255, (flags >>> 8) & 255, flags & 255]),
  );
  const options = rng.int(6);
  for (let i = 0; i < options; i++) {
    const opt = rng.next() < 0.8
      ? rng.pick([Option.list, Option.info, Option.structuredReply, Option.startTls, 9, 10, 99])
      : rng.int(1 << 31);
    const data = opt === Option.info
      ? infoData(rng)
      : rng.bytes(rng.int(3) === 0 ? rng.int(64) : 0);
    const claimed = rng.next() < 0.97
      ? data.length
      : rng.pick([data.length + 1, 1 << 20, 0xffffffff]);
    const bytes = option(opt, data, claimed);
    if (rng.next() < 0.02) bytes[rng.int(8)] ^= 0xff; // bad magic
    parts.push(bytes);
  }
  if (rng.next() < 0.8) {
    parts.push(
      rng.next() < 0.8
        ? option(Option.go, infoData(rng))
        : option(Option.exportName, new TextEncoder().encode(rng.pick(["e9.0", "x"]))),
    );
    const requests = rng.int(30);
    for (let i = 0; i < requests; i++) {
      const type = rng.next() < 0.85 ? rng.int(8) : rng.int(1 << 16);
      const length = rng.pick([
        0,
        512,
        4096,
        65536,
        1 << 20,
        4 << 20,
        (4 << 20) + 512,
        9 << 20,
        rng.int(1 << 30),
      ]);
      const offset = rng.pick([0, 512, (1 << 20) - 512, 1 << 20, rng.int(1 << 21), 2 ** 53 - 1]);
      const header = encodeRequest({
        flags: rng.next() < 0.8 ? rng.int(8) : rng.int(1 << 16),
        type,
        cookie: BigInt(i),
        offset,
        length,
      });
      if (rng.next() < 0.01) header[rng.int(4)] ^= 0x10; // bad request magic
      parts.push(header);
      if (type === Cmd.write) {
        parts.push(
          rng.bytes(Math.min(length, rng.next() < 0.9 ? length : rng.int(length + 1), 1 << 20)),
        );
      }
    }
  }
  if (rng.next() < 0.3) parts.push(rng.bytes(rng.int(200)));
  if (rng.next() < 0.2) parts.push(new Uint8Array(0)); // a truncated message follows nothing
  return parts;
}

Deno.test("nbd fuzz: random and malformed handshakes, options and requests neither crash, hang nor leak", async () => {
  const seed = Number(Deno.env.get("NBD_FUZZ_SEED") ?? Date.now() % 100000);
  const rng = random(seed);
  await withServer(async (socket, _exports, server) => {
    const rssBefore = Deno.memoryUsage().rss;
    const deadline = Date.now() + 3000;
    let runs = 0;
    while (Date.now() < deadline) {
      const batch = Array.from({ length: 8 }, () => session(rng));
      await Promise.all(batch.map(async (parts) => {
        const conn = await Deno.connect({ transport: "unix", path: socket });
        // Read whatever comes back until the server ends the connection.
        const drained = (async () => {
          const sink = new Uint8Array(1 << 16);
          try {
            while (await conn.read(sink) !== null) { /* replies */ }
          } catch { /* reset */ }
        })();
        try {
          for (const part of parts) {
            for (let done = 0; done < part.length;) done += await conn.write(part.subarray(done));
          }
          await conn.closeWrite();
        } catch { /* the server closed first: allowed */ }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const hung = await Promise.race([
          drained.then(() => false),
          new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), 5000)),
        ]);
        clearTimeout(timer);
        conn.close();
        assert.equal(
          hung,
          false,
          `seed ${seed}: the server neither answered to the end nor closed`,
        );
      }));
      runs += batch.length;
    }
    for (let i = 0; i < 200 && (server.clients > 0 || server.bytesInFlight > 0); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(server.clients, 0, `seed ${seed}: every connection ended`);
    assert.equal(server.bytesInFlight, 0, `seed ${seed}: no bytes held`);
    assert.ok(runs > 50, `${runs} connections`);
    const grown = Deno.memoryUsage().rss - rssBefore;
    assert.ok(grown < 256 << 20, `seed ${seed}: memory grew by ${grown >> 20} MiB`);
    const good = await rawClient(socket, "e9.0");
    await good.request(Cmd.read, 0, 512, 1n);
    assert.equal((await good.reply(512))!.error, 0, `seed ${seed}: still serving`);
    good.conn().close();
  }, { handshakeTimeoutMs: 2000 });
});
