/**
 * The targets the benchmarks compare, as command lines run inside the
 * benchmark's namespace on interface t1p0 (or the one given), exporting shelf
 * 9 slot 0.
 *
 * @module
 */

import { aoeCommand } from "../testing/procs.ts";

/** Buffer count every benchmarked target advertises (-b). */
export const BENCH_BUFFERS = 64;

/**
 * The command line of target `name`: "vblade" (Debian's), "null"
 * (bench/null_target.ts, no disk I/O), "floor" (bench/floor_target.ts: the
 * least a Deno process does to answer a read or a write: vblade's blocking loop), "aoe" (the default link),
 * "aoe-ring", "aoe-packet", "aoe-pcap" (one link kind), or "aoe-nospin"
 * (the default link with the spin before sleeping turned off, AOE_SPIN_US=0),
 * "aoe-bypass" (replies past the qdisc and packet taps, AOE_QDISC_BYPASS=1),
 * or "aoe@DIR": the `aoe target` of another checkout in DIR (an A/B of two
 * versions in one run, e.g. `aoe@/tmp/main` against `aoe`).
 */
export function targetArgv(
  name: string,
  options: { image: string; sectors: number; ifname?: string },
): string[] {
  const buffers = String(BENCH_BUFFERS);
  const ifname = options.ifname ?? "t1p0";
  if (name === "vblade") return ["vblade", "-b", buffers, "9", "0", ifname, options.image];
  if (name === "floor") {
    const script = new URL("./floor_target.ts", import.meta.url).pathname;
    return [Deno.execPath(), "run", "-A", script, "9", "0", ifname, options.image];
  }
  if (name === "null") {
    const script = new URL("./null_target.ts", import.meta.url).pathname;
    return [Deno.execPath(), "run", "-A", script, "9", "0", ifname, String(options.sectors)];
  }
  if (name.startsWith("aoe@")) {
    const script = `${name.slice(4)}/scripts/aoe`;
    return [script, "target", "-b", buffers, "9", "0", ifname, options.image];
  }
  if (name === "aoe-nospin" || name === "aoe-bypass") {
    return [
      "env",
      name === "aoe-nospin" ? "AOE_SPIN_US=0" : "AOE_QDISC_BYPASS=1",
      ...aoeCommand("target", "-b", buffers, "9", "0", ifname, options.image),
    ];
  }
  const link = name.startsWith("aoe-") ? ["--link", name.slice(4)] : [];
  return aoeCommand("target", ...link, "-b", buffers, "9", "0", ifname, options.image);
}
