/**
 * What a target exports: a file or block device read and written by sector
 * with pread/pwrite, made durable with fdatasync, trimmed by punching holes.
 *
 * @module
 */

import {
  alignedBuffer,
  check,
  cString,
  directIoAlignment,
  errno,
  libc,
  linux,
  strerror,
} from "../ffi/libc.ts";
import { SECTOR_SIZE } from "../wire/mod.ts";

/** Sector storage behind a target. */
export interface BackingStore {
  /** Exported capacity in sectors. */
  readonly sectors: number;
  /** Writes are refused. */
  readonly readOnly: boolean;
  /** Every write is durable before it returns (O_SYNC). */
  readonly writeThrough: boolean;
  /** TRIM is available (punching holes keeps a sparse file sparse; trimmed sectors read as zeros). */
  readonly canTrim: boolean;
  /** Reads `count` sectors at `lba` into `into`; returns the sectors read. */
  read(into: Uint8Array, lba: number, count: number): number;
  /** Writes `count` sectors from `from` at `lba`; returns the sectors written. */
  write(from: Uint8Array, lba: number, count: number): number;
  /** Makes every completed write durable. Returns false on failure. */
  flush(): boolean;
  /** Deallocates sectors; they then read as zeros. Returns false on failure. */
  trim(lba: number, count: number): boolean;
  /** Releases the store. */
  close(): void;
  /** Why the last read or write that did not complete failed (errno text), if the store knows. */
  readonly lastError?: string;
}

/** How to open a {@link FileStore}; the letters are vblade's. */
export interface FileStoreOptions {
  /** -r */
  readOnly?: boolean;
  /** -d: O_DIRECT */
  direct?: boolean;
  /** -s: O_SYNC */
  sync?: boolean;
  /** -o: sectors skipped at the start */
  offsetSectors?: number;
  /** -l: sectors exported (default: the rest) */
  lengthSectors?: number;
  /** Refuse a symlink (O_NOFOLLOW): for files the target creates itself, as a shadow. */
  noFollow?: boolean;
}

/**
 * 512-byte sectors one O_DIRECT transfer moves through the bounce buffer (an
 * ATA request carries at most 255); larger ones go in pieces.
 */
export const BOUNCE_SECTORS = 256;

/** A regular file or block device opened through libc. */
export class FileStore implements BackingStore {
  readonly sectors: number;
  /** Opened read-only (-r). */
  readonly readOnly: boolean;
  readonly writeThrough: boolean;
  readonly canTrim: boolean;
  /** Why the last read or write that did not complete failed. */
  lastError: string | undefined;
  #fd: number;
  #offsetBytes: number;
  #flockBytes = new Uint8Array(32);
  #flock = new DataView(this.#flockBytes.buffer);
  #bounce: Uint8Array | undefined;
  /** What O_DIRECT aligns to and moves at once: the device's logical sector (-d). */
  #align = SECTOR_SIZE;
  /** Bytes in the file. */
  #fileBytes = 0;
  /**
   * The file opened again without O_DIRECT, for writes into its last logical
   * sector when the file ends inside it (O_DIRECT would grow the file), or -1.
   */
  #tailFd = -1;

