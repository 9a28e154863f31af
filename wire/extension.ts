/**
 * The AoE extension command (docs/extensions.md §2): a vendor-specific AoE
 * command (AoE r11 §3 reserves 0xF0-0xFF for vendors) by which an initiator
 * declares, per target and per path, what it supports: monotonic tags (tag
 * tracking) and a data checksum (CRC). A target that does not know it answers
 * "unrecognized command" (error 1), as vblade does, and the initiator then uses
 * plain AoE; the Linux driver ignores vendor responses.
 *
 * Layout after the 24-byte common header (offsets from the frame start):
 *
 * | off | len | field |
 * |---|---|---|
 * | 24 | 4 | magic "AoEx" (0x41 0x6F 0x45 0x78) |
 * | 28 | 1 | format version (1) |
 * | 29 | 1 | op: 1 declare, 2 query, 3 withdraw |
 * | 30 | 2 | lease seconds (response; 0 in requests) |
 * | 32 | 4 | session id, chosen by the initiator, not 0 |
 * | 36 | 4 | capabilities: asked for (request), granted (response) |
 * | 40 | 4 | capabilities the target supports (response; 0 in requests) |
 *
 * All fields big-endian. 44 bytes in all (padded to 60 on Ethernet).
 *
 * @module
 */

import { requireLength, WireError } from "./errors.ts";
import { CRC_KINDS, type CrcKind } from "./crc.ts";

/** The vendor command code this extension uses. */
export const EXTENSION_COMMAND = 0xf0;
/** "AoEx": marks this project's use of command 0xF0 among other vendors'. */
export const EXTENSION_MAGIC = 0x416f4578;
/** Format version of the extension argument. */
export const EXTENSION_VERSION = 1;
/** Bytes of headers plus the extension argument. */
export const EXTENSION_LENGTH = 44;

/** Extension operations (byte 29). */
export const ExtensionOp = { declare: 1, query: 2, withdraw: 3 } as const;

/** Capability bits (bytes 36-39 and 40-43). */
export const Capability = {
  /** ATA tags with bit 31 clear count up by one or more per new frame (31-bit serial). */
  monotonicTags: 0x01,
  /** And a write older than one already applied to the same sectors may be refused. */
  writeOrder: 0x02,
  /** CRC8x4 after write data and read reply data. */
  crc8x4: 0x04,
  /** CRC32C after write data and read reply data. */
  crc32c: 0x08,
  /** CRC-32 (zlib's, Ethernet's polynomial) after write data and read reply data. */
  crc32: 0x10,
} as const;

/** Every capability this version defines. */
export const ALL_CAPABILITIES = 0x1f;

/** The capability bit of each checksum kind. */
export const CRC_CAPABILITY: Readonly<Record<CrcKind, number>> = {
  crc32: Capability.crc32,
  crc32c: Capability.crc32c,
  crc8x4: Capability.crc8x4,
};

/** Every checksum bit. */
export const CRC_CAPABILITIES = Capability.crc32 | Capability.crc32c | Capability.crc8x4;

/** The checksum a set of granted bits names (a target grants at most one), if any. */
export function grantedCrc(bits: number): CrcKind | undefined {
  return CRC_KINDS.find((kind) => (bits & CRC_CAPABILITY[kind]) !== 0);
}

/** The decoded extension argument. */
export interface ExtensionArg {
  /** Declare, query or withdraw (docs/extensions.md). */
  op: number;
  /** How long the grant lasts unless renewed. */
  leaseSeconds: number;
  /** The initiator's session id. */
  session: number;
  /** Capability bits asked for (request) or granted (reply). */
  capabilities: number;
  /** Capability bits the target supports (reply). */
  supported: number;
}

/** Whether a frame of `length` bytes carries this project's extension argument (magic and version). */
export function isExtensionFrame(frame: Uint8Array, length: number): boolean {
  return length >= EXTENSION_LENGTH && frame[19] === EXTENSION_COMMAND &&
    readU32(frame, 24) === EXTENSION_MAGIC && frame[28] === EXTENSION_VERSION;
}

/** Decodes the extension argument; throws {@link WireError} if it is not one. */
export function decodeExtension(frame: Uint8Array, length: number = frame.length): ExtensionArg {
  requireLength(Math.min(length, frame.length), EXTENSION_LENGTH, "extension argument");
  if (readU32(frame, 24) !== EXTENSION_MAGIC || frame[28] !== EXTENSION_VERSION) {
    throw new WireError("reserved", "not an AoEx extension argument");
  }
  return {
    op: frame[29],
    leaseSeconds: frame[30] << 8 | frame[31],
    session: readU32(frame, 32),
    capabilities: readU32(frame, 36),
    supported: readU32(frame, 40),
  };
}

/** Encodes the extension argument after a common header; returns the frame length (44). */
export function encodeExtension(frame: Uint8Array, arg: ExtensionArg): number {
  requireLength(frame.length, EXTENSION_LENGTH, "extension buffer");
  writeU32(frame, 24, EXTENSION_MAGIC);
  frame[28] = EXTENSION_VERSION;
  frame[29] = arg.op;
  frame[30] = arg.leaseSeconds >> 8 & 0xff;
  frame[31] = arg.leaseSeconds & 0xff;
  writeU32(frame, 32, arg.session);
  writeU32(frame, 36, arg.capabilities);
  writeU32(frame, 40, arg.supported);
  return EXTENSION_LENGTH;
}

function readU32(frame: Uint8Array, at: number): number {
  return (frame[at] << 24 | frame[at + 1] << 16 | frame[at + 2] << 8 | frame[at + 3]) >>> 0;
}

function writeU32(frame: Uint8Array, at: number, value: number): void {
  frame[at] = value >>> 24;
  frame[at + 1] = value >>> 16 & 0xff;
  frame[at + 2] = value >>> 8 & 0xff;
  frame[at + 3] = value & 0xff;
}
