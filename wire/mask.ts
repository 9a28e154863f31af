/**
 * MAC Mask List (AoE r11 §3.3; docs/protocol.md §6).
 *
 * @module
 */

import { requireLength, WireError } from "./errors.ts";
import { readMac, writeMac } from "./mac.ts";
import { frameLengthFor } from "./header.ts";

/** Headers plus the fixed part of the MAC mask argument. */
export const MASK_HEADER_LENGTH = 28;
/** Bytes per directive. */
export const DIRECTIVE_LENGTH = 8;

/** The most directives a MAC Mask reply fits in a frame of an interface with this MTU (docs/protocol.md §6). */
export function directivesFor(mtu: number): number {
  return Math.max(
    0,
    Math.min(255, Math.floor((frameLengthFor(mtu) - MASK_HEADER_LENGTH) / DIRECTIVE_LENGTH)),
  );
}

/** MCmd values. */
export const MaskCommand = { read: 0, edit: 1 } as const;
/** DCmd values. */
export const DirectiveCommand = { none: 0, add: 1, delete: 2 } as const;
/** MError values. */
export const MaskError = { none: 0, unspecified: 1, badDirective: 2, listFull: 3 } as const;

/** One directive. */
export interface MaskDirective {
  /** Directive command ({@link DirectiveCommand}). */
  dcmd: number;
  /** The MAC it applies to. */
  mac: number;
}

/** The decoded MAC mask argument. */
export interface MaskArg {
  /** Mask command ({@link MaskCommand}). */
  mcmd: number;
  /** Mask error ({@link MaskError}). */
  merror: number;
  /** Directives the count field announces and the frame holds. */
  directives: MaskDirective[];
  /** The count field as sent. */
  dirCount: number;
}

/** Decodes a MAC mask argument; throws "length" if the count runs past the frame. */
export function decodeMask(frame: Uint8Array, length: number = frame.length): MaskArg {
  const usable = Math.min(length, frame.length);
  requireLength(usable, MASK_HEADER_LENGTH, "MAC mask argument");
  const dirCount = frame[27];
  if (MASK_HEADER_LENGTH + dirCount * DIRECTIVE_LENGTH > usable) {
    throw new WireError("length", `${dirCount} directives do not fit in ${usable} bytes`);
  }
  const directives: MaskDirective[] = [];
  for (let i = 0; i < dirCount; i++) {
    const at = MASK_HEADER_LENGTH + i * DIRECTIVE_LENGTH;
    directives.push({ dcmd: frame[at + 1], mac: readMac(frame, at + 2) });
  }
  return { mcmd: frame[25], merror: frame[26], directives, dirCount };
}

/** Encodes a MAC mask argument; returns the frame length. */
export function encodeMask(
  frame: Uint8Array,
  arg: { mcmd: number; merror: number; directives: readonly MaskDirective[]; dirCount?: number },
): number {
  const end = MASK_HEADER_LENGTH + arg.directives.length * DIRECTIVE_LENGTH;
  requireLength(frame.length, end, "MAC mask buffer");
  if (arg.directives.length > 255) throw new WireError("range", "more than 255 directives");
  frame[24] = 0;
  frame[25] = arg.mcmd;
  frame[26] = arg.merror;
  frame[27] = arg.dirCount ?? arg.directives.length;
  arg.directives.forEach((d, i) => {
    const at = MASK_HEADER_LENGTH + i * DIRECTIVE_LENGTH;
    frame[at] = 0;
    frame[at + 1] = d.dcmd;
    writeMac(frame, at + 2, d.mac);
  });
  return end;
}

// ---- Allocation-free accessors of the MAC mask argument.

/** MCmd (byte 25). */
export function readMaskCommand(frame: Uint8Array): number {
  return frame[25];
}

/** Directive count (byte 27). */
export function readDirectiveCount(frame: Uint8Array): number {
  return frame[27];
}

/** DCmd of directive `index`. */
export function readDirectiveCommand(frame: Uint8Array, index: number): number {
  return frame[MASK_HEADER_LENGTH + index * DIRECTIVE_LENGTH + 1];
}

/** MAC of directive `index`. */
export function readDirectiveMac(frame: Uint8Array, index: number): number {
  return readMac(frame, MASK_HEADER_LENGTH + index * DIRECTIVE_LENGTH + 2);
}
