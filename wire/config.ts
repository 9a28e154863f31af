/**
 * Query Config Information (AoE r11 §3.2; docs/protocol.md §5).
 *
 * @module
 */

import { requireLength, WireError } from "./errors.ts";
import { frameLengthFor } from "./header.ts";

/** Headers plus the fixed part of the QC argument. */
export const CONFIG_HEADER_LENGTH = 32;
/** Longest config string. */
export const MAX_CONFIG_LENGTH = 1024;

/** The longest config string a Query Config reply fits in a frame of an interface with this MTU (docs/protocol.md §5). */
export function configLengthFor(mtu: number): number {
  return Math.max(0, Math.min(MAX_CONFIG_LENGTH, frameLengthFor(mtu) - CONFIG_HEADER_LENGTH));
}

/** QC sub-commands (CCmd). */
export const ConfigCommand = { read: 0, test: 1, testPrefix: 2, set: 3, forceSet: 4 } as const;

/** The decoded QC argument. `config` holds the bytes present in the frame (at most the length field says). */
export interface ConfigArg {
  /** Requests the target can hold. */
  bufferCount: number;
  /** The target's firmware version. */
  firmwareVersion: number;
  /** Max sectors per ATA command; 0 on the wire means 2 (docs/protocol.md §5), see {@link effectiveSectorCount}. */
  sectorCount: number;
  /** AoE protocol version (1). */
  aoeVersion: number;
  /** Sub-command ({@link ConfigCommand}). */
  ccmd: number;
  /** The length field as sent. */
  configLength: number;
  /** The string bytes actually present: min(length field, bytes in the frame). */
  config: Uint8Array;
}

/** Decodes a QC argument. The string is a view into `frame`, not a copy. */
export function decodeConfig(frame: Uint8Array, length: number = frame.length): ConfigArg {
  const usable = Math.min(length, frame.length);
  requireLength(usable, CONFIG_HEADER_LENGTH, "Query Config argument");
  const configLength = frame[30] << 8 | frame[31];
  const present = Math.min(configLength, usable - CONFIG_HEADER_LENGTH);
  return {
    bufferCount: frame[24] << 8 | frame[25],
    firmwareVersion: frame[26] << 8 | frame[27],
    sectorCount: frame[28],
    aoeVersion: frame[29] >> 4,
    ccmd: frame[29] & 0xf,
    configLength,
    config: frame.subarray(CONFIG_HEADER_LENGTH, CONFIG_HEADER_LENGTH + present),
  };
}

/** Encodes a QC argument and its string; returns the frame length. */
export function encodeConfig(
  frame: Uint8Array,
  arg: Omit<ConfigArg, "configLength" | "config"> & { config: Uint8Array },
): number {
  if (arg.config.length > MAX_CONFIG_LENGTH) {
    throw new WireError("length", `config string of ${arg.config.length} bytes`);
  }
  const end = CONFIG_HEADER_LENGTH + arg.config.length;
  requireLength(frame.length, end, "Query Config buffer");
  frame[24] = arg.bufferCount >> 8;
  frame[25] = arg.bufferCount & 0xff;
  frame[26] = arg.firmwareVersion >> 8;
  frame[27] = arg.firmwareVersion & 0xff;
  frame[28] = arg.sectorCount;
  frame[29] = (arg.aoeVersion & 0xf) << 4 | (arg.ccmd & 0xf);
  frame[30] = arg.config.length >> 8;
  frame[31] = arg.config.length & 0xff;
  frame.set(arg.config, CONFIG_HEADER_LENGTH);
  return end;
}

/** Sectors per command a QC reply allows: 0 means 2 for backward compatibility (docs/protocol.md §5). */
export function effectiveSectorCount(sectorCount: number): number {
  return sectorCount === 0 ? 2 : sectorCount;
}

// ---- Allocation-free accessors of the Query Config argument.

/** Buffer count (bytes 24-25). */
export function readBufferCount(frame: Uint8Array): number {
  return frame[24] << 8 | frame[25];
}

/** Firmware version (bytes 26-27). */
export function readFirmwareVersion(frame: Uint8Array): number {
  return frame[26] << 8 | frame[27];
}

/** Sectors per ATA command as sent (byte 28; 0 means 2, see {@link effectiveSectorCount}). */
export function readConfigSectorCount(frame: Uint8Array): number {
  return frame[28];
}

/** The sub-command, CCmd (low nibble of byte 29). */
export function readConfigCommand(frame: Uint8Array): number {
  return frame[29] & 0xf;
}

/** The config string's length field (bytes 30-31). */
export function readConfigLength(frame: Uint8Array): number {
  return frame[30] << 8 | frame[31];
}
