/**
 * One poll for many descriptors: readiness waiters and the nonblocking
 * sockets built on them.
 *
 * @module
 */

export * from "./reactor.ts";
export * from "./socket.ts";
