/**
 * The Issue ATA Command argument (AoE r11 §3.1; docs/protocol.md §3).
 *
 * @module
 */

import { requireLength, WireError } from "./errors.ts";
import { HEADER_LENGTH } from "./header.ts";

/** Bytes of headers before ATA data: Ethernet + AoE + ATA argument. */
export const ATA_HEADER_LENGTH = 36;
/** ATA sector size. */
export const SECTOR_SIZE = 512;

/** AFlags bits. */
export const AtaFlag = { extended: 0x40, device: 0x10, async: 0x02, write: 0x01 } as const;

/** ATA opcodes the stack knows. */
export const AtaOp = {
  readSectors: 0x20,
  readSectorsExt: 0x24,
  writeSectors: 0x30,
  writeSectorsExt: 0x34,
  dataSetManagement: 0x06,
  checkPowerMode: 0xe5,
  flushCache: 0xe7,
  flushCacheExt: 0xea,
  identifyDevice: 0xec,
  smart: 0xb0,
} as const;

/** ATA status register bits. */
export const AtaStatus = { busy: 0x80, ready: 0x40, fault: 0x20, drq: 0x08, error: 0x01 } as const;
/** ATA error register bits. */
export const AtaErrorBit = { uncorrectable: 0x40, idNotFound: 0x10, abort: 0x04 } as const;
/** Status bits the Linux driver treats as failure (BSY|DF|DRQ|ERR). */
export const ATA_FAILURE_MASK = 0xa9;

/** The decoded ATA argument; data are at `dataOffset` for `dataLength` bytes. */
export interface AtaArg {
  /** AFlags ({@link AtaFlag}). */
  aflags: number;
  /** Features register in requests, error register in responses. */
  feature: number;
  /** Sector count register. */
  sectorCount: number;
  /** Command opcode in requests, status register in responses. */
  command: number;
  /** The six LBA bytes as one number (little-endian on the wire). */
  lba: number;
  /** Where the data start in the frame (36). */
  dataOffset: number;
  /** Bytes of data after the argument. */
  dataLength: number;
}

/** Reads the 48-bit little-endian LBA at frame bytes 28-33. */
export function readLba(frame: Uint8Array): number {
  return (frame[28] | frame[29] << 8 | frame[30] << 16) +
    (frame[31] | frame[32] << 8 | frame[33] << 16) * 0x1000000;
}

/** Writes a 48-bit LBA at frame bytes 28-33. */
export function writeLba(frame: Uint8Array, lba: number): void {
  const low = lba % 0x1000000;
  const high = Math.floor(lba / 0x1000000);
  frame[28] = low & 0xff;
  frame[29] = low >> 8 & 0xff;
  frame[30] = low >> 16 & 0xff;
  frame[31] = high & 0xff;
  frame[32] = high >> 8 & 0xff;
  frame[33] = high >> 16 & 0xff;
}

/** Decodes the ATA argument of a frame of `length` bytes. */
export function decodeAta(frame: Uint8Array, length: number = frame.length): AtaArg {
  const usable = Math.min(length, frame.length);
  requireLength(usable, ATA_HEADER_LENGTH, "ATA argument");
  return {
    aflags: frame[24],
    feature: frame[25],
    sectorCount: frame[26],
    command: frame[27],
    lba: readLba(frame),
    dataOffset: ATA_HEADER_LENGTH,
    dataLength: usable - ATA_HEADER_LENGTH,
  };
}

/** Encodes an ATA argument after the common header; returns the frame length so far (36). */
export function encodeAta(
  frame: Uint8Array,
  arg: Omit<AtaArg, "dataOffset" | "dataLength">,
): number {
  requireLength(frame.length, ATA_HEADER_LENGTH, "ATA buffer");
  if (arg.lba < 0 || arg.lba > 0xffffffffffff || !Number.isInteger(arg.lba)) {
    throw new WireError("range", `lba ${arg.lba}`);
  }
  if (arg.sectorCount < 0 || arg.sectorCount > 255) {
    throw new WireError("range", `sector count ${arg.sectorCount}`);
  }
  frame[HEADER_LENGTH] = arg.aflags;
  frame[25] = arg.feature;
  frame[26] = arg.sectorCount;
  frame[27] = arg.command;
  writeLba(frame, arg.lba);
  frame[34] = 0;
  frame[35] = 0;
  return ATA_HEADER_LENGTH;
}

/**
 * The LBA a target acts on, from the AFlags and the LBA field: LBA28 commands
 * carry the device register in lba3, so only 28 bits address
 * (docs/protocol.md §3). Two numbers, so the hot path allocates nothing.
 */
export function effectiveLba(aflags: number, lba: number): number {
  return aflags & AtaFlag.extended ? lba : lba % 0x10000000;
}

/** Sectors of data an MTU carries per frame: floor((MTU - 36) / 512) (docs/protocol.md §8). */
export function sectorsPerFrame(mtu: number): number {
  return Math.max(0, Math.floor((mtu - ATA_HEADER_LENGTH) / SECTOR_SIZE));
}

// ---- Allocation-free accessors of the ATA argument (bytes 24-27).

/** AFlags (byte 24). */
export function readAtaFlags(frame: Uint8Array): number {
  return frame[24];
}

/** Features register of a request, error register of a response (byte 25). */
export function readAtaFeature(frame: Uint8Array): number {
  return frame[25];
}

/** Sector count (byte 26). */
export function readAtaSectorCount(frame: Uint8Array): number {
  return frame[26];
}

/** Command opcode of a request, status register of a response (byte 27). */
export function readAtaCommand(frame: Uint8Array): number {
  return frame[27];
}

/** The status register of a response (byte 27). */
export const readAtaStatus: (frame: Uint8Array) => number = readAtaCommand;

/** Writes a response's error, sector count and status registers (bytes 25-27). */
export function writeAtaRegisters(
  reply: Uint8Array,
  registers: { status: number; error: number; sectorCount: number },
): void {
  reply[25] = registers.error;
  reply[26] = registers.sectorCount;
  reply[27] = registers.status;
}
