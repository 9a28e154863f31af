/**
 * Discovery's queries and which answers create devices (the kernel's
 * aoecmd_cfg_pkts and the admission half of aoecmd_cfg_rsp; docs/driver.md
 * §2): Query Config requests under a random tag the answers echo, answers
 * that echo it admitted at once up to aoe_maxdevs, others (announcements,
 * forgeries) held to a rate, and the MAC behind refused ones asked directly.
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import {
  BROADCAST_MAC,
  BROADCAST_SHELF,
  BROADCAST_SLOT,
  Command,
  CONFIG_HEADER_LENGTH,
  encodeRequestHeader,
  HEADER_LENGTH,
} from "../wire/mod.ts";

/**
 * New devices a burst of unsolicited Query Config answers may create at
 * once, and how many more each second adds back: spoofed answers under new
 * addresses (each costing an IDENTIFY) are held to a trickle. Refusals are
 * counted in `refusedDevices`.
 */
export const NEW_DEVICE_BURST = 64;
/** See {@link NEW_DEVICE_BURST}. */
export const NEW_DEVICES_PER_SECOND = 16;
/** How long a discovery tag stays ours after the last query sent under it, in ms. */
export const QUERY_TAG_MS = 10_000;
/** Targets asked directly at a time after their unsolicited answers were refused. */
export const ASKED_TARGETS = 16;
/**
 * The shortest time between two direct asks of one MAC, in ms. A refusal
 * inside it is not dropped: the ask goes out when the time is up, so a
 * target announcing exports one after another (N vblade processes starting)
 * sees each come up within this time of its announcement.
 */
export const ASK_INTERVAL_MS = 250;

/** Whether an answer may add a device: yes, no (aoe_maxdevs reached), or not now (the rate). */
export type Admission = "yes" | "maxdevs" | "rate";

/** A random tag for a Query Config: bit 31 clear (userland tools' tags set it), never 0. */
function randomTag(): number {
  return 1 + Math.floor(Math.random() * 0x7ffffffe);
}

/** Discovery's Query Config requests and the admission of the answers. */
export class DiscoveryQueries {
  #tag = 0;
  #previousTag = 0;
  #tagUntil = 0;
  /**
   * Targets asked directly after their unsolicited answers were refused: the
   * tag of the last ask, of the one before (its answers may still be coming
   * in), and when the last went out.
   */
  #asked = new Map<number, { tag: number; previousTag: number; at: number }>();
  /** Refused targets whose ask waits for {@link ASK_INTERVAL_MS}: MAC and link. */
  #pendingAsks = new Map<number, FrameLink>();
  /** Token bucket for unsolicited new devices. */
  #tokens = NEW_DEVICE_BURST;
  #refill = performance.now();

  /**
   * Queries with no tag yet.
   *
   * @param maxdevs the current aoe_maxdevs (read live)
   */
  constructor(readonly maxdevs: () => number) {}

  /** Broadcasts a Query Config for shelf.slot on each link, under the discovery tag. */
  broadcast(links: Iterable<FrameLink>, shelf: number, slot: number): void {
    const tag = this.#discoveryTag();
    for (const link of links) send(link, { dst: BROADCAST_MAC, shelf, slot, tag });
  }

  /**
   * The tag of our discovery queries: random (bit 31 clear), kept while
   * queries go out and for {@link QUERY_TAG_MS} after the last (the one before
   * it is still taken: a pacing target may answer late). Targets echo it in
   * their answers (vblade and this target copy the request's header), which
   * tells answers we asked for from announcements and forgeries.
   */
  #discoveryTag(): number {
    const now = performance.now();
    if (now >= this.#tagUntil) {
      this.#previousTag = this.#tag;
      this.#tag = randomTag();
    }
    this.#tagUntil = now + QUERY_TAG_MS;
    return this.#tag;
  }

  /** Whether a Query Config answer echoes a query of ours still fresh. */
  solicited(tag: number, src: number, now: number): boolean {
    if (tag !== 0 && (tag === this.#tag || tag === this.#previousTag)) {
      if (now < this.#tagUntil + QUERY_TAG_MS) return true;
    }
    const asked = this.#asked.get(src);
    return asked !== undefined && tag !== 0 &&
      (asked.tag === tag || asked.previousTag === tag) && now < asked.at + QUERY_TAG_MS;
  }

  /**
   * Whether an answer may add a device to a table of `devices`: below
   * aoe_maxdevs, and solicited (one broadcast on a large SAN brings
   * thousands) or within the rate for unsolicited ones.
   */
  admit(devices: number, solicited: boolean, now: number): Admission {
    if (devices >= this.maxdevs()) return "maxdevs";
    if (solicited) return "yes";
    this.#tokens = Math.min(
      NEW_DEVICE_BURST,
      this.#tokens + ((now - this.#refill) / 1000) * NEW_DEVICES_PER_SECOND,
    );
    this.#refill = now;
    if (this.#tokens < 1) return "rate";
    this.#tokens--;
    return "yes";
  }

  /**
   * Unsolicited answers from `src` were refused for their rate (a target
   * announcing many exports at start-up, or forgeries): ask that MAC itself,
   * under a tag of its own, so a real target's answers come in at once. At
   * most once per {@link ASK_INTERVAL_MS} per MAC (a refusal inside it asks
   * when it is up: {@link pumpAsks}), for at most {@link ASKED_TARGETS} MACs
   * at a time; returns whether a query went out.
   */
  askTarget(src: number, link: FrameLink, now: number): boolean {
    const asked = this.#asked.get(src);
    if (asked && now - asked.at < ASK_INTERVAL_MS) {
      this.#pendingAsks.set(src, link);
      return false;
    }
    if (!asked && this.#asked.size >= ASKED_TARGETS) {
      for (const [mac, entry] of this.#asked) {
        if (now - entry.at >= QUERY_TAG_MS) this.#asked.delete(mac);
      }
      if (this.#asked.size >= ASKED_TARGETS) return false;
    }
    const tag = randomTag();
    this.#asked.set(src, { tag, previousTag: asked?.tag ?? 0, at: now });
    this.#pendingAsks.delete(src);
    send(link, { dst: src, shelf: BROADCAST_SHELF, slot: BROADCAST_SLOT, tag });
    return true;
  }

  /** When a held-back ask is next due (performance.now() time; Infinity: none). */
  get nextAskAt(): number {
    let next = Infinity;
    for (const mac of this.#pendingAsks.keys()) {
      const at = (this.#asked.get(mac)?.at ?? -Infinity) + ASK_INTERVAL_MS;
      if (at < next) next = at;
    }
    return next;
  }

  /** Sends the held-back asks that are due; returns how many went out. */
  pumpAsks(now: number): number {
    let sent = 0;
    for (const [mac, link] of [...this.#pendingAsks]) {
      const asked = this.#asked.get(mac);
      if (asked && now - asked.at < ASK_INTERVAL_MS) continue;
      this.#pendingAsks.delete(mac);
      if (this.askTarget(mac, link, now)) sent++;
    }
    return sent;
  }
}

function send(link: FrameLink, query: { dst: number; shelf: number; slot: number; tag: number }) {
  const frame = link.txSlot();
  encodeRequestHeader(frame, { ...query, src: link.mac, command: Command.config });
  frame.fill(0, HEADER_LENGTH, CONFIG_HEADER_LENGTH);
  link.commit(CONFIG_HEADER_LENGTH);
  link.flush();
}
