/**
 * Linux's fast path: an AF_PACKET socket bound to the AoE ethertype, read and
 * written in batches with recvmmsg/sendmmsg (one FFI call per batch, nothing
 * allocated per frame; docs/frame-io.md §3).
 *
 * @module
 */

import { check, errno, libc, linux, SystemError } from "../ffi/libc.ts";
import { AOE_ETHERTYPE } from "../wire/header.ts";
import { type InterfaceInfo, interfaceInfo } from "./netif.ts";
import { TransmitSlots } from "./tx_slots.ts";
import { type FrameLink, type LinkCounters, slotSizeFor } from "./types.ts";
import { pollFds, SYNC_WAIT_MS } from "./wait.ts";

const MMSGHDR_SIZE = 64; // struct mmsghdr on x86_64: msghdr (56) + msg_len (4) + padding
const IOVEC_SIZE = 16;

/** Options for {@link PacketLink}. */
export interface PacketLinkOptions {
  /** Frames per batch (default 64). */
  batch?: number;
  /** Socket receive buffer in bytes (default {@link RECEIVE_BUFFER_BYTES}; root may exceed rmem_max). */
  receiveBuffer?: number;
}

/**
 * Default receive buffer of a packet socket: a discovery broadcast on a large
 * segment brings one answer per export at once (1,000 exports, 1,000 frames),
 * and a window of jumbo reads arrives as a burst; the kernel charges each frame
 * its buffer's true size (about 2.3 KiB for a 1500-byte frame, 768 bytes for
 * the smallest), so 32 MiB holds some 14,000 full frames (docs/frame-io.md §8).
 */
export const RECEIVE_BUFFER_BYTES = 32 << 20;

const stats = new Uint32Array(2); // struct tpacket_stats: tp_packets, tp_drops
const statsLength = new Uint32Array([8]);

/**
 * Frames a packet socket (plain or ringed) dropped since the last call: the
 * kernel's PACKET_STATISTICS, which it resets on every read. -1 if it cannot be read.
 */
export function packetDrops(fd: number): number {
  statsLength[0] = 8;
  const r = libc().getsockopt(
    fd,
    linux.SOL_PACKET,
    linux.PACKET_STATISTICS,
    new Uint8Array(stats.buffer),
    new Uint8Array(statsLength.buffer),
  );
  return r === 0 ? stats[1] : -1;
}

/**
 * Adds the frames the kernel dropped on packet socket `fd` since the last
 * read to `counters.rxDrops` (nothing for a closed socket); returns them.
 */
export function accumulateDrops(fd: number, counters: { rxDrops: number }): number {
  if (fd < 0) return 0;
  const n = packetDrops(fd);
  if (n <= 0) return 0;
  counters.rxDrops += n;
  return n;
}

function htons(value: number): number {
  return ((value & 0xff) << 8) | (value >> 8);
}

/** A raw AF_PACKET socket for the AoE ethertype (not yet bound). */
export function aoePacketSocket(): number {
  return check(
    libc().socket(linux.AF_PACKET, linux.SOCK_RAW | linux.SOCK_CLOEXEC, htons(AOE_ETHERTYPE)),
    "socket(AF_PACKET)",
  );
}

/** Binds a packet socket to one interface and the AoE ethertype. */
export function bindToInterface(fd: number, info: InterfaceInfo): void {
  const address = new Uint8Array(20); // struct sockaddr_ll
  const view = new DataView(address.buffer);
  view.setUint16(0, linux.AF_PACKET, true);
  view.setUint16(2, AOE_ETHERTYPE, false);
  view.setInt32(4, info.index, true);
  check(libc().bind(fd, address, address.length), `bind ${info.name}`);
}

/** Builds a batch of mmsghdr/iovec records pointing at fixed frame slots. */
class Batch {
  readonly slots: Uint8Array[] = [];
  readonly headers: Uint8Array<ArrayBuffer>;
  readonly headerWords: Uint32Array;
  readonly iovWords: Uint32Array;
  #iovecs: Uint8Array<ArrayBuffer>;

  constructor(count: number, capacity: number) {
    const memory = new Uint8Array(count * capacity);
    this.headers = new Uint8Array(count * MMSGHDR_SIZE);
    this.#iovecs = new Uint8Array(count * IOVEC_SIZE);
    const headerView = new DataView(this.headers.buffer);
    const iovView = new DataView(this.#iovecs.buffer);
    const memoryAddress = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(memory)));
    const iovAddress = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#iovecs)));
    for (let i = 0; i < count; i++) {
      this.slots.push(memory.subarray(i * capacity, (i + 1) * capacity));
      iovView.setBigUint64(i * IOVEC_SIZE, memoryAddress + BigInt(i * capacity), true);
      iovView.setBigUint64(i * IOVEC_SIZE + 8, BigInt(capacity), true);
      const h = i * MMSGHDR_SIZE;
      headerView.setBigUint64(h + 16, iovAddress + BigInt(i * IOVEC_SIZE), true); // msg_iov
      headerView.setBigUint64(h + 24, 1n, true); // msg_iovlen
    }
    this.headerWords = new Uint32Array(this.headers.buffer);
    this.iovWords = new Uint32Array(this.#iovecs.buffer);
  }
}

