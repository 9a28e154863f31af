/**
 * The Ethernet header and the AoE common header (AoE r11 §2; docs/protocol.md §2).
 *
 * @module
 */

import { requireLength, WireError } from "./errors.ts";
import { readMac, writeMac } from "./mac.ts";

/** The largest frame an interface of this MTU sends or receives: the MTU plus the Ethernet header (docs/protocol.md §1). */
export function frameLengthFor(mtu: number): number {
  return mtu + ETHERNET_HEADER_LENGTH;
}

/** AoE's ethertype. */
export const AOE_ETHERTYPE = 0x88a2;
/** Protocol version carried in the high nibble of byte 14. */
export const AOE_VERSION = 1;
/** Bytes of Ethernet header plus AoE common header. */
export const HEADER_LENGTH = 24;
/** Bytes of the Ethernet header (destination, source, ethertype): a frame is this plus the MTU. */
export const ETHERNET_HEADER_LENGTH = 14;
/** Broadcast shelf (major). */
export const BROADCAST_SHELF = 0xffff;
/** Broadcast slot (minor). */
export const BROADCAST_SLOT = 0xff;

/** Flag bits in the low nibble of byte 14. */
export const Flag = { response: 0x08, error: 0x04 } as const;

/** AoE command codes (docs/protocol.md §2). */
export const Command = { ata: 0, config: 1, macMask: 2, reserve: 3 } as const;

/** AoE error codes carried in byte 15 when the E flag is set. */
export const AoeError = {
  unrecognizedCommand: 1,
  badArgument: 2,
  deviceUnavailable: 3,
  configStringPresent: 4,
  unsupportedVersion: 5,
  targetReserved: 6,
} as const;

/** The decoded common header. */
export interface AoeHeader {
  /** Destination MAC. */
  dst: number;
  /** Source MAC. */
  src: number;
  /** Protocol version (1). */
  version: number;
  /** R flag: a response. */
  response: boolean;
  /** E flag: an error response. */
  error: boolean;
  /** Error code ({@link AoeError}), meaningful with `error`. */
  errorCode: number;
  /** Shelf (major); 0xffff is broadcast. */
  shelf: number;
  /** Slot (minor); 0xff is broadcast. */
  slot: number;
  /** Command ({@link Command}). */
  command: number;
  /** Tag, echoed by the target. */
  tag: number;
}

/** Decodes the Ethernet and AoE common headers of a frame of `length` bytes. */
export function decodeHeader(frame: Uint8Array, length: number = frame.length): AoeHeader {
  requireLength(Math.min(length, frame.length), HEADER_LENGTH, "AoE header");
  const type = frame[12] << 8 | frame[13];
  if (type !== AOE_ETHERTYPE) throw new WireError("ethertype", `ethertype 0x${type.toString(16)}`);
  return {
    dst: readMac(frame, 0),
    src: readMac(frame, 6),
    version: frame[14] >> 4,
    response: (frame[14] & Flag.response) !== 0,
    error: (frame[14] & Flag.error) !== 0,
    errorCode: frame[15],
    shelf: frame[16] << 8 | frame[17],
    slot: frame[18],
    command: frame[19],
    tag: readTag(frame),
  };
}

/** Encodes the headers into the first 24 bytes of `frame`; returns 24. */
export function encodeHeader(frame: Uint8Array, header: AoeHeader): number {
  requireLength(frame.length, HEADER_LENGTH, "AoE header buffer");
  if (header.shelf < 0 || header.shelf > 0xffff || header.slot < 0 || header.slot > 0xff) {
    throw new WireError("range", `address e${header.shelf}.${header.slot}`);
  }
  writeMac(frame, 0, header.dst);
  writeMac(frame, 6, header.src);
  frame[12] = AOE_ETHERTYPE >> 8;
  frame[13] = AOE_ETHERTYPE & 0xff;
  frame[14] = (header.version & 0xf) << 4 | (header.response ? Flag.response : 0) |
    (header.error ? Flag.error : 0);
  frame[15] = header.error ? header.errorCode : 0;
  frame[16] = header.shelf >> 8;
  frame[17] = header.shelf & 0xff;
  frame[18] = header.slot;
  frame[19] = header.command;
  writeTag(frame, header.tag);
  return HEADER_LENGTH;
}

/** Encodes the headers of a request (version 1, no flags); returns 24. */
export function encodeRequestHeader(
  frame: Uint8Array,
  request: { dst: number; src: number; shelf: number; slot: number; command: number; tag: number },
): number {
  return encodeHeader(frame, {
    ...request,
    version: AOE_VERSION,
    response: false,
    error: false,
    errorCode: 0,
  });
}

