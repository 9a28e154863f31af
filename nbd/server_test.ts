import assert from "node:assert/strict";
import {
  Cmd,
  CmdFlag,
  encodeRequest,
  Errno,
  IHAVEOPT,
  Option,
  Reply,
  TransmissionFlag,
} from "./protocol.ts";
import { exportFlags, HANDSHAKE_TIMEOUT_MS, type NbdExport, NbdServer } from "./server.ts";

class MemoryExport implements NbdExport {
  readonly data: Uint8Array;
  flushes = 0;
  constructor(
    readonly name: string,
    size: number,
    readonly canTrim = true,
    readonly trimReadsZeros = true,
  ) {
    this.data = new Uint8Array(size);
  }
  get size() {
    return this.data.length;
  }
  read(offset: number, length: number) {
    return Promise.resolve(this.data.slice(offset, offset + length));
  }
  write(offset: number, data: Uint8Array) {
    this.data.set(data, offset);
    return Promise.resolve();
  }
  flush() {
    this.flushes++;
    return Promise.resolve();
  }
  trim(offset: number, length: number) {
    this.data.fill(0, offset, offset + length);
    return Promise.resolve();
  }
}

async function withServer(
  fn: (socket: string, exports: MemoryExport[], server: NbdServer) => Promise<void>,
) {
  const dir = Deno.makeTempDirSync();
  const exports = [
    new MemoryExport("e9.0", 1 << 20),
    new MemoryExport("e9.1", 2 << 20, false, false),
  ];
  const server = new NbdServer({
    names: () => exports.map((e) => e.name),
    get: (n) => exports.find((e) => e.name === n),
  });
  server.listenUnix(`${dir}/nbd.sock`);
  try {
    await fn(`${dir}/nbd.sock`, exports, server);
  } finally {
    server.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

/** A raw client: connects, negotiates GO for `name`, and gives request/reply helpers. */
async function rawClient(socket: string, name?: string) {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  const buffer: number[] = [];
  const readN = async (n: number) => {
    while (buffer.length < n) {
      const chunk = new Uint8Array(65536);
      const got = await conn.read(chunk);
      if (got === null) return undefined;
      buffer.push(...chunk.subarray(0, got));
    }
    return new Uint8Array(buffer.splice(0, n));
  };
  const write = (bytes: Uint8Array) => conn.write(bytes);
  const hello = (await readN(18))!;
  assert.equal(new DataView(hello.buffer).getUint16(16), 3, "FIXED_NEWSTYLE | NO_ZEROES");
  await write(new Uint8Array([0, 0, 0, 3]));
  const option = async (opt: number, data = new Uint8Array(0)) => {
    const head = new Uint8Array(16);
    const v = new DataView(head.buffer);
    v.setBigUint64(0, IHAVEOPT);
    v.setUint32(8, opt);
    v.setUint32(12, data.length);
    await write(head);
    await write(data);
  };
  const optionReply = async () => {
    const head = (await readN(20))!;
    const v = new DataView(head.buffer);
    const length = v.getUint32(16);
    return { option: v.getUint32(8), type: v.getUint32(12), data: (await readN(length))! };
  };
  if (name !== undefined) {
    const n = new TextEncoder().encode(name);
    const data = new Uint8Array(4 + n.length + 2);
    new DataView(data.buffer).setUint32(0, n.length);
    data.set(n, 4);
    await option(Option.go, data);
    for (;;) {
      const r = await optionReply();
      if (r.type === Reply.ack) break;
      if (r.type !== Reply.info) throw new Error(`GO refused: ${r.type.toString(16)}`);
    }
  }
  const request = async (
    type: number,
    offset: number,
    length: number,
    cookie: bigint,
    flags = 0,
    payload?: Uint8Array,
  ) => {
    await write(encodeRequest({ flags, type, cookie, offset, length }));
    if (payload) await write(payload);
  };
  const reply = async (dataLength = 0) => {
    const head = await readN(16);
    if (!head) return undefined;
    const v = new DataView(head.buffer);
    const error = v.getUint32(4);
    const data = error === 0 && dataLength > 0 ? await readN(dataLength) : undefined;
    return { magic: v.getUint32(0), error, cookie: v.getBigUint64(8), data };
  };
  return { conn, option, optionReply, request, reply, readN, write };
}

Deno.test("nbd: LIST, INFO with sizes and flags, unknown options get ERR_UNSUP, STARTTLS refused by policy", async () => {
  await withServer(async (socket) => {
    const c = await rawClient(socket);
    await c.option(Option.list);
    const names: string[] = [];
    for (;;) {
      const r = await c.optionReply();
      if (r.type === Reply.ack) break;
      assert.equal(r.type, Reply.server);
      names.push(new TextDecoder().decode(r.data.subarray(4)));
    }
    assert.deepEqual(names, ["e9.0", "e9.1"]);
    await c.option(99);
    assert.equal((await c.optionReply()).type, Reply.errUnsup);
    await c.option(Option.startTls);
    assert.equal((await c.optionReply()).type, Reply.errPolicy);
    const n = new TextEncoder().encode("e9.1");
    const data = new Uint8Array(4 + n.length + 2);
    new DataView(data.buffer).setUint32(0, n.length);
    data.set(n, 4);
    await c.option(Option.info, data);
    const info = await c.optionReply();
    assert.equal(info.type, Reply.info);
    let rest;
    do rest = await c.optionReply(); while (rest.type === Reply.info);
    assert.equal(rest.type, Reply.ack);
    const iv = new DataView(info.data.buffer);
    assert.equal(Number(iv.getBigUint64(2)), 2 << 20);
    const flags = iv.getUint16(10);
    assert.equal(flags & TransmissionFlag.sendTrim, 0, "e9.1 cannot trim: not advertised");
    assert.ok(
      flags & TransmissionFlag.sendFlush && flags & TransmissionFlag.sendFua &&
        flags & TransmissionFlag.canMultiConn,
    );
    await c.option(Option.info, new Uint8Array([0, 0, 0, 9, 1]));
    assert.equal((await c.optionReply()).type, Reply.errInvalid, "malformed INFO data");
    data.set(new TextEncoder().encode("e9.9"), 4);
    await c.option(Option.go, data);
    let r;
    do r = await c.optionReply(); while (r.type === Reply.info);
    assert.equal(r.type, Reply.errUnknown);
    c.conn.close();
  });
});

Deno.test("nbd: requests in flight, errors for bad ranges and commands, FUA and FLUSH reach the export", async () => {
  await withServer(async (socket, exports) => {
    const c = await rawClient(socket, "e9.0");
    const payload = new Uint8Array(4096).fill(9);
    for (let i = 0; i < 16; i++) {
      await c.request(Cmd.write, i * 4096, 4096, BigInt(i), i === 15 ? CmdFlag.fua : 0, payload);
    }
    const cookies = new Set<bigint>();
    for (let i = 0; i < 16; i++) {
      const r = (await c.reply())!;
      assert.equal(r.error, 0);
      cookies.add(r.cookie);
    }
    assert.equal(cookies.size, 16);
    assert.ok(exports[0].data.subarray(0, 65536).every((b) => b === 9));
    await c.request(Cmd.read, 0, 512, 100n);
    const read = (await c.reply(512))!;
    assert.equal(read.cookie, 100n);
    assert.ok(read.data!.every((b) => b === 9));
    await c.request(Cmd.read, (1 << 20) - 512, 1024, 101n);
    assert.equal((await c.reply())!.error, Errno.EINVAL, "read past the end");
    await c.request(Cmd.write, (1 << 20) - 512, 1024, 102n, 0, new Uint8Array(1024));
    assert.equal((await c.reply())!.error, Errno.ENOSPC, "write past the end");
    await c.request(Cmd.read, 100, 512, 103n);
    assert.equal((await c.reply())!.error, Errno.EINVAL, "unaligned");
    await c.request(42, 0, 0, 104n);
    assert.equal((await c.reply())!.error, Errno.EINVAL, "unknown command");
    await c.request(Cmd.flush, 0, 0, 105n);
    assert.equal((await c.reply())!.error, 0);
    assert.ok(exports[0].flushes >= 1);
    await c.request(Cmd.trim, 0, 8192, 106n);
    assert.equal((await c.reply())!.error, 0);
    assert.ok(exports[0].data.subarray(0, 8192).every((b) => b === 0));
    await c.request(Cmd.disc, 0, 0, 107n);
    assert.equal(await c.reply(), undefined, "closed after DISC");
  });
});

Deno.test("nbd: bad magic and oversized requests close only that connection; a silent client times out; others are served", async () => {
  await withServer(async (socket, _exports, server) => {
    const good = await rawClient(socket, "e9.0");
    const bad = await rawClient(socket, "e9.0");
    await bad.write(new Uint8Array(28).fill(0x41));
    assert.equal(await bad.readN(1), undefined, "bad magic: connection closed");
    const huge = await rawClient(socket, "e9.0");
    await huge.request(Cmd.write, 0, 0xffffffff, 1n);
    assert.equal(await huge.readN(1), undefined, "absurd write length: connection closed");
    const silent = await Deno.connect({ transport: "unix", path: socket });
    await good.request(Cmd.read, 0, 512, 5n);
    assert.equal((await good.reply(512))!.error, 0, "the good client is still served");
    assert.ok(server.counters.dropped >= 2);
    assert.ok(HANDSHAKE_TIMEOUT_MS > 0);
    silent.close();
    good.conn.close();
  });
});

Deno.test("nbd: flags advertised truthfully", () => {
  const trim = exportFlags(new MemoryExport("a", 512, true));
  const noTrim = exportFlags(new MemoryExport("b", 512, false));
  assert.ok(trim & TransmissionFlag.sendTrim);
  assert.equal(noTrim & TransmissionFlag.sendTrim, 0);
  assert.equal(noTrim & TransmissionFlag.readOnly, 0);
  assert.ok(noTrim & TransmissionFlag.hasFlags);
});
