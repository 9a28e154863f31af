/**
 * Waiting for frames on links (the poll itself is reactor/poll.ts): either
 * asleep on the thread, woken directly by the kernel ({@link blockForFrames},
 * the target's idle wait), or the hybrid wait of frame-io.md ({@link pollFds}:
 * a short synchronous poll, then a thread-pool poll that frees the event loop).
 *
 * @module
 */

import { cString, libc, linux } from "../ffi/libc.ts";
import { PollSet } from "../reactor/poll.ts";
import type { FrameLink } from "./types.ts";

/** How long the synchronous part of the wait may block, in milliseconds. */
export const SYNC_WAIT_MS = 1;

/** The set of the synchronous waits (they never overlap: they hold the thread). */
const syncSet = new PollSet();

function fill(set: PollSet, fds: readonly number[]): PollSet {
  set.clear();
  for (const fd of fds) set.add(fd);
  return set;
}

function brokenFds(fds: readonly number[], set: PollSet): number[] {
  return fds.filter((_, i) => set.broken(i));
}

/** Blocks the thread until any fd is readable or `timeoutMs` passes; true if readable. */
export function pollFdsSync(fds: readonly number[], timeoutMs: number): boolean {
  return fill(syncSet, fds).block(timeoutMs) > 0;
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
  const set = fill(new PollSet(), fds);
  const ready = await set.wait(timeoutMs, { syncMs: options.syncMs ?? SYNC_WAIT_MS });
  return ready > 0 ? brokenFds(fds, set) : [];
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

/** What {@link blockForFrames} saw. */
export interface BlockResult {
  /** Whether a link became readable (or broken) before the timeout. */
  ready: boolean;
  /** The links whose interface is gone. */
  gone: FrameLink[];
}

/**
 * Sleeps on this thread until any of the links may have frames or `timeoutMs`
 * passes (the kernel wakes the process directly: one wake-up, as a blocking
 * recv has); undefined if a link has no descriptor (then use
 * {@link waitForFrames}). Nothing else runs meanwhile: keep the timeout short
 * and give the event loop a turn afterwards (reactor/poll.ts eventLoopTurn).
 */
export function blockForFrames(
  links: readonly FrameLink[],
  timeoutMs: number,
): BlockResult | undefined {
  if (links.length === 0 || links.some((link) => link.pollFd < 0)) return undefined;
  const fds = links.map((link) => link.pollFd);
  if (fill(syncSet, fds).block(timeoutMs) <= 0) return { ready: false, gone: [] };
  return { ready: true, gone: goneLinks(links, brokenFds(fds, syncSet)) };
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
