/**
 * `aoe target` command line: vblade's arguments and option letters, with
 * options allowed before or after the positionals (glibc getopt permutes).
 *
 * @module
 */

import type { LinkKind } from "../link/mod.ts";
import { CRC_KINDS, type CrcKind, parseMac } from "../wire/mod.ts";
import type { ExtensionPolicy } from "./extensions.ts";
import { MAX_MASKS } from "./export.ts";

/** One export as given on the command line. */
export interface ExportSpec {
  /** Shelf (major), 0-65534. */
  shelf: number;
  /** Slot (minor), 0-254. */
  slot: number;
  /** Interfaces to serve on. */
  interfaces: string[];
  /** The file or block device exported. */
  file: string;
  /** -b */
  bufferCount: number;
  /** -d */
  direct: boolean;
  /** -s */
  sync: boolean;
  /** -r */
  readOnly: boolean;
  /** -m */
  masks: number[];
  /** -o, sectors */
  offset: number;
  /** -l, sectors */
  length?: number;
  /** -f: AoEde's shadow file, where writes go while the export is frozen. */
  shadow?: string;
  /** --no-extensions, --crc, --track-rx, --track-write (docs/extensions.md). */
  extensions: ExtensionPolicy;
}

/** The whole `aoe target` invocation. */
export interface TargetCommandLine {
  /** The exports, the first from the command line, the rest after each `--and`. */
  exports: ExportSpec[];
  /** --help: print the help and exit. */
  help: boolean;
  /** --stats FILE: JSON counters written every second and at exit. */
  statsFile?: string;
  /** --link packet|pcap */
  link?: LinkKind;
  /** --daemon: detach and log to syslog, as vbladed. */
  daemon: boolean;
}

