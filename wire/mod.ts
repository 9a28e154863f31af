/**
 * The AoE revision 11 wire format, pure and shared by the target and the
 * initiator: encode into caller-owned buffers, decode with bounds checks that
 * throw {@link WireError}.
 *
 * @module
 */

export * from "./errors.ts";
export * from "./mac.ts";
export * from "./header.ts";
export * from "./ata.ts";
export * from "./config.ts";
export * from "./mask.ts";
export * from "./reserve.ts";
export * from "./identify.ts";
export * from "./crc.ts";
export * from "./extension.ts";
export * from "./dsm.ts";
