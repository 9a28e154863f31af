/**
 * The target's side of the AoEx extensions (docs/extensions.md): the
 * declarations initiators make with the vendor command 0xF0, kept per
 * initiator MAC and receiving interface (a path), with a lease; RX and WRITE
 * tag tracking for initiators that declared monotonic tags (or that the
 * command line names); CRC checks on write data and CRCs on read replies.
 * An initiator that declared nothing is never tracked and never gets a CRC.
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import {
  ALL_CAPABILITIES,
  AoeError,
  appendCrc,
  ATA_HEADER_LENGTH,
  AtaOp,
  AtaStatus,
  Capability,
  checkCrc,
  CRC_CAPABILITIES,
  CRC_CAPABILITY,
  CRC_KINDS,
  CRC_LENGTH,
  type CrcKind,
  decodeExtension,
  effectiveLba,
  encodeExtension,
  EXTENSION_LENGTH,
  ExtensionOp,
  formatMac,
  grantedCrc,
  HEADER_LENGTH,
  isExtensionFrame,
  makeResponseHeader,
  readLba,
  readMac,
  readTag,
  SECTOR_SIZE,
  setAoeError,
} from "../wire/mod.ts";
import { RxTagTracker, WriteTagTracker } from "./tag_tracking.ts";

/** Seconds a declaration holds unless renewed; the initiator renews it well before. */
export const LEASE_SECONDS = 60;
/**
 * Paths one export keeps a session for. A declaration from a new path when
 * the table is full (and no lease has lapsed) is granted nothing: spoofed
 * source MACs cannot grow the table without bound (docs/extensions.md §2).
 */
export const MAX_SESSIONS = 4096;
/** ATA error register bit ICRC: interface CRC error (ATA8-ACS), sent with ABRT. */
export const ATA_ERROR_ICRC = 0x80;

/** What the command line allows and forces. */
export interface ExtensionPolicy {
  /** Answer the extension command at all (false: "unrecognized command", as vblade). Default true. */
  enabled?: boolean;
  /** CRC kinds granted, preferred first (default: CRC-32, CRC32C, CRC8x4). */
  crc?: readonly CrcKind[];
  /** Grant WRITE tag tracking when asked (default true). */
  writeOrder?: boolean;
  /** Initiator MACs whose tags are tracked (RX) without a declaration, as AoEde's option. */
  forceRx?: readonly number[];
  /** Initiator MACs whose writes are tag-ordered (WRITE) without a declaration. */
  forceWrite?: readonly number[];
}

/** Counters of one initiator path, and summed per export. */
export interface ExtensionCounters {
  /** Declarations that started a new session (new session id or other capabilities). */
  declarations: number;
  /** Requests dropped because their tag was already answered (RX tracking). */
  duplicatesDropped: number;
  /** Writes not applied because a newer write reached the same sectors (WRITE tracking). */
  staleWritesRefused: number;
  /** Writes whose data did not match their CRC: not applied, answered with ICRC. */
  crcWriteErrors: number;
  /** Read replies sent with a CRC. */
  crcReads: number;
  /** Writes checked and applied. */
  crcWrites: number;
}

function zeroCounters(): ExtensionCounters {
  return {
    declarations: 0,
    duplicatesDropped: 0,
    staleWritesRefused: 0,
    crcWriteErrors: 0,
    crcReads: 0,
    crcWrites: 0,
  };
}

/** One initiator path's declaration and tracking state. */
export class Session {
  /** The tags already answered (RX tag tracking). */
  readonly rx: RxTagTracker = new RxTagTracker();
  /** The newest write tag per recently written sector (WRITE tag tracking). */
  readonly writes: WriteTagTracker = new WriteTagTracker();
  /** This path's counters. */
  readonly counters: ExtensionCounters = zeroCounters();
  /** Capability bits granted. */
  capabilities = 0;
  /** The initiator's session id. */
  id = 0;
  /** performance.now() after which an unrenewed declaration lapses; Infinity when forced. */
  expires = 0;
  /** The data checksum in use, if any. */
  crc: CrcKind | undefined;
  /** Declared or forced. */
  trackRx = false;
  /** Writes kept in tag order. */
  trackWrite = false;

