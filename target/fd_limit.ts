/**
 * Enough file descriptors for many exports: each export keeps its image open
 * (and its shadow file, with -f), so a target with thousands of exports needs
 * more than the usual soft limit of 1,024 descriptors. At start the soft
 * RLIMIT_NOFILE is raised to the hard limit when the exports need it; when
 * even the hard limit is too low the target refuses to start with one line
 * saying so, instead of failing half-way on "Too many open files".
 *
 * @module
 */

import { getResourceLimit, linux, setResourceLimit } from "../ffi/libc.ts";
import type { ExportSpec } from "./options.ts";

/** Descriptors the process needs besides the exports' files: Deno's own, links, sockets, logs. */
export const BASE_DESCRIPTORS = 64;

/** Descriptors a target serving `specs` needs: one per image and shadow file, one per interface, and a margin. */
export function descriptorsNeeded(specs: readonly ExportSpec[]): number {
  const interfaces = new Set(specs.flatMap((spec) => spec.interfaces));
  let files = 0;
  for (const spec of specs) files += spec.shadow ? 2 : 1;
  return files + interfaces.size + BASE_DESCRIPTORS;
}

/** What {@link ensureDescriptors} found and did. */
export interface DescriptorLimit {
  /** Descriptors needed. */
  needed: number;
  /** The soft limit now. */
  soft: number;
  /** The hard limit. */
  hard: number;
  /** Whether the soft limit was raised. */
  raised: boolean;
}

/**
 * Raises the soft RLIMIT_NOFILE to the hard limit if `needed` descriptors
 * exceed it; throws a one-line Error if the hard limit is below `needed`.
 */
export function ensureDescriptors(needed: number): DescriptorLimit {
  const limit = getResourceLimit(linux.RLIMIT_NOFILE);
  const soft = Number(limit.soft);
  const hard = Number(limit.hard);
  if (needed <= soft) return { needed, soft, hard, raised: false };
  if (needed > hard) {
    throw new Error(
      `the exports need about ${needed} open files, but the hard limit is ${hard} (RLIMIT_NOFILE: raise it with ulimit -Hn, prlimit or LimitNOFILE=)`,
    );
  }
  setResourceLimit(linux.RLIMIT_NOFILE, { soft: limit.hard, hard: limit.hard });
  return { needed, soft: hard, hard, raised: true };
}
