/**
 * Reserve/Release (AoE r11 §3.4; docs/protocol.md §7).
 *
 * @module
 */

import { requireLength, WireError } from "./errors.ts";
import { readMac, writeMac } from "./mac.ts";
import { frameLengthFor } from "./header.ts";

/** Headers plus the fixed part of the reserve/release argument. */
export const RESERVE_HEADER_LENGTH = 26;

/** The most MACs a reserve list may hold: 255 (one count byte). */
export const MAX_RESERVE_MACS = 255;

/** The most reserve-list MACs a reply fits in a frame of an interface with this MTU (docs/protocol.md §7). */
export function reserveMacsFor(mtu: number): number {
  const fit = Math.floor((frameLengthFor(mtu) - RESERVE_HEADER_LENGTH) / 6);
  return Math.max(0, Math.min(MAX_RESERVE_MACS, fit));
}

/** RCmd values. */
export const ReserveCommand = { read: 0, set: 1, forceSet: 2 } as const;

/** The decoded reserve/release argument. */
export interface ReserveArg {
  /** Reserve command ({@link ReserveCommand}). */
  rcmd: number;
  /** The reserve list. */
  macs: number[];
}

/** Decodes a reserve/release argument; throws "length" if NMacs runs past the frame. */
export function decodeReserve(frame: Uint8Array, length: number = frame.length): ReserveArg {
  const usable = Math.min(length, frame.length);
  requireLength(usable, RESERVE_HEADER_LENGTH, "reserve/release argument");
  const count = frame[25];
  if (RESERVE_HEADER_LENGTH + count * 6 > usable) {
    throw new WireError("length", `${count} MACs do not fit in ${usable} bytes`);
  }
  const macs: number[] = [];
  for (let i = 0; i < count; i++) macs.push(readMac(frame, RESERVE_HEADER_LENGTH + i * 6));
  return { rcmd: frame[24], macs };
}

/** Encodes a reserve/release argument; returns the frame length. */
export function encodeReserve(frame: Uint8Array, arg: ReserveArg): number {
  if (arg.macs.length > 255) throw new WireError("range", "more than 255 MACs");
  const end = RESERVE_HEADER_LENGTH + arg.macs.length * 6;
  requireLength(frame.length, end, "reserve/release buffer");
  frame[24] = arg.rcmd;
  frame[25] = arg.macs.length;
  arg.macs.forEach((mac, i) => writeMac(frame, RESERVE_HEADER_LENGTH + i * 6, mac));
  return end;
}

/** RCmd (byte 24), read without decoding the list. */
export function readReserveCommand(frame: Uint8Array): number {
  return frame[24];
}
