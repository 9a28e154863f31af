/**
 * Linux's zero-copy path: an AF_PACKET socket with TPACKET_V2 receive and
 * transmit rings mapped into this process. Received frames are read where the
 * kernel put them (no receive syscall while frames flow); replies are written
 * into the transmit ring and sent with one send() per group, the kernel taking
 * the ring pages without a copy. TPACKET_V2, not V3: V3's block timeout adds
 * about a millisecond per exchange (docs/frame-io.md §2).
 *
 * @module
 */

import { check, libc, linux, SystemError } from "../ffi/libc.ts";
import { interfaceInfo } from "./netif.ts";
import { accumulateDrops, aoePacketSocket, bindToInterface, packetDrops } from "./packet.ts";
import { type FrameLink, type LinkCounters, padToMinimum } from "./types.ts";
import { pollFds, pollFdsSync, SYNC_WAIT_MS } from "./wait.ts";

const TP_STATUS_KERNEL = 0;
const TP_STATUS_USER = 1;
const TP_STATUS_AVAILABLE = 0;
const TP_STATUS_SEND_REQUEST = 1;
const TP_STATUS_SENDING = 2;
/** struct tpacket2_hdr, aligned to 16: where transmit data start in a ring frame. */
const TX_DATA_OFFSET = 32;

/** Options for {@link RingLink}. */
export interface RingLinkOptions {
  /**
   * Receive ring frames (default: {@link RX_RING_BYTES} worth, at least 512),
   * rounded up to fill whole ring blocks.
   */
  rxFrames?: number;
  /** Transmit ring frames (default: {@link TX_RING_BYTES} worth, 32 to 256 frames). */
  txFrames?: number;
  /** Frames handed out per receive() (default 64). */
  batch?: number;
  /**
   * Send straight to the driver, past the qdisc and the packet taps
   * (PACKET_QDISC_BYPASS): `tcpdump -i eth0` then sees no reply. Default
   * false, or true when `AOE_QDISC_BYPASS=1`. On veth (no queue) the qdisc
   * path costs next to nothing; bench/target_bench.ts compares the two as
   * targets "aoe" and "aoe-bypass".
   */
  qdiscBypass?: boolean;
}

/** Whether ring links skip the qdisc and packet taps by default (`AOE_QDISC_BYPASS=1`). */
export function qdiscBypassFromEnv(): boolean {
  return Deno.env.get("AOE_QDISC_BYPASS") === "1";
}

function setOption(
  fd: number,
  level: number,
  option: number,
  bytes: Uint8Array<ArrayBuffer>,
  what: string,
): void {
  check(libc().setsockopt(fd, level, option, bytes, bytes.length), what);
}

/**
 * Bytes of transmit ring, when the frame count is not given. Small enough to
 * stay in the CPU's cache: a reply's data are read from the disk straight into
 * the ring, and a ring that cycles through megabytes makes that copy write to
 * cold memory (MTU 9000, 16 reads outstanding from bench/loadgen.ts: 7.0-7.4 µs
 * of target CPU per request with 256 frames = 4 MiB, 6.2-6.5 µs with 32 frames
 * = 512 KiB, interleaved runs). On veth the
 * kernel gives a frame back as it sends it; a real NIC holds it until the
 * transmission completes, which 32 frames cover at 10 Gb/s for about 200 µs.
 */
export const TX_RING_BYTES = 512 * 1024;

/**
 * Bytes of receive ring, when the frame count is not given: 8,192 frames at
 * MTU 1500, 1,024 at MTU 9000. A discovery broadcast brings one answer per
 * export at once (a ring of 512 frames lost all but 512 of 1,000 answers), and
 * a window of jumbo reads arrives as a burst; the kernel drops what does not
 * fit and counts it in PACKET_STATISTICS (docs/frame-io.md §8). The pages are
 * touched only as frames arrive.
 */
export const RX_RING_BYTES = 16 << 20;

/** How long txSlot() waits for the kernel to give a transmit frame back before it gives up on one reply, in milliseconds. */
const TX_FRAME_WAIT_MS = 5;

