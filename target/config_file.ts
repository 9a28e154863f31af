/**
 * The target service's config file (`/etc/aoe/targets.conf`, TOML): a
 * `[service]` table for the daemon, `[defaults]` shared by every export, and
 * one `[[export]]` table per shelf.slot with every option `aoe target` has.
 * The TOML is parsed by smol-toml; this module only checks the values and
 * finds the line of each key so a message names file, line and key. A file
 * with any error is refused whole (see docs/ and man/aoe-targets.conf.5).
 *
 * @module
 */

import { parse, TomlError } from "smol-toml";
import type { LinkKind } from "../link/mod.ts";
import { CRC_KINDS, type CrcKind, parseMac } from "../wire/mod.ts";
import type { ExtensionPolicy } from "./extensions.ts";
import { DEFAULT_BUFFER_COUNT, type ExportSpec } from "./options.ts";
import { MAX_MASKS } from "./export.ts";

/** Where the service keeps state, listens and writes metrics by default. */
export const SERVICE_DEFAULTS = {
  configFile: "/etc/aoe/targets.conf",
  stateDir: "/var/lib/aoe",
  controlSocket: "/run/aoe/target.sock",
  prometheusInterval: 15,
} as const;

/** The `[service]` table. */
export interface ServiceSettings {
  /** Keeps each export's config string and MAC mask list; "" turns it off. */
  stateDir: string;
  /** The control socket of `aoe target-ctl`; "" turns it off. */
  controlSocket: string;
  /** A group whose members may use the control socket besides root. */
  controlGroup?: string;
  /** Frame I/O of every interface. */
  link?: LinkKind;
  /** JSON counters written every second, as `aoe target --stats`. */
  statsFile?: string;
  /** node_exporter textfile directory for `aoe_target.prom`. */
  prometheusDir?: string;
  /** Seconds between two textfile writes. */
  prometheusInterval: number;
}

/** A whole, checked config file. */
export interface ServiceConfig {
  /** The file it was read from. */
  path: string;
  /** The [service] table. */
  service: ServiceSettings;
  /** The exports. */
  exports: ExportSpec[];
}

/** Every problem of a refused config file, one line each ("FILE:LINE: key: what"). */
export class ConfigError extends Error {
  /**
   * A refusal listing every problem.
   *
   * @param problems one line per problem
   */
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

type Table = Record<string, unknown>;

/** Where each key of each table is written, found by scanning the text. */
class KeyLines {
  /** "service", "defaults", "export.0", ... -> key -> line (1-based). */
  readonly keys = new Map<string, Map<string, number>>();
  /** The header line of each table. */
  readonly headers = new Map<string, number>();

  constructor(text: string) {
    let table = "";
    let exportCount = 0;
    text.split("\n").forEach((raw, index) => {
      const line = raw.trim();
      const header = /^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?/.exec(line);
      if (header) {
        const name = header[1];
        table = line.startsWith("[[") && name === "export" ? `export.${exportCount++}` : name;
        this.headers.set(table, index + 1);
        return;
      }
      const key = /^([A-Za-z0-9_-]+)\s*=/.exec(line);
      if (!key) return;
      let keys = this.keys.get(table);
      if (!keys) this.keys.set(table, keys = new Map());
      if (!keys.has(key[1])) keys.set(key[1], index + 1);
    });
  }

  /** The line of `key` in `table`, else the table's header line, else 1. */
  lineOf(table: string, key?: string): number {
    const line = key === undefined ? undefined : this.keys.get(table)?.get(key);
    return line ?? this.headers.get(table) ?? 1;
  }
}

/** The keys of an `[[export]]` (and `[defaults]`) table. */
export const EXPORT_KEYS = [
  "shelf",
  "slot",
  "interfaces",
  "file",
  "buffer_count",
  "direct",
  "sync",
  "read_only",
  "masks",
  "offset",
  "length",
  "shadow",
  "extensions",
  "crc",
  "track_rx",
  "track_write",
] as const;
/** The keys of the `[service]` table. */
export const SERVICE_KEYS = [
  "state_dir",
  "control_socket",
  "control_group",
  "link",
  "stats_file",
  "prometheus_dir",
  "prometheus_interval",
] as const;

/** Reads and checks a config file; throws {@link ConfigError} listing every problem. */
export function readConfigFile(path: string): ServiceConfig {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new ConfigError([`${path}: cannot read: ${(error as Error).message}`]);
  }
  return parseConfig(text, path);
}

