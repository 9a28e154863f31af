/**
 * An NBD server: listeners and their connections. Each connection runs the
 * handshake (handshake.ts), then the transmission phase (transmission.ts)
 * against an export (export.ts). Bad input gets the protocol's error or a
 * closed connection; other clients are unaffected; a failing accept is
 * retried after a short pause. Connections and the bytes in flight are
 * bounded (see {@link NbdServerOptions}).
 *
 * @module
 */

import { BlockList, isIP } from "node:net";
import {
  type ByteStream,
  type Reactor,
  sharedReactor,
  type SocketStream,
  UnixListener,
} from "../reactor/mod.ts";
import { BufferPool } from "./buffer_pool.ts";
import { ByteBudget } from "./byte_budget.ts";
import type { ExportProvider, NbdExport } from "./export.ts";
import { negotiate } from "./handshake.ts";
import type { NbdCounters, NbdLimits, NbdSession } from "./session.ts";
import { ExactReader, OrderedWriter } from "./stream_io.ts";
import { type TlsCredentials, TlsServer } from "./tls.ts";
import { serveTransmission } from "./transmission.ts";

export type { NbdCounters, NbdLimits } from "./session.ts";

/** The default {@link NbdServerOptions.handshakeTimeoutMs}. */
export const HANDSHAKE_TIMEOUT_MS = 30_000;
/** The default {@link NbdServerOptions.maxConnections}. */
export const MAX_CONNECTIONS = 64;
/** The default {@link NbdServerOptions.maxBytesPerConnection}: 32 MiB. */
export const MAX_BYTES_PER_CONNECTION = 32 << 20;
/** The default {@link NbdServerOptions.maxBytes}: 256 MiB. */
export const MAX_BYTES = 256 << 20;
/** The default {@link NbdServerOptions.maxRequestsPerConnection}. */
export const MAX_REQUESTS_PER_CONNECTION = 64;

/** Options for {@link NbdServer}. */
export interface NbdServerOptions {
  /** Polls the server's Unix sockets (the initiator's, so one loop serves frames and sockets). */
  reactor?: Reactor;
  /** Where the server's log lines go (default: standard error). */
  log?: (line: string) => void;
  /** Client connections open at once, over all listeners; more are closed at accept. Default 64. */
  maxConnections?: number;
  /**
   * Write payload and read reply bytes in flight on one connection; past it the
   * server stops reading that client until replies go out. Default 32 MiB
   * (never less than the 4 MiB maximum request).
   */
  maxBytesPerConnection?: number;
  /** The same over all connections together. Default 256 MiB (at least 4 MiB). */
  maxBytes?: number;
  /** Requests in flight on one connection. Default 64. */
  maxRequestsPerConnection?: number;
  /** A handshake must finish within this time, or the connection is closed. Default 30 s. */
  handshakeTimeoutMs?: number;
}

/** Options shared by both kinds of listener. */
export interface ListenOptions {
  /** Exports are read-only for clients of this listener (NBD_FLAG_READ_ONLY, writes get EPERM). */
  readOnly?: boolean;
}

/** Options for {@link NbdServer.listenUnix}. */
export interface UnixListenOptions extends ListenOptions {
  /** The socket's path (an old socket there is replaced). */
  path: string;
  /** The socket file's mode. Default 0o600: root only. */
  mode?: number;
  /** The socket file's group (default: unchanged). */
  gid?: number;
}

/** Options for {@link NbdServer.listenTcp}. */
export interface TcpListenOptions extends ListenOptions {
  /** The port (0: any free one). */
  port: number;
  /** The address to bind. Default 127.0.0.1: loopback only. */
  hostname?: string;
  /**
   * Client addresses allowed to connect: IP addresses and CIDR prefixes
   * ("10.0.0.0/8", "fd00::/8"). Absent: any client that can reach the address.
   */
  allow?: string[];
  /** Require TLS (NBD_OPT_STARTTLS) with these credentials before any export is offered. */
  tls?: TlsCredentials;
}

/** Options for {@link NbdServer.serve}. */
export interface ServeOptions extends ListenOptions {
  /** Skip the handshake and serve this export (the kernel's attachment: it does not count as open). */
  transmissionOnly?: NbdExport;
}

