/**
 * DATA SET MANAGEMENT (TRIM) ranges (ACS-2 7.10; docs/protocol.md §3.1): the
 * data are 512-byte blocks of 8-byte entries, a 48-bit LBA and a 16-bit sector
 * count, little-endian. The initiator writes them, the target reads them.
 *
 * @module
 */

import { SECTOR_SIZE } from "./ata.ts";

/** Bytes per range entry. */
export const DSM_ENTRY_LENGTH = 8;
/** Entries per 512-byte block. */
export const DSM_ENTRIES_PER_BLOCK = SECTOR_SIZE / DSM_ENTRY_LENGTH;
/** The most sectors one entry covers. */
export const DSM_MAX_SECTORS = 0xffff;

/** Writes entry `index` of `data`: `sectors` (at most {@link DSM_MAX_SECTORS}) from `lba`. */
export function writeDsmEntry(
  data: Uint8Array,
  index: number,
  entry: { lba: number; sectors: number },
): void {
  const at = index * DSM_ENTRY_LENGTH;
  let lba = entry.lba;
  for (let i = 0; i < 6; i++) {
    data[at + i] = lba % 256;
    lba = Math.floor(lba / 256);
  }
  data[at + 6] = entry.sectors & 0xff;
  data[at + 7] = entry.sectors >> 8 & 0xff;
}

/** The first LBA of entry `index` of `data`. */
export function readDsmLba(data: Uint8Array, index: number): number {
  const at = index * DSM_ENTRY_LENGTH;
  return (data[at] | data[at + 1] << 8 | data[at + 2] << 16) +
    (data[at + 3] | data[at + 4] << 8 | data[at + 5] << 16) * 0x1000000;
}

/** The sector count of entry `index` of `data` (0: an unused entry). */
export function readDsmSectors(data: Uint8Array, index: number): number {
  const at = index * DSM_ENTRY_LENGTH;
  return data[at + 6] | data[at + 7] << 8;
}

/**
 * The ranges covering `sectors` from `lba`, as whole 512-byte blocks
 * (unused entries zero). Empty when `sectors` is 0.
 */
export function encodeDsmRanges(lba: number, sectors: number): Uint8Array {
  const entries = Math.ceil(sectors / DSM_MAX_SECTORS);
  const data = new Uint8Array(Math.ceil(entries / DSM_ENTRIES_PER_BLOCK) * SECTOR_SIZE);
  for (let i = 0, left = sectors; left > 0; i++) {
    const n = Math.min(left, DSM_MAX_SECTORS);
    writeDsmEntry(data, i, { lba, sectors: n });
    lba += n;
    left -= n;
  }
  return data;
}
