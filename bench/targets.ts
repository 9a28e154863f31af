/**
 * The targets the benchmarks compare, as command lines run inside the
 * benchmark's namespace on interface t1p0, exporting shelf 9 slot 0.
 *
 * @module
 */

import { aoeCommand } from "../tests/helpers/procs.ts";

/** Buffer count every benchmarked target advertises (-b). */
export const BENCH_BUFFERS = 64;

/**
 * The command line of target `name`: "vblade" (Debian's), "null"
 * (bench/null_target.ts, no disk I/O), "aoe" (the default link) or
 * "aoe-ring", "aoe-packet", "aoe-pcap" (one link kind).
 */
export function targetArgv(name: string, options: { image: string; sectors: number }): string[] {
  const buffers = String(BENCH_BUFFERS);
  if (name === "vblade") return ["vblade", "-b", buffers, "9", "0", "t1p0", options.image];
  if (name === "null") {
    const script = new URL("./null_target.ts", import.meta.url).pathname;
    return [Deno.execPath(), "run", "-A", script, "9", "0", "t1p0", String(options.sectors)];
  }
  const link = name.startsWith("aoe-") ? ["--link", name.slice(4)] : [];
  return aoeCommand("target", ...link, "-b", buffers, "9", "0", "t1p0", options.image);
}
