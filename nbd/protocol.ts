/**
 * The NBD protocol's numbers and message layouts (fixed newstyle handshake,
 * transmission phase), as pure encoders and decoders. Big-endian throughout.
 * See docs/nbd.md §2 and §3.
 *
 * @module
 */

export const NBDMAGIC = 0x4e42444d41474943n;
/** The handshake's option magic ("IHAVEOPT"). */
export const IHAVEOPT = 0x49484156454f5054n;
/** Magic of every option reply. */
export const OPTION_REPLY_MAGIC = 0x0003e889045565a9n;
/** Magic of a transmission request. */
export const REQUEST_MAGIC = 0x25609513;
/** Magic of a simple reply. */
export const SIMPLE_REPLY_MAGIC = 0x67446698;
/** Magic of a structured reply chunk. */
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const HandshakeFlag = { fixedNewstyle: 1, noZeroes: 2 } as const;

/** Options. */
export const Option = {
  exportName: 1,
  abort: 2,
  list: 3,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
  listMetaContext: 9,
  setMetaContext: 10,
} as const;

/** Option reply types (errors have bit 31 set). */
export const Reply = {
  ack: 1,
  server: 2,
  info: 3,
  errUnsup: 0x80000001,
  errPolicy: 0x80000002,
  errInvalid: 0x80000003,
  errTlsReqd: 0x80000005,
  errUnknown: 0x80000006,
  errTooBig: 0x80000009,
} as const;

/** NBD_INFO types. */
export const Info = { export: 0, name: 1, description: 2, blockSize: 3 } as const;

/** Transmission flags. */
export const TransmissionFlag = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  rotational: 1 << 4,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  canMultiConn: 1 << 8,
  sendCache: 1 << 10,
} as const;

/** Commands. */
export const Cmd = {
  read: 0,
  write: 1,
  disc: 2,
  flush: 3,
  trim: 4,
  cache: 5,
  writeZeroes: 6,
  blockStatus: 7,
} as const;

/** Command flags. */
export const CmdFlag = { fua: 1, noHole: 2, df: 4 } as const;

/** Errors carried in replies. */
export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Structured reply chunk types and flags. */
export const Chunk = { none: 0, offsetData: 1, error: 32769, flagDone: 1 } as const;

/** The server's first 18 bytes. */
export function encodeServerHello(): Uint8Array {
  const out = new Uint8Array(18);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, NBDMAGIC);
  view.setBigUint64(8, IHAVEOPT);
  view.setUint16(16, HandshakeFlag.fixedNewstyle | HandshakeFlag.noZeroes);
  return out;
}

/** An option reply: magic, option, type, length, data. */
export function encodeOptionReply(
  option: number,
  type: number,
  data: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(20 + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, OPTION_REPLY_MAGIC);
  view.setUint32(8, option);
  view.setUint32(12, type);
  view.setUint32(16, data.length);
  out.set(data, 20);
  return out;
}

/** NBD_INFO_EXPORT payload: type, size, flags. */
export function encodeInfoExport(size: number, flags: number): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  view.setUint16(0, Info.export);
  view.setBigUint64(2, BigInt(size));
  view.setUint16(10, flags);
  return out;
}

/** NBD_INFO_BLOCK_SIZE payload: minimum, preferred, maximum. */
export function encodeInfoBlockSize(
  minimum: number,
  preferred: number,
  maximum: number,
): Uint8Array {
  const out = new Uint8Array(14);
  const view = new DataView(out.buffer);
  view.setUint16(0, Info.blockSize);
  view.setUint32(2, minimum);
  view.setUint32(6, preferred);
  view.setUint32(10, maximum);
  return out;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION payload. */
export function encodeInfoText(type: number, text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(2 + bytes.length);
  new DataView(out.buffer).setUint16(0, type);
  out.set(bytes, 2);
  return out;
}

/** NBD_REP_SERVER payload: name length and name. */
export function encodeServerEntry(name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/** The data of INFO and GO: export name and the info types asked for; undefined when malformed. */
export function decodeInfoRequest(
  data: Uint8Array,
): { name: string; requests: number[] } | undefined {
  if (data.length < 6) return undefined;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const nameLength = view.getUint32(0);
  if (4 + nameLength + 2 > data.length) return undefined;
  const name = new TextDecoder().decode(data.subarray(4, 4 + nameLength));
  const count = view.getUint16(4 + nameLength);
  if (4 + nameLength + 2 + count * 2 !== data.length) return undefined;
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(view.getUint16(4 + nameLength + 2 + i * 2));
  return { name, requests };
}

/** A transmission request header (28 bytes). */
export interface RequestHeader {
  /** {@link REQUEST_MAGIC} when in sync. */
  magic: number;
  /** Command flags ({@link CmdFlag}). */
  flags: number;
  /** The command ({@link Cmd}). */
  type: number;
  /** Echoed in the reply. */
  cookie: bigint;
  /** Byte offset. */
  offset: number;
  /** Byte length. */
  length: number;
}

/** Decodes the 28-byte request header. */
export function decodeRequest(bytes: Uint8Array): RequestHeader {
  if (bytes.length < 28) throw new RangeError("NBD request header is 28 bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset, 28);
  return {
    magic: view.getUint32(0),
    flags: view.getUint16(4),
    type: view.getUint16(6),
    cookie: view.getBigUint64(8),
    offset: Number(view.getBigUint64(16)),
    length: view.getUint32(24),
  };
}

/** Encodes a request header (for clients and tests). */
export function encodeRequest(request: Omit<RequestHeader, "magic">): Uint8Array {
  const out = new Uint8Array(28);
  const view = new DataView(out.buffer);
  view.setUint32(0, REQUEST_MAGIC);
  view.setUint16(4, request.flags);
  view.setUint16(6, request.type);
  view.setBigUint64(8, request.cookie);
  view.setBigUint64(16, BigInt(request.offset));
  view.setUint32(24, request.length);
  return out;
}

/** A simple reply header (16 bytes). */
export function encodeSimpleReply(cookie: bigint, error: number): Uint8Array {
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  view.setUint32(0, SIMPLE_REPLY_MAGIC);
  view.setUint32(4, error);
  view.setBigUint64(8, cookie);
  return out;
}

/** A structured reply chunk header (20 bytes) for a payload of `length` bytes. */
export function encodeChunkHeader(
  cookie: bigint,
  flags: number,
  type: number,
  length: number,
): Uint8Array {
  const out = new Uint8Array(20);
  const view = new DataView(out.buffer);
  view.setUint32(0, STRUCTURED_REPLY_MAGIC);
  view.setUint16(4, flags);
  view.setUint16(6, type);
  view.setBigUint64(8, cookie);
  view.setUint32(16, length);
  return out;
}

/** The payload of an NBD_REPLY_TYPE_ERROR chunk. */
export function encodeErrorChunk(error: number, message: string): Uint8Array {
  const text = new TextEncoder().encode(message);
  const out = new Uint8Array(6 + text.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, error);
  view.setUint16(4, text.length);
  out.set(text, 6);
  return out;
}
