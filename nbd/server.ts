/**
 * An NBD server: fixed newstyle handshake with option haggling, then the
 * transmission phase with many requests in flight per connection and many
 * connections at once. Bad input gets the protocol's error or a closed
 * connection; other clients are unaffected.
 *
 * @module
 */

import {
  Chunk,
  Cmd,
  CmdFlag,
  decodeInfoRequest,
  decodeRequest,
  encodeChunkHeader,
  encodeErrorChunk,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeOptionReply,
  encodeServerEntry,
  encodeServerHello,
  encodeSimpleReply,
  Errno,
  HandshakeFlag,
  IHAVEOPT,
  Info,
  Option,
  Reply,
  REQUEST_MAGIC,
  TransmissionFlag,
} from "./protocol.ts";
import { type ByteStream, type Reactor, sharedReactor, UnixListener } from "../reactor/mod.ts";
import { BufferPool } from "./buffer_pool.ts";

/** What the server serves. */
export interface NbdExport {
  readonly name: string;
  /** Bytes; 0 when the device behind it is gone. */
  readonly size: number;
  readonly canTrim: boolean;
  /** Trimmed ranges read back as zeros, so WRITE_ZEROES may trim. */
  readonly trimReadsZeros: boolean;
  /** Reads `length` bytes at `offset`, into `into` where the export can (it may return its own buffer). */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array, options: { fua?: boolean }): Promise<void>;
  flush(): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  /** Called when a client starts using the export, and when it stops. */
  open?(): void;
  close?(): void;
}

/** Finds exports by name. */
export interface ExportProvider {
  names(): string[];
  get(name: string): NbdExport | undefined;
}

/** Minimum, preferred and maximum request sizes advertised (NBD_INFO_BLOCK_SIZE). */
export const BLOCK_SIZES = { minimum: 512, preferred: 4096, maximum: 4 << 20 } as const;
/** Option data larger than this is refused. */
const MAX_OPTION_LENGTH = 16 * 1024;
/** A handshake must finish within this time. */
export const HANDSHAKE_TIMEOUT_MS = 30_000;
/** Requests one connection may have in flight before the server stops reading. */
const MAX_IN_FLIGHT = 64;

/** The transmission flags an export earns. */
export function exportFlags(exp: NbdExport): number {
  let flags = TransmissionFlag.hasFlags | TransmissionFlag.sendFlush | TransmissionFlag.sendFua |
    TransmissionFlag.sendWriteZeroes | TransmissionFlag.sendCache |
    // Every connection goes through the same initiator, and FLUSH reaches the target's disk.
    TransmissionFlag.canMultiConn;
  if (exp.canTrim) flags |= TransmissionFlag.sendTrim;
  return flags;
}

/** Buffered exact reads from a stream connection. */
class ExactReader {
  #buffer = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  /** @param conn the stream @param pool where large payload buffers come from */
  constructor(readonly conn: ByteStream, readonly pool?: BufferPool) {}