/** Checks the text of a config file read from `path`; throws {@link ConfigError}. */
export function parseConfig(text: string, path: string): ServiceConfig {
  let document: Table;
  try {
    document = parse(text) as Table;
  } catch (error) {
    if (error instanceof TomlError) {
      const what = error.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
      const key = /^\s*([A-Za-z0-9_-]+)\s*=/.exec(text.split("\n")[error.line - 1] ?? "");
      throw new ConfigError([
        `${path}:${error.line}:${error.column}: ${key ? `${key[1]}: ` : ""}${what}`,
      ]);
    }
    throw error;
  }
  const lines = new KeyLines(text);
  const problems: string[] = [];
  const problem = (table: string, key: string | undefined, what: string) =>
    problems.push(`${path}:${lines.lineOf(table, key)}: ${key ?? `[${table}]`}: ${what}`);

  for (const key of Object.keys(document)) {
    if (!["service", "defaults", "export"].includes(key)) {
      problem(key, undefined, `unknown table or key "${key}" (service, defaults, export)`);
    }
  }
  const asTable = (value: unknown, name: string): Table => {
    if (value === undefined) return {};
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Table;
    problem(name, undefined, "must be a table");
    return {};
  };
  const serviceTable = asTable(document.service, "service");
  const defaults = asTable(document.defaults, "defaults");
  const service = checkService(serviceTable, (key, what) => problem("service", key, what));
  checkKeys(defaults, EXPORT_KEYS, (key, what) => problem("defaults", key, what));
  for (const key of ["shelf", "slot"]) {
    if (key in defaults) problem("defaults", key, "belongs in each [[export]], not in [defaults]");
  }

  const list = document.export ?? [];
  if (!Array.isArray(list)) {
    problem("export", undefined, "must be written as [[export]] tables");
  } else if (list.length === 0) {
    problem("service", undefined, "no [[export]] table: nothing to serve");
  }
  const exports: ExportSpec[] = [];
  const seen = new Map<string, number>();
  (Array.isArray(list) ? list : []).forEach((raw, index) => {
    const table = `export.${index}`;
    const report = (key: string | undefined, what: string) => problem(table, key, what);
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      report(undefined, "must be a table");
      return;
    }
    checkKeys(raw as Table, EXPORT_KEYS, report);
    const merged: Table = { ...defaults, ...(raw as Table) };
    // A bad value inherited from [defaults] is reported at its line there.
    const spec = checkExport(
      merged,
      (key, what) =>
        key !== undefined && !(key in (raw as Table)) && key in defaults
          ? problem("defaults", key, what)
          : report(key, what),
    );
    if (!spec) return;
    const name = `e${spec.shelf}.${spec.slot}`;
    if (seen.has(name)) {
      report("shelf", `${name} is already exported by the [[export]] at line ${seen.get(name)}`);
      return;
    }
    seen.set(name, lines.lineOf(table));
    exports.push(spec);
  });
  if (problems.length > 0) throw new ConfigError([...new Set(problems)]);
  return { path, service, exports };
}

function checkKeys(
  table: Table,
  known: readonly string[],
  report: (key: string, what: string) => void,
): void {
  for (const key of Object.keys(table)) {
    if (!known.includes(key)) report(key, `unknown key (known: ${known.join(", ")})`);
  }
}

function checkService(
  table: Table,
  report: (key: string, what: string) => void,
): ServiceSettings {
  checkKeys(table, SERVICE_KEYS, report);
  const string = (key: string): string | undefined => {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value !== "string") {
      report(key, "must be a string");
      return undefined;
    }
    return value;
  };
  const settings: ServiceSettings = {
    stateDir: string("state_dir") ?? SERVICE_DEFAULTS.stateDir,
    controlSocket: string("control_socket") ?? SERVICE_DEFAULTS.controlSocket,
    controlGroup: string("control_group"),
    statsFile: string("stats_file"),
    prometheusDir: string("prometheus_dir"),
    prometheusInterval: SERVICE_DEFAULTS.prometheusInterval,
  };
  const link = string("link");
  if (link !== undefined) {
    if (link === "ring" || link === "packet" || link === "pcap") settings.link = link;
    else report("link", `must be "ring", "packet" or "pcap", not "${link}"`);
  }
  const interval = table.prometheus_interval;
  if (interval !== undefined) {
    if (typeof interval !== "number" || !(interval >= 1 && interval <= 3600)) {
      report("prometheus_interval", "must be a number of seconds from 1 to 3600");
    } else settings.prometheusInterval = interval;
  }
  return settings;
}

