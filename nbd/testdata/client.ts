/**
 * Test helpers for the NBD server: an export in memory, a server on a Unix
 * socket around it, and a raw client that speaks the protocol byte by byte.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeRequest, IHAVEOPT, Option, Reply } from "../protocol.ts";
import type { NbdExport } from "../export.ts";
import { NbdServer, type NbdServerOptions } from "../server.ts";

/** An export in memory; `trimFails` makes TRIM reject as a store that cannot punch holes. */
export class MemoryExport implements NbdExport {
  readonly data: Uint8Array;
  flushes = 0;
  trims = 0;
  trimFails = false;
  readonly canFua = true;
  readonly canMultiConn = true;
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
    this.trims++;
    if (this.trimFails) return Promise.reject(new Error("fallocate: operation not supported"));
    this.data.fill(0, offset, offset + length);
    return Promise.resolve();
  }
}

/** Runs `fn` with a server on a Unix socket in a fresh directory, serving two memory exports. */
export async function withServer(
  fn: (socket: string, exports: MemoryExport[], server: NbdServer) => Promise<void>,
  options: NbdServerOptions = {},
) {
  const dir = Deno.makeTempDirSync();
  const exports = [
    new MemoryExport("e9.0", 1 << 20),
    new MemoryExport("e9.1", 2 << 20, false, false),
  ];
  const log: string[] = [];
  const server = new NbdServer({
    names: () => exports.map((e) => e.name),
    get: (n) => exports.find((e) => e.name === n),
  }, { log: (line) => log.push(line), ...options });
  server.listenUnix({ path: `${dir}/nbd.sock` });
  try {
    await fn(`${dir}/nbd.sock`, exports, server);
  } finally {
    server.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

/**
 * A raw client: connects, upgrades to TLS after STARTTLS when `tls` is given,
 * negotiates GO for `name`, and gives request/reply helpers.
 */
export async function rawClient(
  socket: string | Deno.TcpConn,
  name?: string,
  tls?: Deno.StartTlsOptions,
) {
  let conn: Deno.Conn = typeof socket === "string"
    ? await Deno.connect({ transport: "unix", path: socket })
    : socket;
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
  const write = async (bytes: Uint8Array) => {
    for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
  };
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
  if (tls) {
    await option(Option.startTls);
    const r = await optionReply();
    if (r.type !== Reply.ack) throw new Error(`STARTTLS refused: ${r.type.toString(16)}`);
    conn = await Deno.startTls(conn as Deno.TcpConn, tls);
  }
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
  return { conn: () => conn, option, optionReply, request, reply, readN, write };
}
