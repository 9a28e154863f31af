/**
 * Waiting for frames without holding the JavaScript thread (docs/frame-io.md §3, "the
 * hybrid wait"): a short synchronous poll catches frames that follow closely, then a
 * nonblocking (thread-pool) poll frees the event loop while the link is idle.
 *
 * @module
 */

import { cString, libc, linux, POLL_BROKEN } from "../ffi/libc.ts";
import type { FrameLink } from "./types.ts";

/** How long the synchronous part of the wait may block, in milliseconds. */
export const SYNC_WAIT_MS = 1;

const pollBuffers = new Map<number, Uint8Array<ArrayBuffer>>();

function pollBufferFor(fds: readonly number[]): Uint8Array<ArrayBuffer> {
  let buffer = pollBuffers.get(fds.length);
  if (!buffer) {
    buffer = new Uint8Array(fds.length * 8);
    pollBuffers.set(fds.length, buffer);
  }
  const view = new DataView(buffer.buffer);
  fds.forEach((fd, i) => {
    view.setInt32(i * 8, fd, true);
    view.setInt16(i * 8 + 4, linux.POLLIN, true);
    view.setInt16(i * 8 + 6, 0, true);
  });
  return buffer;
}

/** Blocks the thread until any fd is readable or `timeoutMs` passes; true if readable. */
export function pollFdsSync(fds: readonly number[], timeoutMs: number): boolean {
  return libc().poll(pollBufferFor(fds), BigInt(fds.length), timeoutMs) > 0;
}

function brokenFds(fds: readonly number[], buffer: Uint8Array<ArrayBuffer>): number[] {
  const view = new DataView(buffer.buffer);
  return fds.filter((_, i) => (view.getInt16(i * 8 + 6, true) & POLL_BROKEN) !== 0);
}

/**
 * Resolves when any fd is readable or the timeout passes, with the fds that
 * reported an error or hang-up (a packet socket whose interface went away).
 * `syncMs` (default {@link SYNC_WAIT_MS}) is how long the thread may block
 * before the wait moves off it; 0 keeps the event loop free from the start.
 */
export async function pollFds(
  fds: readonly number[],
  timeoutMs: number,
  options: { syncMs?: number } = {},
): Promise<number[]> {
  timeoutMs = Math.max(0, Math.ceil(timeoutMs));
  const syncMs = Math.min(options.syncMs ?? SYNC_WAIT_MS, timeoutMs);
  const buffer = pollBufferFor(fds);
  if (libc().poll(buffer, BigInt(fds.length), syncMs) !== 0) return brokenFds(fds, buffer);
  if (timeoutMs <= syncMs) return [];
  // A fresh buffer: another waiter may reuse the shared one while this poll runs on a thread.
  const own = buffer.slice();
  await libc().poll_async(own, BigInt(fds.length), timeoutMs - syncMs);
  return brokenFds(fds, own);
}

/**
 * Clears a packet socket's pending error and tells whether its interface is
 * gone. The kernel reports ENETDOWN both when the interface goes down (it may
 * come back) and when it is unregistered, so the name is looked up with an
 * ioctl on the socket itself, which answers for the socket's own namespace.
 */
export function socketInterfaceGone(fd: number, name: string): boolean {
  const error = new Int32Array(1);
  const length = new Uint32Array([4]);
  libc().getsockopt(
    fd,
    linux.SOL_SOCKET,
    linux.SO_ERROR,
    new Uint8Array(error.buffer),
    new Uint8Array(length.buffer),
  );
  const ifreq = new Uint8Array(40);
  ifreq.set(cString(name).subarray(0, 16));
  return libc().ioctl(fd, linux.SIOCGIFINDEX, ifreq) !== 0;
}

/** Of the fds poll reported broken, the links whose interface is gone (errors of the others are cleared). */
export function goneLinks(links: readonly FrameLink[], brokenFds: readonly number[]): FrameLink[] {
  return links.filter((link) =>
    brokenFds.includes(link.pollFd) && socketInterfaceGone(link.pollFd, link.name)
  );
}

/** Resolves when any of the links may have frames, or after `timeoutMs`, with the links whose interface is gone. */
export async function waitForFrames(
  links: readonly FrameLink[],
  timeoutMs: number,
): Promise<FrameLink[]> {
  if (links.length > 0 && links.every((link) => link.pollFd >= 0)) {
    const broken = await pollFds(links.map((link) => link.pollFd), timeoutMs);
    return goneLinks(links, broken);
  }
  await Promise.race(links.map((link) => link.wait(timeoutMs)));
  return [];
}