  /** Opens `path`; throws a one-line Error on any failure. */
  constructor(readonly path: string, options: FileStoreOptions = {}) {
    this.readOnly = options.readOnly ?? false;
    this.writeThrough = options.sync ?? false;
    let flags = (this.readOnly ? linux.O_RDONLY : linux.O_RDWR) | linux.O_CLOEXEC;
    if (options.direct) flags |= linux.O_DIRECT;
    if (options.sync) flags |= linux.O_SYNC;
    if (options.noFollow) flags |= linux.O_NOFOLLOW;
    this.#fd = check(libc().open(cString(path), flags, 0), `open ${path}`);
    try {
      const info = Deno.statSync(path);
      const isBlock = info.isBlockDevice ?? false;
      const totalBytes = isBlock ? this.#blockDeviceBytes() : info.size;
      const total = Math.floor(totalBytes / SECTOR_SIZE);
      const offset = options.offsetSectors ?? 0;
      if (offset >= total) {
        throw new Error(`Offset ${offset} too large for ${total}-sector export ${path}`);
      }
      let sectors = total - offset;
      if (options.lengthSectors !== undefined) {
        if (options.lengthSectors > sectors) {
          throw new Error(
            `Length ${options.lengthSectors} too big - exceeds size of file (${sectors} sectors)`,
          );
        }
        sectors = options.lengthSectors;
      }
      this.sectors = sectors;
      this.#offsetBytes = offset * SECTOR_SIZE;
      this.canTrim = !isBlock && !this.readOnly;
      if (options.direct) {
        // O_DIRECT moves whole logical sectors only; AoE addresses 512-byte ones, so
        // on a 4096-byte-sector device every transfer goes through the aligned bounce
        // buffer, and a write of part of a logical sector reads the rest first.
        // A regular file: what its filesystem's device needs (statx), 512 if it does not say.
        const logical = isBlock
          ? this.#logicalSectorSize()
          : Math.max(SECTOR_SIZE, directIoAlignment(this.#fd) ?? SECTOR_SIZE);
        if (logical < SECTOR_SIZE || logical % SECTOR_SIZE !== 0 || logical > 65536) {
          throw new Error(`-d: ${path} has ${logical}-byte logical sectors, which -d cannot serve`);
        }
        this.#align = logical;
        this.#bounce = alignedBuffer(
          BOUNCE_SECTORS * SECTOR_SIZE + 2 * logical,
          Math.max(4096, logical),
        );
        this.#fileBytes = totalBytes;
        if (!isBlock && !this.readOnly && totalBytes % logical !== 0) {
          this.#tailFd = check(
            libc().open(cString(path), flags & ~linux.O_DIRECT, 0),
            `open ${path}`,
          );
        }
      }
    } catch (error) {
      libc().close(this.#fd);
      if (this.#tailFd >= 0) libc().close(this.#tailFd);
      throw error;
    }
  }

  #logicalSectorSize(): number {
    const size = new Int32Array(1);
    check(
      libc().ioctl(this.#fd, linux.BLKSSZGET, new Uint8Array(size.buffer)),
      "ioctl BLKSSZGET",
    );
    return size[0];
  }

  #blockDeviceBytes(): number {
    const size = new BigUint64Array(1);
    check(
      libc().ioctl(this.#fd, linux.BLKGETSIZE64, new Uint8Array(size.buffer)),
      "ioctl BLKGETSIZE64",
    );
    return Number(size[0]);
  }

  read(into: Uint8Array, lba: number, count: number): number {
    if (this.#bounce && count > BOUNCE_SECTORS) {
      return this.#inPieces(
        count,
        (at, n) => this.read(into.subarray(at * SECTOR_SIZE), lba + at, n),
      );
    }
    const bytes = count * SECTOR_SIZE;
    const start = this.#offsetBytes + lba * SECTOR_SIZE;
    const bounce = this.#bounce;
    if (!bounce) {
      const n = this.#io(
        "pread",
        libc().pread(this.#fd, into, BigInt(bytes), BigInt(start)),
        bytes,
      );
      return n > 0 ? Math.floor(n / SECTOR_SIZE) : 0;
    }
    // The whole logical sectors around the request, then the part asked for.
    const head = start % this.#align;
    const span = this.#roundUp(head + bytes);
    const n = this.#io(
      "pread",
      libc().pread(this.#fd, bounce, BigInt(span), BigInt(start - head)),
      head + bytes,
    );
    const got = Math.min(bytes, n - head);
    if (got <= 0) return 0;
    into.set(bounce.subarray(head, head + got));
    return Math.floor(got / SECTOR_SIZE);
  }

  write(from: Uint8Array, lba: number, count: number): number {
    if (this.readOnly) return 0;
    if (this.#bounce && count > BOUNCE_SECTORS) {
      return this.#inPieces(
        count,
        (at, n) => this.write(from.subarray(at * SECTOR_SIZE), lba + at, n),
      );
    }
    const bytes = count * SECTOR_SIZE;
    const start = this.#offsetBytes + lba * SECTOR_SIZE;
    const bounce = this.#bounce;
    if (!bounce) {
      const n = this.#io(
        "pwrite",
        libc().pwrite(this.#fd, from, BigInt(bytes), BigInt(start)),
        bytes,
      );
      return n > 0 ? Math.floor(n / SECTOR_SIZE) : 0;
    }
    const align = this.#align;
    const head = start % align;
    const alignedStart = start - head;
    const span = this.#roundUp(head + bytes);
    const tail = span - head - bytes;
    if (alignedStart + span > this.#fileBytes && this.#tailFd >= 0) {
      // The file ends inside the last logical sector: written through the page cache.
      const n = this.#io(
        "pwrite",
        libc().pwrite(this.#tailFd, from, BigInt(bytes), BigInt(start)),
        bytes,
      );
      return n > 0 ? Math.floor(n / SECTOR_SIZE) : 0;
    }
    // Another process serving the same device (a second target on another interface)
    // must not write these logical sectors between our read and our write: an open
    // file description lock on the span, taken by every write that goes through here.
    const locked = align > SECTOR_SIZE && this.#lock(linux.F_WRLCK, alignedStart, span);
    try {
      // Read-modify-write of a logical sector the request covers only in part: the first
      // one if the request starts inside it, the last one if it ends inside it.
      if (head > 0 && !this.#readBlock(bounce, 0, alignedStart)) return 0;
      if (tail > 0 && !(head > 0 && span === align)) {
        if (!this.#readBlock(bounce, span - align, alignedStart + span - align)) return 0;
      }
      bounce.set(from.subarray(0, bytes), head);
      const n = this.#io(
        "pwrite",
        libc().pwrite(this.#fd, bounce, BigInt(span), BigInt(alignedStart)),
        span,
      );
      const done = Math.min(bytes, n - head);
      return done > 0 ? Math.floor(done / SECTOR_SIZE) : 0;
    } finally {
      if (locked) this.#lock(linux.F_UNLCK, alignedStart, span);
    }
  }

  /** The result of a pread/pwrite of `wanted` bytes; a failure or short transfer kept in lastError. */
  #io(call: string, result: number | bigint, wanted: number): number {
    const n = Number(result);
    if (n < 0) this.lastError = `${call}: ${strerror(errno())}`;
    else if (n < wanted) {
      this.lastError = `${call}: ${n} of ${wanted} bytes (end of file or device)`;
    }
    return n;
  }

  /**
   * A transfer larger than the bounce buffer (the shadow merge moves 2048
   * sectors at once) as pieces of {@link BOUNCE_SECTORS}, one after the other;
   * stops at the first piece not done whole. Returns the sectors done.
   */
  #inPieces(count: number, piece: (at: number, n: number) => number): number {
    let done = 0;
    while (done < count) {
      const n = Math.min(BOUNCE_SECTORS, count - done);
      const got = piece(done, n);
      done += got;
      if (got !== n) break;
    }
    return done;
  }

