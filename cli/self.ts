/**
 * How this program re-invokes itself (daemons, tests): the compiled binary, or
 * the Deno that runs it with the entry module.
 *
 * @module
 */

/** argv prefix that runs this program again, e.g. ["/x/deno", "run", "-A", "/x/mod.ts"]. */
export function selfCommand(): string[] {
  const exec = Deno.execPath();
  const base = exec.split("/").pop() ?? "";
  if (base !== "deno") return [exec];
  return [exec, "run", "-A", new URL(Deno.mainModule).pathname];
}
