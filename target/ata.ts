/**
 * The ATA device a target emulates: READ/WRITE SECTORS (28- and 48-bit),
 * IDENTIFY DEVICE, FLUSH CACHE (EXT), CHECK POWER MODE and DATA SET MANAGEMENT
 * (TRIM); anything else is aborted. Failures go in the ATA status and error
 * registers, because the Linux driver drops E-flagged replies and retransmits
 * (docs/protocol.md §2); only malformed arguments get the AoE error, as vblade does.
 *
 * @module
 */

import {
  AoeError,
  ATA_HEADER_LENGTH,
  AtaErrorBit,
  AtaFlag,
  AtaOp,
  AtaStatus,
  DSM_ENTRIES_PER_BLOCK,
  effectiveLba,
  IDENTIFY_LENGTH,
  readAtaCommand,
  readAtaFeature,
  readAtaFlags,
  readAtaSectorCount,
  readDsmLba,
  readDsmSectors,
  readLba,
  SECTOR_SIZE,
  setAoeError,
  writeAtaRegisters,
} from "../wire/mod.ts";
import type { BackingStore } from "./backing.ts";

/** What the ATA emulation needs from its export. */
export interface AtaDevice {
  /** Where the sectors are. */
  readonly store: BackingStore;
  /** 512 bytes of IDENTIFY data, kept current by the export. */
  readonly identify: Uint8Array;
  /**
   * A flush of the store failed: writes acknowledged before it may be lost.
   * Set here, cleared only by opening the export again (as the kernel's
   * errseq_t): every later FLUSH CACHE, and every write of a write-through
   * (-s) export, fails with ABRT (docs/protocol.md §3).
   */
  flushFailed: boolean;
  /** Called once, when {@link flushFailed} becomes true. */
  onFlushFailure?(): void;
  /** Called when a read or write of the store did not complete: `done` of `count` sectors. */
  onIoFailure?(op: "read" | "write", lba: number, count: number, done: number): void;
  /** Called when a read or write of the store completed (after failures: they ended). */
  onIoSuccess?(): void;
}

const FAILED = AtaStatus.ready | AtaStatus.error;

/** Reused for every reply: nothing allocated per request. */
const registers = { status: 0, error: 0, sectorCount: 0 };

function setRegisters(reply: Uint8Array, status: number, error: number, sectorCount: number): void {
  registers.status = status;
  registers.error = error;
  registers.sectorCount = sectorCount;
  writeAtaRegisters(reply, registers);
}

/**
 * One ATA request and where its reply goes. The caller may keep one and refill
 * it for every frame, so nothing is allocated per request.
 */
export interface AtaExchange {
  /** The request frame. */
  request: Uint8Array;
  /** Bytes of the request frame received. */
  length: number;
  /** The reply frame; its first 36 bytes already hold the response header. */
  reply: Uint8Array;
  /** Sectors one frame on this interface carries. */
  maxSectors: number;
}

/**
 * Executes the ATA command of `exchange.request` and writes the reply
 * registers and data into `exchange.reply`. Returns the reply length (before
 * padding).
 */