/** An AF_PACKET link with batched receive and send. */
export class PacketLink implements FrameLink {
  readonly name: string;
  readonly mac: number;
  readonly mtu: number;
  readonly frameCapacity: number;
  readonly rx: Uint8Array[];
  readonly rxLength: Uint32Array;
  readonly pollFd: number;
  readonly counters: LinkCounters = { received: 0, sent: 0, sendErrors: 0, rxDrops: 0 };
  #fd: number;
  #rx: Batch;
  #tx: Batch;
  #txSlots: TransmitSlots;
  #batch: number;

  /** Opens the interface; throws a SystemError naming the failing call. */
  constructor(name: string, options: PacketLinkOptions = {}) {
    const info: InterfaceInfo = interfaceInfo(name);
    this.name = name;
    this.mac = info.mac;
    this.mtu = info.mtu;
    this.#batch = options.batch ?? 64;
    this.frameCapacity = slotSizeFor(info.mtu);
    const c = libc();
    this.#fd = aoePacketSocket();
    try {
      bindToInterface(this.#fd, info);
      setIntOption(this.#fd, linux.SOL_PACKET, linux.PACKET_IGNORE_OUTGOING, 1);
      // A blocking receive waits at most SYNC_WAIT_MS (struct timeval: seconds, microseconds).
      const timeout = new BigInt64Array([0n, BigInt(SYNC_WAIT_MS * 1000)]);
      c.setsockopt(
        this.#fd,
        linux.SOL_SOCKET,
        linux.SO_RCVTIMEO,
        new Uint8Array(timeout.buffer),
        16,
      );
      const bufferBytes = options.receiveBuffer ?? RECEIVE_BUFFER_BYTES;
      if (!setIntOption(this.#fd, linux.SOL_SOCKET, linux.SO_RCVBUFFORCE, bufferBytes)) {
        setIntOption(this.#fd, linux.SOL_SOCKET, linux.SO_RCVBUF, bufferBytes);
      }
      const sendBytes = 8 << 20;
      if (!setIntOption(this.#fd, linux.SOL_SOCKET, linux.SO_SNDBUFFORCE, sendBytes)) {
        setIntOption(this.#fd, linux.SOL_SOCKET, linux.SO_SNDBUF, sendBytes);
      }
      packetDrops(this.#fd); // start counting from here
    } catch (error) {
      c.close(this.#fd);
      throw error;
    }
    this.pollFd = this.#fd;
    this.#rx = new Batch(this.#batch, this.frameCapacity);
    this.#tx = new Batch(this.#batch, this.frameCapacity);
    this.#txSlots = new TransmitSlots(this.#tx.slots);
    this.rx = this.#rx.slots;
    this.rxLength = new Uint32Array(this.#batch);
  }

  receive(block = false): number {
    const flags = block ? linux.MSG_WAITFORONE : linux.MSG_DONTWAIT;
    const n = libc().recvmmsg(this.#fd, this.#rx.headers, this.#batch, flags, null);
    if (n <= 0) {
      if (n < 0) {
        const code = errno();
        if (code !== linux.EAGAIN && code !== linux.EINTR) throw new SystemError("recvmmsg", code);
      }
      return 0;
    }
    const words = this.#rx.headerWords;
    for (let i = 0; i < n; i++) this.rxLength[i] = words[i * 16 + 14]; // msg_len at byte 56
    this.counters.received += n;
    return n;
  }

  txSlot(): Uint8Array {
    if (this.#txSlots.full) this.flush();
    return this.#txSlots.next();
  }

  commit(length: number): void {
    const i = this.#txSlots.count;
    this.#tx.iovWords[i * 4 + 2] = this.#txSlots.commit(length); // iov_len, low word
  }

  flush(): void {
    let done = 0;
    let attempts = 0;
    while (done < this.#txSlots.count) {
      const n = libc().sendmmsg(
        this.#fd,
        this.#tx.headers.subarray(done * MMSGHDR_SIZE),
        this.#txSlots.count - done,
        0,
      );
      if (n > 0) {
        done += n;
        continue;
      }
      const code = errno();
      // A full transmit queue (ENOBUFS/EAGAIN) clears quickly; retry a few times, then drop.
      if (
        (code === linux.ENOBUFS || code === linux.EAGAIN || code === linux.EINTR) && ++attempts < 64
      ) {
        continue;
      }
      this.counters.sendErrors += this.#txSlots.count - done;
      break;
    }
    this.counters.sent += done;
    this.#txSlots.clear();
  }

  readDrops(): number {
    return accumulateDrops(this.#fd, this.counters);
  }

  async wait(timeoutMs: number): Promise<void> {
    await pollFds([this.#fd], timeoutMs);
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
}

function setIntOption(fd: number, level: number, option: number, value: number): boolean {
  const buffer = new Int32Array([value]);
  return libc().setsockopt(fd, level, option, new Uint8Array(buffer.buffer), 4) === 0;
}
