/**
 * TLS for NBD's STARTTLS: after the option is acknowledged, the server side
 * of a TLS session runs over the same TCP connection (node:tls over the
 * connection as a duplex stream; Deno's own TLS upgrade is client-only), and
 * the session is read and written as a {@link ByteStream}. Certificates are
 * read from a directory laid out as for nbdkit and qemu-nbd:
 * `server-cert.pem`, `server-key.pem`, and `ca-cert.pem` to verify clients.
 *
 * @module
 */

import * as tls from "node:tls";
import { Duplex } from "node:stream";
import type { ByteStream } from "../reactor/mod.ts";

/** The server's TLS credentials (PEM text). */
export interface TlsCredentials {
  /** The server's certificate chain. */
  cert: string;
  /** The server's private key. */
  key: string;
  /** Given: clients must present a certificate this authority signed. */
  ca?: string;
}

/**
 * Reads `server-cert.pem` and `server-key.pem` from a directory, and with
 * `verifyPeer` also `ca-cert.pem`; throws an Error naming the missing file.
 */
export function readTlsDirectory(
  dir: string,
  options: { verifyPeer?: boolean } = {},
): TlsCredentials {
  const read = (name: string) => {
    try {
      return Deno.readTextFileSync(`${dir}/${name}`);
    } catch (error) {
      throw new Error(
        `TLS: cannot read ${dir}/${name}: ${error instanceof Error ? error.message : error}`,
      );
    }
  };
  return {
    cert: read("server-cert.pem"),
    key: read("server-key.pem"),
    ca: options.verifyPeer ? read("ca-cert.pem") : undefined,
  };
}

/** A prepared server-side TLS context; throws at construction on bad credentials. */
export class TlsServer {
  readonly #context: tls.SecureContext;
  readonly #verifyPeer: boolean;

  /**
   * Prepares the context once for every connection.
   * @param credentials certificate, key and optionally the authority clients must come from
   */
  constructor(credentials: TlsCredentials) {
    this.#context = tls.createSecureContext({
      cert: credentials.cert,
      key: credentials.key,
      ca: credentials.ca,
    });
    this.#verifyPeer = credentials.ca !== undefined;
  }

  /** Runs the server side of a TLS handshake on `conn`; resolves with the session as a stream. */
  accept(conn: Deno.Conn): Promise<ByteStream> {
    const socket = new tls.TLSSocket(duplexOf(conn), {
      isServer: true,
      secureContext: this.#context,
      requestCert: this.#verifyPeer,
      rejectUnauthorized: this.#verifyPeer,
    });
    return new Promise((resolve, reject) => {
      const failed = (error: Error) => {
        socket.destroy();
        reject(error);
      };
      socket.once("error", failed);
      socket.once("close", () => reject(new Error("closed during the TLS handshake")));
      socket.once("secure", () => {
        socket.off("error", failed);
        resolve(new TlsStream(socket));
      });
    });
  }
}

/** A Deno connection as a node duplex stream (what node:tls runs over). */
function duplexOf(conn: Deno.Conn): Duplex {
  const buffer = new Uint8Array(64 * 1024);
  return new Duplex({
    read() {
      conn.read(buffer).then(
        (n) => this.push(n === null ? null : buffer.slice(0, n)),
        () => this.push(null),
      );
    },
    write(chunk: Uint8Array, _encoding, callback) {
      (async () => {
        for (let done = 0; done < chunk.length;) done += await conn.write(chunk.subarray(done));
      })().then(() => callback(), (error) => callback(error));
    },
    destroy(error, callback) {
      try {
        conn.close();
      } catch { /* closed */ }
      callback(error);
    },
  });
}

/** Received data held before the stream stops reading from the socket. */
const HIGH_WATER = 256 * 1024;

/** A TLS session read and written as a {@link ByteStream}. */
class TlsStream implements ByteStream {
  #chunks: Uint8Array[] = [];
  #held = 0;
  #ended = false;
  #wake?: () => void;

  constructor(readonly socket: tls.TLSSocket) {
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#held += chunk.length;
      if (this.#held >= HIGH_WATER) socket.pause();
      this.#notify();
    });
    const end = () => {
      this.#ended = true;
      this.#notify();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", end);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    let n = 0;
    while (n < buffer.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, buffer.length - n);
      buffer.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#held -= n;
    if (this.#held < HIGH_WATER && this.socket.isPaused()) this.socket.resume();
    return n;
  }

  write(buffer: Uint8Array): Promise<number> {
    if (this.#ended) return Promise.reject(new Error("TLS session closed"));
    return new Promise((resolve, reject) => {
      this.socket.write(buffer, (error) => error ? reject(error) : resolve(buffer.length));
    });
  }

  close(): void {
    this.#ended = true;
    this.socket.destroy();
    this.#notify();
  }
}