  /** F_OFD_SETLKW of `type` on bytes [start, start + length); false if the lock is unavailable. */
  #lock(type: number, start: number, length: number): boolean {
    // struct flock (x86_64 and aarch64): l_type, l_whence (SEEK_SET), pad, l_start, l_len, l_pid (0).
    const view = this.#flock;
    view.setInt16(0, type, true);
    view.setInt16(2, 0, true);
    view.setBigInt64(8, BigInt(start), true);
    view.setBigInt64(16, BigInt(length), true);
    view.setInt32(24, 0, true);
    return libc().fcntl_lock(this.#fd, linux.F_OFD_SETLKW, this.#flockBytes) === 0;
  }

  /** `bytes` rounded up to whole logical sectors. */
  #roundUp(bytes: number): number {
    return Math.ceil(bytes / this.#align) * this.#align;
  }

  /** Reads the logical sector at byte `position` into `bounce` at `at`; false on failure. */
  #readBlock(bounce: Uint8Array, at: number, position: number): boolean {
    const view = bounce.subarray(at, at + this.#align);
    const n = libc().pread(this.#fd, view, BigInt(this.#align), BigInt(position));
    return this.#io("pread (read-modify-write)", n, this.#align) === this.#align;
  }

  flush(): boolean {
    return libc().fdatasync(this.#fd) === 0;
  }

  trim(lba: number, count: number): boolean {
    if (!this.canTrim) return false;
    const mode = linux.FALLOC_FL_PUNCH_HOLE | linux.FALLOC_FL_KEEP_SIZE;
    const start = BigInt(this.#offsetBytes + lba * SECTOR_SIZE);
    return libc().fallocate(this.#fd, mode, start, BigInt(count * SECTOR_SIZE)) === 0;
  }

  /** Closes the file (once). */
  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    if (this.#tailFd >= 0) libc().close(this.#tailFd);
    this.#fd = -1;
    this.#tailFd = -1;
  }
}

/** A store in memory, for unit tests. */
export class MemoryStore implements BackingStore {
  /** The sectors' bytes. */
  readonly data: Uint8Array;
  readonly writeThrough: boolean;
  readonly canTrim = true;
  /** FLUSH calls seen. */
  flushes = 0;

  /**
   * A zeroed store.
   *
   * @param sectors capacity
   * @param options read-only or not; write-through (as -s, the default) or with a write cache
   */
  constructor(
    readonly sectors: number,
    readonly options: { readOnly?: boolean; writeThrough?: boolean } = {},
  ) {
    this.data = new Uint8Array(sectors * SECTOR_SIZE);
    this.writeThrough = options.writeThrough ?? true;
  }

  /** Whether writes are refused. */
  get readOnly(): boolean {
    return this.options.readOnly ?? false;
  }

  read(into: Uint8Array, lba: number, count: number): number {
    into.set(this.data.subarray(lba * SECTOR_SIZE, (lba + count) * SECTOR_SIZE));
    return count;
  }

  write(from: Uint8Array, lba: number, count: number): number {
    if (this.readOnly) return 0;
    this.data.set(from.subarray(0, count * SECTOR_SIZE), lba * SECTOR_SIZE);
    return count;
  }

  flush(): boolean {
    this.flushes++;
    return true;
  }

  trim(lba: number, count: number): boolean {
    this.data.fill(0, lba * SECTOR_SIZE, (lba + count) * SECTOR_SIZE);
    return true;
  }

  /** Nothing to release. */
  close(): void {}
}

/** A store that does no disk I/O: reads leave the buffer as it is, writes are dropped. It measures the link's limit. */
export class NullStore implements BackingStore {
  /** Writes are accepted (and dropped). */
  readonly readOnly = false;
  readonly writeThrough = true;
  readonly canTrim = false;

  /**
   * A store of that size that stores nothing.
   *
   * @param sectors the capacity it claims
   */
  constructor(readonly sectors: number) {}

  read(_into: Uint8Array, _lba: number, count: number): number {
    return count;
  }

  write(_from: Uint8Array, _lba: number, count: number): number {
    return count;
  }

  flush(): boolean {
    return true;
  }

  trim(): boolean {
    return false;
  }

  /** Nothing to release. */
  close(): void {}
}
