/**
 * CPU time of a process, for the benchmarks' CPU-per-request columns.
 *
 * @module
 */

/** CPU seconds (user + system, all threads) a process has used. */
export function cpuSeconds(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ
}
