/**
 * Data checksums of the CRC extension (docs/extensions.md §4): CRC-32, this
 * project's default (computed natively by node:zlib), CRC32C, and AoEde's
 * CRC8x4, four CRC-8 sums over the four quarters of the data. The sums come
 * from node:zlib and npm packages (crc-32's CRC32C, crc's CRC-8); this file
 * only fixes how they are laid out on the wire.
 *
 * @module
 */

import { crc32 as zlibCrc32 } from "node:zlib";
import CRC32C from "crc-32/crc32c.js";
import crc8 from "crc/calculators/crc8";

/** Bytes every checksum adds after the data of a write request or a read reply. */
export const CRC_LENGTH = 4;

/** Which checksum a path uses. */
export type CrcKind = "crc32" | "crc32c" | "crc8x4";
/** Every {@link CrcKind}, this project's preference first. */
export const CRC_KINDS: readonly CrcKind[] = ["crc32", "crc32c", "crc8x4"];

/**
 * CRC-32 (ISO-HDLC, as zlib and Ethernet: polynomial 0x04C11DB7 reflected,
 * init and xorout 0xFFFFFFFF; check value 0xCBF43926), big-endian on the wire.
 * node:zlib computes it natively, 30 times faster per MiB than CRC32C in
 * JavaScript (bench/crc_bench.ts), hence the default.
 */
export function crc32(data: Uint8Array): number {
  return zlibCrc32(data) >>> 0;
}

/**
 * CRC32C (Castagnoli, polynomial 0x1EDC6F41 reflected, init and xorout
 * 0xFFFFFFFF; check value 0xE3069283), big-endian on the wire.
 */
export function crc32c(data: Uint8Array): number {
  return CRC32C.buf(data) >>> 0;
}

/**
 * AoEde's CRC8x4 as this project defines it: the data are cut into four
 * quarters of equal length (data are whole sectors, so length / 4 is whole);
 * byte k of the result is CRC-8 (polynomial 0x07, init 0, no reflection, no
 * xorout; check value 0xF4) of quarter k. Returned as one 32-bit number,
 * quarter 0's sum in the high byte.
 */
export function crc8x4(data: Uint8Array): number {
  const quarter = data.length >>> 2;
  let out = 0;
  for (let k = 0; k < 4; k++) {
    const end = k === 3 ? data.length : (k + 1) * quarter;
    out = (out << 8 | crc8(data.subarray(k * quarter, end))) >>> 0;
  }
  return out;
}

/** The checksum of `data` of the given kind. */
export function dataCrc(kind: CrcKind, data: Uint8Array): number {
  return kind === "crc32" ? crc32(data) : kind === "crc32c" ? crc32c(data) : crc8x4(data);
}

/** Writes the checksum of `frame[start, end)` at `end` (4 bytes, big-endian); returns end + 4. */
export function appendCrc(kind: CrcKind, frame: Uint8Array, start: number, end: number): number {
  const sum = dataCrc(kind, frame.subarray(start, end));
  frame[end] = sum >>> 24;
  frame[end + 1] = sum >>> 16 & 0xff;
  frame[end + 2] = sum >>> 8 & 0xff;
  frame[end + 3] = sum & 0xff;
  return end + CRC_LENGTH;
}

/** Whether the 4 bytes at `end` hold the checksum of `frame[start, end)`; false if they are missing. */
export function checkCrc(
  kind: CrcKind,
  frame: Uint8Array,
  range: { start: number; end: number; length: number },
): boolean {
  const { start, end, length } = range;
  if (end + CRC_LENGTH > Math.min(length, frame.length)) return false;
  const sum = dataCrc(kind, frame.subarray(start, end));
  const given = (frame[end] << 24 | frame[end + 1] << 16 | frame[end + 2] << 8 | frame[end + 3]) >>>
    0;
  return sum === given;
}
