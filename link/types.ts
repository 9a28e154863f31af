/**
 * The one seam for frame I/O: everything above it (target, initiator) reads and
 * writes Ethernet frames through a {@link FrameLink}, whether the frames cross a
 * real interface (AF_PACKET or libpcap) or an in-memory segment in a unit test.
 *
 * @module
 */

/** Counters every link keeps. */
export interface LinkCounters {
  /** Frames received. */
  received: number;
  /** Frames sent. */
  sent: number;
  /** Frames the kernel refused or the link could not send. */
  sendErrors: number;
  /**
   * Frames for this link the kernel dropped because its receive ring or buffer
   * was full, as of the last {@link FrameLink.readDrops} (docs/frame-io.md §8).
   */
  rxDrops: number;
}

/**
 * A batch-oriented Ethernet frame link. Receive and transmit use fixed slots
 * allocated once; nothing is allocated per frame.
 */
export interface FrameLink {
  /** Interface name, e.g. "eth0". */
  readonly name: string;
  /** The interface's MAC address as a 48-bit number. */
  readonly mac: number;
  /** The interface MTU (payload bytes after the 14-byte Ethernet header). */
  readonly mtu: number;
  /** Bytes each frame slot holds. */
  readonly frameCapacity: number;
  /** Receive slots; `rx[i]` holds frame i of the last {@link receive} batch. */
  readonly rx: readonly Uint8Array[];
  /** Length of each received frame in `rx`. */
  readonly rxLength: Uint32Array;
  /** A file descriptor that polls readable when frames wait, or -1. */
  readonly pollFd: number;
  /** Counters. */
  readonly counters: LinkCounters;
  /**
   * Moves waiting frames into `rx`; returns how many. With `block` true it may
   * block the thread up to about a millisecond for the first frame (one
   * syscall instead of a poll and a receive); otherwise it never blocks.
   */
  receive(block?: boolean): number;
  /** The next free transmit slot (flushes first if every slot is taken). */
  txSlot(): Uint8Array;
  /** Queues the frame written into the last {@link txSlot}; pads it to 60 bytes. */
  commit(length: number): void;
  /** Sends every queued frame. */
  flush(): void;
  /**
   * Whether frames wait, told without a system call (a ring's status word);
   * links that cannot tell so cheaply leave it out, and nobody spins on them.
   */
  ready?(): boolean;
  /**
   * Reads the kernel's count of frames dropped for want of receive room
   * (PACKET_STATISTICS, pcap_stats) into `counters.rxDrops`; returns how many
   * were dropped since the last call. One system call: the caller reads it on
   * a timer, not per frame.
   */
  readDrops(): number;
  /** Resolves when frames may be waiting, or after `timeoutMs`. */
  wait(timeoutMs: number): Promise<void>;
  /** Releases the link. */
  close(): void;
}

/** Ethernet minimum frame length without FCS. veth does not pad (docs/frame-io.md §1). */
export const ETHERNET_MIN_FRAME = 60;

/** Frame slot size for an MTU: Ethernet header plus MTU, rounded up to 64 bytes. */
export function slotSizeFor(mtu: number): number {
  return Math.ceil((mtu + 14) / 64) * 64;
}

/** Zero-fills a frame up to the Ethernet minimum and returns its padded length. */
export function padToMinimum(frame: Uint8Array, length: number): number {
  if (length >= ETHERNET_MIN_FRAME) return length;
  frame.fill(0, length, ETHERNET_MIN_FRAME);
  return ETHERNET_MIN_FRAME;
}