/** An address allow-list from IP addresses and CIDR prefixes; throws a RangeError on a bad entry. */
export function allowList(entries: string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, prefix, extra] = entry.split("/");
    const family = isIP(address);
    const bits = prefix === undefined ? undefined : Number(prefix);
    const maxBits = family === 6 ? 128 : 32;
    if (
      family === 0 || extra !== undefined ||
      (bits !== undefined && (!Number.isInteger(bits) || bits < 0 || bits > maxBits))
    ) {
      throw new RangeError(`not an IP address or CIDR prefix: "${entry}"`);
    }
    const type = family === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, bits, type);
  }
  return list;
}

/** Something that hands out connections until it is closed. */
interface Acceptor<C> {
  accept(): Promise<C | undefined>;
  close(): void;
}

/** Pauses between retries of a failing accept: doubling from 10 ms up to 1 s. */
const ACCEPT_BACKOFF_MS = { first: 10, last: 1000 } as const;

/** Serves exports over any number of connections. */
export class NbdServer {
  /** Counters across all connections. */
  readonly counters: NbdCounters = {
    connections: 0,
    refused: 0,
    requests: 0,
    errors: 0,
    dropped: 0,
    zeroFallbacks: 0,
  };
  /** Where the server's Unix sockets wait. */
  readonly reactor: Reactor;
  /** The limits applied (from the options). */
  readonly limits: NbdLimits & { readonly maxConnections: number };
  readonly #session: NbdSession;
  #listeners: { close(): void }[] = [];
  #connections = new Set<ByteStream>();
  #clients = 0;
  #closed = false;