  /** Resolves with exactly `n` bytes, or undefined at end of stream. */
  async read(n: number): Promise<Uint8Array | undefined> {
    if (n > this.#buffer.length) return await this.#readLarge(n);
    while (this.#end - this.#start < n) {
      if (this.#start > 0 && this.#buffer.length - this.#end < n) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      const got = await this.conn.read(this.#buffer.subarray(this.#end));
      if (got === null) return undefined;
      this.#end += got;
    }
    const out = this.#buffer.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** A payload larger than the buffer: what is buffered, then straight from the socket (no second copy). */
  async #readLarge(n: number): Promise<Uint8Array | undefined> {
    const out = this.pool ? this.pool.take(n) : new Uint8Array(n);
    let have = Math.min(n, this.#end - this.#start);
    out.set(this.#buffer.subarray(this.#start, this.#start + have));
    this.#start += have;
    while (have < n) {
      const got = await this.conn.read(out.subarray(have));
      if (got === null) return undefined;
      have += got;
    }
    return out;
  }
}

/** Parts this large are written as they are; smaller neighbours are joined into one write. */
const JOIN_LIMIT = 64 * 1024;

/** Buffers to write, in order: small parts joined (fewer syscalls), large ones not copied. */
function coalesce(parts: Uint8Array[], total: number): Uint8Array[] {
  if (parts.length === 1) return parts;
  if (total <= JOIN_LIMIT) return [join(parts, total)];
  const out: Uint8Array[] = [];
  let run: Uint8Array[] = [];
  let runBytes = 0;
  const endRun = () => {
    if (run.length > 0) out.push(run.length === 1 ? run[0] : join(run, runBytes));
    run = [];
    runBytes = 0;
  };
  for (const part of parts) {
    if (part.length >= JOIN_LIMIT) {
      endRun();
      out.push(part);
    } else {
      run.push(part);
      runBytes += part.length;
    }
  }
  endRun();
  return out;
}

function join(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Writes whole buffers in order on one connection, coalescing what queued up
 * while the previous write was in progress into one write (fewer syscalls for
 * many small replies).
 */
class OrderedWriter {
  #queue: Uint8Array[] = [];
  #queued = 0;
  #draining = false;
  #flushing: Promise<void> = Promise.resolve();
  #failed = false;

  constructor(readonly conn: ByteStream) {}

  /** Queues buffers to go out together, after everything queued before. */
  write(...parts: Uint8Array[]): Promise<void> {
    for (const part of parts) {
      this.#queue.push(part);
      this.#queued += part.length;
    }
    if (!this.#draining) {
      this.#draining = true;
      this.#flushing = this.#drain();
    }
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const parts = this.#queue;
      const total = this.#queued;
      this.#queue = [];
      this.#queued = 0;
      if (this.#failed) continue;
      try {
        for (const out of coalesce(parts, total)) {
          for (let done = 0; done < out.length;) done += await this.conn.write(out.subarray(done));
        }
      } catch {
        this.#failed = true;
      }
    }
    // Cleared with no await after the last emptiness check: a write queued at any
    // moment is either taken by this loop or starts a new one.
    this.#draining = false;
  }
}

/** Counters across all connections. */
export interface NbdCounters {
  connections: number;
  requests: number;
  errors: number;
  /** Connections closed for protocol violations (bad magic, oversized, slow handshake). */
  dropped: number;
}

/** Options for {@link NbdServer}. */
export interface NbdServerOptions {
  /** Polls the server's Unix sockets (the initiator's, so one loop serves frames and sockets). */
  reactor?: Reactor;
}

/** Serves exports over any number of connections. */
export class NbdServer {
  readonly counters: NbdCounters = { connections: 0, requests: 0, errors: 0, dropped: 0 };
  readonly reactor: Reactor;
  #pool = new BufferPool();
  #listeners: { close(): void }[] = [];
  #connections = new Set<ByteStream>();

  /** @param provider where exports come from @param options where sockets wait */
  constructor(readonly provider: ExportProvider, options: NbdServerOptions = {}) {
    this.reactor = options.reactor ?? sharedReactor();
  }

  /** Listens on a Unix socket path. */
  listenUnix(path: string): void {
    this.#accept(new UnixListener(path, this.reactor));
  }

  /** Listens on TCP (loopback unless an address is given). */
  listenTcp(port: number, hostname = "127.0.0.1"): Deno.NetAddr {
    const listener = Deno.listen({ port, hostname });
    this.reactor.eventLoopIo = true; // its connections wait in Deno's event loop
    this.#accept(listener);
    return listener.addr as Deno.NetAddr;
  }

  #accept(listener: AsyncIterable<ByteStream> & { close(): void }): void {
    this.#listeners.push(listener);
    (async () => {
      try {
        for await (const conn of listener) this.serve(conn);
      } catch { /* closed */ }
    })();
  }

  /** Serves one connection from the handshake on; never throws. */
  serve(conn: ByteStream, options: { transmissionOnly?: NbdExport } = {}): Promise<void> {
    this.counters.connections++;
    this.#connections.add(conn);
    // The kernel's attachment is the block device itself, not a user of it: it does not count as open.
    const done = (options.transmissionOnly
      ? this.#transmission(
        conn,
        new ExactReader(conn, this.#pool),
        new OrderedWriter(conn),
        options.transmissionOnly,
        false,
        false,
      )
      : this.#handshake(conn))
      .catch(() => {})
      .finally(() => {
        this.#connections.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      });
    return done;
  }

  /** Closes listeners and every connection. */
  close(): void {
    for (const listener of this.#listeners) {
      try {
        listener.close();
      } catch { /* closed */ }
    }
    this.#listeners = [];
    for (const conn of this.#connections) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }

  async #handshake(conn: ByteStream): Promise<void> {
    const reader = new ExactReader(conn, this.#pool);
    const writer = new OrderedWriter(conn);
    let finished = false;
    const timer = setTimeout(() => {
      if (!finished) {
        this.counters.dropped++;
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }, HANDSHAKE_TIMEOUT_MS);
    try {
      await writer.write(encodeServerHello());
      const clientFlagBytes = await reader.read(4);
      if (!clientFlagBytes) return;
      const clientFlags = new DataView(clientFlagBytes.buffer).getUint32(0);
      if (clientFlags & ~(HandshakeFlag.fixedNewstyle | HandshakeFlag.noZeroes)) {
        this.counters.dropped++;
        return; // unknown client flags: the spec says drop the connection
      }
      const noZeroes = (clientFlags & HandshakeFlag.noZeroes) !== 0;
      let structured = false;
      for (;;) {
        const header = await reader.read(16);
        if (!header) return;
        const view = new DataView(header.buffer);
        if (view.getBigUint64(0) !== IHAVEOPT) {
          this.counters.dropped++;
          return;
        }
        const option = view.getUint32(8);
        const length = view.getUint32(12);
        if (length > MAX_OPTION_LENGTH) {
          this.counters.dropped++;
          return; // cannot skip it safely without reading it all
        }
        const data = length > 0 ? await reader.read(length) : new Uint8Array(0);
        if (!data) return;
        switch (option) {
          case Option.exportName: {
            const exp = this.#lookup(new TextDecoder().decode(data));
            if (!exp) return; // no error path for EXPORT_NAME: close
            const reply = new Uint8Array(noZeroes ? 10 : 134);
            const rv = new DataView(reply.buffer);
            rv.setBigUint64(0, BigInt(exp.size));
            rv.setUint16(8, exportFlags(exp));
            await writer.write(reply);
            finished = true;
            clearTimeout(timer);
            return await this.#transmission(conn, reader, writer, exp, structured);
          }
          case Option.abort:
            await writer.write(encodeOptionReply(option, Reply.ack));
            return;
          case Option.list:
            if (length !== 0) {
              await writer.write(encodeOptionReply(option, Reply.errInvalid));
              break;
            }
            for (const name of this.provider.names()) {
              await writer.write(encodeOptionReply(option, Reply.server, encodeServerEntry(name)));
            }
            await writer.write(encodeOptionReply(option, Reply.ack));
            break;
          case Option.startTls:
            await writer.write(encodeOptionReply(option, Reply.errPolicy));
            break;
          case Option.info:
          case Option.go: {
            const request = decodeInfoRequest(data);
            if (!request) {
              await writer.write(encodeOptionReply(option, Reply.errInvalid));
              break;
            }
            const exp = this.#lookup(request.name);
            if (!exp) {
              await writer.write(
                encodeOptionReply(
                  option,
                  Reply.errUnknown,
                  new TextEncoder().encode(`no export "${request.name}"`),
                ),
              );
              break;
            }
            await writer.write(
              encodeOptionReply(option, Reply.info, encodeInfoExport(exp.size, exportFlags(exp))),
            );
            await writer.write(
              encodeOptionReply(
                option,
                Reply.info,
                encodeInfoBlockSize(
                  BLOCK_SIZES.minimum,
                  BLOCK_SIZES.preferred,
                  BLOCK_SIZES.maximum,
                ),
              ),
            );
            if (request.requests.includes(Info.name)) {
              await writer.write(
                encodeOptionReply(option, Reply.info, encodeInfoText(Info.name, exp.name)),
              );
            }
            if (request.requests.includes(Info.description)) {
              await writer.write(
                encodeOptionReply(
                  option,
                  Reply.info,
                  encodeInfoText(Info.description, `AoE device ${exp.name}`),
                ),
              );
            }
            await writer.write(encodeOptionReply(option, Reply.ack));
            if (option === Option.go) {
              finished = true;
              clearTimeout(timer);
              return await this.#transmission(conn, reader, writer, exp, structured);
            }
            break;
          }
          case Option.structuredReply:
            if (length !== 0) {
              await writer.write(encodeOptionReply(option, Reply.errInvalid));
              break;
            }
            structured = true;
            await writer.write(encodeOptionReply(option, Reply.ack));
            break;
          default:
            await writer.write(encodeOptionReply(option, Reply.errUnsup));
        }
      }
    } finally {
      finished = true;
      clearTimeout(timer);
    }
  }

  #lookup(name: string): NbdExport | undefined {
    if (name === "") {
      const names = this.provider.names();
      return names.length > 0 ? this.provider.get(names[0]) : undefined;
    }
    const exp = this.provider.get(name);
    return exp && exp.size > 0 ? exp : undefined;
  }

  async #transmission(
    conn: ByteStream,
    reader: ExactReader,
    writer: OrderedWriter,
    exp: NbdExport,
    structured: boolean,
    countsAsOpen = true,
  ): Promise<void> {
    if (countsAsOpen) exp.open?.();
    const inFlight = new Set<Promise<void>>();
    try {
      for (;;) {
        const headerBytes = await reader.read(28);
        if (!headerBytes) return;
        const request = decodeRequest(headerBytes);
        if (request.magic !== REQUEST_MAGIC) {
          this.counters.dropped++;
          return; // out of sync: nothing else can be trusted
        }
        this.counters.requests++;
        let payload: Uint8Array | undefined;
        if (request.type === Cmd.write) {
          if (request.length > BLOCK_SIZES.maximum * 4) {
            this.counters.dropped++;
            return; // far past what we advertised: do not buffer it
          }
          payload = await reader.read(request.length);
          if (!payload) return;
        }
        if (request.type === Cmd.disc) {
          await Promise.all(inFlight);
          return;
        }
        const work = this.#execute(exp, request, payload, writer, structured).catch(() => {});
        inFlight.add(work);
        work.finally(() => inFlight.delete(work));
        if (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
      }
    } finally {
      await Promise.all(inFlight);
      if (countsAsOpen) exp.close?.();
      void conn;
    }
  }

  async #execute(
    exp: NbdExport,
    request: ReturnType<typeof decodeRequest>,
    payload: Uint8Array | undefined,
    writer: OrderedWriter,
    structured: boolean,
  ): Promise<void> {
    const { type, offset, length, flags, cookie } = request;
    const size = exp.size;
    const fail = (error: number, message: string) => {
      this.counters.errors++;
      if (structured && type === Cmd.read) {
        const body = encodeErrorChunk(error, message);
        return writer.write(
          encodeChunkHeader(cookie, Chunk.flagDone, Chunk.error, body.length),
          body,
        );
      }
      return writer.write(encodeSimpleReply(cookie, error));
    };
    const aligned = offset % 512 === 0 && length % 512 === 0;
    try {
      switch (type) {
        case Cmd.read: {
          if (offset + length > size) return await fail(Errno.EINVAL, "read past the end");
          if (length > BLOCK_SIZES.maximum) return await fail(Errno.EOVERFLOW, "read too large");
          if (!aligned) return await fail(Errno.EINVAL, "unaligned read");
          // The reply's buffer is reused once the reply is written (the socket has copied it).
          const buffer = this.#pool.take(length);
          try {
            const data = length > 0 ? await exp.read(offset, length, buffer) : buffer;
            if (structured) {
              const offsetBytes = new Uint8Array(8);
              new DataView(offsetBytes.buffer).setBigUint64(0, BigInt(offset));
              return await writer.write(
                encodeChunkHeader(cookie, Chunk.flagDone, Chunk.offsetData, 8 + data.length),
                offsetBytes,
                data,
              );
            }
            return await writer.write(encodeSimpleReply(cookie, 0), data);
          } finally {
            this.#pool.give(buffer);
          }
        }
        case Cmd.write:
          if (offset + length > size) return await fail(Errno.ENOSPC, "write past the end");
          if (length > BLOCK_SIZES.maximum) return await fail(Errno.EOVERFLOW, "write too large");
          if (!aligned) return await fail(Errno.EINVAL, "unaligned write");
          await exp.write(offset, payload!, { fua: (flags & CmdFlag.fua) !== 0 });
          // Acknowledged by the target: the initiator holds no frame of it any more.
          this.#pool.give(payload as Uint8Array<ArrayBuffer>);
          return await writer.write(encodeSimpleReply(cookie, 0));
        case Cmd.flush:
          await exp.flush();
          return await writer.write(encodeSimpleReply(cookie, 0));
        case Cmd.trim:
          if (!exp.canTrim) return await fail(Errno.EINVAL, "trim not supported");
          if (offset + length > size || !aligned) return await fail(Errno.EINVAL, "bad trim range");
          await exp.trim(offset, length);
          if (flags & CmdFlag.fua) await exp.flush();
          return await writer.write(encodeSimpleReply(cookie, 0));
        case Cmd.writeZeroes: {
          if (offset + length > size) return await fail(Errno.ENOSPC, "write zeroes past the end");
          if (!aligned) return await fail(Errno.EINVAL, "unaligned write zeroes");
          if (exp.canTrim && exp.trimReadsZeros && !(flags & CmdFlag.noHole)) {
            await exp.trim(offset, length);
          } else {
            const chunk = new Uint8Array(Math.min(length, 1 << 20));
            for (let at = 0; at < length; at += chunk.length) {
              const n = Math.min(chunk.length, length - at);
              await exp.write(offset + at, chunk.subarray(0, n), {});
            }
          }
          if (flags & CmdFlag.fua) await exp.flush();
          return await writer.write(encodeSimpleReply(cookie, 0));
        }
        case Cmd.cache:
          return await writer.write(encodeSimpleReply(cookie, 0));
        default:
          return await fail(Errno.EINVAL, `unknown command ${type}`);
      }
    } catch (error) {
      return await fail(Errno.EIO, error instanceof Error ? error.message : String(error));
    }
  }
}
