/**
 * The target's counters in Prometheus' text exposition format, as a
 * node_exporter textfile (`aoe_target.prom` in the collector's directory,
 * replaced atomically so the collector never reads half a file).
 *
 * @module
 */

import type { TargetServer } from "./server.ts";
import { writeFileAtomic } from "./state_dir.ts";

/** The textfile's name in its directory. */
export const PROMETHEUS_FILE = "aoe_target.prom";

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** The counters of `server` in the text exposition format. */
export function prometheusText(server: TargetServer): string {
  const lines: string[] = [];
  const family = (name: string, type: string, help: string, samples: [string, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  for (const [key, value] of Object.entries(server.counters)) {
    family(
      `aoe_target_frames_${snake(key)}_total`,
      "counter",
      `Frames ${key === "received" ? "received" : `dropped before any export (${key})`}.`,
      [["", value]],
    );
  }
  const links = server.links;
  for (const key of ["received", "sent", "sendErrors"] as const) {
    family(
      `aoe_target_link_${snake(key)}_total`,
      "counter",
      `Frames per interface (${key}).`,
      links.map((link) => [`{interface="${label(link.name)}"}`, link.counters[key]]),
    );
  }
  const exports = server.exports;
  family(
    "aoe_target_export_sectors",
    "gauge",
    "Exported capacity in 512-byte sectors.",
    exports.map((device) => [`{export="${device.name}"}`, device.store.sectors]),
  );
  const keys = exports.length > 0 ? Object.keys(exports[0].counters) : [];
  for (const key of keys) {
    family(
      `aoe_target_export_${snake(key)}_total`,
      "counter",
      `Requests per export (${key}).`,
      exports.map((device) => [
        `{export="${device.name}"}`,
        (device.counters as unknown as Record<string, number>)[key] ?? 0,
      ]),
    );
  }
  return lines.join("\n") + "\n";
}

/** Writes `aoe_target.prom` into `directory` (created if missing; mode 0644: node_exporter reads it). */
export function writePrometheusFile(directory: string, server: TargetServer): void {
  try {
    Deno.statSync(directory);
  } catch {
    // Created here: readable by node_exporter whatever the service's umask.
    Deno.mkdirSync(directory, { recursive: true });
    Deno.chmodSync(directory, 0o755);
  }
  writeFileAtomic(`${directory}/${PROMETHEUS_FILE}`, prometheusText(server), { mode: 0o644 });
}
