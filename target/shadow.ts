/**
 * Freeze with a shadow file (AoEde's `-f`; docs/extensions.md §5). A
 * {@link ShadowStore} wraps the exported image: on freeze it flushes the
 * image, then every write goes to a sparse shadow file and the image stays
 * unchanged; reads take each sector from the shadow where it was written. On
 * unfreeze it merges the shadow back into the image in the background while
 * still serving, then removes the shadow.
 *
 * Which sectors live in the shadow is a bitmap kept on disk beside it
 * (`SHADOW.map`: a 4096-byte header, then one bit per sector), written before
 * a write is answered, so a target killed at any point restarts in the same
 * state and loses no answered write. FLUSH makes the shadow and the map
 * durable; the merge clears a sector's bit only after the image holds its
 * data durably, and a write during the merge to a sector still in the shadow
 * goes to the shadow, so nothing is reordered.
 *
 * @module
 */

import { check, cString, libc, linux } from "../ffi/libc.ts";
import { SECTOR_SIZE } from "../wire/mod.ts";
import { type BackingStore, FileStore } from "./backing.ts";

/** Bytes of the map file's header. */
export const MAP_HEADER_BYTES = 4096;
/** Sectors the merge copies per step (then fdatasync, then clears their bits). */
export const MERGE_STEP_SECTORS = 2048;
/** Milliseconds of merging per timer turn before frames get the thread back. */
export const MERGE_SLICE_MS = 4;
const MAGIC = "AOESHDW1";

