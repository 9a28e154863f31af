/**
 * Test fixtures around a running `aoe target` process in a test namespace.
 *
 * @module
 */

import { removeTree } from "../driver/memory_tree.ts";
import { inNetns, PacketLink } from "../link/mod.ts";
import { TestClient } from "./client.ts";
import { TestNet } from "./netns.ts";
import { aoeCommand, Daemon } from "./procs.ts";

/** Fills a file of `sectors` sectors where every sector starts with its LBA and a seed. */
export function writePatternFile(path: string, sectors: number, seed = 0): void {
  const file = Deno.openSync(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(512 * 256);
  const view = new DataView(chunk.buffer);
  try {
    for (let base = 0; base < sectors; base += 256) {
      const count = Math.min(256, sectors - base);
      for (let s = 0; s < count; s++) {
        for (let i = 0; i < 512; i += 8) {
          view.setUint32(s * 512 + i, base + s, true),
            view.setUint32(s * 512 + i + 4, seed + i, true);
        }
      }
      file.writeSync(chunk.subarray(0, count * 512));
    }
  } finally {
    file.close();
  }
}

/** The expected bytes of `count` sectors at `lba` of a pattern file. */
export function patternSectors(lba: number, count: number, seed = 0): Uint8Array {
  const out = new Uint8Array(count * 512);
  const view = new DataView(out.buffer);
  for (let s = 0; s < count; s++) {
    for (let i = 0; i < 512; i += 8) {
      view.setUint32(s * 512 + i, lba + s, true), view.setUint32(s * 512 + i + 4, seed + i, true);
    }
  }
  return out;
}

/** A temporary directory removed by the returned function. */
export function tempDir(): { path: string; remove: () => void } {
  const path = Deno.makeTempDirSync({ prefix: "aoe-test-" });
  return {
    path,
    remove: () => {
      removeMemoryTrees(path);
      Deno.removeSync(path, { recursive: true });
    },
  };
}

/**
 * Removes the memory copies of attribute trees under `dir` (driver/memory_tree.ts):
 * a daemon killed by a test leaves its `sys` symlink's directory on /dev/shm.
 */
function removeMemoryTrees(dir: string, depth = 3): void {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = `${dir}/${entry.name}`;
    if (entry.isSymlink && entry.name === "sys") removeTree(path);
    else if (entry.isDirectory && depth > 0) removeMemoryTrees(path, depth - 1);
  }
}

/** Starts `aoe target ARGS` in host 0 of `net` and waits for its start line(s). */
export async function startTarget(net: TestNet, args: string[], exports = 1): Promise<Daemon> {
  const daemon = new Daemon(net.in(0, aoeCommand("target", ...args)));
  // One start line per export (a counted match: a repeated group backtracks badly for many exports).
  await daemon.waitForCount(/pid \d+: e[\d.]+, \d+ sectors O_\w+\n/, exports);
  return daemon;
}

/** A test client on interface `name` of host `host`. */
export function clientIn(net: TestNet, host: number, name: string): TestClient {
  return new TestClient(inNetns(net.namespaces[host], () => new PacketLink(name)));
}

/** Runs `fn` with a fresh net, a temp dir and cleanup of both (and of daemons) on any outcome. */
export async function withNet(
  options: { hosts?: number; mtu?: number },
  fn: (net: TestNet, dir: string, daemons: Daemon[]) => Promise<void>,
): Promise<void> {
  const net = await TestNet.create(options);
  const dir = tempDir();
  const daemons: Daemon[] = [];
  try {
    await fn(net, dir.path, daemons);
  } finally {
    for (const d of daemons) await d.stop();
    await net.close();
    dir.remove();
  }
}

/** Creates a sparse file of `bytes` and returns its path. */
export function sparseFile(path: string, bytes: number): string {
  Deno.writeFileSync(path, new Uint8Array(0));
  Deno.truncateSync(path, bytes);
  return path;
}