/** An AF_PACKET link over TPACKET_V2 rings. */
export class RingLink implements FrameLink {
  readonly name: string;
  readonly mac: number;
  readonly mtu: number;
  readonly frameCapacity: number;
  readonly rx: Uint8Array[];
  readonly rxLength: Uint32Array;
  readonly pollFd: number;
  readonly counters: LinkCounters = { received: 0, sent: 0, sendErrors: 0, rxDrops: 0 };
  #fd: number;
  #map: Deno.PointerObject;
  #mapSize: number;
  #words: Uint32Array;
  #halfWords: Uint16Array;
  #memory: ArrayBuffer;
  #frameSize: number;
  #rxFrames: number;
  #txFrames: number;
  #txBase: number;
  #rxNext = 0;
  /** Ring indexes of the frames handed out by the last receive(), returned to the kernel on the next. */
  #rxHeld: Int32Array;
  #rxHeldCount = 0;
  #rxViews: (Uint8Array | undefined)[];
  #rxViewOffset: Int32Array;
  #txViews: Uint8Array[];
  #txNext = 0;
  #txPending = 0;
  #empty = new Uint8Array(0);

  /** Opens the interface; throws a SystemError naming the failing call. */
  constructor(name: string, options: RingLinkOptions = {}) {
    const info = interfaceInfo(name);
    this.name = name;
    this.mac = info.mac;
    this.mtu = info.mtu;
    // Frames never straddle blocks: a power of two that holds header, padding and the frame.
    this.#frameSize = 2 ** Math.ceil(Math.log2(info.mtu + 14 + 128));
    this.frameCapacity = this.#frameSize - 128;
    const rxWanted = options.rxFrames ??
      Math.max(512, Math.floor(RX_RING_BYTES / this.#frameSize));
    this.#txFrames = options.txFrames ??
      Math.min(256, Math.max(32, Math.floor(TX_RING_BYTES / this.#frameSize)));
    // Blocks are page-aligned powers of two holding whole frames; a ring is whole blocks,
    // so a small ring (a test's) gets small blocks rather than a block it cannot fill.
    const smallest = Math.min(rxWanted, this.#txFrames) * this.#frameSize;
    const blockSize = Math.max(
      this.#frameSize,
      4096,
      Math.min(65536, 2 ** Math.floor(Math.log2(smallest))),
    );
    const perBlock = blockSize / this.#frameSize;
    this.#rxFrames = Math.ceil(rxWanted / perBlock) * perBlock;
    this.#txFrames = Math.ceil(this.#txFrames / perBlock) * perBlock;
    const c = libc();
    this.#fd = aoePacketSocket();
    try {
      setOption(
        this.#fd,
        linux.SOL_PACKET,
        linux.PACKET_VERSION,
        new Uint8Array(new Int32Array([linux.TPACKET_V2]).buffer),
        "PACKET_VERSION",
      );
      const request = (frames: number) =>
        new Uint8Array(
          new Uint32Array([
            blockSize,
            (frames * this.#frameSize) / blockSize,
            this.#frameSize,
            frames,
          ]).buffer,
        );
      setOption(
        this.#fd,
        linux.SOL_PACKET,
        linux.PACKET_RX_RING,
        request(this.#rxFrames),
        "PACKET_RX_RING",
      );
      setOption(
        this.#fd,
        linux.SOL_PACKET,
        linux.PACKET_TX_RING,
        request(this.#txFrames),
        "PACKET_TX_RING",
      );
      const one = new Uint8Array(new Int32Array([1]).buffer);
      libc().setsockopt(this.#fd, linux.SOL_PACKET, linux.PACKET_IGNORE_OUTGOING, one, 4);
      if (options.qdiscBypass ?? qdiscBypassFromEnv()) {
        libc().setsockopt(this.#fd, linux.SOL_PACKET, linux.PACKET_QDISC_BYPASS, one, 4);
      }
      this.#mapSize = (this.#rxFrames + this.#txFrames) * this.#frameSize;
      const map = c.mmap(
        null,
        BigInt(this.#mapSize),
        linux.PROT_READ | linux.PROT_WRITE,
        linux.MAP_SHARED,
        this.#fd,
        0n,
      );
      if (!map || Deno.UnsafePointer.value(map) === 0xffffffffffffffffn) {
        throw new SystemError("mmap packet ring");
      }
      this.#map = map;
      bindToInterface(this.#fd, info);
      packetDrops(this.#fd); // start counting from here
    } catch (error) {
      c.close(this.#fd);
      throw error;
    }
    this.#memory = Deno.UnsafePointerView.getArrayBuffer(this.#map, this.#mapSize);
    this.#words = new Uint32Array(this.#memory);
    this.#halfWords = new Uint16Array(this.#memory);
    this.#txBase = this.#rxFrames * this.#frameSize;
    const batch = options.batch ?? 64;
    this.rx = new Array(batch);
    this.rxLength = new Uint32Array(batch);
    this.#rxHeld = new Int32Array(batch);
    this.#rxViews = new Array(this.#rxFrames);
    this.#rxViewOffset = new Int32Array(this.#rxFrames);
    this.#txViews = [];
    for (let i = 0; i < this.#txFrames; i++) {
      const base = this.#txBase + i * this.#frameSize + TX_DATA_OFFSET;
      this.#txViews.push(new Uint8Array(this.#memory, base, this.#frameSize - TX_DATA_OFFSET));
    }
    this.pollFd = this.#fd;
  }

  receive(block = false): number {
    // Give back the frames handed out last time.
    for (let i = 0; i < this.#rxHeldCount; i++) {
      this.#words[(this.#rxHeld[i] * this.#frameSize) >> 2] = TP_STATUS_KERNEL;
    }
    this.#rxHeldCount = 0;
    if (block && !this.ready()) {
      pollFdsSync([this.#fd], SYNC_WAIT_MS);
    }
    let n = 0;
    // At most half the ring: the frames handed out stay the caller's until the next receive(),
    // and the kernel needs free frames meanwhile (a batch of the whole ring would also wrap
    // onto its own frames).
    const limit = Math.min(this.rx.length, Math.max(1, this.#rxFrames >> 1));
    while (n < limit) {
      const index = this.#rxNext;
      const base = index * this.#frameSize;
      if ((this.#words[base >> 2] & TP_STATUS_USER) === 0) break;
      const snaplen = this.#words[(base + 8) >> 2];
      const macOffset = this.#halfWords[(base + 12) >> 1];
      let view = this.#rxViews[index];
      if (view === undefined || this.#rxViewOffset[index] !== macOffset) {
        view = new Uint8Array(this.#memory, base + macOffset, this.#frameSize - macOffset);
        this.#rxViews[index] = view;
        this.#rxViewOffset[index] = macOffset;
      }
      this.rx[n] = view;
      this.rxLength[n] = snaplen;
      this.#rxHeld[n] = index;
      n++;
      this.#rxNext = index + 1 === this.#rxFrames ? 0 : index + 1;
    }
    this.#rxHeldCount = n;
    this.counters.received += n;
    return n;
  }

  ready(): boolean {
    return (this.#words[(this.#rxNext * this.#frameSize) >> 2] & TP_STATUS_USER) !== 0;
  }

  txSlot(): Uint8Array {
    const base = this.#txBase + this.#txNext * this.#frameSize;
    let until = 0;
    // The kernel returns a frame when its skb is freed; wait briefly, kicking pending sends.
    while (this.#words[base >> 2] !== TP_STATUS_AVAILABLE) {
      const status = this.#words[base >> 2];
      if (status !== TP_STATUS_SEND_REQUEST && status !== TP_STATUS_SENDING) {
        this.#words[base >> 2] = TP_STATUS_AVAILABLE; // TP_STATUS_WRONG_FORMAT: drop it
        this.counters.sendErrors++;
        break;
      }
      if (until === 0) {
        this.flush();
        until = performance.now() + TX_FRAME_WAIT_MS;
      } else if (performance.now() > until) {
        // Still busy: reuse no frame the kernel owns; hand out a scratch buffer (counted as lost).
        this.counters.sendErrors++;
        return new Uint8Array(this.frameCapacity);
      }
    }
    return this.#txViews[this.#txNext];
  }

  commit(length: number): void {
    const base = this.#txBase + this.#txNext * this.#frameSize;
    if (this.#words[base >> 2] !== TP_STATUS_AVAILABLE) return; // the scratch-buffer case
    this.#words[(base + 4) >> 2] = padToMinimum(this.#txViews[this.#txNext], length); // tp_len
    this.#words[base >> 2] = TP_STATUS_SEND_REQUEST;
    this.#txNext = this.#txNext + 1 === this.#txFrames ? 0 : this.#txNext + 1;
    this.#txPending++;
  }

  flush(): void {
    if (this.#txPending === 0) return;
    const n = Number(libc().send(this.#fd, this.#empty, 0n, linux.MSG_DONTWAIT));
    if (n >= 0) this.counters.sent += this.#txPending;
    else this.counters.sendErrors += this.#txPending;
    this.#txPending = 0;
  }

  /** Receive ring frames (rounded up to whole blocks). */
  get rxFrames(): number {
    return this.#rxFrames;
  }

  readDrops(): number {
    return accumulateDrops(this.#fd, this.counters);
  }

  async wait(timeoutMs: number): Promise<void> {
    if (this.ready()) return;
    await pollFds([this.#fd], timeoutMs);
  }

  close(): void {
    if (this.#fd < 0) return;
    libc().munmap(this.#map, BigInt(this.#mapSize));
    libc().close(this.#fd);
    this.#fd = -1;
  }
}
