/**
 * The server's bounds: accept goes on after running out of descriptors,
 * connections past the limit are refused, and clients queueing large writes
 * against an export that never answers cannot make the server buffer more
 * than its byte budget.
 */
import assert from "node:assert/strict";
import { Cmd, encodeRequest } from "./protocol.ts";
import type { NbdExport } from "./export.ts";
import { NbdServer } from "./server.ts";
import { rawClient } from "./testdata/client.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An export whose writes are never answered until {@link SilentExport.answer} (a silent AoE target). */
class SilentExport implements NbdExport {
  readonly name = "silent";
  readonly size = 1 << 30;
  readonly canTrim = false;
  readonly trimReadsZeros = false;
  #pending: (() => void)[] = [];
  writes = 0;
  read(_offset: number, length: number) {
    return Promise.resolve(new Uint8Array(length));
  }
  write() {
    this.writes++;
    return new Promise<void>((resolve) => this.#pending.push(resolve));
  }
  flush() {
    return Promise.resolve();
  }
  trim() {
    return Promise.resolve();
  }
  answer() {
    for (const resolve of this.#pending.splice(0)) resolve();
  }
}

Deno.test("nbd limits: many clients queueing large writes against a silent export stay within the byte budget", async () => {
  const exp = new SilentExport();
  const dir = Deno.makeTempDirSync();
  const server = new NbdServer({ names: () => ["silent"], get: () => exp }, {
    maxBytes: 16 << 20,
    maxBytesPerConnection: 8 << 20,
    log: () => {},
  });
  server.listenUnix({ path: `${dir}/nbd.sock` });
  const clients: Awaited<ReturnType<typeof rawClient>>[] = [];
  try {
    const rssBefore = Deno.memoryUsage().rss;
    const payload = new Uint8Array(1 << 20).fill(0x5a);
    const sending: Promise<void>[] = [];
    for (let c = 0; c < 6; c++) {
      const client = await rawClient(`${dir}/nbd.sock`, "silent");
      clients.push(client);
      // 32 writes of 1 MiB each, 192 MiB in all: the server may hold 16 MiB of it.
      sending.push(
        (async () => {
          for (let i = 0; i < 32; i++) {
            await client.write(
              encodeRequest({
                flags: 0,
                type: Cmd.write,
                cookie: BigInt(i),
                offset: i << 20,
                length: 1 << 20,
              }),
            );
            await client.write(payload);
          }
        })().catch(() => {}),
      );
    }
    let last = -1;
    for (let i = 0; i < 40 && exp.writes !== last; i++) {
      last = exp.writes;
      await sleep(150);
    }
    const grown = Deno.memoryUsage().rss - rssBefore;
    assert.ok(server.bytesInFlight <= 16 << 20, `${server.bytesInFlight} bytes in flight`);
    assert.ok(exp.writes <= 16, `${exp.writes} writes of 1 MiB buffered`);
    assert.ok(exp.writes >= 8, "the budget is used");
    assert.ok(grown < 96 << 20, `memory grew by ${grown >> 20} MiB`);
    // Answered, the writes complete and the rest flows.
    for (let i = 0; i < 200 && exp.writes < 6 * 32; i++) {
      exp.answer();
      await sleep(10);
    }
    exp.answer();
    assert.equal(exp.writes, 6 * 32, "every write reached the export once the target answered");
    await Promise.all(sending);
    for (let i = 0; i < 100 && server.bytesInFlight > 0; i++) await sleep(10);
    assert.equal(server.bytesInFlight, 0, "everything given back");
  } finally {
    for (const client of clients) client.conn().close();
    exp.answer();
    server.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("nbd limits: connections past the limit are refused at accept; a freed slot is reused", async () => {
  const exp = new SilentExport();
  const dir = Deno.makeTempDirSync();
  const server = new NbdServer({ names: () => ["silent"], get: () => exp }, {
    maxConnections: 3,
    log: () => {},
  });
  server.listenUnix({ path: `${dir}/nbd.sock` });
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 3; i++) conns.push((await rawClient(`${dir}/nbd.sock`)).conn());
    const extra = await Deno.connect({ transport: "unix", path: `${dir}/nbd.sock` });
    assert.equal(await extra.read(new Uint8Array(18)), null, "the fourth connection is closed");
    extra.close();
    assert.equal(server.counters.refused, 1);
    conns.shift()!.close();
    for (let i = 0; i < 50 && server.clients > 2; i++) await sleep(10);
    conns.push((await rawClient(`${dir}/nbd.sock`)).conn()); // gets its hello
    assert.equal(server.clients, 3);
  } finally {
    for (const conn of conns) conn.close();
    server.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("nbd limits: the TCP listener accepts again after running out of file descriptors", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./testdata/tcp_server.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const conns: Deno.Conn[] = [];
  const stderr: string[] = [];
  (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr.push(chunk);
  })();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const port = Number((await reader.read()).value!.trim());
    const fds = [...Deno.readDirSync(`/proc/${child.pid}/fd`)].length;
    const limit = fds + 6;
    const prlimit = await new Deno.Command("prlimit", {
      args: ["--pid", String(child.pid), `--nofile=${limit}:${limit}`],
    }).output();
    assert.equal(prlimit.code, 0, new TextDecoder().decode(prlimit.stderr));
    // More connections than descriptors left: accept fails with EMFILE.
    for (let i = 0; i < 20; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    for (let i = 0; i < 100 && !stderr.join("").includes("retrying"); i++) await sleep(20);
    assert.match(stderr.join(""), /accept on tcp:.*(retrying)/, "accept failed (EMFILE)");
    for (const conn of conns.splice(0)) conn.close();
    await sleep(200);
    const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
    conns.push(fresh);
    const hello = new Uint8Array(18);
    const got = await Promise.race([fresh.read(hello), sleep(5000).then(() => "no hello")]);
    assert.equal(got, 18, "a new connection is served after the descriptors came back");
  } finally {
    for (const conn of conns) conn.close();
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("nbd limits: a client that sends refused requests and never reads the replies is not read from without bound", async () => {
  const exp = new SilentExport();
  const dir = Deno.makeTempDirSync();
  const server = new NbdServer({ names: () => ["silent"], get: () => exp }, { log: () => {} });
  server.listenUnix({ path: `${dir}/nbd.sock` });
  const client = await rawClient(`${dir}/nbd.sock`, "silent");
  try {
    // Reads past the end: each refused at once with a 16-byte reply that nobody reads.
    const perChunk = 4096;
    const chunk = new Uint8Array(28 * perChunk);
    for (let i = 0; i < perChunk; i++) {
      chunk.set(
        encodeRequest({
          flags: 0,
          type: Cmd.read,
          cookie: BigInt(i),
          offset: exp.size,
          length: 512,
        }),
        i * 28,
      );
    }
    // 64 MiB of requests would queue 37 MiB of replies; past the server's socket buffers and
    // its backlog limit it must stop reading, so the client's writes stall well before that.
    const total = 64 << 20;
    let sent = 0;
    let stalled = false;
    while (sent < total) {
      const wrote = await Promise.race([
        client.write(chunk).then(() => true),
        sleep(2000).then(() => false),
      ]);
      if (!wrote) {
        stalled = true;
        break;
      }
      sent += chunk.length;
    }
    assert.ok(stalled, `the server read all ${sent >> 20} MiB of refused requests`);
    assert.ok(sent < 32 << 20, `${sent >> 20} MiB read before the server stopped`);
  } finally {
    client.conn().close();
    server.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