  /**
   * A server with no listener yet.
   * @param provider where exports come from
   * @param options limits, log and where sockets wait
   */
  constructor(readonly provider: ExportProvider, options: NbdServerOptions = {}) {
    this.reactor = options.reactor ?? sharedReactor();
    this.limits = {
      maxConnections: options.maxConnections ?? MAX_CONNECTIONS,
      requestsPerConnection: options.maxRequestsPerConnection ?? MAX_REQUESTS_PER_CONNECTION,
      bytesPerConnection: options.maxBytesPerConnection ?? MAX_BYTES_PER_CONNECTION,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
    };
    const log = options.log ?? ((line: string) => console.error(`aoe: ${line}`));
    this.#session = {
      provider,
      counters: this.counters,
      pool: new BufferPool(),
      budget: new ByteBudget(Math.max(options.maxBytes ?? MAX_BYTES, 4 << 20)),
      limits: this.limits,
      log,
    };
  }

  /** Payload and reply bytes in flight now, over all connections. */
  get bytesInFlight(): number {
    return this.#session.budget.used;
  }

  /** Client connections open now (the kernel's attachments not counted). */
  get clients(): number {
    return this.#clients;
  }

  /** Listens on a Unix socket path. */
  listenUnix(options: UnixListenOptions): void {
    const listener = new UnixListener(options.path, this.reactor);
    try {
      if (options.gid !== undefined) Deno.chownSync(options.path, null, options.gid);
      Deno.chmodSync(options.path, options.mode ?? 0o600);
    } catch (error) {
      listener.close();
      throw error;
    }
    this.#listeners.push(listener);
    this.#acceptLoop(`unix:${options.path}`, listener, (conn: SocketStream) => {
      this.#serveClient(conn, conn, options);
    });
  }

  /** Listens on TCP; resolves nothing, returns the bound address. Throws when it cannot bind. */
  listenTcp(options: TcpListenOptions): Deno.NetAddr {
    const allowed = options.allow ? allowList(options.allow) : undefined;
    const tls = options.tls ? new TlsServer(options.tls) : undefined;
    const listener = Deno.listen({ port: options.port, hostname: options.hostname ?? "127.0.0.1" });
    this.reactor.eventLoopIo = true; // its connections wait in Deno's event loop
    this.#listeners.push(listener);
    const addr = listener.addr as Deno.NetAddr;
    const acceptor: Acceptor<Deno.TcpConn> = {
      accept: async () => {
        try {
          return await listener.accept();
        } catch (error) {
          if (this.#closed || error instanceof Deno.errors.BadResource) return undefined;
          throw error;
        }
      },
      close: () => listener.close(),
    };
    this.#acceptLoop(`tcp:${addr.hostname}:${addr.port}`, acceptor, (conn) => {
      const peer = (conn.remoteAddr as Deno.NetAddr).hostname;
      if (allowed && !allowed.check(peer, isIP(peer) === 6 ? "ipv6" : "ipv4")) {
        this.counters.refused++;
        this.#session.log(`nbd: ${peer} is not on the allow-list, connection refused`);
        closeQuietly(conn);
        return;
      }
      this.#serveClient(conn, conn, {
        readOnly: options.readOnly,
        startTls: tls ? () => tls.accept(conn) : undefined,
      });
    });
    return addr;
  }

  /** Accepts until the listener closes; an accept error is logged once and retried after a pause. */
  async #acceptLoop<C extends { close(): void }>(
    name: string,
    listener: Acceptor<C>,
    handle: (conn: C) => void,
  ): Promise<void> {
    let pause = 0;
    while (!this.#closed) {
      let conn: C | undefined;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closed) return;
        if (pause === 0) {
          this.#session.log(
            `nbd: accept on ${name}: ${
              error instanceof Error ? error.message : String(error)
            } (retrying)`,
          );
        }
        pause = Math.min(Math.max(pause * 2, ACCEPT_BACKOFF_MS.first), ACCEPT_BACKOFF_MS.last);
        await new Promise((resolve) => setTimeout(resolve, pause));
        continue;
      }
      if (!conn) return;
      if (pause !== 0) this.#session.log(`nbd: accept on ${name} works again`);
      pause = 0;
      if (this.#clients >= this.limits.maxConnections) {
        this.counters.refused++;
        if (this.counters.refused === 1 || this.counters.refused % 1000 === 0) {
          this.#session.log(
            `nbd: ${this.#clients} connections open (the limit), connection refused`,
          );
        }
        closeQuietly(conn);
        continue;
      }
      handle(conn);
    }
  }

  #serveClient(
    stream: ByteStream,
    raw: { close(): void },
    options: { readOnly?: boolean; startTls?: () => Promise<ByteStream> },
  ): void {
    this.#clients++;
    this.#track(stream, this.#handshakeThenTransmit(stream, raw, options)).finally(() =>
      this.#clients--
    );
  }

  async #handshakeThenTransmit(
    stream: ByteStream,
    raw: { close(): void },
    options: { readOnly?: boolean; startTls?: () => Promise<ByteStream> },
  ): Promise<void> {
    let finished = false;
    const timer = setTimeout(() => {
      if (finished) return;
      this.counters.dropped++;
      this.#session.log("nbd: handshake timed out, connection closed");
      closeQuietly(raw);
    }, this.limits.handshakeTimeoutMs);
    let negotiated;
    let upgraded: ByteStream | undefined;
    try {
      const startTls = options.startTls;
      negotiated = await negotiate(this.#session, stream, {
        readOnly: options.readOnly,
        startTls: startTls && (async () => upgraded = await startTls()),
      });
    } finally {
      finished = true;
      clearTimeout(timer);
    }
    if (!negotiated) {
      if (upgraded) closeQuietly(upgraded);
      return;
    }
    if (upgraded) this.#connections.add(upgraded);
    try {
      await serveTransmission(this.#session, negotiated, {
        structured: negotiated.structured,
        readOnly: options.readOnly,
      });
    } finally {
      if (upgraded) {
        this.#connections.delete(upgraded);
        closeQuietly(upgraded);
      }
    }
  }

  /** Serves one connection from the handshake on (or only its transmission phase); never rejects. */
  serve(conn: ByteStream, options: ServeOptions = {}): Promise<void> {
    const exp = options.transmissionOnly;
    return this.#track(
      conn,
      exp
        ? serveTransmission(this.#session, {
          reader: new ExactReader(conn, this.#session.pool),
          writer: new OrderedWriter(conn),
          export: exp,
        }, { readOnly: options.readOnly, countsAsOpen: false })
        : this.#handshakeThenTransmit(conn, conn, options),
    );
  }

  /** Keeps `conn` until `work` ends, then closes it; logs what went wrong instead of rejecting. */
  #track(conn: ByteStream, work: Promise<void>): Promise<void> {
    this.counters.connections++;
    this.#connections.add(conn);
    return work
      .catch((error) =>
        this.#session.log(
          `nbd: connection failed: ${error instanceof Error ? error.message : String(error)}`,
        )
      )
      .finally(() => {
        this.#connections.delete(conn);
        closeQuietly(conn);
      });
  }

  /** Closes listeners and every connection. */
  close(): void {
    this.#closed = true;
    for (const listener of this.#listeners) closeQuietly(listener);
    this.#listeners = [];
    for (const conn of this.#connections) closeQuietly(conn);
  }
}

function closeQuietly(thing: { close(): void }): void {
  try {
    thing.close();
  } catch { /* already closed */ }
}
