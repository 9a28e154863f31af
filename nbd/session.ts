/**
 * What the handshake and the transmission phase share with the server that
 * runs them: counters, buffers, limits and the log.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";
import type { ByteBudget } from "./byte_budget.ts";
import type { ExportProvider } from "./export.ts";

/** Counters across all connections. */
export interface NbdCounters {
  /** Connections served (accepted and attached). */
  connections: number;
  /** Connections closed at accept: over the limit, or not on the allow-list. */
  refused: number;
  /** Requests read in the transmission phase. */
  requests: number;
  /** Requests answered with an error. */
  errors: number;
  /** Connections closed for protocol violations (bad magic, oversized, slow handshake). */
  dropped: number;
  /** WRITE_ZEROES that wrote zeros because trimming failed. */
  zeroFallbacks: number;
}

/** Limits of one server. */
export interface NbdLimits {
  /** Requests one connection may have in flight before the server stops reading it. */
  readonly requestsPerConnection: number;
  /** Payload and reply bytes one connection may have in flight. */
  readonly bytesPerConnection: number;
  /** A handshake must finish within this time. */
  readonly handshakeTimeoutMs: number;
}

/** The server as its connections see it. */
export interface NbdSession {
  /** Where exports come from. */
  readonly provider: ExportProvider;
  /** Counters the connections add to. */
  readonly counters: NbdCounters;
  /** Payload and reply buffers. */
  readonly pool: BufferPool;
  /** Payload and reply bytes in flight across all connections. */
  readonly budget: ByteBudget;
  /** Limits. */
  readonly limits: NbdLimits;
  /** One line for the log. */
  log(line: string): void;
}
