/**
 * Frame links: the seam between the AoE logic and the wire.
 *
 * @module
 */

import { PacketLink } from "./packet.ts";
import { PcapLink } from "./pcap.ts";
import type { FrameLink } from "./types.ts";

export * from "./types.ts";
export { MemoryLink, MemorySegment, type Impairment } from "./memory.ts";
export { PacketLink } from "./packet.ts";
export { PcapLink } from "./pcap.ts";
export { inNetns, interfaceExists, interfaceInfo, interfaceMtu, listInterfaces } from "./netif.ts";
export { pollFds, waitForFrames } from "./wait.ts";

/** The kinds of real link. */
export type LinkKind = "packet" | "pcap";

/**
 * The default kind, chosen by bench/link_bench.ts: batched AF_PACKET answered
 * more requests per CPU second than libpcap at MTU 1500 and matched it at 9000.
 * `AOE_LINK=pcap` selects libpcap.
 */
export function defaultLinkKind(): LinkKind {
  const chosen = Deno.env.get("AOE_LINK");
  return chosen === "pcap" ? "pcap" : "packet";
}

/** Opens a real interface with the given kind of link (default {@link defaultLinkKind}). */
export function openLink(name: string, options: { kind?: LinkKind } = {}): FrameLink {
  const kind = options.kind ?? defaultLinkKind();
  return kind === "pcap" ? new PcapLink(name) : new PacketLink(name);
}
