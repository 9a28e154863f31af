/**
 * The initiator's side of the AoEx extensions (docs/extensions.md): declares,
 * per target and per path, that its ATA tags are a monotonic counter and which
 * data checksum it wants; numbers tags by that counter; appends CRCs to write
 * data and checks those of read replies. A target that answers "unrecognized
 * command" (vblade, or `aoe target --no-extensions`) or not at all is used
 * with plain AoE.
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import {
  ATA_HEADER_LENGTH,
  Capability,
  checkCrc,
  CRC_CAPABILITY,
  CRC_LENGTH,
  type CrcKind,
  decodeExtension,
  encodeExtension,
  encodeRequestHeader,
  EXTENSION_COMMAND,
  EXTENSION_LENGTH,
  ExtensionOp,
  grantedCrc,
  isError,
  isExtensionFrame,
  readMac,
} from "../wire/mod.ts";
import type { AoeDevice, TargetPath } from "./device.ts";

/** Declarations sent to a path before it is taken as not knowing the extension. */
export const DECLARE_TRIES = 3;
/** Milliseconds between unanswered declarations. */
export const DECLARE_RETRY_MS = 1000;
/** A lease is renewed after this fraction of it. */
const RENEW_FRACTION = 1 / 3;
/** CRC retries of one frame before its request fails. */
export const MAX_CRC_RETRIES = 8;
/** ATA error register: interface CRC error (the target's answer to a write whose CRC did not match). */
export const ATA_ERROR_ICRC = 0x80;

/** How the initiator uses the extensions (module parameters aoe_tags and aoe_crc). */
export interface ExtensionSettings {
  /** "counter": monotonic tags, declared; "kernel": the kernel's scheme, not declared. */
  tags: "counter" | "kernel";
  /** Checksum to ask for, or "none". */
  crc: CrcKind | "none";
}

/** The state of one path (target MAC × local interface). */
export interface PathExtension {
  state: "pending" | "active" | "unsupported";
  granted: number;
  crc?: CrcKind;
  tries: number;
  /** performance.now() of the next declaration (retry or renewal). */
  nextAt: number;
  /** performance.now() of the last declaration sent. */
  sentAt: number;
}

/** Counters the initiator keeps for the extensions. */
export interface InitiatorExtensionCounters {
  /** Declarations a target accepted on a path not already active. */
  declarations: number;
  /** Paths whose target does not know the extension. */
  unsupported: number;
  /** Read replies whose CRC did not match (retried). */
  crcReadErrors: number;
  /** Writes the target refused for a CRC mismatch (retried). */
  crcWriteErrors: number;
  /** Requests failed after MAX_CRC_RETRIES. */
  crcFailures: number;
  /** Read replies without the CRC the path agreed on: the target forgot the declaration (restarted); declared again. */
  redeclarations: number;
}

/** What a checked reply needs. */
export type ReplyVerdict = "ok" | "crc-read" | "crc-write" | "crc-missing";
/** A Query Config reply renews a declaration sent longer ago than this (a restarted target announces itself). */
const REDECLARE_MS = 1000;
/** ... and asks a path that did not know the extension again after this long. */
const RETRY_UNSUPPORTED_MS = 60_000;

/** Extension state of one initiator. */
export class InitiatorExtensions {
  /** Chosen at start: a target forgets the tag history of an earlier session of this MAC. */
  readonly session = (crypto.getRandomValues(new Uint32Array(1))[0] | 1) >>> 0;
  /** The extension counters of this initiator. */
  readonly counters: InitiatorExtensionCounters = {
    declarations: 0,
    unsupported: 0,
    crcReadErrors: 0,
    crcWriteErrors: 0,
    crcFailures: 0,
    redeclarations: 0,
  };
  #paths = new Map<TargetPath, Map<FrameLink, PathExtension>>();
  #targets = new Map<TargetPath, AoeDevice>();
  #counter = 0;

  /**
   * Makes the extension state of one initiator.
   *
   * @param settings tags and checksum
   * @param error a line for /dev/etherd/err
   */
  constructor(readonly settings: ExtensionSettings, readonly error: (line: string) => void) {}

  /** Whether anything is declared at all. */
  get declaring(): boolean {
    return this.settings.tags === "counter" || this.settings.crc !== "none";
  }

  /** The next monotonic tag (31-bit counter, bit 31 clear), skipping tags still in use. */
  nextTag(inUse: (tag: number) => boolean): number {
    do this.#counter = (this.#counter + 1) & 0x7fffffff; while (inUse(this.#counter));
    return this.#counter;
  }