/** The tag (bytes 20-23, big-endian) as an unsigned number. */
export function readTag(frame: Uint8Array): number {
  return (frame[20] << 24 | frame[21] << 16 | frame[22] << 8 | frame[23]) >>> 0;
}

/** Writes a tag at bytes 20-23. */
export function writeTag(frame: Uint8Array, tag: number): void {
  frame[20] = tag >>> 24 & 0xff;
  frame[21] = tag >>> 16 & 0xff;
  frame[22] = tag >>> 8 & 0xff;
  frame[23] = tag & 0xff;
}

/**
 * Turns a request held in `reply` (a copy of the request's first bytes) into a
 * response header: swaps the MACs (source = `ownMac`), puts the target's real
 * shelf and slot (never the broadcast values, docs/protocol.md §2) and sets R, keeping the
 * request's version nibble as vblade does.
 */
export function makeResponseHeader(
  reply: Uint8Array,
  target: { mac: number; shelf: number; slot: number },
): void {
  reply.copyWithin(0, 6, 12);
  writeMac(reply, 6, target.mac);
  reply[14] = (reply[14] & 0xf0) | Flag.response;
  reply[15] = 0;
  reply[16] = target.shelf >> 8;
  reply[17] = target.shelf & 0xff;
  reply[18] = target.slot;
}

/** Sets the E flag and an AoE error code on a response header. */
export function setAoeError(reply: Uint8Array, code: number): void {
  reply[14] |= Flag.error;
  reply[15] = code;
}

// ---- Allocation-free accessors: the hot paths read fields through these, never by offset.

/** The ethertype at bytes 12-13. */
export function readEthertype(frame: Uint8Array): number {
  return frame[12] << 8 | frame[13];
}

/** The protocol version (high nibble of byte 14). */
export function readVersion(frame: Uint8Array): number {
  return frame[14] >> 4;
}

/** Whether the R flag is set: the frame is a response. */
export function isResponse(frame: Uint8Array): boolean {
  return (frame[14] & Flag.response) !== 0;
}

/** Whether the E flag is set: the frame is an error response. */
export function isError(frame: Uint8Array): boolean {
  return (frame[14] & Flag.error) !== 0;
}

/** The error code (byte 15), meaningful when the E flag is set. */
export function readErrorCode(frame: Uint8Array): number {
  return frame[15];
}

/** The shelf (bytes 16-17). */
export function readShelf(frame: Uint8Array): number {
  return frame[16] << 8 | frame[17];
}

/** The slot (byte 18). */
export function readSlot(frame: Uint8Array): number {
  return frame[18];
}

/** The AoE command (byte 19). */
export function readCommand(frame: Uint8Array): number {
  return frame[19];
}

/** The source MAC (bytes 6-11). */
export function readSource(frame: Uint8Array): number {
  return readMac(frame, 6);
}

/** The destination MAC (bytes 0-5). */
export function readDestination(frame: Uint8Array): number {
  return readMac(frame, 0);
}

/**
 * Whether the frame is addressed to another host: its destination is a
 * unicast MAC (group bit, the low bit of byte 0, clear) other than `mac`.
 * Broadcast and multicast destinations are not (docs/protocol.md §9).
 */
export function addressedToOther(frame: Uint8Array, mac: number): boolean {
  return (frame[0] & 1) === 0 && readMac(frame, 0) !== mac;
}

/**
 * Why a received frame cannot be taken as AoE in the direction expected, in
 * the order checked: too short for the header, another ethertype, the wrong
 * direction (a request where responses are expected, or the reverse), a
 * version other than 1. Undefined when the header is fine.
 */
export type HeaderProblem = "short" | "ethertype" | "direction" | "version";

/**
 * The one header check of a received frame of `length` bytes; `response`
 * says which direction is wanted (the target wants requests, the initiator
 * responses). Allocates nothing.
 */
export function checkHeader(
  frame: Uint8Array,
  length: number,
  response: boolean,
): HeaderProblem | undefined {
  if (length < HEADER_LENGTH || frame.length < HEADER_LENGTH) return "short";
  if (readEthertype(frame) !== AOE_ETHERTYPE) return "ethertype";
  if (isResponse(frame) !== response) return "direction";
  if (readVersion(frame) !== AOE_VERSION) return "version";
  return undefined;
}
