/**
 * Fixtures for many exports: names laid out as shelves of 25 slots, a config
 * file for one `aoe target --config` process serving a range of them, vblade
 * processes, waiting for every start line and for every device up in an
 * initiator's attribute tree, and reading a process's memory and CPU time.
 * Shared by tests/scale_test.ts and bench/scale_bench.ts.
 *
 * @module
 */

import type { LinkKind } from "../link/mod.ts";
import type { TestNet } from "./netns.ts";
import { aoeCommand, Daemon } from "./procs.ts";

/** Slots per shelf in the layout (the 40 shelves × 25 slots for 1,000). */
export const SLOTS_PER_SHELF = 25;

/** One export of the layout. */
export interface ScaleExport {
  shelf: number;
  slot: number;
  /** "e1.0" */
  name: string;
}

/** Exports `from` to `from + count - 1` of the layout: shelf 1 slots 0-24, shelf 2, ... */
export function scaleExports(count: number, from = 0): ScaleExport[] {
  return Array.from({ length: count }, (_, i) => {
    const n = from + i;
    const shelf = 1 + Math.floor(n / SLOTS_PER_SHELF);
    const slot = n % SLOTS_PER_SHELF;
    return { shelf, slot, name: `e${shelf}.${slot}` };
  });
}

/** Splits `count` exports into `parts` contiguous ranges, as several target processes serve them. */
export function splitExports(count: number, parts: number): ScaleExport[][] {
  const out: ScaleExport[][] = [];
  let from = 0;
  for (let p = 0; p < parts; p++) {
    const size = Math.floor(count / parts) + (p < count % parts ? 1 : 0);
    out.push(scaleExports(size, from));
    from += size;
  }
  return out.filter((part) => part.length > 0);
}

/** Creates a sparse image of `bytes` for each export in `dir`; returns the paths by name. */
export function sparseImages(
  dir: string,
  exports: readonly ScaleExport[],
  bytes: number,
): Map<string, string> {
  const paths = new Map<string, string>();
  for (const e of exports) {
    const path = `${dir}/${e.name}.img`;
    const file = Deno.openSync(path, { write: true, create: true, truncate: true });
    file.truncateSync(bytes);
    file.close();
    paths.set(e.name, path);
  }
  return paths;
}

/**
 * Writes an `aoe target --config` file serving `exports` on `netif`, with no
 * state directory and no control socket (several may run at once).
 */
export function writeScaleConfig(
  path: string,
  exports: readonly ScaleExport[],
  options: { netif: string; images: Map<string, string>; link?: LinkKind },
): void {
  const lines = [
    "[service]",
    'state_dir = ""',
    'control_socket = ""',
    ...(options.link ? [`link = "${options.link}"`] : []),
    "",
    "[defaults]",
    `interfaces = ["${options.netif}"]`,
    "",
  ];
  for (const e of exports) {
    lines.push("[[export]]", `shelf = ${e.shelf}`, `slot = ${e.slot}`);
    lines.push(`file = "${options.images.get(e.name)}"`, "");
  }
  Deno.writeTextFileSync(path, lines.join("\n"));
}

/** Start lines ("pid N: eX.Y, S sectors O_RDWR") a target or vblade printed. */
export function startLines(daemon: Daemon): number {
  return (daemon.stdout.match(/^pid \d+: e\d+\.\d+, \d+ sectors O_/gm) ?? []).length;
}

/** Waits until `daemon` printed `count` start lines; throws on exit or after `timeoutMs`. */
export async function waitStarted(daemon: Daemon, count: number, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  daemon.status.then(() => exited = true);
  while (startLines(daemon) < count) {
    if (exited) {
      await new Promise((r) => setTimeout(r, 50)); // the rest of its output
      throw new Error(`target exited: ${daemon.stderr.trim().split("\n").slice(-3).join(" / ")}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`${startLines(daemon)}/${count} exports started after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `aoe target --config PATH` in host `host` (with `prlimit` arguments
 * first, e.g. ["--nofile=128:4096"]) and waits for `count` start lines.
 */
export async function startConfigTarget(
  net: TestNet,
  config: string,
  count: number,
  options: { host?: number; prlimit?: string[]; timeoutMs?: number; link?: LinkKind } = {},
): Promise<Daemon> {
  const argv = aoeCommand(
    "target",
    "--config",
    config,
    ...(options.link ? ["--link", options.link] : []),
  );
  const full = options.prlimit ? ["prlimit", ...options.prlimit, ...argv] : argv;
  const daemon = new Daemon(net.in(options.host ?? 0, full));
  try {
    await waitStarted(daemon, count, options.timeoutMs);
  } catch (error) {
    await daemon.stop(1000);
    throw error;
  }
  return daemon;
}

/** Starts one vblade per export in host `host` and waits for each start line. */
export async function startVblades(
  net: TestNet,
  exports: readonly ScaleExport[],
  options: { netif: string; images: Map<string, string>; host?: number; timeoutMs?: number },
): Promise<Daemon[]> {
  const daemons: Daemon[] = [];
  try {
    for (const e of exports) {
      daemons.push(
        new Daemon(
          net.in(options.host ?? 0, [
            "vblade",
            String(e.shelf),
            String(e.slot),
            options.netif,
            options.images.get(e.name)!,
          ]),
        ),
      );
    }
    // vblade prints its start line on stderr.
    const deadline = Date.now() + (options.timeoutMs ?? 30000);
    for (const d of daemons) {
      while (!/sectors/.test(d.stdout + d.stderr)) {
        if (Date.now() > deadline) throw new Error("vblade did not start");
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  } catch (error) {
    await Promise.all(daemons.map((d) => d.stop(1000)));
    throw error;
  }
  return daemons;
}

/**
 * Waits until every device in `names` reads "up" in the attribute tree under
 * `sysDir` (only the ones not yet up are read again; nothing asks for a
 * discovery). Resolves with the milliseconds since `since`, or throws after
 * `timeoutMs` saying how many were up.
 */
export async function waitAllUp(
  sysDir: string,
  names: readonly string[],
  options: { since: number; timeoutMs: number; pollMs?: number },
): Promise<number> {
  let missing = [...names];
  const deadline = options.since + options.timeoutMs;
  for (;;) {
    missing = missing.filter((name) => {
      try {
        return Deno.readTextFileSync(`${sysDir}/block/etherd!${name}/state`) !== "up\n";
      } catch {
        return true;
      }
    });
    const now = performance.now();
    if (missing.length === 0) return now - options.since;
    if (now > deadline) {
      throw new AllUpTimeout(names.length - missing.length, names.length, missing);
    }
    await new Promise((r) => setTimeout(r, options.pollMs ?? 20));
  }
}

/** Not every device came up in time. */
export class AllUpTimeout extends Error {
  /**
   * @param up how many were up
   * @param total how many were expected
   * @param missing the names not up
   */
  constructor(readonly up: number, readonly total: number, readonly missing: string[]) {
    super(
      `${up}/${total} up; missing ${missing.slice(0, 8).join(" ")}${
        missing.length > 8 ? " ..." : ""
      }`,
    );
    this.name = "AllUpTimeout";
  }
}

/** Resident memory of a process in bytes (VmRSS), or NaN if it is gone. */
export function rssBytes(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = status.match(/^VmRSS:\s+(\d+) kB/m);
    return kb ? Number(kb[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** User plus system CPU time of a process in seconds (all its threads), or NaN if it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the parenthesized command name: utime is the 14th field, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / 100; // USER_HZ
  } catch {
    return NaN;
  }
}
