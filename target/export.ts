/**
 * One exported shelf.slot: its backing store, config string, MAC mask list and
 * reservations, and the AoE commands that act on them (AoE r11 §3). Replies are
 * written into the link's transmit slots; nothing is allocated per ATA frame
 * beyond a data view.
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import {
  AOE_VERSION,
  AoeError,
  ATA_HEADER_LENGTH,
  AtaOp,
  AtaStatus,
  BROADCAST_MAC,
  BROADCAST_SHELF,
  BROADCAST_SLOT,
  Command,
  CONFIG_HEADER_LENGTH,
  ConfigCommand,
  configLengthFor,
  decodeReserve,
  DIRECTIVE_LENGTH,
  DirectiveCommand,
  directivesFor,
  encodeConfig,
  encodeHeader,
  encodeIdentify,
  encodeMask,
  encodeReserve,
  HEADER_LENGTH,
  isError,
  makeResponseHeader,
  MASK_HEADER_LENGTH,
  MaskCommand,
  type MaskDirective,
  MaskError,
  MAX_CONFIG_LENGTH,
  readAtaCommand,
  readAtaStatus,
  readCommand,
  readConfigCommand,
  readConfigLength,
  readDirectiveCommand,
  readDirectiveCount,
  readDirectiveMac,
  readMaskCommand,
  readReserveCommand,
  readShelf,
  readSlot,
  readSource,
  RESERVE_HEADER_LENGTH,
  ReserveCommand,
  reserveMacsFor,
  sectorsPerFrame,
  setAoeError,
} from "../wire/mod.ts";
import { type AtaExchange, executeAta } from "./ata.ts";
import type { BackingStore } from "./backing.ts";
import { type ExtensionPolicy, ExtensionTable, Screen } from "./extensions.ts";
import { type FreezeState, ShadowStore } from "./shadow.ts";
import { ExportTraffic } from "./counters.ts";

/** vblade's mask list holds 32 entries (docs/protocol.md §6). */
export const MAX_MASKS = 32;
/** Firmware version this target reports in Query Config (vblade 25 reports 0x4019). */
export const FIRMWARE_VERSION = 0x4100;

/** Counters one export keeps; the administrator reads them (SIGUSR1, --stats). */
export interface ExportCounters {
  /** ATA requests handled. */
  ata: number;
  /** READ SECTORS (EXT) requests. */
  reads: number;
  /** WRITE SECTORS (EXT) requests. */
  writes: number;
  /** Query Config requests. */
  config: number;
  /** MAC Mask List requests. */
  macMask: number;
  /** Reserve/Release requests. */
  reserve: number;
  /** Unknown commands, answered with error 1. */
  unknownCommand: number;
  /** Frames from a MAC not on a non-empty mask list, ignored. */
  masked: number;
  /**
   * From a MAC not on a non-empty reservation list, refused with error 6: ATA
   * (but IDENTIFY), config string sets, MAC Mask edits, reserve sets (§7).
   */
  reserved: number;
  /** Frames too short or with counts past their end, dropped. */
  malformed: number;
  /** QC requests answered with silence (test mismatch, bad length). */
  configSilent: number;
  /** ATA replies with an error status or an AoE error. */
  ataErrors: number;
  /** ATA commands that change data addressed to a broadcast shelf or slot: refused with error 2 (§2). */
  broadcastRefused: number;
  /** FLUSH CACHE and durable writes refused because a flush of the store failed (§3). */
  flushFailures: number;
  /** Reads and writes of the store that did not complete (a full disk, EIO): answered ABRT (§3). */
  ioErrors: number;
}

