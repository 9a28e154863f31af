/**
 * The module parameters of the Linux aoe driver (docs/driver.md §1), read
 * from `key=value` words as modprobe takes them and from modprobe.d-style
 * files (`options aoe aoe_iflist="eth1"`).
 *
 * @module
 */

import { CRC_KINDS, type CrcKind } from "../wire/mod.ts";

/** The driver's tunables. */
export interface DriverParams {
  /** Allowed interfaces; empty means every interface. */
  iflist: string[];
  /** Seconds a request may stay unanswered before the device goes down; 0 retries forever. */
  deadsecs: number;
  /** Cap on each target's advertised buffer count. */
  maxout: number;
  /** 1: minors in discovery order; 0: fixed from shelf and slot. */
  dyndevs: number;
  /**
   * Most devices the driver keeps (this program's own parameter, not the
   * kernel's): Query Config answers for more are counted and ignored, so
   * spoofed answers cannot grow the table without bound.
   */
  maxdevs: number;
  /** aoe_tags (this project's): "counter" declares monotonic tags to targets, "kernel" keeps the kernel's scheme (docs/extensions.md). */
  tags: "counter" | "kernel";
  /** aoe_crc (this project's): the data checksum asked of targets, or "none". */
  crc: CrcKind | "none";
}

/** Defaults as the kernel documentation states them (aoe.rst). */
export const DEFAULT_PARAMS: Readonly<DriverParams> = {
  iflist: [],
  deadsecs: 180,
  maxout: 128,
  dyndevs: 1,
  maxdevs: 1024,
  tags: "counter",
  crc: "crc32",
};

/** Largest value of an integer parameter: the kernel's module parameters are C ints. */
export const PARAM_INT_MAX = 0x7fffffff;

/** Longest aoe_iflist the kernel accepts (1023 characters). */
export const IFLIST_MAX = 1023;

/** Splits an interface list on space, tab, \v, \f, \n and comma, as the driver does. */
export function parseIflist(text: string): string[] {
  if (text.length > IFLIST_MAX) {
    throw new Error("could not set interface list: too many interfaces");
  }
  return text.replaceAll("\0", "").split(/[ \t\v\f\n,]+/).filter(Boolean);
}

function parseCount(name: string, value: string): number {
  const text = value.trim();
  if (!/^\d+$/.test(text)) throw new Error(`${name}: not a non-negative integer: ${value}`);
  const n = Number(text);
  // kstrtoint's range: the kernel refuses what does not fit an int instead of wrapping it.
  if (n > PARAM_INT_MAX) {
    throw new Error(`${name}: ${text} is out of range (at most ${PARAM_INT_MAX})`);
  }
  return n;
}

/** Applies one `name=value` word to `params`; throws on an unknown name or a bad value. */
export function applyParam(params: DriverParams, word: string): void {
  const at = word.indexOf("=");
  if (at < 0) throw new Error(`expected name=value, got "${word}"`);
  const name = word.slice(0, at);
  let value = word.slice(at + 1);
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
  switch (name) {
    case "aoe_iflist":
      params.iflist = parseIflist(value);
      return;
    case "aoe_deadsecs":
      params.deadsecs = parseCount(name, value);
      return;
    case "aoe_maxout": {
      const n = parseCount(name, value);
      if (n < 1) throw new Error("aoe_maxout must be at least 1");
      params.maxout = n;
      return;
    }
    case "aoe_dyndevs": {
      const n = parseCount(name, value);
      if (n > 1) throw new Error("aoe_dyndevs must be 0 or 1");
      params.dyndevs = n;
      return;
    }
    case "aoe_maxdevs": {
      const n = parseCount(name, value);
      if (n < 1) throw new Error("aoe_maxdevs must be at least 1");
      params.maxdevs = n;
      return;
    }
    case "aoe_tags":
      if (value !== "counter" && value !== "kernel") {
        throw new Error("aoe_tags must be counter or kernel");
      }
      params.tags = value;
      return;
    case "aoe_crc":
      if (value !== "none" && !CRC_KINDS.includes(value as CrcKind)) {
        throw new Error(`aoe_crc must be ${CRC_KINDS.join(", ")} or none`);
      }
      params.crc = value as CrcKind | "none";
      return;
    default:
      throw new Error(`unknown parameter "${name}"`);
  }
}

/** Splits a modprobe options line into words, keeping double-quoted values whole. */
export function splitOptions(line: string): string[] {
  return line.match(/[^\s"=]+=(?:"[^"]*"|\S*)|\S+/g) ?? [];
}

/** The `options aoe ...` words of a modprobe.d-style file. */
export function optionsFromModprobeFile(text: string): string[] {
  const words: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    const parts = splitOptions(line);
    if (parts[0] === "options" && parts[1] === "aoe") words.push(...parts.slice(2));
  }
  return words;
}

/** Parameters from defaults, then a modprobe.d file's options, then explicit words. */
export function resolveParams(words: readonly string[], fileText?: string): DriverParams {
  const params: DriverParams = { ...DEFAULT_PARAMS, iflist: [] };
  for (const word of fileText ? optionsFromModprobeFile(fileText) : []) applyParam(params, word);
  for (const word of words) applyParam(params, word);
  return params;
}
