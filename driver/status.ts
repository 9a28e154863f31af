/**
 * The administrator's table: what aoetools' aoe-stat prints for a sysfs tree,
 * character for character, read from the attribute files alone.
 *
 * @module
 */

import { trustedTree } from "./memory_tree.ts";

const NA = "(NA)";

function readOrNA(path: string): string {
  try {
    return Deno.readTextFileSync(path).replace(/\n+$/, "");
  } catch {
    return NA;
  }
}

function pad(text: string, width: number, left = false): string {
  return left ? text.padEnd(width) : text.padStart(width);
}

/** aoe-stat's size column: (512000 × sectors) / 10^9 in integer math, "%04d" with a dot before the last 3 digits, "GB". */
export function formatSize(sectorsText: string): string {
  if (sectorsText === NA || !/^\d+$/.test(sectorsText)) return NA;
  const value = (512000n * BigInt(sectorsText)) / 1_000_000_000n;
  const digits = value.toString().padStart(4, "0");
  return `${digits.slice(0, -3)}.${digits.slice(-3)}GB`;
}

/**
 * Device directories of the tree, partitions (a "p" in the device's own name)
 * left out; none when the tree is behind a symlink to somebody else's
 * directory (driver/memory_tree.ts).
 */
export function deviceDirs(sysDir: string): string[] {
  const dirs: string[] = [];
  if (!trustedTree(sysDir)) return dirs;
  try {
    for (const entry of Deno.readDirSync(`${sysDir}/block`)) {
      const name = entry.name;
      const device = name.replace(/.*!/, "");
      if (!/e[0-9]+\.[0-9]+/.test(name) || device.includes("p")) continue;
      dirs.push(`${sysDir}/block/${name}`);
    }
  } catch {
    return [];
  }
  return dirs.sort();
}

/** The rows aoe-stat prints (sorted bytewise, as with LC_ALL=C), filtered by an optional regular expression. */
export function aoeStatRows(sysDir: string, filter?: string): string[] {
  const dirs = deviceDirs(sysDir);
  const withPayload = dirs.some((d) => readOrNA(`${d}/payload`) !== NA);
  const rows: string[] = [];
  for (const d of dirs) {
    const dev = d.replace(/.*!/, "");
    const size = formatSize(readOrNA(`${d}/size`));
    const netif = readOrNA(`${d}/netif`);
    const state = readOrNA(`${d}/state`);
    const payload = readOrNA(`${d}/payload`);
    if (withPayload && payload !== NA) {
      rows.push(
        `${pad(dev, 10)} ${pad(size, 15)} ${pad(netif, 10)} ${pad(payload, 5, true)} ${
          pad(state, 14, true)
        }`,
      );
    } else if (withPayload) {
      // aoe-stat's payload format with one argument missing: printf leaves the last field empty.
      rows.push(
        `${pad(dev, 10)} ${pad(size, 15)} ${pad(netif, 10)} ${pad(state, 5, true)} ${
          pad("", 14, true)
        }`,
      );
    } else {
      rows.push(`${pad(dev, 10)} ${pad(size, 15)} ${pad(netif, 6)} ${pad(state, 14, true)}`);
    }
  }
  rows.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (!filter) return rows;
  const re = new RegExp(filter);
  return rows.filter((row) => re.test(row));
}

/** The same devices as objects, for `aoe status --json`. */
export function statusObjects(sysDir: string): Record<string, string | number>[] {
  return deviceDirs(sysDir).map((d) => {
    const sectors = readOrNA(`${d}/size`);
    return {
      device: d.replace(/.*!/, ""),
      sectors: /^\d+$/.test(sectors) ? Number(sectors) : sectors,
      size: formatSize(sectors),
      netif: readOrNA(`${d}/netif`),
      payload: Number(readOrNA(`${d}/payload`)) || readOrNA(`${d}/payload`),
      state: readOrNA(`${d}/state`),
      mac: readOrNA(`${d}/mac`),
      firmwareVersion: readOrNA(`${d}/firmware-version`),
    };
  });
}
