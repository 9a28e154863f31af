/**
 * What the NBD server serves: the export interface, with the capabilities
 * each export declares for itself (as an nbdkit plugin's `can_*` callbacks),
 * and the transmission flags they earn. See the NBD protocol
 * (proto.md, "Transmission phase").
 *
 * @module
 */

import { TransmissionFlag } from "./protocol.ts";

/** One export: a byte range with the operations and capabilities behind it. */
export interface NbdExport {
  /** The export's name in LIST, INFO and GO. */
  readonly name: string;
  /** Bytes; 0 when the device behind it is gone. */
  readonly size: number;
  /** TRIM is supported (advertised as NBD_FLAG_SEND_TRIM). */
  readonly canTrim: boolean;
  /** Trimmed ranges read back as zeros, so WRITE_ZEROES may trim (unless NO_HOLE). */
  readonly trimReadsZeros: boolean;
  /** A write with `fua` is durable before it resolves (NBD_FLAG_SEND_FUA); absent: false. */
  readonly canFua?: boolean;
  /**
   * Every connection sees every other's completed writes and FLUSH covers them all
   * (NBD_FLAG_CAN_MULTI_CONN); absent: false.
   */
  readonly canMultiConn?: boolean;
  /** The export refuses writes (NBD_FLAG_READ_ONLY); absent: false. */
  readonly readOnly?: boolean;
  /** Reads `length` bytes at `offset`, into `into` where the export can (it may return its own buffer). */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /** Writes `data` at `offset`; with `fua`, durably. `data` is not kept after this resolves. */
  write(offset: number, data: Uint8Array, options: { fua?: boolean }): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  /** Discards a range (only called when {@link NbdExport.canTrim}). */
  trim(offset: number, length: number): Promise<void>;
  /** Called when a client starts using the export. */
  open?(): void;
  /** Called when a client stops using the export. */
  close?(): void;
}

/** Finds exports by name. */
export interface ExportProvider {
  /** The names LIST shows, in order; the first is the default export (""). */
  names(): string[];
  /** The export of that name, if any. */
  get(name: string): NbdExport | undefined;
}

/** Minimum, preferred and maximum request sizes advertised (NBD_INFO_BLOCK_SIZE). */
export const BLOCK_SIZES = { minimum: 512, preferred: 4096, maximum: 4 << 20 } as const;

/** Options for {@link exportFlags}. */
export interface ExportFlagOptions {
  /** The connection may not write, whatever the export can. */
  readOnly?: boolean;
}

/** The transmission flags an export earns (on one connection). */
export function exportFlags(exp: NbdExport, options: ExportFlagOptions = {}): number {
  // WRITE_ZEROES is always offered: where trimming cannot give zeros, zeros are written.
  let flags = TransmissionFlag.hasFlags | TransmissionFlag.sendFlush |
    TransmissionFlag.sendWriteZeroes | TransmissionFlag.sendCache;
  if (exp.canFua) flags |= TransmissionFlag.sendFua;
  if (exp.canMultiConn) flags |= TransmissionFlag.canMultiConn;
  if (exp.canTrim) flags |= TransmissionFlag.sendTrim;
  if (options.readOnly || exp.readOnly) flags |= TransmissionFlag.readOnly;
  return flags;
}