/** A command-line mistake; the message is one line. */
export class UsageError extends Error {
  /**
   * A usage error.
   *
   * @param message what is wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Default buffer count: what the target keeps up with (see bench/target_bench.ts). */
export const DEFAULT_BUFFER_COUNT = 64;

/** The usage line, vblade's with this program's additions. */
export const TARGET_USAGE =
  "usage: aoe target [-b bufcnt] [-o offset] [-l length] [-d] [-s] [-r] [-m mac[,mac...]] [-f shadow] shelf slot netif [netif...] filename [--and ...]";

/** The --help text. */
export const TARGET_HELP = `${TARGET_USAGE}

Exports a file or block device as AoE shelf.slot on one or more interfaces
(a drop-in for vblade: same arguments, same option letters).

  -b bufcnt   buffer count advertised in Query Config (default ${DEFAULT_BUFFER_COUNT}, at least 2)
  -d          open the file with O_DIRECT (bypass the page cache); on a device
              with 4096-byte logical sectors, 512-byte sectors are served by
              read-modify-write of whole logical sectors
  -s          open the file with O_SYNC: every write is on disk before its reply
              (without -s, IDENTIFY reports a write cache and FLUSH CACHE makes
              earlier writes durable)
  -r          read-only export: writes fail with ATA ABRT
  -m macs     allow only these initiator MACs (comma separated, colons optional;
              at most 32). This list is the administrator's: MAC Mask edits
              from the network may add MACs (up to 32 in all) and remove those
              added, but never remove one of these, so they cannot empty it
  -o offset   skip this many 512-byte sectors at the start of the file
  -l length   export only this many sectors
  -f shadow   shadow file for freeze (AoEde): SIGUSR1 SIGUSR2 freezes, SIGUSR1
              SIGUSR1 SIGUSR2 unfreezes (a lone SIGUSR1 still logs the counters)
  --crc K     checksums granted to initiators that ask (docs/extensions.md):
              crc32,crc32c,crc8x4 (default), some of them, or none
  --track-rx M    track the tags of these initiator MACs (drop duplicates)
                  without a declaration, as AoEde's option; only for
                  initiators whose tags are a monotonic counter
  --track-write M also refuse writes older than one applied to the same sectors
                  (implies --track-rx; corrupts data with other initiators)
  --no-extensions answer the extension command as vblade does (unrecognized)
  --and ...   another export served by the same process (its own options and positionals)
  --stats F   write JSON counters to F every second and at exit (SIGUSR1 logs them too);
              an unwritable F is refused at start, a later failure is logged once
  --link K    frame I/O: ring (TPACKET_V2 mmap rings), packet (AF_PACKET with
              recvmmsg/sendmmsg batches) or pcap (libpcap); see bench/
  --daemon    run in the background and log to syslog (as vbladed)
  --config F  serve every export of config file F instead ("aoe target --config F --help")
  --help      this text

shelf is 0-65534, slot 0-254 (the broadcast values are reserved).

Environment: AOE_QDISC_BYPASS=1 sends the ring link's replies past the qdisc
and the packet taps (tcpdump on the interface then sees no reply);
AOE_SPIN_US=N caps the spin before sleeping at N microseconds (0: never spin).`;

function parseInteger(text: string, what: string): number {
  // strtoll with base 0: decimal, 0x hex, leading-0 octal.
  const trimmed = text.trim();
  let value = NaN;
  if (/^0[xX][0-9a-fA-F]+$/.test(trimmed)) value = parseInt(trimmed.slice(2), 16);
  else if (/^0[0-7]+$/.test(trimmed)) value = parseInt(trimmed.slice(1), 8);
  else if (/^[0-9]+$/.test(trimmed)) value = parseInt(trimmed, 10);
  if (!Number.isSafeInteger(value)) throw new UsageError(`${what}: not a number: ${text}`);
  return value;
}

function parseMacList(text: string, what: string): number[] {
  return text.split(",").map((item) => {
    const mac = parseMac(item);
    if (Number.isNaN(mac)) throw new UsageError(`${what}: not a MAC address: ${item}`);
    return mac;
  });
}

function parseCrcList(text: string): CrcKind[] {
  if (text === "none") return [];
  return text.split(",").map((item) => {
    if (!CRC_KINDS.includes(item as CrcKind)) {
      throw new UsageError(`--crc: expected ${CRC_KINDS.join(", ")} or none, not ${item}`);
    }
    return item as CrcKind;
  });
}

function parseGroup(args: string[], command: TargetCommandLine): ExportSpec {
  const spec: Partial<ExportSpec> = {
    bufferCount: DEFAULT_BUFFER_COUNT,
    direct: false,
    sync: false,
    readOnly: false,
    masks: [],
    offset: 0,
    extensions: {},
  };
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = (): string => {
      if (i + 1 >= args.length) throw new UsageError(`option ${arg} needs a value`);
      return args[++i];
    };
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg === "--help" || arg === "-h") command.help = true;
    else if (arg === "--daemon") command.daemon = true;
    else if (arg === "--stats") command.statsFile = value();
    else if (arg === "--no-extensions") spec.extensions!.enabled = false;
    else if (arg === "--crc") spec.extensions!.crc = parseCrcList(value());
    else if (arg === "--track-rx") spec.extensions!.forceRx = parseMacList(value(), arg);
    else if (arg === "--track-write") spec.extensions!.forceWrite = parseMacList(value(), arg);
    else if (arg === "--link") {
      const kind = value();
      if (kind !== "packet" && kind !== "pcap" && kind !== "ring") {
        throw new UsageError(`--link must be ring, packet or pcap, not ${kind}`);
      }
      command.link = kind;
    } else if (/^-[bdsrmolf]/.test(arg)) {
      // Clustered short options, as getopt allows: -rs, -b16, -m mac.
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j];
        const attached = arg.slice(j + 1);
        const optionValue = () => attached.length > 0 ? attached : value();
        if (letter === "d") spec.direct = true;
        else if (letter === "s") spec.sync = true;
        else if (letter === "r") spec.readOnly = true;
        else if ("bmolf".includes(letter)) {
          const text = optionValue();
          if (letter === "f") spec.shadow = text;
          if (letter === "b") spec.bufferCount = parseInteger(text, "-b");
          if (letter === "o") spec.offset = parseInteger(text, "-o");
          if (letter === "l") spec.length = parseInteger(text, "-l");
          if (letter === "m") {
            for (const mac of parseMacList(text, "-m")) {
              if (!spec.masks!.includes(mac)) spec.masks!.push(mac);
            }
          }
          break;
        } else throw new UsageError(`unknown option -${letter}`);
      }
    } else if (arg.startsWith("-") && arg.length > 1) {
      throw new UsageError(`unknown option ${arg}`);
    } else positionals.push(arg);
  }
  if (command.help) return spec as ExportSpec;
  if (positionals.length < 4) {
    throw new UsageError(
      `expected shelf slot netif [netif...] filename, got ${positionals.length} arguments`,
    );
  }
  spec.shelf = parseInteger(positionals[0], "shelf");
  spec.slot = parseInteger(positionals[1], "slot");
  spec.interfaces = positionals.slice(2, -1);
  spec.file = positionals[positionals.length - 1];
  if (spec.shelf < 0 || spec.shelf > 0xfffe) {
    throw new UsageError(`shelf ${spec.shelf} out of range 0-65534`);
  }
  if (spec.slot < 0 || spec.slot > 0xfe) {
    throw new UsageError(`slot ${spec.slot} out of range 0-254`);
  }
  if (spec.bufferCount! < 2 || spec.bufferCount! > 0xffff) {
    throw new UsageError(
      `-b ${spec.bufferCount}: buffer count must be 2-65535 (the Linux driver cannot use fewer than 2)`,
    );
  }
  if (spec.masks!.length > MAX_MASKS) {
    throw new UsageError(
      `-m: ${spec.masks!.length} MACs given, the MAC mask list holds at most ${MAX_MASKS}`,
    );
  }
  if (spec.length !== undefined && spec.length < 1) {
    throw new UsageError("-l: length must be at least 1");
  }
  return spec as ExportSpec;
}

/** Parses `aoe target` arguments; throws {@link UsageError}. */
export function parseTargetArgs(args: readonly string[]): TargetCommandLine {
  const command: TargetCommandLine = { exports: [], help: false, daemon: false };
  let group: string[] = [];
  const groups: string[][] = [];
  for (const arg of args) {
    if (arg === "--and") {
      groups.push(group);
      group = [];
    } else group.push(arg);
  }
  groups.push(group);
  for (const g of groups) {
    const spec = parseGroup(g, command);
    if (command.help) return command;
    command.exports.push(spec);
  }
  const names = new Set<string>();
  for (const spec of command.exports) {
    const name = `e${spec.shelf}.${spec.slot}`;
    if (names.has(name)) throw new UsageError(`${name} is given twice`);
    names.add(name);
  }
  return command;
}
