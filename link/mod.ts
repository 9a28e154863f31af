/**
 * Frame links: the seam between the AoE logic and the wire.
 *
 * @module
 */

import { PacketLink } from "./packet.ts";
import { PcapLink } from "./pcap.ts";
import { RingLink } from "./ring.ts";
import { interfaceMtu } from "./netif.ts";
import { type FrameLink, slotSizeFor } from "./types.ts";

export * from "./types.ts";
export { HOLD, type Impairment, MemoryLink, MemorySegment } from "./memory.ts";
export { PacketLink } from "./packet.ts";
export { PcapLink } from "./pcap.ts";
export { RingLink } from "./ring.ts";
export {
  inNetns,
  interfaceExists,
  type InterfaceInfo,
  interfaceInfo,
  interfaceMtu,
  listInterfaces,
} from "./netif.ts";
export {
  blockForFrames,
  type BlockResult,
  goneLinks,
  pollFds,
  socketInterfaceGone,
  waitForFrames,
} from "./wait.ts";

/** The kinds of real link. */
export type LinkKind = "ring" | "packet" | "pcap";

/**
 * The default kind, chosen by bench/target_bench.ts, which runs the target
 * over each kind side by side: the TPACKET_V2 ring used the least CPU per
 * request and answered the most. `AOE_LINK=packet|pcap` (or a command's
 * `--link`) selects another.
 */
export function defaultLinkKind(): LinkKind {
  const chosen = Deno.env.get("AOE_LINK");
  return chosen === "pcap" || chosen === "packet" ? chosen : "ring";
}

/** Options of {@link openLink}. */
export interface OpenLinkOptions {
  /** The kind (default {@link defaultLinkKind}). */
  kind?: LinkKind;
  /**
   * Receive room in frames (default: each kind's own, docs/frame-io.md §8): the
   * ring's frame count, or that many full frames' worth of socket or libpcap
   * buffer for the packet and pcap kinds.
   */
  rxFrames?: number;
}

/** Opens a real interface with the given kind of link. */
export function openLink(name: string, options: OpenLinkOptions = {}): FrameLink {
  const kind = options.kind ?? defaultLinkKind();
  const frames = options.rxFrames;
  if (kind === "ring") return new RingLink(name, { rxFrames: frames });
  const bytes = frames === undefined ? undefined : frames * slotSizeFor(interfaceMtu(name));
  return kind === "pcap"
    ? new PcapLink(name, { bufferSize: bytes })
    : new PacketLink(name, { receiveBuffer: bytes });
}