  #wanted(): number {
    let bits = 0;
    if (this.settings.tags === "counter") bits |= Capability.monotonicTags | Capability.writeOrder;
    if (this.settings.crc !== "none") bits |= CRC_CAPABILITY[this.settings.crc];
    return bits;
  }

  /** A Query Config reply showed this path: declare on it unless already done. */
  pathSeen(device: AoeDevice, target: TargetPath, link: FrameLink): void {
    if (!this.declaring) return;
    this.#targets.set(target, device);
    let map = this.#paths.get(target);
    if (!map) this.#paths.set(target, map = new Map());
    const known = map.get(link);
    if (known) {
      // A restarted target announces itself with Query Config: declare again soon, so
      // it knows the path before our next frames (the same session id keeps its history).
      const since = performance.now() - known.sentAt;
      if (since < (known.state === "unsupported" ? RETRY_UNSUPPORTED_MS : REDECLARE_MS)) return;
      if (known.state === "unsupported") known.state = "pending";
      known.tries = 0;
      this.#declare(device, target, link, known);
      return;
    }
    const path: PathExtension = { state: "pending", granted: 0, tries: 0, nextAt: 0, sentAt: 0 };
    map.set(link, path);
    this.#declare(device, target, link, path);
  }

  /**
   * A reply lacked the CRC the path agreed on: the target no longer knows the
   * declaration (it restarted, or the lease lapsed). Declare again at once;
   * the frame is resent after it, so the target knows the path by then.
   */
  lost(device: AoeDevice, target: TargetPath, _link: FrameLink): void {
    const map = this.#paths.get(target);
    if (!map) return;
    this.counters.redeclarations++;
    // Every path of the target: the resend may take another one.
    for (const [link, path] of map) {
      if (path.state !== "active") continue;
      path.tries = 0;
      this.#declare(device, target, link, path);
    }
  }

  #declare(device: AoeDevice, target: TargetPath, link: FrameLink, path: PathExtension): void {
    path.tries++;
    path.sentAt = performance.now();
    path.nextAt = path.sentAt + DECLARE_RETRY_MS;
    this.#send(device, target, link, ExtensionOp.declare, this.#wanted());
  }

  #send(device: AoeDevice, target: TargetPath, link: FrameLink, op: number, bits: number): void {
    const frame = link.txSlot();
    encodeRequestHeader(frame, {
      dst: target.mac,
      src: link.mac,
      shelf: device.shelf,
      slot: device.slot,
      command: EXTENSION_COMMAND,
      tag: this.nextTag(() => false),
    });
    encodeExtension(frame, {
      op,
      leaseSeconds: 0,
      session: this.session,
      capabilities: bits,
      supported: 0,
    });
    link.commit(EXTENSION_LENGTH);
    link.flush();
  }

  /** Handles a response to the extension command (R set, command 0xF0). */
  receive(frame: Uint8Array, length: number, link: FrameLink, device?: AoeDevice): void {
    if (!device) return;
    const target = device.targetFor(readMac(frame, 6));
    const path = target ? this.#paths.get(target)?.get(link) : undefined;
    if (!target || !path) return;
    if (isError(frame) || !isExtensionFrame(frame, length)) {
      // "Unrecognized command" (vblade) or another vendor's 0xF0: plain AoE on this path.
      if (path.state !== "unsupported") this.counters.unsupported++;
      path.state = "unsupported";
      path.crc = undefined;
      path.granted = 0;
      return;
    }
    const arg = decodeExtension(frame, length);
    if (arg.op !== ExtensionOp.declare || arg.session !== this.session) return;
    if (path.state !== "active") this.counters.declarations++;
    path.state = "active";
    path.granted = arg.capabilities;
    path.crc = grantedCrc(arg.capabilities);
    path.tries = 0;
    path.nextAt = performance.now() + Math.max(1, arg.leaseSeconds) * 1000 * RENEW_FRACTION;
  }

  /** The timer: retries unanswered declarations, renews leases. */
  tick(): void {
    const now = performance.now();
    for (const [target, map] of this.#paths) {
      const device = this.#targets.get(target)!;
      for (const [link, path] of map) {
        if (path.state === "unsupported" || now < path.nextAt) continue;
        if (path.state === "pending" && path.tries >= DECLARE_TRIES) {
          path.state = "unsupported";
          this.counters.unsupported++;
          continue;
        }
        this.#declare(device, target, link, path);
      }
    }
  }

  /** Withdraws every declaration (the driver stops). */
  withdrawAll(): void {
    for (const [target, map] of this.#paths) {
      const device = this.#targets.get(target)!;
      for (const [link, path] of map) {
        if (path.state === "active") this.#send(device, target, link, ExtensionOp.withdraw, 0);
      }
    }
    this.#paths.clear();
  }

  /** Forgets the paths of a target (its device went away). */
  forgetTarget(target: TargetPath): void {
    this.#paths.delete(target);
    this.#targets.delete(target);
  }

  /** The checksum in use on a path, if any. */
  crcFor(target: TargetPath, link: FrameLink): CrcKind | undefined {
    return this.#paths.get(target)?.get(link)?.crc;
  }

  /** The state of every path of a target, for status. */
  describe(target: TargetPath): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [link, path] of this.#paths.get(target) ?? []) {
      out[link.name] = path.state === "active" ? `active:${path.granted}` : path.state;
    }
    return out;
  }

  /**
   * Checks an ATA reply to a frame sent with checksum `crc`: a write the target
   * refused with ICRC, or read data whose CRC does not match.
   */
  verify(
    crc: CrcKind | undefined,
    frame: Uint8Array,
    length: number,
    sent: { isRead: boolean; isWrite: boolean; bytes: number },
  ): ReplyVerdict {
    if (!crc) return "ok";
    if (sent.isWrite && frame[27] & 0x01 && frame[25] & ATA_ERROR_ICRC) {
      this.counters.crcWriteErrors++;
      return "crc-write";
    }
    if (sent.isRead && !(frame[27] & 0x01)) {
      const end = ATA_HEADER_LENGTH + sent.bytes;
      // Read data are whole sectors (≥ 548 bytes, never padded): a reply this short has no CRC.
      if (length < end + CRC_LENGTH) return "crc-missing";
      if (!checkCrc(crc, frame, { start: ATA_HEADER_LENGTH, end, length })) {
        this.counters.crcReadErrors++;
        return "crc-read";
      }
    }
    return "ok";
  }
}
