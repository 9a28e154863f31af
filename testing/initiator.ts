/**
 * Fixtures for the initiator: `aoe modprobe` inside a test namespace with its
 * own run and device directories, and the verbs run against it.
 *
 * @module
 */

import { removeTree } from "../driver/memory_tree.ts";
import { ask } from "../driver/daemon.ts";
import { driverPaths } from "../driver/paths.ts";
import type { TestNet } from "./netns.ts";
import { aoeCommand } from "./procs.ts";

let counter = 0;

/** What the daemon's status command answers. */
export interface DaemonStatus {
  devices: {
    name: string;
    state: string;
    sectors: number;
    minor: number;
    open: number;
    targets: { mac: string; interfaces: { name: string }[] }[];
  }[];
  counters: Record<string, number>;
  params: { iflist: string[]; deadsecs: number; maxout: number; dyndevs: number };
}

/** An initiator daemon loaded in one host of a test net. */
export class TestInitiator {
  readonly runDir: string;
  readonly devDir: string;

  /**
   * @param net the network
   * @param host where the driver runs
   * @param options `under`: the directory that holds the run directory (default /run);
   *   `treeInPlace`: the attribute tree written there even on disk (AOE_TREE_IN_PLACE)
   */
  constructor(
    readonly net: TestNet,
    readonly host: number,
    options: { under?: string; treeInPlace?: boolean } = {},
  ) {
    // No "p" in the path: aoetools' aoe-stat drops every path that has one.
    this.runDir = `${options.under ?? "/run"}/aoet${Deno.pid}x${counter++}`;
    this.devDir = `${this.runDir}/dev`;
    this.#env = [`AOE_RUNDIR=${this.runDir}`, `AOE_DEVDIR=${this.devDir}`];
    if (options.treeInPlace) this.#env.push("AOE_TREE_IN_PLACE=1");
  }

  #env: string[];

  get sysDir(): string {
    return `${this.runDir}/sys`;
  }

  /** Runs `aoe VERB ARGS` in the host with this initiator's directories. */
  aoe(args: string[], options: { stdin?: string } = {}) {
    return this.net.run(this.host, ["env", ...this.#env, ...aoeCommand(...args)], options);
  }

  /** Loads the driver; throws unless modprobe succeeds. */
  async modprobe(...params: string[]): Promise<void> {
    const r = await this.aoe(["modprobe", ...params]);
    if (r.code !== 0) throw new Error(`modprobe failed: ${r.stderr}`);
  }

  /** The daemon's status (devices, counters, params), asked over its Unix socket. */
  async status(): Promise<DaemonStatus> {
    const reply = await ask(driverPaths({ runDir: this.runDir, devDir: this.devDir }), {
      cmd: "status",
    });
    if (!reply) throw new Error("the driver does not answer");
    return reply as unknown as DaemonStatus;
  }

  /** Waits until every named device is up in the attribute tree. */
  async waitUp(names: string[], timeoutMs = 30000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const missing = names.filter((name) => {
        try {
          return Deno.readTextFileSync(`${this.sysDir}/block/etherd!${name}/state`) !== "up\n";
        } catch {
          return true;
        }
      });
      if (missing.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`not up after ${timeoutMs} ms: ${missing.join(" ")}`);
      }
      await this.aoe(["discover"]);
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  /** Writes bytes through the driver. */
  async write(name: string, offset: number, data: Uint8Array): Promise<void> {
    const path = await Deno.makeTempFile();
    try {
      await Deno.writeFile(path, data);
      const r = await this.net.run(this.host, [
        "sh",
        "-c",
        `env AOE_RUNDIR=${this.runDir} ${
          aoeCommand("write", name, String(offset)).join(" ")
        } < ${path}`,
      ]);
      if (r.code !== 0) throw new Error(`aoe write ${name}: ${r.stderr}`);
    } finally {
      await Deno.remove(path);
    }
  }

  /** Reads bytes through the driver; throws with the command's stderr on failure. */
  async read(name: string, offset: number, length: number): Promise<Uint8Array> {
    const argv = this.net.in(this.host, [
      "env",
      `AOE_RUNDIR=${this.runDir}`,
      ...aoeCommand("read", name, String(offset), String(length)),
    ]);
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim());
    return out.stdout;
  }

  /** Unloads the driver (kills it if rmmod fails) and removes the directories. */
  async close(): Promise<void> {
    await this.aoe(["rmmod"]).catch(() => {});
    try {
      // A daemon that did not get to remove its tree may leave the memory copy behind.
      removeTree(this.sysDir);
    } catch { /* gone */ }
    try {
      Deno.removeSync(this.runDir, { recursive: true });
    } catch { /* gone */ }
  }
}

/** sha256 hex of bytes. */
export async function sha256(data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Deterministic pseudo-random bytes. */
export function randomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
