/**
 * The transmission phase of one connection: read a request, check it with
 * one validator, run it against the export with many requests in flight, and
 * answer in whatever order they complete. Memory is bounded: a request's
 * payload or reply buffer is counted against the connection's and the
 * server's byte budgets before it is allocated, and reading stops while they
 * are spent. See the NBD protocol (proto.md, "Transmission phase").
 *
 * @module
 */

import {
  Chunk,
  Cmd,
  CmdFlag,
  decodeRequest,
  encodeChunkHeader,
  encodeErrorChunk,
  encodeSimpleReply,
  Errno,
  REQUEST_MAGIC,
  type RequestHeader,
  STRUCTURED_REPLY_MAGIC,
} from "./protocol.ts";
import { BLOCK_SIZES, type NbdExport } from "./export.ts";
import { ByteBudget } from "./byte_budget.ts";
import type { ExactReader, OrderedWriter } from "./stream_io.ts";
import type { NbdSession } from "./session.ts";

/** What the handshake settled for a connection. */
export interface TransmissionOptions {
  /** Structured replies were negotiated. */
  structured?: boolean;
  /** Writes, trims and zeroing are refused with EPERM. */
  readOnly?: boolean;
  /** The client opened the export (the kernel's own attachment does not count as a user). */
  countsAsOpen?: boolean;
}

/** Why a request is refused: its errno and a message for structured replies. */
export interface Rejection {
  /** The errno of the reply. */
  readonly errno: number;
  /** Said in a structured error chunk. */
  readonly message: string;
}

const rejection = (errno: number, message: string): Rejection => ({ errno, message });
const READ_PAST_END = rejection(Errno.EINVAL, "read past the end");
const WRITE_PAST_END = rejection(Errno.ENOSPC, "write past the end");
const RANGE_PAST_END = rejection(Errno.EINVAL, "range past the end");
const ZERO_PAST_END = rejection(Errno.ENOSPC, "write zeroes past the end");
const TOO_LARGE = rejection(Errno.EOVERFLOW, "request larger than the maximum block size");
const UNALIGNED = rejection(Errno.EINVAL, "offset or length not a multiple of 512");
const NO_TRIM = rejection(Errno.EINVAL, "trim not supported");
const READ_ONLY = rejection(Errno.EPERM, "read-only export");
const UNKNOWN = rejection(Errno.EINVAL, "unknown command");

/**
 * A write this far past the maximum block size is not read to its end (the
 * connection is dropped); up to here its payload is read and discarded in
 * small pieces and the request gets EOVERFLOW (proto.md: a server "MAY" do either).
 */
export const DISCARD_LIMIT = 4 * BLOCK_SIZES.maximum;

/**
 * Replies to refused requests held for a client that does not read them, in
 * bytes: past it, nothing more is read from that client until they are
 * written (a refusal holds no budget, so this is what bounds them).
 */
export const REFUSED_BACKLOG_LIMIT = 1 << 20;

/** The one check of a request against its export; undefined when it may run. */
export function validateRequest(
  request: RequestHeader,
  exp: NbdExport,
  readOnly: boolean,
): Rejection | undefined {
  const { type, offset, length } = request;
  const pastEnd = offset + length > exp.size;
  const unaligned = offset % BLOCK_SIZES.minimum !== 0 || length % BLOCK_SIZES.minimum !== 0;
  switch (type) {
    case Cmd.read:
    case Cmd.cache:
      if (pastEnd) return READ_PAST_END;
      if (length > BLOCK_SIZES.maximum && type === Cmd.read) return TOO_LARGE;
      if (unaligned) return UNALIGNED;
      return undefined;
    case Cmd.write:
      if (readOnly) return READ_ONLY;
      if (length > BLOCK_SIZES.maximum) return TOO_LARGE;
      if (pastEnd) return WRITE_PAST_END;
      if (unaligned) return UNALIGNED;
      return undefined;
    case Cmd.trim:
      if (readOnly) return READ_ONLY;
      if (!exp.canTrim) return NO_TRIM;
      if (pastEnd) return RANGE_PAST_END;
      if (unaligned) return UNALIGNED;
      return undefined;
    case Cmd.writeZeroes:
      if (readOnly) return READ_ONLY;
      if (pastEnd) return ZERO_PAST_END;
      if (unaligned) return UNALIGNED;
      return undefined;
    case Cmd.flush:
    case Cmd.disc:
      return undefined;
    default:
      return UNKNOWN;
  }
}

