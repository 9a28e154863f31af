/**
 * Kernel receive drops read back over veth (docs/frame-io.md §8): a burst
 * larger than a link's receive room is dropped by the kernel, and every link
 * kind reports how many in `rxDrops` (PACKET_STATISTICS, pcap_stats).
 */
import assert from "node:assert/strict";
import { Command, encodeHeader } from "../wire/mod.ts";
import { TestNet } from "../testing/netns.ts";
import { inNetns, PacketLink, PcapLink, RingLink } from "./mod.ts";
import type { FrameLink } from "./types.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const BURST = 2000;

function drain(link: FrameLink): number {
  let n = 0;
  for (let got = link.receive(); got > 0; got = link.receive()) n += got;
  return n;
}

Deno.test(
  "links: a burst bigger than the receive room is dropped by the kernel and counted, on every kind",
  opts,
  async () => {
    const net = await TestNet.create({});
    try {
      const sender = inNetns(net.namespaces[0], () => new PacketLink("t1p0"));
      const ring = inNetns(net.namespaces[1], () => new RingLink("i0", { rxFrames: 32 }));
      const packet = inNetns(net.namespaces[1], () => new PacketLink("i0", { receiveBuffer: 1 }));
      const pcapLink = inNetns(net.namespaces[1], () => new PcapLink("i0", { bufferSize: 65536 }));
      const links = [ring, packet, pcapLink];
      try {
        assert.equal(ring.rxFrames, 32);
        for (const link of links) {
          assert.equal(
            link.readDrops(),
            0,
            `${link.constructor.name}: none yet`,
          );
        }
        // One synchronous burst: nobody reads while it arrives.
        for (let i = 0; i < BURST; i++) {
          const frame = sender.txSlot();
          encodeHeader(frame, {
            dst: ring.mac,
            src: sender.mac,
            version: 1,
            response: true,
            error: false,
            errorCode: 0,
            shelf: 1,
            slot: 1,
            command: Command.config,
            tag: i,
          });
          sender.commit(60);
        }
        sender.flush();
        assert.equal(sender.counters.sent, BURST);
        await new Promise((r) => setTimeout(r, 100));
        for (const link of links) {
          const received = drain(link);
          const dropped = link.readDrops();
          const kind = link.constructor.name;
          assert.ok(dropped > 0, `${kind}: drops seen (received ${received})`);
          assert.equal(link.counters.rxDrops, dropped, `${kind}: counted`);
          assert.equal(
            received + dropped,
            BURST,
            `${kind}: every frame received or counted dropped`,
          );
          assert.equal(link.readDrops(), 0, `${kind}: a second read adds nothing`);
        }
        assert.ok(drain(ring) === 0 && ring.counters.received <= 32);
      } finally {
        for (const link of [sender, ...links]) link.close();
      }
    } finally {
      await net.close();
    }
  },
);
