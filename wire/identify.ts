/**
 * ATA IDENTIFY DEVICE data: 256 little-endian words (docs/protocol.md §4).
 *
 * @module
 */

import { requireLength, WireError } from "./errors.ts";

/** Bytes of IDENTIFY data. */
export const IDENTIFY_LENGTH = 512;
/** Largest capacity LBA28 words 60-61 may state. */
export const LBA28_MAX_SECTORS = 0x0fffffff;

/** What a target states about itself in IDENTIFY. */
export interface IdentifyInfo {
  /** Capacity in 512-byte sectors. */
  sectors: number;
  /** Model string (words 27-46). */
  model: string;
  /** Serial string (words 10-19). */
  serial: string;
  /** Firmware revision string (words 23-26). */
  firmware: string;
  /** A volatile write cache is on: writes are durable only after FLUSH CACHE. */
  writeCache: boolean;
  /** DATA SET MANAGEMENT with the TRIM bit is supported (word 169 bit 0). */
  trim: boolean;
  /** Trimmed sectors read back as zeros (word 69 bits 14 and 5). */
  trimReadsZeros: boolean;
}

function writeWord(data: Uint8Array, word: number, value: number): void {
  data[word * 2] = value & 0xff;
  data[word * 2 + 1] = value >> 8 & 0xff;
}

function readWord(data: Uint8Array, word: number): number {
  return data[word * 2] | data[word * 2 + 1] << 8;
}

/** ATA strings: space-padded, two characters a word, the first in the high byte. */
function writeString(data: Uint8Array, word: number, chars: number, text: string): void {
  const padded = text.slice(0, chars).padEnd(chars, " ");
  for (let i = 0; i < chars; i += 2) {
    data[word * 2 + i] = padded.charCodeAt(i + 1) & 0x7f;
    data[word * 2 + i + 1] = padded.charCodeAt(i) & 0x7f;
  }
}

function readString(data: Uint8Array, word: number, chars: number): string {
  let text = "";
  for (let i = 0; i < chars; i += 2) {
    text += String.fromCharCode(data[word * 2 + i + 1], data[word * 2 + i]);
  }
  return text.trimEnd();
}

/** Fills 512 bytes of IDENTIFY data into `data` (which it zeroes first). */
export function encodeIdentify(data: Uint8Array, info: IdentifyInfo): void {
  requireLength(data.length, IDENTIFY_LENGTH, "IDENTIFY buffer");
  if (info.sectors < 0 || info.sectors > 0xffffffffffff) {
    throw new WireError("range", `capacity ${info.sectors}`);
  }
  data.fill(0, 0, IDENTIFY_LENGTH);
  writeString(data, 10, 20, info.serial);
  writeString(data, 23, 8, info.firmware);
  writeString(data, 27, 40, info.model);
  writeWord(data, 47, 0x8000);
  writeWord(data, 49, 0x0200); // LBA supported
  writeWord(data, 50, 0x4000);
  const lba28 = Math.min(info.sectors, LBA28_MAX_SECTORS);
  writeWord(data, 60, lba28 & 0xffff);
  writeWord(data, 61, lba28 >>> 16);
  if (info.trim) writeWord(data, 69, info.trimReadsZeros ? 0x4020 : 0x4000);
  writeWord(data, 80, 0x00f0); // ATA/ATAPI-4 to -7
  writeWord(data, 82, 0x4020); // write cache supported
  writeWord(data, 83, 0x7400); // LBA48, FLUSH CACHE, FLUSH CACHE EXT
  writeWord(data, 84, 0x4000);
  writeWord(data, 85, info.writeCache ? 0x4020 : 0x4000);
  writeWord(data, 86, 0x3400);
  writeWord(data, 87, 0x4000);
  writeWord(data, 93, 0x400b);
  let rest = info.sectors;
  for (let word = 100; word < 104; word++) {
    writeWord(data, word, rest % 0x10000);
    rest = Math.floor(rest / 0x10000);
  }
  if (info.trim) {
    writeWord(data, 105, 1); // one 512-byte block of DSM ranges per command
    writeWord(data, 169, 0x0001);
  }
}

/** Parses IDENTIFY data the way the Linux driver does (LBA48 words if bit 10 of 83 or 86). */
export function decodeIdentify(data: Uint8Array): IdentifyInfo & { lba48: boolean } {
  requireLength(data.length, IDENTIFY_LENGTH, "IDENTIFY data");
  const lba48 = ((readWord(data, 83) | readWord(data, 86)) & 0x0400) !== 0;
  let sectors = 0;
  if (lba48) {
    for (let word = 103; word >= 100; word--) sectors = sectors * 0x10000 + readWord(data, word);
  } else {
    sectors = readWord(data, 60) + readWord(data, 61) * 0x10000;
  }
  return {
    sectors,
    lba48,
    serial: readString(data, 10, 20),
    firmware: readString(data, 23, 8),
    model: readString(data, 27, 40),
    writeCache: (readWord(data, 85) & 0x0020) !== 0,
    trim: (readWord(data, 169) & 1) !== 0,
    trimReadsZeros: (readWord(data, 69) & 0x4020) === 0x4020,
  };
}