/** How to create an {@link Export}. */
export interface ExportOptions {
  shelf: number;
  slot: number;
  store: BackingStore;
  /** Buffer count advertised in Query Config (-b). */
  bufferCount: number;
  /** Initial MAC mask list (-m, or kept by the service's state directory). */
  masks?: number[];
  /**
   * The administrator's MAC mask list (-m, the config file): always on the
   * list; MAC Mask edits from the network cannot delete these (§6).
   */
  policyMasks?: readonly number[];
  /** Serial for IDENTIFY (default "shelf.slot:hostname", as vblade). */
  serial?: string;
  /** Interfaces this export answers on (default: every link of its server). */
  interfaces?: readonly string[];
  /** Initial config string (kept across restarts by the service's state directory). */
  config?: Uint8Array;
  /** What the AoEx extensions allow and force (docs/extensions.md). */
  extensions?: ExtensionPolicy;
  /** Where the line about a failed flush goes (default: stderr). */
  log?: (message: string) => void;
}

/** One AoE shelf.slot served by a target. */
export class Export {
  /** Shelf (major). */
  readonly shelf: number;
  /** Slot (minor). */
  readonly slot: number;
  /** What is exported. */
  readonly store: BackingStore;
  /** Buffer count advertised in Query Config. */
  readonly bufferCount: number;
  /** Interfaces this export answers on; undefined: all its server's. */
  readonly interfaces: readonly string[] | undefined;
  /** The IDENTIFY data sent. */
  readonly identify = new Uint8Array(512);
  /** The MAC mask list; empty lets everyone in. */
  readonly masks: number[];
  /** The administrator's entries of {@link masks}: edits from the network cannot delete them. */
  readonly policyMasks: readonly number[];
  /** The reserve list; empty means not reserved. */
  reservations: number[] = [];
  /**
   * The smallest MTU of the interfaces this export is served on, kept current
   * by its server: a config string, mask list or reserve list is taken only if
   * a reply carrying it fits every one of them (docs/protocol.md §5-§7).
   */
  smallestMtu: number = Infinity;
  /** What this export counted. */
  readonly counters: ExportCounters = {
    ata: 0,
    reads: 0,
    writes: 0,
    config: 0,
    macMask: 0,
    reserve: 0,
    unknownCommand: 0,
    masked: 0,
    reserved: 0,
    malformed: 0,
    configSilent: 0,
    ataErrors: 0,
    broadcastRefused: 0,
    flushFailures: 0,
    ioErrors: 0,
  };
  /** A flush of the store failed; cleared only by opening the export again (target/ata.ts). */
  flushFailed: boolean = false;
  /** Declarations, tag tracking and CRC of initiators that asked for them (docs/extensions.md). */
  readonly extensions: ExtensionTable;
  /** Requests by kind, bytes, errors by kind, retransmissions, outstanding (target/counters.ts). */
  readonly traffic = new ExportTraffic();
  /** Refilled for every ATA request: nothing allocated per frame. */
  #exchange: AtaExchange = {
    request: new Uint8Array(0),
    length: 0,
    reply: new Uint8Array(0),
    maxSectors: 0,
  };
  #config = new Uint8Array(MAX_CONFIG_LENGTH);
  #configLength = 0;
  #log: (message: string) => void;
  /** Reads and writes of the store failed since the last that worked. */
  #ioFailures = 0;

  /**
   * An export with its IDENTIFY data built from the store.
   *
   * @param options what to export and how
   */
  constructor(options: ExportOptions) {
    this.shelf = options.shelf;
    this.slot = options.slot;
    this.store = options.store;
    this.bufferCount = options.bufferCount;
    this.interfaces = options.interfaces;
    this.#log = options.log ?? ((message) => console.error(message));
    this.policyMasks = [...(options.policyMasks ?? [])];
    this.masks = [...new Set([...this.policyMasks, ...(options.masks ?? [])])];
    if (this.masks.length > MAX_MASKS) {
      throw new RangeError(
        `${this.masks.length} MACs: the MAC mask list holds at most ${MAX_MASKS}`,
      );
    }
    if (options.config) this.#setConfig(options.config.subarray(0, MAX_CONFIG_LENGTH));
    this.extensions = new ExtensionTable(
      options.extensions,
      (line) => this.#log(`aoe target: ${line}`),
    );
    encodeIdentify(this.identify, {
      sectors: this.store.sectors,
      model: "aoe target (Deno)",
      serial: options.serial ?? `${this.shelf}.${this.slot}:${hostname()}`,
      firmware: "V1",
      writeCache: !this.store.writeThrough && !this.store.readOnly,
      trim: this.store.canTrim,
      trimReadsZeros: this.store.canTrim,
    });
  }

  /**
   * Freezes the image onto the shadow file (-f; docs/extensions.md §5):
   * resolves when frozen, rejects without a shadow file.
   */
  freeze(): Promise<void> {
    if (!(this.store instanceof ShadowStore)) {
      return Promise.reject(new Error(`${this.name} has no shadow file (-f)`));
    }
    return this.store.freeze();
  }

  /** Unfreezes: resolves when the shadow is merged back into the image and removed. */
  unfreeze(): Promise<void> {
    if (!(this.store instanceof ShadowStore)) {
      return Promise.reject(new Error(`${this.name} has no shadow file (-f)`));
    }
    return this.store.unfreeze();
  }

  /** normal, frozen or merging ("normal" without a shadow file). */
  get freezeState(): FreezeState {
    return this.store instanceof ShadowStore ? this.store.state : "normal";
  }

  /** The device name, e.g. "e9.0". */
  get name(): string {
    return `e${this.shelf}.${this.slot}`;
  }

  /** The current config string. */
  get config(): Uint8Array {
    return this.#config.subarray(0, this.#configLength);
  }

  /** Logs the failed flush; every later FLUSH CACHE fails until the export is opened again. */
  onFlushFailure(): void {
    this.#log(
      `aoe target: ${this.name}: flush of the store failed: acknowledged writes may be lost; every later FLUSH CACHE fails until the export is reopened`,
    );
  }

  /**
   * Counts a read or write of the store that did not complete; the first of a
   * run of failures is logged with its reason (a full disk, EIO), the others
   * only counted until one works again.
   */
  onIoFailure(op: "read" | "write", lba: number, count: number, done: number): void {
    this.counters.ioErrors++;
    if (this.#ioFailures++ > 0) return;
    const why = this.store.lastError ?? "the store did not say why";
    this.#log(
      `aoe target: ${this.name}: ${op} of ${count} sectors at ${lba} failed: ${why} (${done} done); answered ABRT, still serving, further failures counted (ioErrors) until one works again`,
    );
  }

  /** A read or write of the store completed: a run of failures, if any, ended. */
  onIoSuccess(): void {
    if (this.#ioFailures === 0) return;
    this.#log(
      `aoe target: ${this.name}: reads and writes of the store work again (${this.#ioFailures} failed)`,
    );
    this.#ioFailures = 0;
  }

  /** Whether this export answers a request addressed to shelf.slot (broadcast included). */
  matches(shelf: number, slot: number): boolean {
    return (shelf === this.shelf || shelf === 0xffff) && (slot === this.slot || slot === 0xff);
  }

  /** Whether this export is served on the named interface. */
  servesOn(interfaceName: string): boolean {
    return this.interfaces === undefined || this.interfaces.includes(interfaceName);
  }

  /** Handles one request frame already checked for ethertype, R flag, version and address. */
  handle(request: Uint8Array, length: number, link: FrameLink): void {
    if (this.masks.length > 0 && !this.masks.includes(readSource(request))) {
      this.counters.masked++;
      return;
    }
    switch (readCommand(request)) {
      case Command.ata:
        this.#ata(request, length, link);
        return;
      case Command.config:
        this.#queryConfig(request, length, link);
        return;
      case Command.macMask:
        this.#macMask(request, length, link);
        return;
      case Command.reserve:
        this.#reserve(request, length, link);
        return;
      default: {
        if (this.extensions.handleCommand(request, length, link, this.#identity(link))) return;
        // Unrecognized command: echo the frame with E and error 1, as vblade does.
        this.counters.unknownCommand++;
        const reply = link.txSlot();
        const n = Math.min(length, reply.length);
        reply.set(request.subarray(0, n));
        makeResponseHeader(reply, this.#identity(link));
        setAoeError(reply, AoeError.unrecognizedCommand);
        link.commit(n);
      }
    }
  }

  /** A reservation is held, and not by `source`. */
  #reservedAgainst(source: number): boolean {
    return this.reservations.length > 0 && !this.reservations.includes(source);
  }

  #identity(link: FrameLink) {
    return { mac: link.mac, shelf: this.shelf, slot: this.slot };
  }

  #ata(request: Uint8Array, length: number, link: FrameLink): void {
    if (length < ATA_HEADER_LENGTH) {
      this.counters.malformed++;
      return;
    }
    this.counters.ata++;
    const reply = link.txSlot();
    reply.set(request.subarray(0, ATA_HEADER_LENGTH));
    makeResponseHeader(reply, this.#identity(link));
    const command = readAtaCommand(request);
    if (
      (readShelf(request) === BROADCAST_SHELF || readSlot(request) === BROADCAST_SLOT) &&
      !readsOnly(command)
    ) {
      // Broadcast addresses are for discovery: nothing that changes data runs on every export (§2).
      this.counters.broadcastRefused++;
      setAoeError(reply, AoeError.badArgument);
      link.commit(ATA_HEADER_LENGTH);
      return;
    }
    if (
      command !== AtaOp.identifyDevice && this.reservations.length > 0 &&
      !this.reservations.includes(readSource(request))
    ) {
      this.counters.reserved++;
      setAoeError(reply, AoeError.targetReserved);
      link.commit(ATA_HEADER_LENGTH);
      return;
    }
    const session = this.extensions.active
      ? this.extensions.session(readSource(request), link)
      : undefined;
    if (session) {
      const verdict = this.extensions.screenAta(session, request, length, reply);
      if (verdict === Screen.drop) return;
      if (verdict === Screen.replied) {
        this.counters.ataErrors++;
        this.traffic.ata(request, reply, ATA_HEADER_LENGTH, readSource(request));
        link.commit(ATA_HEADER_LENGTH);
        return;
      }
    }
    if (command === AtaOp.writeSectors || command === AtaOp.writeSectorsExt) this.counters.writes++;
    else if (command === AtaOp.readSectors || command === AtaOp.readSectorsExt) {
      this.counters.reads++;
    }
    const exchange = this.#exchange;
    exchange.request = request;
    exchange.length = length;
    exchange.reply = reply;
    exchange.maxSectors = Math.min(255, sectorsPerFrame(link.mtu));
    let n = executeAta(this, exchange);
    if (this.flushFailed && refusedWhenFlushFailed(command, this.store.writeThrough)) {
      this.counters.flushFailures++;
    }
    if (session) n = this.extensions.finishAta(session, request, reply, n);
    this.traffic.ata(request, reply, n, readSource(request));
    if (readAtaStatus(reply) & AtaStatus.error || isError(reply)) this.counters.ataErrors++;
    link.commit(n);
  }

  #queryConfig(request: Uint8Array, length: number, link: FrameLink): void {
    if (length < CONFIG_HEADER_LENGTH) {
      this.counters.malformed++;
      return;
    }
    this.counters.config++;
    const ccmd = readConfigCommand(request);
    const stringLength = readConfigLength(request);
    const given = request.subarray(CONFIG_HEADER_LENGTH, CONFIG_HEADER_LENGTH + stringLength);
    // A read's length is not checked: aoeping sends 1024 filler bytes (docs/protocol.md §5).
    if (
      ccmd !== ConfigCommand.read &&
      (stringLength > MAX_CONFIG_LENGTH || stringLength > length - CONFIG_HEADER_LENGTH)
    ) {
      this.counters.configSilent++;
      return;
    }
    let error = 0;
    const tooLong = stringLength > configLengthFor(this.smallestMtu);
    if (
      (ccmd === ConfigCommand.set || ccmd === ConfigCommand.forceSet) &&
      this.#reservedAgainst(readSource(request))
    ) {
      // Only a holder of the reservation changes the string (§7).
      this.counters.reserved++;
      error = AoeError.targetReserved;
    } else {
      switch (ccmd) {
        case ConfigCommand.read:
          break;
        case ConfigCommand.test:
          if (stringLength !== this.#configLength || !startsWith(this.config, given)) {
            this.counters.configSilent++;
            return;
          }
          break;
        case ConfigCommand.testPrefix:
          if (stringLength > this.#configLength || !startsWith(this.config, given)) {
            this.counters.configSilent++;
            return;
          }
          break;
        case ConfigCommand.set:
          if (tooLong) {
            error = AoeError.badArgument;
            break;
          }
          // Set only if empty; setting the same string again succeeds, as in vblade.
          if (
            this.#configLength > 0 &&
            (this.#configLength !== stringLength || !startsWith(this.config, given))
          ) {
            error = AoeError.configStringPresent;
            break;
          }
          this.#setConfig(given);
          break;
        case ConfigCommand.forceSet:
          if (tooLong) error = AoeError.badArgument;
          else this.#setConfig(given);
          break;
        default:
          error = AoeError.badArgument;
      }
    }
    const reply = link.txSlot();
    reply.set(request.subarray(0, HEADER_LENGTH));
    makeResponseHeader(reply, this.#identity(link));
    const answer = this.#configReply(link, ccmd);
    if (answer.config.length > configLengthFor(link.mtu)) {
      // Kept while a larger interface served it alone: this one cannot carry it (§5).
      error = AoeError.badArgument;
      answer.config = answer.config.subarray(0, 0);
    }
    if (error) setAoeError(reply, error);
    link.commit(encodeConfig(reply, answer));
  }

  #configReply(link: FrameLink, ccmd: number) {
    return {
      bufferCount: this.bufferCount,
      firmwareVersion: FIRMWARE_VERSION,
      sectorCount: Math.min(255, sectorsPerFrame(link.mtu)),
      aoeVersion: AOE_VERSION,
      ccmd,
      config: this.config,
    };
  }

  #setConfig(value: Uint8Array): void {
    this.#config.set(value);
    this.#configLength = value.length;
  }

  #macMask(request: Uint8Array, length: number, link: FrameLink): void {
    if (length < MASK_HEADER_LENGTH) {
      this.counters.malformed++;
      return;
    }
    this.counters.macMask++;
    const mcmd = readMaskCommand(request);
    const count = readDirectiveCount(request);
    if (mcmd === MaskCommand.edit && MASK_HEADER_LENGTH + count * DIRECTIVE_LENGTH > length) {
      this.counters.malformed++;
      return;
    }
    const reply = link.txSlot();
    reply.set(request.subarray(0, MASK_HEADER_LENGTH));
    makeResponseHeader(reply, this.#identity(link));
    if (mcmd !== MaskCommand.read && mcmd !== MaskCommand.edit) {
      setAoeError(reply, AoeError.badArgument);
      link.commit(MASK_HEADER_LENGTH);
      return;
    }
    if (mcmd === MaskCommand.edit && this.#reservedAgainst(readSource(request))) {
      // Only a holder of the reservation edits the list (§7); the reply shows it unchanged.
      this.counters.reserved++;
      setAoeError(reply, AoeError.targetReserved);
    } else if (mcmd === MaskCommand.edit) {
      for (let i = 0; i < count; i++) {
        const dcmd = readDirectiveCommand(request, i);
        const mac = readDirectiveMac(request, i);
        let failure = 0;
        if (dcmd === DirectiveCommand.add) {
          if (!this.masks.includes(mac)) {
            // Full at 32, or when a reply listing one more would not fit every interface (§6).
            if (this.masks.length >= Math.min(MAX_MASKS, directivesFor(this.smallestMtu))) {
              failure = MaskError.listFull;
            } else this.masks.push(mac);
          }
        } else if (dcmd === DirectiveCommand.delete) {
          const index = this.masks.indexOf(mac);
          // The administrator's entries stay: the network cannot loosen -m (§6).
          if (this.policyMasks.includes(mac)) failure = MaskError.unspecified;
          else if (index >= 0) this.masks.splice(index, 1);
        } else if (dcmd !== DirectiveCommand.none) {
          failure = MaskError.badDirective;
        }
        if (failure) {
          // Stop at the failing directive and report its index in Dir Count (docs/protocol.md §6).
          link.commit(encodeMask(reply, { mcmd, merror: failure, directives: [], dirCount: i }));
          return;
        }
      }
    }
    if (this.masks.length > directivesFor(link.mtu)) {
      setAoeError(reply, AoeError.badArgument);
      link.commit(encodeMask(reply, { mcmd, merror: MaskError.unspecified, directives: [] }));
      return;
    }
    const directives: MaskDirective[] = this.masks.map((mac) => ({
      dcmd: DirectiveCommand.none,
      mac,
    }));
    link.commit(encodeMask(reply, { mcmd, merror: MaskError.none, directives }));
  }

  #reserve(request: Uint8Array, length: number, link: FrameLink): void {
    if (length < RESERVE_HEADER_LENGTH) {
      this.counters.malformed++;
      return;
    }
    this.counters.reserve++;
    const rcmd = readReserveCommand(request);
    const reply = link.txSlot();
    reply.set(request.subarray(0, RESERVE_HEADER_LENGTH));
    makeResponseHeader(reply, this.#identity(link));
    const source = readSource(request);
    if (rcmd === ReserveCommand.set || rcmd === ReserveCommand.forceSet) {
      if (this.#reservedAgainst(source)) {
        // "force set" too: a non-holder cannot take a held reservation (§7).
        this.counters.reserved++;
        setAoeError(reply, AoeError.targetReserved);
      } else {
        try {
          const macs = decodeReserve(request, length).macs;
          // A list whose reply would not fit every interface is refused, not kept (§7).
          if (macs.length > reserveMacsFor(this.smallestMtu)) {
            setAoeError(reply, AoeError.badArgument);
          } else this.reservations = macs;
        } catch {
          setAoeError(reply, AoeError.badArgument);
        }
      }
    } else if (rcmd !== ReserveCommand.read) {
      setAoeError(reply, AoeError.badArgument);
    }
    if (this.reservations.length > reserveMacsFor(link.mtu)) {
      setAoeError(reply, AoeError.badArgument);
      link.commit(encodeReserve(reply, { rcmd, macs: [] }));
      return;
    }
    link.commit(encodeReserve(reply, { rcmd, macs: this.reservations }));
  }

  /**
   * The start-up advertisement: one Query Config response (R set, tag 0) to
   * broadcast, or to each MAC on the mask list instead, as vblade does (docs/protocol.md §5).
   */
  announce(link: FrameLink): void {
    const destinations = this.masks.length > 0 ? this.masks : [BROADCAST_MAC];
    for (const dst of destinations) {
      const frame = link.txSlot();
      encodeHeader(frame, {
        dst,
        src: link.mac,
        version: AOE_VERSION,
        response: true,
        error: false,
        errorCode: 0,
        shelf: this.shelf,
        slot: this.slot,
        command: Command.config,
        tag: 0,
      });
      const answer = this.#configReply(link, ConfigCommand.read);
      // A string this interface cannot carry is not announced on it (§5).
      if (answer.config.length > configLengthFor(link.mtu)) answer.config = new Uint8Array(0);
      link.commit(encodeConfig(frame, answer));
    }
    link.flush();
  }
}

/** READ SECTORS (EXT), IDENTIFY DEVICE and CHECK POWER MODE: what a broadcast address may run. */
function readsOnly(command: number): boolean {
  return command === AtaOp.readSectors || command === AtaOp.readSectorsExt ||
    command === AtaOp.identifyDevice || command === AtaOp.checkPowerMode;
}

/** FLUSH CACHE, or a write of a write-through store: what a failed flush makes fail (target/ata.ts). */
function refusedWhenFlushFailed(command: number, writeThrough: boolean): boolean {
  if (command === AtaOp.flushCache || command === AtaOp.flushCacheExt) return true;
  return writeThrough && (command === AtaOp.writeSectors || command === AtaOp.writeSectorsExt);
}

function startsWith(whole: Uint8Array, part: Uint8Array): boolean {
  if (part.length > whole.length) return false;
  for (let i = 0; i < part.length; i++) if (whole[i] !== part[i]) return false;
  return true;
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}