/** Removes a directory entry (a file or a symlink itself, never what it points to) if present. */
function removeEntry(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Where the export is. */
export type FreezeState = "normal" | "frozen" | "merging";

const STATE_CODE: Record<FreezeState, number> = { normal: 0, frozen: 1, merging: 2 };

/** A backing store that can be frozen onto a shadow file. */
export class ShadowStore implements BackingStore {
  readonly sectors: number;
  readonly readOnly: boolean;
  readonly writeThrough: boolean;
  readonly canTrim: boolean;
  #state: FreezeState = "normal";
  #shadow?: FileStore;
  #mapFd = -1;
  #bits: Uint8Array;
  #inShadow = 0;
  #merge?: { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void };
  #mergeTimer?: ReturnType<typeof setTimeout>;
  /** Sectors the merge has copied back, for the counters. */
  merged = 0;

  /**
   * Wraps `image`; nothing is frozen until asked.
   *
   * @param image the exported store
   * @param shadowPath the -f file
   */
  constructor(readonly image: BackingStore, readonly shadowPath: string) {
    this.sectors = image.sectors;
    this.readOnly = image.readOnly;
    this.writeThrough = image.writeThrough;
    this.canTrim = image.canTrim;
    this.#bits = new Uint8Array(Math.ceil(this.sectors / 8));
    this.#resume();
  }

  /** The map file's path. */
  get mapPath(): string {
    return `${this.shadowPath}.map`;
  }

  /** normal, frozen or merging. */
  get state(): FreezeState {
    return this.#state;
  }

  /** Sectors whose current data are in the shadow. */
  get shadowSectors(): number {
    return this.#inShadow;
  }

  /** A restart finds the map of a freeze or a merge: carry on from it. */
  #resume(): void {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(this.mapPath);
    } catch {
      return; // no map: any shadow file left is stale and is replaced at the next freeze
    }
    const header = new Uint8Array(MAP_HEADER_BYTES);
    const file = Deno.openSync(this.mapPath, { read: true });
    try {
      file.readSync(header);
    } finally {
      file.close();
    }
    const view = new DataView(header.buffer);
    const magic = new TextDecoder().decode(header.subarray(0, 8));
    if (magic !== MAGIC || view.getFloat64(16, true) !== this.sectors) {
      throw new Error(`${this.mapPath}: not the shadow map of this export`);
    }
    const state = view.getUint32(8, true) === 2 ? "merging" : "frozen";
    if (info.size < MAP_HEADER_BYTES + this.#bits.length) {
      throw new Error(`${this.mapPath}: truncated`);
    }
    this.#openMap(false);
    const n = Number(
      libc().pread(this.#mapFd, this.#bits, BigInt(this.#bits.length), BigInt(MAP_HEADER_BYTES)),
    );
    if (n !== this.#bits.length) throw new Error(`${this.mapPath}: short read`);
    for (let i = 0; i < this.sectors; i++) if (this.#has(i)) this.#inShadow++;
    this.#shadow = new FileStore(this.shadowPath, { noFollow: true });
    this.#state = state;
    if (state === "merging") this.#startMerge();
  }

  #openMap(create: boolean): void {
    if (create) {
      removeEntry(this.mapPath);
      Deno.writeFileSync(this.mapPath, new Uint8Array(0), { mode: 0o600, createNew: true });
    }
    const flags = linux.O_RDWR | linux.O_CLOEXEC | linux.O_NOFOLLOW;
    this.#mapFd = check(libc().open(cString(this.mapPath), flags, 0o600), `open ${this.mapPath}`);
  }

  #writeHeader(state: FreezeState): void {
    const header = new Uint8Array(MAP_HEADER_BYTES);
    header.set(new TextEncoder().encode(MAGIC));
    const view = new DataView(header.buffer);
    view.setUint32(8, STATE_CODE[state], true);
    view.setFloat64(16, this.sectors, true);
    this.#pwriteMap(header, 0);
  }

  #pwriteMap(bytes: Uint8Array, at: number): void {
    const n = Number(libc().pwrite(this.#mapFd, bytes, BigInt(bytes.length), BigInt(at)));
    if (n !== bytes.length) throw new Error(`${this.mapPath}: write failed`);
  }

  #has(sector: number): boolean {
    return (this.#bits[sector >>> 3] & (1 << (sector & 7))) !== 0;
  }

  /** Sets or clears the bits of a range and writes the changed bytes of the map. */
  #mark(lba: number, count: number, on: boolean): void {
    let changed = false;
    for (let s = lba; s < lba + count; s++) {
      const had = this.#has(s);
      if (had === on) continue;
      changed = true;
      if (on) {
        this.#bits[s >>> 3] |= 1 << (s & 7);
        this.#inShadow++;
      } else {
        this.#bits[s >>> 3] &= ~(1 << (s & 7));
        this.#inShadow--;
      }
    }
    if (!changed) return;
    const first = lba >>> 3;
    const last = (lba + count - 1) >>> 3;
    this.#pwriteMap(this.#bits.subarray(first, last + 1), MAP_HEADER_BYTES + first);
  }

  /**
   * Freezes: flushes the image, creates the shadow (sparse, mode 0600) and
   * its map, and from then on writes go to the shadow. Resolves when frozen.
   */
  freeze(): Promise<void> {
    if (this.#state === "frozen") return Promise.resolve();
    if (this.#state === "merging") {
      return Promise.reject(new Error("the shadow is still being merged; freeze after it ends"));
    }
    try {
      if (!this.image.flush()) throw new Error("flush of the image failed");
      // Made anew: whatever has the name (a stale shadow, or a symlink someone planted
      // in a directory others can write) goes first, and O_EXCL never follows a link.
      removeEntry(this.shadowPath);
      const file = Deno.openSync(this.shadowPath, {
        read: true,
        write: true,
        createNew: true,
        mode: 0o600,
      });
      try {
        file.truncateSync(this.sectors * SECTOR_SIZE);
      } finally {
        file.close();
      }
      this.#shadow = new FileStore(this.shadowPath, { noFollow: true });
      this.#bits.fill(0);
      this.#inShadow = 0;
      this.#openMap(true);
      this.#writeHeader("frozen");
      this.#pwriteMap(this.#bits, MAP_HEADER_BYTES);
      if (libc().fdatasync(this.#mapFd) !== 0) throw new Error("fdatasync of the map failed");
      this.#state = "frozen";
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Unfreezes: merges the shadow back in the background; resolves when it is merged and removed. */
  unfreeze(): Promise<void> {
    if (this.#state === "normal") return Promise.resolve();
    if (this.#state === "frozen") {
      this.#writeHeader("merging");
      this.#state = "merging";
      this.#startMerge();
    }
    return this.#merge!.promise;
  }

  #startMerge(): void {
    this.#merge = Promise.withResolvers<void>();
    this.#merge.promise.catch(() => {}); // a caller may not wait; the failure is logged by it
    let cursor = 0;
    const buffer = new Uint8Array(MERGE_STEP_SECTORS * SECTOR_SIZE);
    const step = () => {
      this.#mergeTimer = undefined;
      // Several steps per timer, for a few milliseconds: the target's idle loop
      // gives timers a turn only every IDLE_BLOCK_MS (target/server.ts).
      const started = performance.now();
      try {
        for (;;) {
          const end = Math.min(this.sectors, cursor + MERGE_STEP_SECTORS);
          const copied: [number, number][] = [];
          let s = cursor;
          while (s < end) {
            if (!this.#has(s)) {
              s++;
              continue;
            }
            let run = 1;
            while (s + run < end && this.#has(s + run)) run++;
            const view = buffer.subarray(0, run * SECTOR_SIZE);
            if (this.#shadow!.read(view, s, run) !== run) {
              throw new Error("merge: shadow read failed");
            }
            if (this.image.write(view, s, run) !== run) {
              throw new Error("merge: image write failed");
            }
            copied.push([s, run]);
            s += run;
          }
          if (copied.length > 0) {
            // The image holds the data durably before the map says so.
            if (!this.image.flush()) throw new Error("merge: flush of the image failed");
            for (const [lba, run] of copied) {
              this.#mark(lba, run, false);
              this.merged += run;
            }
          }
          cursor = end;
          if (cursor < this.sectors) {
            if (performance.now() - started < MERGE_SLICE_MS) continue;
            this.#mergeTimer = setTimeout(step, 0);
            return;
          }
          this.#finishMerge();
          return;
        }
      } catch (error) {
        // Stay merging: reads and writes still see the right data; the next unfreeze retries.
        const merge = this.#merge!;
        this.#merge = undefined;
        this.#state = "frozen";
        merge.reject(error instanceof Error ? error : new Error(String(error)));
      }
    };
    this.#mergeTimer = setTimeout(step, 0);
  }

  #finishMerge(): void {
    if (libc().fdatasync(this.#mapFd) !== 0) throw new Error("merge: fdatasync of the map failed");
    libc().close(this.#mapFd);
    this.#mapFd = -1;
    Deno.removeSync(this.mapPath); // first the map: a shadow without a map is stale
    this.#shadow?.close();
    this.#shadow = undefined;
    try {
      Deno.removeSync(this.shadowPath);
    } catch { /* already gone */ }
    this.#state = "normal";
    const merge = this.#merge!;
    this.#merge = undefined;
    merge.resolve();
  }

  read(into: Uint8Array, lba: number, count: number): number {
    if (this.#state === "normal" || this.#inShadow === 0) return this.image.read(into, lba, count);
    let done = 0;
    while (done < count) {
      const inShadow = this.#has(lba + done);
      let run = 1;
      while (done + run < count && this.#has(lba + done + run) === inShadow) run++;
      const view = into.subarray(done * SECTOR_SIZE, (done + run) * SECTOR_SIZE);
      const n = (inShadow ? this.#shadow! : this.image).read(view, lba + done, run);
      done += n;
      if (n !== run) break;
    }
    return done;
  }

  write(from: Uint8Array, lba: number, count: number): number {
    if (this.#state === "normal") return this.image.write(from, lba, count);
    if (this.#state === "frozen") {
      const n = this.#shadow!.write(from, lba, count);
      if (n > 0) this.#mark(lba, n, true);
      return n;
    }
    // Merging: a sector still in the shadow is written there, the others to the image.
    let done = 0;
    while (done < count) {
      const inShadow = this.#has(lba + done);
      let run = 1;
      while (done + run < count && this.#has(lba + done + run) === inShadow) run++;
      const view = from.subarray(done * SECTOR_SIZE, (done + run) * SECTOR_SIZE);
      const n = (inShadow ? this.#shadow! : this.image).write(view, lba + done, run);
      done += n;
      if (n !== run) break;
    }
    return done;
  }

  flush(): boolean {
    if (this.#state === "normal") return this.image.flush();
    // Image (the merge's and new writes), then shadow, then the map that points into both.
    const image = this.#state === "merging" ? this.image.flush() : true;
    const shadow = this.#shadow!.flush();
    return image && shadow && libc().fdatasync(this.#mapFd) === 0;
  }

  trim(lba: number, count: number): boolean {
    if (this.#state === "normal") return this.image.trim(lba, count);
    if (this.#state === "frozen") {
      // A hole in the shadow reads as zeros; the image stays as it is.
      if (!this.#shadow!.trim(lba, count)) return false;
      this.#mark(lba, count, true);
      return true;
    }
    const zeros = new Uint8Array(count * SECTOR_SIZE);
    return this.write(zeros, lba, count) === count;
  }

  /**
   * Closes the shadow, its map and the image. A merge under way stops (the
   * map on disk still says merging: it resumes when the export is opened
   * again) and whoever waits for it is told so, never left waiting.
   */
  close(): void {
    if (this.#mergeTimer !== undefined) clearTimeout(this.#mergeTimer);
    this.#mergeTimer = undefined;
    const merge = this.#merge;
    this.#merge = undefined;
    merge?.reject(
      new Error(
        "the export was closed during the merge; it resumes when the export is opened again",
      ),
    );
    this.#shadow?.close();
    if (this.#mapFd >= 0) libc().close(this.#mapFd);
    this.#mapFd = -1;
    this.image.close();
  }
}
