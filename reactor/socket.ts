/**
 * Stream sockets driven by a {@link Reactor}: nonblocking `recv`/`send`
 * through libc, waiting on the reactor only when the kernel says EAGAIN. They
 * have the shape of `Deno.Conn`'s reads and writes, so a server can take either.
 *
 * @module
 */

import { cString, errno, libc, linux, SystemError } from "../ffi/libc.ts";
import { type Reactor, sharedReactor } from "./reactor.ts";

/** The byte stream a protocol server needs (a subset of `Deno.Conn`). */
export interface ByteStream {
  /** Reads into `buffer`; resolves with the byte count, or null at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `buffer`; resolves with the byte count written. */
  write(buffer: Uint8Array): Promise<number>;
  /**
   * Writes some of `parts` in order with one call (a gathered write: a reply
   * header and its data without joining them); resolves with the byte count
   * written. Optional: streams without it are written part by part.
   */
  writev?(parts: readonly Uint8Array[]): Promise<number>;
  /** Closes the stream; pending reads end. */
  close(): void;
}

const FLAGS = linux.MSG_DONTWAIT | linux.MSG_NOSIGNAL;
/** Parts one gathered write takes at most (well below IOV_MAX, 1024). */
export const GATHER_MAX = 64;
const MSGHDR_SIZE = 56;

function retryable(): boolean {
  const code = errno();
  return code === linux.EAGAIN || code === linux.EINTR;
}

/** A connected stream socket (Unix or TCP) owned by this object. */
export class SocketStream implements ByteStream {
  #closed = false;

  /**
   * Wraps a connected socket.
   *
   * @param fd a connected stream socket; closed with this object
   * @param reactor where to wait
   */
  constructor(readonly fd: number, readonly reactor: Reactor = sharedReactor()) {
    const iov = Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#iovecs));
    this.#msghdrView.setBigUint64(16, BigInt(iov), true);
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#closed) return null;
      const n = Number(libc().recv(this.fd, buffer, BigInt(buffer.length), FLAGS));
      if (n > 0) return n;
      if (n === 0) return null;
      if (!retryable()) return null; // a reset connection ends the stream
      await this.reactor.readable(this.fd);
    }
  }

  async write(buffer: Uint8Array): Promise<number> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.BrokenPipe("socket closed");
      const n = Number(libc().send(this.fd, buffer, BigInt(buffer.length), FLAGS));
      if (n >= 0) return n;
      if (!retryable()) throw new SystemError("send");
      await this.reactor.writable(this.fd);
    }
  }

  /** The iovec array and the msghdr naming it, for {@link writev}. */
  #iovecs = new BigUint64Array(GATHER_MAX * 2);
  #msghdr = new Uint8Array(MSGHDR_SIZE);
  #msghdrView = new DataView(this.#msghdr.buffer);

  async writev(parts: readonly Uint8Array[]): Promise<number> {
    if (parts.length === 1) return await this.write(parts[0]);
    const count = Math.min(parts.length, GATHER_MAX);
    const iovecs = this.#iovecs;
    // struct msghdr: no name, msg_iov at byte 16, msg_iovlen at 24, no control data.
    this.#msghdrView.setBigUint64(24, BigInt(count), true);
    for (;;) {
      if (this.#closed) throw new Deno.errors.BrokenPipe("socket closed");
      // Addresses taken right before the call (UnsafePointer.of moves a small buffer off the
      // heap for good), and again after any wait.
      for (let i = 0; i < count; i++) {
        iovecs[i * 2] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(parts[i])));
        iovecs[i * 2 + 1] = BigInt(parts[i].length);
      }
      const n = Number(libc().sendmsg(this.fd, this.#msghdr, FLAGS));
      if (n >= 0) return n;
      if (!retryable()) throw new SystemError("sendmsg");
      await this.reactor.writable(this.fd);
    }
  }

  /** Closes the socket (once). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.reactor.forget(this.fd);
    libc().close(this.fd);
  }
}

/** Send buffer for served connections: a whole 1 MiB reply (and more) in one send. */
const SEND_BUFFER_BYTES = 4 << 20;

/**
 * Raises a socket's send buffer so a large reply goes out in one call instead
 * of waking the loop for every slice; root may exceed net.core.wmem_max.
 */
export function enlargeSendBuffer(fd: number, bytes = SEND_BUFFER_BYTES): void {
  const value = new Uint8Array(new Int32Array([bytes]).buffer);
  if (libc().setsockopt(fd, linux.SOL_SOCKET, linux.SO_SNDBUFFORCE, value, 4) < 0) {
    libc().setsockopt(fd, linux.SOL_SOCKET, linux.SO_SNDBUF, value, 4);
  }
}

/** A listening Unix stream socket whose connections are {@link SocketStream}s. */
export class UnixListener implements AsyncIterable<SocketStream> {
  /** The listening socket. */
  readonly fd: number;
  #closed = false;

  /**
   * Listens on `path`.
   *
   * @param path the socket's path (an old socket there is replaced)
   * @param reactor where to wait
   */
  constructor(readonly path: string, readonly reactor: Reactor = sharedReactor()) {
    try {
      Deno.removeSync(path);
    } catch { /* none */ }
    const fd = libc().socket(
      linux.AF_UNIX,
      linux.SOCK_STREAM | linux.SOCK_NONBLOCK | linux.SOCK_CLOEXEC,
      0,
    );
    if (fd < 0) throw new SystemError("socket(AF_UNIX)");
    const address = new Uint8Array(110); // sockaddr_un: family, then a path of up to 108 bytes
    const name = cString(path);
    if (name.length > 108) {
      libc().close(fd);
      throw new RangeError(`socket path too long: ${path}`);
    }
    new DataView(address.buffer).setUint16(0, linux.AF_UNIX, true);
    address.set(name, 2);
    if (libc().bind(fd, address, address.length) < 0 || libc().listen(fd, 128) < 0) {
      const error = new SystemError(`listen ${path}`);
      libc().close(fd);
      throw error;
    }
    this.fd = fd;
  }

  /** Resolves with the next connection, or undefined once closed. */
  async accept(): Promise<SocketStream | undefined> {
    for (;;) {
      if (this.#closed) return undefined;
      const fd = libc().accept4(this.fd, null, null, linux.SOCK_NONBLOCK | linux.SOCK_CLOEXEC);
      if (fd >= 0) {
        enlargeSendBuffer(fd);
        return new SocketStream(fd, this.reactor);
      }
      if (retryable()) await this.reactor.readable(this.fd);
      // EMFILE, ECONNABORTED and the like: try again a little later instead of spinning.
      else await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The connections, until the listener is closed. */
  async *[Symbol.asyncIterator](): AsyncIterator<SocketStream> {
    for (;;) {
      const conn = await this.accept();
      if (!conn) return;
      yield conn;
    }
  }

  /** Stops listening (once). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.reactor.forget(this.fd);
    libc().close(this.fd);
  }
}

/** A connected pair of Unix stream sockets: [ours, theirs]. Ours is nonblocking. */
export function socketPair(reactor: Reactor = sharedReactor()): [SocketStream, number] {
  const pair = new Int32Array(2);
  if (
    libc().socketpair(
      linux.AF_UNIX,
      linux.SOCK_STREAM | linux.SOCK_CLOEXEC,
      0,
      new Uint8Array(pair.buffer),
    ) < 0
  ) throw new SystemError("socketpair");
  // Every call on our end passes MSG_DONTWAIT; the other end stays blocking for its user.
  enlargeSendBuffer(pair[0]);
  return [new SocketStream(pair[0], reactor), pair[1]];
}
