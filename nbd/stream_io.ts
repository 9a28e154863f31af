/**
 * Byte-exact reading and ordered writing on one NBD connection: the reader
 * hands out whole messages (large payloads land in pooled buffers with no
 * second copy), the writer sends replies in order, joining small ones that
 * queued up meanwhile into one write.
 *
 * @module
 */

import { type ByteStream, GATHER_MAX } from "../reactor/mod.ts";
import type { BufferPool } from "./buffer_pool.ts";

/** Buffered exact reads from a stream connection. */
export class ExactReader {
  #buffer = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  /**
   * A reader with an empty buffer.
   * @param conn the stream
   * @param pool where large payload buffers come from
   */
  constructor(readonly conn: ByteStream, readonly pool?: BufferPool) {}

  /** Bytes received but not yet read (nothing may be pending when a connection switches to TLS). */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Exactly `n` bytes if they are already buffered (pipelined requests), with
   * no promise and no wait; undefined when they are not (then {@link read}).
   */
  readBuffered(n: number): Uint8Array | undefined {
    if (this.#end - this.#start < n) return undefined;
    const out = this.#buffer.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** Resolves with exactly `n` bytes, or undefined at end of stream. */
  async read(n: number): Promise<Uint8Array | undefined> {
    if (n > this.#buffer.length) return await this.#readLarge(n);
    return this.readBuffered(n) ?? (await this.#fill(n) ? this.readBuffered(n) : undefined);
  }

  /** Reads and drops `n` bytes, never holding more than the reader's buffer; false at end of stream. */
  async skip(n: number): Promise<boolean> {
    while (n > 0) {
      const step = Math.min(n, this.#buffer.length);
      if (!await this.#fill(step)) return false;
      this.#start += step;
      n -= step;
    }
    return true;
  }

  /** Makes at least `n` (at most the buffer's size) bytes available; false at end of stream. */
  async #fill(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (this.#start > 0 && this.#buffer.length - this.#end < n) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      const got = await this.conn.read(this.#buffer.subarray(this.#end));
      if (got === null) return false;
      this.#end += got;
    }
    return true;
  }

  /** A payload larger than the buffer: what is buffered, then straight from the socket (no second copy). */
  async #readLarge(n: number): Promise<Uint8Array | undefined> {
    const out = this.pool ? this.pool.take(n) : new Uint8Array(n);
    let have = Math.min(n, this.#end - this.#start);
    out.set(this.#buffer.subarray(this.#start, this.#start + have));
    this.#start += have;
    while (have < n) {
      const got = await this.conn.read(out.subarray(have));
      if (got === null) {
        this.pool?.give(out as Uint8Array<ArrayBuffer>);
        return undefined;
      }
      have += got;
    }
    return out;
  }
}

/** Parts this large are written as they are; smaller neighbours are joined into one write. */
const JOIN_LIMIT = 64 * 1024;

/** Buffers to write, in order: small parts joined (fewer syscalls), large ones not copied. */
function coalesce(parts: Uint8Array[], total: number): Uint8Array[] {
  if (parts.length === 1) return parts;
  if (total <= JOIN_LIMIT) return [join(parts, total)];
  const out: Uint8Array[] = [];
  let run: Uint8Array[] = [];
  let runBytes = 0;
  const endRun = () => {
    if (run.length > 0) out.push(run.length === 1 ? run[0] : join(run, runBytes));
    run = [];
    runBytes = 0;
  };
  for (const part of parts) {
    if (part.length >= JOIN_LIMIT) {
      endRun();
      out.push(part);
    } else {
      run.push(part);
      runBytes += part.length;
    }
  }
  endRun();
  return out;
}

function join(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Writes whole buffers in order on one connection, coalescing what queued up
 * while the previous write was in progress into one write (fewer syscalls for
 * many small replies). Never rejects: after a failed write the rest is dropped
 * and {@link OrderedWriter.failed} says so.
 */
export class OrderedWriter {
  #queue: Uint8Array[] = [];
  #queued = 0;
  #draining = false;
  #flushing: Promise<void> = Promise.resolve();
  #failed = false;

  /**
   * A writer with nothing queued.
   * @param conn the stream written to
   */
  constructor(readonly conn: ByteStream) {}

  /** Bytes queued behind the write in progress (a peer that does not read makes it grow). */
  get backlog(): number {
    return this.#queued;
  }

  /** A write failed (the peer is gone); later writes are dropped. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Queues one buffer, after everything queued before; resolves once it is written. */
  write(part: Uint8Array): Promise<void> {
    this.#queue.push(part);
    this.#queued += part.length;
    return this.#kick();
  }

  /** Queues two buffers to go out together (a reply header and its data). */
  write2(first: Uint8Array, second: Uint8Array): Promise<void> {
    this.#queue.push(first, second);
    this.#queued += first.length + second.length;
    return this.#kick();
  }

  #kick(): Promise<void> {
    if (!this.#draining) {
      this.#draining = true;
      this.#flushing = this.#drain();
    }
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const parts = this.#queue;
      const total = this.#queued;
      this.#queue = [];
      this.#queued = 0;
      if (this.#failed) continue;
      try {
        const out = coalesce(parts, total);
        // Small replies are joined (a copy costs less than building an iovec); a large
        // payload goes out with its header in one gathered write, not copied.
        if (this.conn.writev && out.length > 1) await this.#gather(out);
        else {
          for (const one of out) {
            for (let done = 0; done < one.length;) {
              done += await this.conn.write(one.subarray(done));
            }
          }
        }
      } catch {
        this.#failed = true;
      }
    }
    // Cleared with no await after the last emptiness check: a write queued at any
    // moment is either taken by this loop or starts a new one.
    this.#draining = false;
  }

  /** Writes `parts` with gathered writes (no joining copy), resuming after partial ones. */
  async #gather(parts: Uint8Array[]): Promise<void> {
    let at = 0;
    while (at < parts.length) {
      let done = await this.conn.writev!(parts.slice(at, at + GATHER_MAX));
      while (at < parts.length && done >= parts[at].length) done -= parts[at++].length;
      // A part written in part: the rest of it leads the next call.
      if (done > 0) parts[at] = parts[at].subarray(done);
    }
  }
}