/** Bytes a request holds while in flight (its payload or its reply buffer). */
function bytesHeld(request: RequestHeader): number {
  return request.type === Cmd.write || request.type === Cmd.read ? request.length : 0;
}

/** Zeros for WRITE_ZEROES written as data (never modified: exports do not keep written data). */
const ZEROES = new Uint8Array(1 << 20);

/**
 * Serves one connection's transmission phase until DISC, end of stream or a
 * protocol violation; resolves once every request in flight has been answered.
 */
export async function serveTransmission(
  session: NbdSession,
  io: { reader: ExactReader; writer: OrderedWriter; export: NbdExport },
  options: TransmissionOptions = {},
): Promise<void> {
  await new Transmission(session, io.reader, io.writer, io.export, options).run();
}

class Transmission {
  readonly structured: boolean;
  readonly readOnly: boolean;
  readonly countsAsOpen: boolean;
  readonly connectionBudget: ByteBudget;
  #inFlight = 0;
  #slotFreed?: () => void;

  constructor(
    readonly session: NbdSession,
    readonly reader: ExactReader,
    readonly writer: OrderedWriter,
    readonly exp: NbdExport,
    options: TransmissionOptions,
  ) {
    this.structured = options.structured ?? false;
    this.readOnly = options.readOnly ?? false;
    this.countsAsOpen = options.countsAsOpen ?? true;
    this.connectionBudget = new ByteBudget(
      Math.max(session.limits.bytesPerConnection, BLOCK_SIZES.maximum),
    );
  }

  async run(): Promise<void> {
    const { session, reader, exp } = this;
    const { counters, budget } = session;
    const maxInFlight = session.limits.requestsPerConnection;
    if (this.countsAsOpen) exp.open?.();
    try {
      for (;;) {
        const headerBytes = reader.readBuffered(28) ?? await reader.read(28);
        if (!headerBytes) return;
        const request = decodeRequest(headerBytes);
        if (request.magic !== REQUEST_MAGIC) {
          counters.dropped++;
          session.log(`nbd: ${exp.name}: bad request magic, connection dropped`);
          return; // out of sync: nothing else can be trusted
        }
        counters.requests++;
        if (request.type === Cmd.disc) return;
        const refused = validateRequest(request, exp, this.readOnly);
        if (refused) {
          if (request.type === Cmd.write && request.length > DISCARD_LIMIT) {
            counters.dropped++;
            session.log(`nbd: ${exp.name}: write of ${request.length} bytes, connection dropped`);
            return;
          }
          // Answered at once; a refused write's payload, still on the wire, is then read
          // past without being kept.
          const answered = this.#fail(request, refused);
          if (this.writer.backlog > REFUSED_BACKLOG_LIMIT) await answered;
          if (request.type === Cmd.write && !await reader.skip(request.length)) return;
          continue;
        }
        const held = bytesHeld(request);
        if (held > 0) {
          // Counted before the payload or the reply buffer exists: while the budgets
          // are spent nothing more is read from this client.
          if (!this.connectionBudget.tryTake(held)) await this.connectionBudget.take(held);
          if (!budget.tryTake(held)) await budget.take(held);
        }
        let payload: Uint8Array | undefined;
        if (request.type === Cmd.write) {
          try {
            payload = reader.readBuffered(request.length) ?? await reader.read(request.length);
          } finally {
            if (!payload) this.#release(held); // end of stream, or the read failed
          }
          if (!payload) return;
        }
        this.#inFlight++;
        this.#execute(request, payload).then(() => this.#done(held));
        while (this.#inFlight >= maxInFlight) await this.#slot();
      }
    } finally {
      while (this.#inFlight > 0) await this.#slot();
      if (this.countsAsOpen) exp.close?.();
    }
  }

  #slot(): Promise<void> {
    return new Promise((resolve) => this.#slotFreed = resolve);
  }

  #release(held: number): void {
    if (held === 0) return;
    this.connectionBudget.give(held);
    this.session.budget.give(held);
  }

  #done(held: number): void {
    this.#release(held);
    this.#inFlight--;
    const wake = this.#slotFreed;
    this.#slotFreed = undefined;
    wake?.();
  }