  /**
   * Starts the state of one initiator path, with nothing declared.
   *
   * @param mac the initiator's MAC
   * @param link the interface it reaches us on
   */
  constructor(readonly mac: number, readonly link: FrameLink) {}
}

/** What {@link ExtensionTable.screenAta} decided. */
export const Screen = { pass: 0, drop: 1, replied: 2 } as const;

/** The extension state of one export. */
export class ExtensionTable {
  /** Per export: the sums over every session, past ones included. */
  readonly counters: ExtensionCounters = zeroCounters();
  /** The policy with every default filled in. */
  readonly policy: Required<ExtensionPolicy>;
  #byLink = new Map<FrameLink, Map<number, Session>>();
  #count = 0;
  #forced: Set<number>;
  #logged = 0;
  #logWindow = 0;
  /** Declarations from new paths refused because the table was full. */
  #sessionsRefused = 0;
  #lastSweep = -Infinity;

  /**
   * Makes the extension state of one export.
   *
   * @param policy options
   * @param log where diagnostics go (the target's log)
   */
  constructor(
    policy: ExtensionPolicy = {},
    readonly log: (line: string) => void = (line) => console.error(`aoe target: ${line}`),
  ) {
    this.policy = {
      enabled: policy.enabled ?? true,
      crc: policy.crc ?? [...CRC_KINDS],
      writeOrder: policy.writeOrder ?? true,
      forceRx: policy.forceRx ?? [],
      forceWrite: policy.forceWrite ?? [],
    };
    this.#forced = new Set([...this.policy.forceRx, ...this.policy.forceWrite]);
  }

  /** Whether any session may exist: the fast path skips everything when not. */
  get active(): boolean {
    return this.#count > 0 || this.#forced.size > 0;
  }

  /** The live session of `mac` on `link`, creating a forced one; undefined if none. */
  session(mac: number, link: FrameLink): Session | undefined {
    let s = this.#byLink.get(link)?.get(mac);
    if (s && s.expires < performance.now()) {
      this.#remove(s);
      s = undefined;
    }
    if (!s && this.#forced.has(mac)) {
      s = this.#add(mac, link);
      s.expires = Infinity;
      s.trackRx = this.policy.forceRx.includes(mac) || this.policy.forceWrite.includes(mac);
      s.trackWrite = this.policy.forceWrite.includes(mac);
    }
    return s;
  }

  /** Every session, for the counters. */
  sessions(): Session[] {
    const all: Session[] = [];
    // No spread: a table of many sessions would overflow the argument stack.
    for (const map of this.#byLink.values()) for (const s of map.values()) all.push(s);
    return all;
  }

  #add(mac: number, link: FrameLink): Session {
    let map = this.#byLink.get(link);
    if (!map) this.#byLink.set(link, map = new Map());
    const s = new Session(mac, link);
    map.set(mac, s);
    this.#count++;
    return s;
  }

  #remove(s: Session): void {
    if (this.#byLink.get(s.link)?.delete(s.mac)) this.#count--;
  }