function checkExport(
  table: Table,
  report: (key: string | undefined, what: string) => void,
): ExportSpec | undefined {
  let bad = false;
  const fail = (key: string | undefined, what: string) => {
    bad = true;
    report(key, what);
  };
  const integer = (key: string, min: number, max: number): number | undefined => {
    const value = table[key];
    if (value === undefined) return undefined;
    const n = typeof value === "bigint" ? Number(value) : value;
    if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
      fail(key, `must be an integer from ${min} to ${max}, not ${JSON.stringify(String(value))}`);
      return undefined;
    }
    return n;
  };
  const boolean = (key: string): boolean => {
    const value = table[key];
    if (value === undefined) return false;
    if (typeof value !== "boolean") fail(key, "must be true or false");
    return value === true;
  };
  const shelf = integer("shelf", 0, 0xfffe);
  const slot = integer("slot", 0, 0xfe);
  if (table.shelf === undefined) fail(undefined, "shelf is missing");
  if (table.slot === undefined) fail(undefined, "slot is missing");
  const file = table.file;
  if (file === undefined) fail(undefined, "file is missing");
  else if (typeof file !== "string" || file === "") fail("file", "must be a file name");
  const interfaces = table.interfaces;
  if (interfaces === undefined) fail(undefined, "interfaces is missing (here or in [defaults])");
  else if (
    !Array.isArray(interfaces) || interfaces.length === 0 ||
    !interfaces.every((name) => typeof name === "string" && /^[^\s/]{1,15}$/.test(name))
  ) fail("interfaces", 'must be a list of interface names, e.g. ["eth0"]');
  const masks: number[] = [];
  if (table.masks !== undefined) {
    if (!Array.isArray(table.masks)) {
      fail("masks", 'must be a list of MACs, e.g. ["52:54:00:00:00:01"]');
    } else {
      for (const item of table.masks) {
        const mac = typeof item === "string" ? parseMac(item) : NaN;
        if (Number.isNaN(mac)) fail("masks", `not a MAC address: ${JSON.stringify(item)}`);
        else if (!masks.includes(mac)) masks.push(mac);
      }
      if (masks.length > MAX_MASKS) {
        fail("masks", `${masks.length} MACs, the MAC mask list holds at most ${MAX_MASKS}`);
      }
    }
  }
  const macList = (key: string): number[] | undefined => {
    const value = table[key];
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) {
      fail(key, 'must be a list of MACs, e.g. ["52:54:00:00:00:01"]');
      return undefined;
    }
    const macs: number[] = [];
    for (const item of value) {
      const mac = typeof item === "string" ? parseMac(item) : NaN;
      if (Number.isNaN(mac)) fail(key, `not a MAC address: ${JSON.stringify(item)}`);
      else macs.push(mac);
    }
    return macs;
  };
  const extensions: ExtensionPolicy = {};
  if (table.extensions !== undefined) extensions.enabled = boolean("extensions");
  if (table.crc !== undefined) {
    const crc = table.crc;
    if (
      !Array.isArray(crc) || !crc.every((kind) => CRC_KINDS.includes(kind as CrcKind))
    ) fail("crc", `must be a list of ${CRC_KINDS.map((k) => `"${k}"`).join(", ")} (or [])`);
    else extensions.crc = crc as CrcKind[];
  }
  const forceRx = macList("track_rx");
  if (forceRx) extensions.forceRx = forceRx;
  const forceWrite = macList("track_write");
  if (forceWrite) extensions.forceWrite = forceWrite;
  const shadow = table.shadow;
  if (shadow !== undefined && (typeof shadow !== "string" || shadow === "")) {
    fail("shadow", "must be a file name");
  }
  const spec: ExportSpec = {
    shelf: shelf ?? 0,
    slot: slot ?? 0,
    interfaces: Array.isArray(interfaces) ? interfaces as string[] : [],
    file: typeof file === "string" ? file : "",
    bufferCount: integer("buffer_count", 2, 0xffff) ?? DEFAULT_BUFFER_COUNT,
    direct: boolean("direct"),
    sync: boolean("sync"),
    readOnly: boolean("read_only"),
    masks,
    offset: integer("offset", 0, Number.MAX_SAFE_INTEGER) ?? 0,
    length: integer("length", 1, Number.MAX_SAFE_INTEGER),
    extensions,
  };
  if (spec.length === undefined) delete spec.length;
  if (typeof shadow === "string" && shadow !== "") spec.shadow = shadow;
  return bad ? undefined : spec;
}
