/**
 * The portable path: libpcap in immediate mode with a kernel BPF filter for the
 * AoE ethertype, capturing inbound frames only.
 *
 * @module
 */

import { cString } from "../ffi/libc.ts";
import {
  BPF_PROGRAM_SIZE,
  pcap,
  PCAP_D_IN,
  PCAP_STAT_DROP_OFFSET,
  PCAP_STAT_SIZE,
  pcapError,
  PKTHDR_CAPLEN_OFFSET,
} from "../ffi/pcap.ts";
import { AOE_ETHERTYPE } from "../wire/header.ts";
import { interfaceInfo } from "./netif.ts";
import { TransmitSlots } from "./tx_slots.ts";
import { type FrameLink, type LinkCounters, slotSizeFor } from "./types.ts";
import { pollFds, pollFdsSync, SYNC_WAIT_MS } from "./wait.ts";

/** Options for {@link PcapLink}. */
export interface PcapLinkOptions {
  /** Frames per receive batch (default 64). */
  batch?: number;
  /** libpcap's kernel buffer in bytes (default {@link PCAP_BUFFER_BYTES}). */
  bufferSize?: number;
}

/**
 * libpcap's kernel buffer (on Linux its TPACKET ring), room for a discovery
 * broadcast's answers from a thousand exports and for jumbo bursts (docs/frame-io.md §8).
 */
export const PCAP_BUFFER_BYTES = 16 << 20;

/** A libpcap link. */
export class PcapLink implements FrameLink {
  readonly name: string;
  readonly mac: number;
  readonly mtu: number;
  readonly frameCapacity: number;
  readonly rx: Uint8Array[] = [];
  readonly rxLength: Uint32Array;
  readonly pollFd: number;
  readonly counters: LinkCounters = { received: 0, sent: 0, sendErrors: 0, rxDrops: 0 };
  #handle: Deno.PointerObject | null;
  #headerOut = new BigUint64Array(1);
  #dataOut = new BigUint64Array(1);
  #tx: TransmitSlots;
  #stats = new Uint8Array(PCAP_STAT_SIZE + 4);
  #statsView = new DataView(this.#stats.buffer);
  /** pcap_stats counts from activation; what the last read saw. */
  #dropsSeen = 0;

  /** Opens the interface; throws with libpcap's message on failure. */
  constructor(name: string, options: PcapLinkOptions = {}) {
    const info = interfaceInfo(name);
    this.name = name;
    this.mac = info.mac;
    this.mtu = info.mtu;
    this.frameCapacity = slotSizeFor(info.mtu);
    const batch = options.batch ?? 64;
    const p = pcap();
    const errbuf = new Uint8Array(256);
    const handle = p.pcap_create(cString(name), errbuf);
    if (!handle) {
      throw new Error(`pcap_create ${name}: ${new TextDecoder().decode(errbuf).split("\0")[0]}`);
    }
    this.#handle = handle;
    try {
      p.pcap_set_snaplen(handle, this.frameCapacity);
      p.pcap_set_promisc(handle, 0);
      p.pcap_set_immediate_mode(handle, 1);
      p.pcap_set_buffer_size(handle, options.bufferSize ?? PCAP_BUFFER_BYTES);
      if (p.pcap_activate(handle) < 0) {
        throw new Error(`pcap_activate ${name}: ${pcapError(handle)}`);
      }
      p.pcap_setdirection(handle, PCAP_D_IN);
      const program = new Uint8Array(BPF_PROGRAM_SIZE);
      if (
        p.pcap_compile(
          handle,
          program,
          cString(`ether proto 0x${AOE_ETHERTYPE.toString(16)}`),
          1,
          0xffffffff,
        ) < 0
      ) {
        throw new Error(`pcap_compile: ${pcapError(handle)}`);
      }
      const installed = p.pcap_setfilter(handle, program);
      p.pcap_freecode(program);
      if (installed < 0) throw new Error(`pcap_setfilter: ${pcapError(handle)}`);
      if (p.pcap_setnonblock(handle, 1, errbuf) < 0) {
        throw new Error(`pcap_setnonblock: ${pcapError(handle)}`);
      }
      this.pollFd = p.pcap_get_selectable_fd(handle);
    } catch (error) {
      p.pcap_close(handle);
      this.#handle = null;
      throw error;
    }
    for (let i = 0; i < batch; i++) this.rx.push(new Uint8Array(this.frameCapacity));
    this.#tx = new TransmitSlots(batch, this.frameCapacity);
    this.rxLength = new Uint32Array(batch);
  }

  receive(block = false): number {
    const p = pcap();
    if (block) pollFdsSync([this.pollFd], SYNC_WAIT_MS);
    let n = 0;
    while (n < this.rx.length && this.#handle) {
      if (
        p.pcap_next_ex(
          this.#handle,
          new Uint8Array(this.#headerOut.buffer),
          new Uint8Array(this.#dataOut.buffer),
        ) !== 1
      ) break;
      const header = Deno.UnsafePointer.create(this.#headerOut[0])!;
      const caplen = new Deno.UnsafePointerView(header).getUint32(PKTHDR_CAPLEN_OFFSET);
      const length = Math.min(caplen, this.frameCapacity);
      Deno.UnsafePointerView.copyInto(
        Deno.UnsafePointer.create(this.#dataOut[0])!,
        this.rx[n].subarray(0, length),
      );
      this.rxLength[n++] = length;
    }
    this.counters.received += n;
    return n;
  }

  txSlot(): Uint8Array {
    if (this.#tx.full) this.flush();
    return this.#tx.next();
  }

  commit(length: number): void {
    this.#tx.commit(length);
  }

  flush(): void {
    const p = pcap();
    const tx = this.#tx;
    for (let i = 0; i < tx.count; i++) {
      if (this.#handle && p.pcap_inject(this.#handle, tx.slots[i], BigInt(tx.lengths[i])) > 0) {
        this.counters.sent++;
      } else {
        this.counters.sendErrors++;
      }
    }
    tx.clear();
  }

  readDrops(): number {
    if (!this.#handle || pcap().pcap_stats(this.#handle, this.#stats) !== 0) return 0;
    const total = this.#statsView.getUint32(PCAP_STAT_DROP_OFFSET, true);
    const n = (total - this.#dropsSeen) >>> 0;
    this.#dropsSeen = total;
    this.counters.rxDrops += n;
    return n;
  }

  async wait(timeoutMs: number): Promise<void> {
    await pollFds([this.pollFd], timeoutMs);
  }

  close(): void {
    if (this.#handle) pcap().pcap_close(this.#handle);
    this.#handle = null;
  }
}
