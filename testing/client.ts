/**
 * A small request/response AoE client for tests: builds requests with the
 * project's wire module, sends them over a link and waits for the reply with
 * the same tag.
 *
 * @module
 */

import type { FrameLink } from "../link/mod.ts";
import {
  AOE_VERSION,
  AtaFlag,
  BROADCAST_MAC,
  Command,
  encodeAta,
  encodeConfig,
  encodeRequestHeader,
  readMac,
  readTag,
} from "../wire/mod.ts";

/** A reply: a copy of its bytes. */
export type Reply = Uint8Array;

/** Sends requests and matches replies by tag. */
export class TestClient {
  #tag = 0x80000001;
  /** Frames received that answered nothing we waited for. */
  readonly unmatched: Uint8Array[] = [];

  /** @param link where to send @param dst the target's MAC (default broadcast) */
  constructor(readonly link: FrameLink, public dst: number = BROADCAST_MAC) {}

  /** The next tag (bit 31 set, as userland tools do). */
  nextTag(): number {
    this.#tag = (this.#tag + 1) >>> 0 | 0x80000000;
    return this.#tag >>> 0;
  }

  /** Writes the common header of a request into `frame`. */
  header(frame: Uint8Array, shelf: number, slot: number, command: number, tag: number): void {
    encodeRequestHeader(frame, { dst: this.dst, src: this.link.mac, shelf, slot, command, tag });
  }

  /** Sends a raw frame. */
  sendRaw(frame: Uint8Array, length: number = frame.length): void {
    const slot = this.link.txSlot();
    slot.set(frame.subarray(0, length));
    this.link.commit(length);
    this.link.flush();
  }

  /** Collects every reply carrying `tag` for `timeoutMs` (or until `count` arrived). */
  async waitTag(
    tag: number,
    options: { timeoutMs?: number; count?: number } = {},
  ): Promise<Reply[]> {
    const deadline = Date.now() + (options.timeoutMs ?? 2000);
    const want = options.count ?? 1;
    const got: Reply[] = [];
    while (got.length < want && Date.now() < deadline) {
      const n = this.link.receive();
      for (let i = 0; i < n; i++) {
        const frame = this.link.rx[i].slice(0, this.link.rxLength[i]);
        if (
          frame.length >= 24 && readTag(frame) === tag && frame[14] & 0x08 &&
          readMac(frame, 0) === this.link.mac
        ) got.push(frame);
        else this.unmatched.push(frame);
      }
      if (n === 0) await this.link.wait(Math.max(1, Math.min(50, deadline - Date.now())));
    }
    return got;
  }

  /** Sends a frame built by `build` (which gets the tag) and waits for one reply. */
  async exchange(
    build: (frame: Uint8Array, tag: number) => number,
    timeoutMs = 2000,
  ): Promise<Reply | undefined> {
    const tag = this.nextTag();
    const slot = this.link.txSlot();
    const length = build(slot, tag);
    this.link.commit(length);
    this.link.flush();
    return (await this.waitTag(tag, { timeoutMs }))[0];
  }

  /** An ATA request; `data` for writes. */
  ata(
    shelf: number,
    slot: number,
    request: {
      command: number;
      lba?: number;
      count?: number;
      aflags?: number;
      feature?: number;
      data?: Uint8Array;
    },
    timeoutMs = 2000,
  ): Promise<Reply | undefined> {
    return this.exchange((frame, tag) => {
      this.header(frame, shelf, slot, Command.ata, tag);
      let aflags = request.aflags ?? AtaFlag.extended;
      if (request.data) aflags |= AtaFlag.write;
      let n = encodeAta(frame, {
        aflags,
        feature: request.feature ?? 0,
        sectorCount: request.count ?? 0,
        command: request.command,
        lba: request.lba ?? 0,
      });
      if (request.data) {
        frame.set(request.data, n);
        n += request.data.length;
      }
      return n;
    }, timeoutMs);
  }

  /** A Query Config request. */
  config(
    shelf: number,
    slot: number,
    ccmd: number,
    value = "",
    timeoutMs = 2000,
  ): Promise<Reply | undefined> {
    return this.exchange((frame, tag) => {
      this.header(frame, shelf, slot, Command.config, tag);
      return encodeConfig(frame, {
        bufferCount: 0,
        firmwareVersion: 0,
        sectorCount: 0,
        aoeVersion: AOE_VERSION,
        ccmd,
        config: new TextEncoder().encode(value),
      });
    }, timeoutMs);
  }
}