  /**
   * Handles the extension command; false if the frame is not ours (no magic,
   * or extensions disabled) so the caller answers "unrecognized command".
   */
  handleCommand(
    request: Uint8Array,
    length: number,
    link: FrameLink,
    identity: { mac: number; shelf: number; slot: number },
  ): boolean {
    if (!this.policy.enabled || !isExtensionFrame(request, length)) return false;
    const arg = decodeExtension(request, length);
    const mac = readMac(request, 6);
    const reply = link.txSlot();
    reply.set(request.subarray(0, HEADER_LENGTH));
    makeResponseHeader(reply, identity);
    const supported = this.#supported();
    let granted = 0;
    let lease = 0;
    let s = arg.op === ExtensionOp.declare && arg.session !== 0
      ? this.#byLink.get(link)?.get(mac) ?? (this.#room() && this.#add(mac, link))
      : undefined;
    if (s === false) {
      // The table is full: this path stays plain AoE (granted 0, no lease).
      s = undefined;
      this.#sessionsRefused++;
      this.#rateLimitedLog(
        `${
          formatMac(mac)
        }@${link.name}: declaration refused, ${MAX_SESSIONS} paths already declared`,
      );
    } else if (s) {
      granted = this.#grant(arg.capabilities);
      if (s.id !== arg.session || s.capabilities !== granted) {
        // A new session (initiator restarted, or other capabilities): forget the tag history.
        s.rx.reset();
        s.writes.reset();
        s.counters.declarations++;
        this.counters.declarations++;
        this.#rateLimitedLog(`${formatMac(mac)}@${link.name} declares ${describe(granted)}`);
      }
      s.id = arg.session;
      s.capabilities = granted;
      s.expires = performance.now() + LEASE_SECONDS * 1000;
      s.trackRx = (granted & Capability.monotonicTags) !== 0;
      s.trackWrite = (granted & Capability.writeOrder) !== 0;
      s.crc = grantedCrc(granted);
      if (this.#forced.has(mac)) {
        s.trackRx ||= this.policy.forceRx.includes(mac) || this.policy.forceWrite.includes(mac);
        s.trackWrite ||= this.policy.forceWrite.includes(mac);
      }
      lease = LEASE_SECONDS;
    } else if (arg.op === ExtensionOp.declare) {
      // Session id 0: nothing granted.
    } else if (arg.op === ExtensionOp.query) {
      granted = this.session(mac, link)?.capabilities ?? 0;
    } else if (arg.op === ExtensionOp.withdraw) {
      const s = this.#byLink.get(link)?.get(mac);
      if (s && s.id === arg.session) {
        this.#remove(s);
        this.#rateLimitedLog(`${formatMac(mac)}@${link.name} withdraws its declaration`);
      }
    } else {
      setAoeError(reply, AoeError.badArgument);
    }
    encodeExtension(reply, {
      op: arg.op,
      leaseSeconds: lease,
      session: arg.session,
      capabilities: granted,
      supported,
    });
    link.commit(EXTENSION_LENGTH);
    return true;
  }

  /** Whether a new session fits, after dropping lapsed ones when the table is full. */
  #room(): boolean {
    if (this.#count < MAX_SESSIONS) return true;
    const now = performance.now();
    // At most one sweep a second: a flood must not cost a scan of the table per frame.
    if (now - this.#lastSweep < 1000) return false;
    this.#lastSweep = now;
    for (const map of this.#byLink.values()) {
      for (const s of map.values()) if (s.expires < now) this.#remove(s);
    }
    return this.#count < MAX_SESSIONS;
  }

  #supported(): number {
    let bits = Capability.monotonicTags;
    if (this.policy.writeOrder) bits |= Capability.writeOrder;
    for (const kind of this.policy.crc) bits |= CRC_CAPABILITY[kind];
    return bits;
  }

  #grant(asked: number): number {
    let bits = asked & ALL_CAPABILITIES & this.#supported();
    if (!(bits & Capability.monotonicTags)) bits &= ~Capability.writeOrder;
    // One checksum per path: the first of the policy's order that was asked for.
    const crcBits = bits & CRC_CAPABILITIES;
    bits &= ~CRC_CAPABILITIES;
    for (const kind of this.policy.crc) {
      const bit = CRC_CAPABILITY[kind];
      if (crcBits & bit) {
        bits |= bit;
        break;
      }
    }
    return bits;
  }

  /**
   * Screens an ATA request of a session before it is executed: RX and WRITE
   * tag tracking, and the write CRC. On a CRC mismatch the reply (already
   * holding the response header) is filled with ATA ERR and ICRC|ABRT and
   * committed. Returns a {@link Screen} value.
   */
  screenAta(s: Session, request: Uint8Array, length: number, reply: Uint8Array): number {
    const tag = readTag(request);
    if (s.trackRx && !s.rx.admit(tag)) {
      s.counters.duplicatesDropped++;
      this.counters.duplicatesDropped++;
      return Screen.drop;
    }
    const command = request[27];
    const isWrite = command === AtaOp.writeSectors || command === AtaOp.writeSectorsExt;
    if (!isWrite) return Screen.pass;
    const count = request[26];
    if (s.crc && count > 0) {
      const end = ATA_HEADER_LENGTH + count * SECTOR_SIZE;
      if (!checkCrc(s.crc, request, { start: ATA_HEADER_LENGTH, end, length })) {
        s.counters.crcWriteErrors++;
        this.counters.crcWriteErrors++;
        const lba = effectiveLba(request[24], readLba(request));
        this.#rateLimitedLog(
          `${s.crc} mismatch in write of ${count} sectors at ${lba} tag ${tag.toString(16)} from ${
            formatMac(s.mac)
          }@${s.link.name}: not applied`,
        );
        reply[25] = ATA_ERROR_ICRC | 0x04;
        reply[26] = count;
        reply[27] = AtaStatus.ready | AtaStatus.error;
        return Screen.replied;
      }
      s.counters.crcWrites++;
      this.counters.crcWrites++;
    }
    if (s.trackWrite && count > 0) {
      const lba = effectiveLba(request[24], readLba(request));
      if (!s.writes.admit(tag, lba, count)) {
        s.counters.staleWritesRefused++;
        this.counters.staleWritesRefused++;
        return Screen.drop;
      }
    }
    return Screen.pass;
  }

  /** Appends the session's CRC to a good read reply of `n` bytes; returns the new length. */
  finishAta(s: Session, request: Uint8Array, reply: Uint8Array, n: number): number {
    if (!s.crc) return n;
    const command = request[27];
    if (command !== AtaOp.readSectors && command !== AtaOp.readSectorsExt) return n;
    if (reply[27] & AtaStatus.error || n !== ATA_HEADER_LENGTH + request[26] * SECTOR_SIZE) {
      return n;
    }
    if (n + CRC_LENGTH > reply.length) return n;
    s.counters.crcReads++;
    this.counters.crcReads++;
    return appendCrc(s.crc, reply, ATA_HEADER_LENGTH, n);
  }

  #rateLimitedLog(line: string): void {
    const second = Math.floor(performance.now() / 1000);
    if (second !== this.#logWindow) {
      this.#logWindow = second;
      this.#logged = 0;
    }
    if (this.#logged++ < 10) this.log(line);
  }

  /** Counters per export and per initiator path, for stats(). */
  stats(): Record<string, unknown> {
    return {
      ...this.counters,
      sessionsRefused: this.#sessionsRefused,
      initiators: Object.fromEntries(
        this.sessions().map((s) => [
          `${formatMac(s.mac)}@${s.link.name}`,
          {
            capabilities: describe(s.capabilities),
            trackRx: s.trackRx,
            trackWrite: s.trackWrite,
            crc: s.crc ?? "none",
            ...s.counters,
          },
        ]),
      ),
    };
  }
}

/** The capability bits as words, e.g. "tags+write-order+crc32c". */
export function describe(bits: number): string {
  const words: string[] = [];
  if (bits & Capability.monotonicTags) words.push("tags");
  if (bits & Capability.writeOrder) words.push("write-order");
  for (const kind of CRC_KINDS) if (bits & CRC_CAPABILITY[kind]) words.push(kind);
  return words.length > 0 ? words.join("+") : "nothing";
}
