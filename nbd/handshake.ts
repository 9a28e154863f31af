/**
 * The fixed newstyle handshake of one connection: the server's hello, the
 * client's flags, then option haggling (LIST, INFO, GO, EXPORT_NAME,
 * STRUCTURED_REPLY, STARTTLS, ABORT) until an export is chosen. With TLS
 * configured the server is TLS-only: before STARTTLS every option but ABORT
 * is refused with NBD_REP_ERR_TLS_REQD. See the NBD protocol (proto.md,
 * "Newstyle negotiation" and "TLS support").
 *
 * @module
 */

import {
  decodeInfoRequest,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeOptionReply,
  encodeServerEntry,
  encodeServerHello,
  HandshakeFlag,
  IHAVEOPT,
  Info,
  Option,
  Reply,
} from "./protocol.ts";
import type { ByteStream } from "../reactor/mod.ts";
import { BLOCK_SIZES, exportFlags, type NbdExport } from "./export.ts";
import { ExactReader, OrderedWriter } from "./stream_io.ts";
import type { NbdSession } from "./session.ts";

/** Option data larger than this is refused (the connection is dropped). */
export const MAX_OPTION_LENGTH = 16 * 1024;

/** How one connection negotiates. */
export interface HandshakeOptions {
  /**
   * Upgrades the connection to TLS after the STARTTLS acknowledgement and
   * resolves with the encrypted stream; given, the connection must use TLS.
   */
  startTls?: () => Promise<ByteStream>;
  /** Exports are offered read-only. */
  readOnly?: boolean;
}

/** A finished handshake: the export chosen and how to talk about it. */
export interface Negotiated {
  /** Reads the connection (the TLS session after STARTTLS). */
  reader: ExactReader;
  /** Writes the connection (the TLS session after STARTTLS). */
  writer: OrderedWriter;
  /** The export chosen by GO or EXPORT_NAME. */
  export: NbdExport;
  /** Structured replies were negotiated. */
  structured: boolean;
}

const text = (s: string) => new TextEncoder().encode(s);

/** Runs the handshake; resolves with the chosen export, or undefined when the connection is to close. */
export async function negotiate(
  session: NbdSession,
  stream: ByteStream,
  options: HandshakeOptions = {},
): Promise<Negotiated | undefined> {
  const { counters } = session;
  const readOnly = options.readOnly ?? false;
  let reader = new ExactReader(stream, session.pool);
  let writer = new OrderedWriter(stream);
  let tlsPending = options.startTls !== undefined;
  const dropped = (why: string) => {
    counters.dropped++;
    session.log(`nbd: handshake: ${why}, connection dropped`);
    return undefined;
  };
  await writer.write(encodeServerHello());
  const clientFlagBytes = await reader.read(4);
  if (!clientFlagBytes) return undefined;
  const clientFlags = new DataView(clientFlagBytes.buffer).getUint32(0);
  if (clientFlags & ~(HandshakeFlag.fixedNewstyle | HandshakeFlag.noZeroes)) {
    return dropped(`unknown client flags ${clientFlags.toString(16)}`); // the spec says drop it
  }
  const noZeroes = (clientFlags & HandshakeFlag.noZeroes) !== 0;
  let structured = false;
  const reply = (option: number, type: number, data?: Uint8Array) =>
    writer.write(encodeOptionReply(option, type, data));
  for (;;) {
    if (writer.failed) return undefined;
    const header = await reader.read(16);
    if (!header) return undefined;
    const view = new DataView(header.buffer);
    if (view.getBigUint64(0) !== IHAVEOPT) return dropped("bad option magic");
    const option = view.getUint32(8);
    const length = view.getUint32(12);
    if (length > MAX_OPTION_LENGTH) {
      return dropped(`option data of ${length} bytes`); // cannot skip it safely without reading it all
    }
    const data = length > 0 ? await reader.read(length) : new Uint8Array(0);
    if (!data) return undefined;
    if (option === Option.abort) {
      await reply(option, Reply.ack);
      return undefined;
    }
    if (tlsPending && option !== Option.startTls) {
      // TLS-only: EXPORT_NAME has no error reply, so it closes; the rest are refused.
      if (option === Option.exportName) return dropped("EXPORT_NAME before STARTTLS");
      await reply(option, Reply.errTlsReqd, text("TLS required: send NBD_OPT_STARTTLS first"));
      continue;
    }
    switch (option) {
      case Option.exportName: {
        const exp = lookup(session, new TextDecoder().decode(data));
        if (!exp) return undefined; // no error path for EXPORT_NAME: close
        const out = new Uint8Array(noZeroes ? 10 : 134);
        const rv = new DataView(out.buffer);
        rv.setBigUint64(0, BigInt(exp.size));
        rv.setUint16(8, exportFlags(exp, { readOnly }));
        await writer.write(out);
        return { reader, writer, export: exp, structured };
      }
      case Option.list:
        if (length !== 0) {
          await reply(option, Reply.errInvalid);
          break;
        }
        for (const name of session.provider.names()) {
          await reply(option, Reply.server, encodeServerEntry(name));
        }
        await reply(option, Reply.ack);
        break;
      case Option.startTls:
        if (!options.startTls) await reply(option, Reply.errPolicy, text("TLS is not configured"));
        else if (!tlsPending || length !== 0) await reply(option, Reply.errInvalid);
        else {
          // Anything the client sent after STARTTLS, before its TLS hello, breaks the protocol.
          if (reader.buffered > 0) return dropped("data after STARTTLS");
          await reply(option, Reply.ack);
          if (writer.failed) return undefined;
          let secure: ByteStream;
          try {
            secure = await options.startTls();
          } catch (error) {
            return dropped(`TLS: ${error instanceof Error ? error.message : String(error)}`);
          }
          tlsPending = false;
          reader = new ExactReader(secure, session.pool);
          writer = new OrderedWriter(secure);
        }
        break;
      case Option.info:
      case Option.go: {
        const request = decodeInfoRequest(data);
        if (!request) {
          await reply(option, Reply.errInvalid);
          break;
        }
        const exp = lookup(session, request.name);
        if (!exp) {
          await reply(option, Reply.errUnknown, text(`no export "${request.name}"`));
          break;
        }
        await reply(option, Reply.info, encodeInfoExport(exp.size, exportFlags(exp, { readOnly })));
        await reply(
          option,
          Reply.info,
          encodeInfoBlockSize(BLOCK_SIZES.minimum, BLOCK_SIZES.preferred, BLOCK_SIZES.maximum),
        );
        if (request.requests.includes(Info.name)) {
          await reply(option, Reply.info, encodeInfoText(Info.name, exp.name));
        }
        if (request.requests.includes(Info.description)) {
          await reply(
            option,
            Reply.info,
            encodeInfoText(Info.description, `AoE device ${exp.name}`),
          );
        }
        await reply(option, Reply.ack);
        if (option === Option.go) return { reader, writer, export: exp, structured };
        break;
      }
      case Option.structuredReply:
        if (length !== 0) {
          await reply(option, Reply.errInvalid);
          break;
        }
        structured = true;
        await reply(option, Reply.ack);
        break;
      default:
        await reply(option, Reply.errUnsup);
    }
  }
}

/** The export of that name ("" is the first), if it is there and has a size. */
function lookup(session: NbdSession, name: string): NbdExport | undefined {
  if (name === "") {
    const names = session.provider.names();
    return names.length > 0 ? session.provider.get(names[0]) : undefined;
  }
  const exp = session.provider.get(name);
  return exp && exp.size > 0 ? exp : undefined;
}