export function executeAta(device: AtaDevice, exchange: AtaExchange): number {
  const { request, length, reply, maxSectors } = exchange;
  const command = readAtaCommand(request);
  const count = readAtaSectorCount(request);
  const store = device.store;
  switch (command) {
    case AtaOp.readSectors:
    case AtaOp.readSectorsExt:
    case AtaOp.writeSectors:
    case AtaOp.writeSectorsExt: {
      const isWrite = command === AtaOp.writeSectors || command === AtaOp.writeSectorsExt;
      // More sectors than a frame carries, or write data shorter than the count: vblade's BadArg.
      if (count > maxSectors || (isWrite && length - ATA_HEADER_LENGTH < count * SECTOR_SIZE)) {
        setAoeError(reply, AoeError.badArgument);
        return ATA_HEADER_LENGTH;
      }
      const lba = effectiveLba(readAtaFlags(request), readLba(request));
      if (lba + count > store.sectors) {
        setRegisters(reply, FAILED, AtaErrorBit.idNotFound, count);
        return ATA_HEADER_LENGTH;
      }
      if (isWrite) {
        if (device.flushFailed && store.writeThrough) {
          // A durable write cannot be promised while earlier ones may be lost.
          setRegisters(reply, FAILED, AtaErrorBit.abort, count);
          return ATA_HEADER_LENGTH;
        }
        const done = count === 0 ? 0 : store.write(request.subarray(ATA_HEADER_LENGTH), lba, count);
        if (done !== count) {
          setRegisters(reply, FAILED, AtaErrorBit.abort, count - done);
          if (!store.readOnly) device.onIoFailure?.("write", lba, count, done);
        } else {
          setRegisters(reply, AtaStatus.ready, 0, 0);
          if (count > 0) device.onIoSuccess?.();
        }
        return ATA_HEADER_LENGTH;
      }
      const done = count === 0 ? 0 : store.read(reply.subarray(ATA_HEADER_LENGTH), lba, count);
      if (done !== count) {
        setRegisters(reply, FAILED, AtaErrorBit.abort, count - done);
        device.onIoFailure?.("read", lba, count, done);
      } else {
        setRegisters(reply, AtaStatus.ready, 0, 0);
        if (count > 0) device.onIoSuccess?.();
      }
      return ATA_HEADER_LENGTH + done * SECTOR_SIZE;
    }
    case AtaOp.identifyDevice:
      if (count !== 1) {
        setAoeError(reply, AoeError.badArgument);
        return ATA_HEADER_LENGTH;
      }
      reply.set(device.identify, ATA_HEADER_LENGTH);
      setRegisters(reply, AtaStatus.ready, 0, 0);
      return ATA_HEADER_LENGTH + IDENTIFY_LENGTH;
    case AtaOp.flushCache:
    case AtaOp.flushCacheExt:
      // Once failed, always failed: a later fdatasync that succeeds does not
      // bring back what the failed one lost (docs/protocol.md §3).
      if (!device.flushFailed && store.flush()) setRegisters(reply, AtaStatus.ready, 0, 0);
      else {
        if (!device.flushFailed) {
          device.flushFailed = true;
          device.onFlushFailure?.();
        }
        setRegisters(reply, FAILED, AtaErrorBit.abort, 0);
      }
      return ATA_HEADER_LENGTH;
    case AtaOp.checkPowerMode:
      setRegisters(reply, AtaStatus.ready, 0, 0xff); // 0xff: active or idle
      return ATA_HEADER_LENGTH;
    case AtaOp.dataSetManagement:
      return trim(store, request, length, reply, count);
    default:
      setRegisters(reply, FAILED, AtaErrorBit.abort, count);
      return ATA_HEADER_LENGTH;
  }
}

/**
 * DATA SET MANAGEMENT with the TRIM bit (feature bit 0): the data are blocks
 * of range entries (wire/dsm.ts, docs/protocol.md §3.1); an entry with count 0
 * is skipped.
 */
function trim(
  store: BackingStore,
  request: Uint8Array,
  length: number,
  reply: Uint8Array,
  count: number,
): number {
  const isTrim = (readAtaFeature(request) & 1) === 1 &&
    (readAtaFlags(request) & AtaFlag.write) !== 0;
  const dataBytes = count * SECTOR_SIZE;
  if (!isTrim || !store.canTrim || count === 0 || length - ATA_HEADER_LENGTH < dataBytes) {
    setRegisters(reply, FAILED, AtaErrorBit.abort, count);
    return ATA_HEADER_LENGTH;
  }
  const ranges = request.subarray(ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + dataBytes);
  for (let i = 0; i < count * DSM_ENTRIES_PER_BLOCK; i++) {
    const sectors = readDsmSectors(ranges, i);
    if (sectors === 0) continue;
    const lba = readDsmLba(ranges, i);
    if (lba + sectors > store.sectors) {
      setRegisters(reply, FAILED, AtaErrorBit.idNotFound, count);
      return ATA_HEADER_LENGTH;
    }
    if (!store.trim(lba, sectors)) {
      setRegisters(reply, FAILED, AtaErrorBit.abort, count);
      return ATA_HEADER_LENGTH;
    }
  }
  setRegisters(reply, AtaStatus.ready, 0, 0);
  return ATA_HEADER_LENGTH;
}
