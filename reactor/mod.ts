/**
 * One poll for many descriptors: readiness waiters and the nonblocking
 * sockets built on them.
 *
 * @module
 */

export * from "./poll.ts";
export * from "./reactor.ts";
export * from "./spin.ts";
export * from "./socket.ts";
