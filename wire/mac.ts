/** MAC addresses as 48-bit numbers: exact in a double, compared without allocation. */

/** Broadcast MAC ff:ff:ff:ff:ff:ff. */
export const BROADCAST_MAC = 0xffffffffffff;

/** Reads a MAC at `offset`. */
export function readMac(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset] * 0x10000 + bytes[offset + 1] * 0x100 + bytes[offset + 2]) * 0x1000000 +
    (bytes[offset + 3] << 16 | bytes[offset + 4] << 8 | bytes[offset + 5])
  );
}

/** Writes a MAC at `offset`. */
export function writeMac(bytes: Uint8Array, offset: number, mac: number): void {
  const high = Math.floor(mac / 0x1000000);
  const low = mac % 0x1000000;
  bytes[offset] = high >> 16 & 0xff;
  bytes[offset + 1] = high >> 8 & 0xff;
  bytes[offset + 2] = high & 0xff;
  bytes[offset + 3] = low >> 16 & 0xff;
  bytes[offset + 4] = low >> 8 & 0xff;
  bytes[offset + 5] = low & 0xff;
}

/** "525400123456" (the kernel's %pm) or with a separator, "52:54:00:12:34:56". */
export function formatMac(mac: number, separator = ""): string {
  const hex = mac.toString(16).padStart(12, "0");
  return separator ? hex.match(/../g)!.join(separator) : hex;
}

/** Parses a MAC with or without colons, any case; NaN when malformed. */
export function parseMac(text: string): number {
  const hex = text.trim().replaceAll(":", "").replaceAll("-", "");
  return /^[0-9a-fA-F]{12}$/.test(hex) ? parseInt(hex, 16) : NaN;
}