  #fail(request: RequestHeader, refused: Rejection): Promise<void> {
    this.session.counters.errors++;
    if (this.structured && request.type === Cmd.read) {
      const body = encodeErrorChunk(refused.errno, refused.message);
      return this.writer.write2(
        encodeChunkHeader(request.cookie, Chunk.flagDone, Chunk.error, body.length),
        body,
      );
    }
    return this.writer.write(encodeSimpleReply(request.cookie, refused.errno));
  }

  /** Runs a valid request and answers it; never rejects. */
  async #execute(request: RequestHeader, payload: Uint8Array | undefined): Promise<void> {
    const { exp, writer, session } = this;
    const { type, offset, length, flags, cookie } = request;
    try {
      switch (type) {
        case Cmd.read: {
          // The reply's buffer is reused once the reply is written (the socket has copied it).
          const buffer = session.pool.take(length);
          try {
            const data = length > 0 ? await exp.read(offset, length, buffer) : buffer;
            const header = this.structured
              ? structuredReadHeader(cookie, offset, data.length)
              : encodeSimpleReply(cookie, 0);
            return await writer.write2(header, data);
          } finally {
            session.pool.give(buffer);
          }
        }
        case Cmd.write:
          await exp.write(offset, payload!, { fua: (flags & CmdFlag.fua) !== 0 });
          // Written (for the bridge: acknowledged by the target), so the buffer is free again.
          session.pool.give(payload as Uint8Array<ArrayBuffer>);
          return await writer.write(encodeSimpleReply(cookie, 0));
        case Cmd.flush:
          await exp.flush();
          return await writer.write(encodeSimpleReply(cookie, 0));
        case Cmd.trim:
          await exp.trim(offset, length);
          if (flags & CmdFlag.fua) await exp.flush();
          return await writer.write(encodeSimpleReply(cookie, 0));
        case Cmd.writeZeroes:
          await this.#zero(offset, length, (flags & CmdFlag.noHole) === 0);
          if (flags & CmdFlag.fua) await exp.flush();
          return await writer.write(encodeSimpleReply(cookie, 0));
        case Cmd.cache:
          return await writer.write(encodeSimpleReply(cookie, 0));
      }
    } catch (error) {
      session.log(
        `nbd: ${exp.name}: ${requestName(type)} at ${offset} (${length} bytes) failed: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
      return await this.#fail(request, rejection(Errno.EIO, "I/O error"));
    }
  }

  /**
   * WRITE_ZEROES: trimmed where the export trims to zeros and a hole is allowed
   * (no NBD_CMD_FLAG_NO_HOLE); where the trim fails (a backing store that cannot
   * punch holes) or may not be used, zeros are written.
   */
  async #zero(offset: number, length: number, mayPunch: boolean): Promise<void> {
    const { exp } = this;
    if (mayPunch && exp.canTrim && exp.trimReadsZeros) {
      try {
        return await exp.trim(offset, length);
      } catch (error) {
        if (this.session.counters.zeroFallbacks++ === 0) {
          this.session.log(
            `nbd: ${exp.name}: trim for WRITE_ZEROES failed (${
              error instanceof Error ? error.message : String(error)
            }), writing zeros instead`,
          );
        }
      }
    }
    for (let at = 0; at < length; at += ZEROES.length) {
      await exp.write(offset + at, ZEROES.subarray(0, Math.min(ZEROES.length, length - at)), {});
    }
  }
}

/** A structured reply's OFFSET_DATA chunk header with its 8-byte offset (28 bytes). */
function structuredReadHeader(cookie: bigint, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(28);
  const view = new DataView(out.buffer);
  view.setUint32(0, STRUCTURED_REPLY_MAGIC);
  view.setUint16(4, Chunk.flagDone);
  view.setUint16(6, Chunk.offsetData);
  view.setBigUint64(8, cookie);
  view.setUint32(16, 8 + length);
  view.setBigUint64(20, BigInt(offset));
  return out;
}

function requestName(type: number): string {
  return Object.entries(Cmd).find(([, value]) => value === type)?.[0] ?? `command ${type}`;
}
