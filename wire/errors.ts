/** Why a frame could not be decoded. */
export type WireErrorKind =
  | "short" // fewer bytes than the structure needs
  | "ethertype" // not 0x88A2
  | "length" // a count or length field points past the frame or a limit
  | "reserved" // a must-be-zero field is not zero
  | "range"; // a value to encode is out of its field's range

/** A frame or argument that does not fit the AoE r11 layout. */
export class WireError extends Error {
  /** What was wrong, for counting. */
  readonly kind: WireErrorKind;
  /**
   * A wire error of this kind.
   *
   * @param kind the class of the defect
   * @param message details
   */
  constructor(kind: WireErrorKind, message: string) {
    super(message);
    this.name = "WireError";
    this.kind = kind;
  }
}

/** Throws a "short" WireError unless `length` bytes are at least `need`. */
export function requireLength(length: number, need: number, what: string): void {
  if (length < need) throw new WireError("short", `${what}: ${length} bytes, need ${need}`);
}
