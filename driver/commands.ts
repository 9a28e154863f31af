/**
 * AoE commands and retransmission (the counterpart of the kernel's aoecmd.c):
 * discovery, Query Config and ATA responses, IDENTIFY, block I/O cut into
 * frames, windows per target, adaptive retransmission, taint and probes,
 * device down after aoe_deadsecs. The receive demux that hands responses in
 * is `Driver.receive` (driver/driver.ts, aoenet.c); the request queues are
 * driver/requests.ts, device life driver/device_life.ts (docs/driver.md).
 *
 * @module
 */

import type { FrameLink } from "../link/types.ts";
import {
  appendCrc,
  ATA_FAILURE_MASK,
  ATA_HEADER_LENGTH,
  AtaFlag,
  AtaOp,
  BROADCAST_SHELF,
  BROADCAST_SLOT,
  Command,
  CONFIG_HEADER_LENGTH,
  type CrcKind,
  decodeIdentify,
  encodeAta,
  encodeRequestHeader,
  formatMac,
  IDENTIFY_LENGTH,
  readAtaStatus,
  readBufferCount,
  readConfigSectorCount,
  readDestination,
  readFirmwareVersion,
  readShelf,
  readSlot,
  readSource,
  readTag,
  SECTOR_SIZE,
  sectorsPerFrame,
} from "../wire/mod.ts";
import {
  type AoeDevice,
  DEFAULT_PAYLOAD,
  DeviceTable,
  RTTAVG_INIT,
  RTTDEV_INIT,
  type TargetInterface,
  TargetPath,
} from "./device.ts";
import { DeviceCounterTable } from "./device_counters.ts";
import { FrameTable } from "./frames.ts";
import { rto, rttSample, scorn, shrinkWindow } from "./timing.ts";

import * as deviceLife from "./device_life.ts";
import { DiscoveryQueries } from "./discovery.ts";
import { DiscoveryRecovery } from "./recovery.ts";
import { InitiatorExtensions, MAX_CRC_RETRIES } from "./extensions.ts";
import { DEFAULT_PARAMS, type DriverParams } from "./params.ts";
import { errorMessage } from "../util/errors.ts";
import {
  addressableSectors,
  type BlockRequest,
  type QueuedRequest,
  RequestQueues,
} from "./requests.ts";

export { addressableSectors, type BlockRequest, LBA48_MAX_SECTORS } from "./requests.ts";

/** How old an unanswered IDENTIFY must be before a recovery round sends it again, in ms. */
export const IDENTIFY_RESEND_MS = 50;

/** Seconds a frame may wait on one target before the target is scorned (HARD_SCORN_SECS). */
export const HARD_SCORN_SECS = 10;
/** The timer tick (HZ/10). */
export const TICK_MS = 100;
/** Discovery every 60 s. */
export const DISCOVERY_INTERVAL_MS = 60_000;
/** Jiffies per second of the emulated kernel (Debian's CONFIG_HZ=250). */
export const HZ = 250;
/**
 * Target paths (source MACs) one device may have. The kernel grows its
 * table without bound; here answers from more MACs than this for one
 * shelf.slot (spoofed, or a misconfiguration) are refused and counted in
 * `refusedPaths`, so they cannot pull I/O onto paths that do not exist.
 */
export const MAX_TARGET_PATHS = 16;
/** The jiffies counter starts 300 s before wrapping, as the kernel's INITIAL_JIFFIES. */
const INITIAL_JIFFIES = 0x100000000 - 300 * HZ;

/** One outstanding AoE ATA frame. */
interface Frame {
  tag: number;
  device: AoeDevice;
  target: TargetPath;
  ifc: TargetInterface;
  request?: QueuedRequest;
  command: number;
  lba: number;
  sectors: number;
  /** Byte offset of this frame's data in the request's buffer. */
  dataOffset: number;
  probe: boolean;
  /** performance.now() when last sent. */
  sentAt: number;
  /** µs waited on the current target, and in all. */
  waited: number;
  waitedTotal: number;
  /** The checksum sent with (write) or expected in the reply to (read) this frame. */
  crc?: CrcKind;
  crcRetries?: number;
}

/** Counters for the administrator and the tests. */
export interface InitiatorCounters {
  /** Frames received on every link. */
  received: number;
  /** Shorter than a header or than its command's argument, or not AoE. */
  malformed: number;
  /** Requests (R clear) from other initiators, or tags with bit 31 (userland tools). */
  ignored: number;
  /** Frames on an interface outside aoe_iflist. */
  filtered: number;
  /** E-flagged responses. */
  errorResponses: number;
  /** Responses with no matching frame, or from the wrong MAC. */
  unexpected: number;
  /** ATA responses for a shelf.slot the driver does not know. */
  unknownDevice: number;
  /** Frames sent again after a timeout. */
  retransmits: number;
  /** Responses whose ATA status reported an error. */
  ataErrors: number;
  /** Query Config answers for a new address refused: the table was full or new devices came too fast. */
  refusedDevices: number;
  /** Query Config answers from a new MAC for a device that already has {@link MAX_TARGET_PATHS}. */
  refusedPaths: number;
  /** Frames the kernel dropped on every link for want of receive room (each link's `rxDrops`). */
  rxDrops: number;
}

/** Hooks into the rest of the driver. */
export interface InitiatorHooks {
  /** A line for /dev/etherd/err (the kernel's aoechr_error). */
  error(line: string): void;
  /** A kernel-log line (dmesg). */
  log(line: string): void;
  /** A device's visible attributes changed. */
  changed(device: AoeDevice): void;
}

/** The driver's command engine, independent of where frames come from. */
export class Initiator {
  /** The devices discovered, by shelf.slot. */
  readonly devices: DeviceTable;
  /** Counters for the administrator and the tests. */
  readonly counters: InitiatorCounters = {
    received: 0,
    malformed: 0,
    ignored: 0,
    filtered: 0,
    errorResponses: 0,
    unexpected: 0,
    unknownDevice: 0,
    retransmits: 0,
    ataErrors: 0,
    refusedDevices: 0,
    refusedPaths: 0,
    rxDrops: 0,
  };
  /** The links frames may use (aoe_iflist applied by the caller). */
  links: FrameLink[] = [];
  /** Active frames by tag and per device, retransmit queues, probes (driver/frames.ts). */
  #frames = new FrameTable<Frame>();
  #started = performance.now();
  #identifyPending = new Set<AoeDevice>();
  /** Discovery's queries and the admission of their answers (driver/discovery.ts). */
  readonly queries: DiscoveryQueries = new DiscoveryQueries(() => this.params.maxdevs);
  /** Declarations, monotonic tags and CRCs (docs/extensions.md). */
  readonly extensions: InitiatorExtensions;
  /** Per device: requests, bytes, retransmissions, errors, outstanding (`aoe status --counters`). */
  readonly deviceCounters = new DeviceCounterTable();
  /** Re-queries after a discovery whose answers the kernel dropped (driver/recovery.ts). */
  readonly recovery: DiscoveryRecovery;
  /** What device life (driver/device_life.ts) reaches of the engine's state. */
  #life: deviceLife.DeviceLifeEngine;
  /** The per-device request queues and the completion of their requests (driver/requests.ts). */
  readonly requests: RequestQueues = new RequestQueues({
    service: (device) => this.service(device),
    flushLinks: () => this.#flushLinks(),
  }, this.deviceCounters);

  /**
   * An engine with no links yet; set {@link links} before discovering.
   *
   * @param params module parameters (read live)
   * @param hooks outputs
   */
  constructor(readonly params: DriverParams, readonly hooks: InitiatorHooks) {
    this.devices = new DeviceTable(params.dyndevs);
    this.extensions = new InitiatorExtensions(
      { tags: params.tags ?? "counter", crc: params.crc ?? DEFAULT_PARAMS.crc },
      (line) => hooks.error(line),
    );
    this.recovery = new DiscoveryRecovery({
      query: (shelf, slot) => this.#query(shelf, slot),
      identifyPending: (max) => this.#resendIdentifies(max),
      log: (line) => hooks.log(line),
      knownSlots: () => this.devices.list().map((d) => d.slot),
      discover: () => this.discover(),
    });
    this.#life = {
      devices: this.devices,
      requests: this.requests,
      clearFrames: (device) => this.#frames.clear(device),
      awaitIdentify: (device, awaiting) => {
        if (awaiting) this.#identifyPending.add(device);
        else this.#identifyPending.delete(device);
      },
      discover: (shelf, slot) => this.discover(shelf, slot),
      identify: (device) => this.#identify(device),
      changed: (device) => this.hooks.changed(device),
    };
  }

  /** The emulated jiffies counter. */
  jiffies(): number {
    return (INITIAL_JIFFIES + Math.floor(((performance.now() - this.#started) * HZ) / 1000)) %
      0x100000000;
  }

  /** Whether frames on `name` are allowed by aoe_iflist (empty: all). */
  allowed(name: string): boolean {
    return this.params.iflist.length === 0 || this.params.iflist.includes(name);
  }

  // ---- discovery ----------------------------------------------------------

  /**
   * Broadcasts Query Config for shelf.slot (default: all) on every allowed
   * link; a full discovery opens a window in which dropped frames start the
   * recovery (driver/recovery.ts).
   */
  discover(shelf = BROADCAST_SHELF, slot = BROADCAST_SLOT): void {
    if (shelf === BROADCAST_SHELF && slot === BROADCAST_SLOT) {
      this.recovery.broadcast(performance.now());
    }
    this.#query(shelf, slot);
  }

  /** Sends the recovery's queries that are due; the driver's loop calls it every turn. */
  pump(): void {
    const now = performance.now();
    if (now >= this.recovery.nextAt) this.recovery.pump(now);
    if (now >= this.queries.nextAskAt && this.queries.pumpAsks(now) > 0) this.recovery.extend(now);
  }

  /** When {@link pump} next has work (performance.now() time; Infinity: none). */
  get nextPumpAt(): number {
    return Math.min(this.recovery.nextAt, this.queries.nextAskAt);
  }

  #query(shelf: number, slot: number): void {
    this.queries.broadcast(this.links.filter((link) => this.allowed(link.name)), shelf, slot);
  }

  // ---- receive ------------------------------------------------------------

  // ---- responses (the receive demux, driver/driver.ts, hands them over) ----

  /** A Query Config response: adds or updates the device and its target, then IDENTIFY (aoecmd_cfg_rsp). */
  configResponse(frame: Uint8Array, length: number, link: FrameLink): void {
    const shelf = readShelf(frame);
    const slot = readSlot(frame);
    if (length < CONFIG_HEADER_LENGTH) {
      this.counters.malformed++;
      return;
    }
    if (shelf === 0x0fff) {
      this.hooks.log("aoe: Warning: shelf address is all ones.  Check shelf dip switches.");
      return;
    }
    if (shelf === BROADCAST_SHELF) {
      this.hooks.log(`aoe: e${shelf}.${slot}: broadcast shelf number invalid`);
      return;
    }
    if (slot === BROADCAST_SLOT) {
      this.hooks.log(`aoe: e${shelf}.${slot}: broadcast slot number invalid`);
      return;
    }
    const bufferCount = Math.min(readBufferCount(frame), this.params.maxout);
    const src = readSource(frame);
    if (!this.devices.get(shelf, slot)) {
      const now = performance.now();
      const solicited = this.queries.solicited(readTag(frame), src, now);
      const verdict = this.queries.admit(this.devices.devices.size, solicited, now);
      if (verdict !== "yes") {
        if (this.counters.refusedDevices++ === 0) {
          this.hooks.log(
            `aoe: e${shelf}.${slot}: not added (aoe_maxdevs=${this.params.maxdevs} or too many new devices at once)`,
          );
        }
        if (verdict === "rate" && this.queries.askTarget(src, link, now)) {
          this.recovery.extend(now);
        }
        return;
      }
    }
    const device = this.devices.getOrCreate(shelf, slot);
    if (!device) {
      this.hooks.log(`aoe: e${shelf}.${slot}: AoE minor address too large for aoe_dyndevs=0`);
      return;
    }
    let target = device.targetFor(src);
    if (target) {
      target.nframes = bufferCount;
      if (bufferCount < target.maxout) target.resetWindow();
    } else if (device.targets.length >= MAX_TARGET_PATHS) {
      if (this.counters.refusedPaths++ === 0) {
        this.hooks.log(
          `aoe: ${device.name}: a path from ${
            formatMac(src)
          } not added (already ${MAX_TARGET_PATHS} paths)`,
        );
      }
      return;
    } else {
      target = new TargetPath(src, bufferCount);
      device.targets.push(target);
    }
    let sectors = sectorsPerFrame(link.mtu);
    if (sectors > readConfigSectorCount(frame)) sectors = readConfigSectorCount(frame);
    const payload = sectors ? sectors * SECTOR_SIZE : DEFAULT_PAYLOAD;
    if (!target.setInterface(link, payload)) {
      this.hooks.log("aoe: device setifbcnt failure; too many interfaces.");
    }
    this.extensions.pathSeen(device, target, link);
    if (device.updatePayload()) {
      this.hooks.log(`aoe: ${device.name}: setting ${device.payload} byte data frames`);
    }
    // Size and firmware change only while nobody has the device open (revalidate excepted).
    if (device.openCount === 0) {
      device.firmwareVersion = readFirmwareVersion(frame);
      this.#identify(device, target);
    }
    this.hooks.changed(device);
  }

  /** An ATA response: matched to its frame by tag and completed (aoecmd_ata_rsp). */
  ataResponse(frame: Uint8Array, length: number, link: FrameLink): void {
    const shelf = readShelf(frame);
    const slot = readSlot(frame);
    const tag = readTag(frame);
    const device = this.devices.get(shelf, slot);
    if (!device) {
      this.counters.unknownDevice++;
      this.hooks.error(`aoecmd_ata_rsp: ata response for unknown device ${shelf}.${slot}`);
      return;
    }
    if (length < ATA_HEADER_LENGTH) {
      this.counters.malformed++;
      return;
    }
    const src = readSource(frame);
    let f = this.#frames.get(tag);
    if (f && (f.device !== device || f.target.mac !== src)) f = undefined; // forged or misdirected
    const now = performance.now();
    if (f) {
      this.#frames.remove(f);
      rttSample(device, f.target, (now - f.sentAt) * 1000);
      f.target.nout--;
    } else {
      const deferred = this.#frames.takeDeferred(device, tag);
      if (deferred) {
        rttSample(device, undefined, (now - deferred.sentAt) * 1000);
        f = deferred;
      } else {
        this.counters.unexpected++;
        this.hooks.error(
          `${"unexpected rsp".padStart(15)} e${shelf}.${slot}    tag=${hex8(tag)}@${
            hex8(this.jiffies())
          } s=${formatMac(src)} d=${formatMac(readDestination(frame))}`,
        );
        return;
      }
    }
    this.#complete(f, frame, length, link);
    this.service(device);
  }

  /** Retransmit timeout in µs (rto, driver/timing.ts). */
  rto(device: AoeDevice): number {
    return rto(device);
  }

  /** A response for frame `f` (ktiocomplete). */
  #complete(f: Frame, frame: Uint8Array, length: number, link: FrameLink): void {
    const device = f.device;
    const request = f.request;
    const status = readAtaStatus(frame);
    if (!f.probe && f.crc && this.#crcRetry(f, frame, length, link)) return;
    if (!f.probe) {
      if (status & ATA_FAILURE_MASK) {
        this.counters.ataErrors++;
        this.deviceCounters.of(device).ataErrors++;
        this.hooks.log(
          `aoe: ata error cmd=${hex2(f.command)}h stat=${hex2(status)}h from ${device.name}`,
        );
        if (request) request.failed = `ATA error status 0x${hex2(status)} from ${device.name}`;
      } else {
        switch (f.command) {
          case AtaOp.readSectors:
          case AtaOp.readSectorsExt: {
            const need = f.sectors * SECTOR_SIZE;
            if (length - ATA_HEADER_LENGTH < need) {
              this.hooks.log(
                `aoe: runt data size in read from ${device.name}.  skb->len=${
                  length - ATA_HEADER_LENGTH
                } need=${need}`,
              );
              if (request) request.failed = "runt read";
              break;
            }
            request?.data?.set(
              frame.subarray(ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + need),
              f.dataOffset,
            );
            const ifc = f.target.interfaceFor(link);
            if (ifc) ifc.lost = 0;
            f.target.readCount++;
            break;
          }
          case AtaOp.writeSectors:
          case AtaOp.writeSectorsExt: {
            const ifc = f.target.interfaceFor(link);
            if (ifc) ifc.lost = 0;
            f.target.writeCount++;
            break;
          }
          case AtaOp.identifyDevice:
            this.#identifyDone(device, f.target, frame, length);
            break;
          default:
            break; // FLUSH CACHE, DATA SET MANAGEMENT: status alone tells
        }
      }
    }
    if (f.target.taint > 0 && --f.target.taint > 0 && !this.#hasProbe(device, f.target)) {
      if (this.#untainted(device) > 0) this.#probe(device, f.target);
    }
    if (request) {
      request.framesOut--;
      this.requests.finish(device, request);
    }
  }

  /** A CRC mismatch on a frame's write data or read reply: resend it (docs/extensions.md §4). */
  #crcRetry(f: Frame, frame: Uint8Array, length: number, link: FrameLink): boolean {
    const isRead = f.command === AtaOp.readSectors || f.command === AtaOp.readSectorsExt;
    const isWrite = f.command === AtaOp.writeSectors || f.command === AtaOp.writeSectorsExt;
    const bytes = f.sectors * SECTOR_SIZE;
    const verdict = this.extensions.verify(f.crc, frame, length, { isRead, isWrite, bytes });
    if (verdict === "ok") return false;
    const dc = this.deviceCounters.of(f.device);
    if (verdict === "crc-read") dc.crcReadErrors++;
    else if (verdict === "crc-write") dc.crcWriteErrors++;
    else this.extensions.lost(f.device, f.target, link);
    f.crcRetries = (f.crcRetries ?? 0) + 1;
    this.hooks.error(
      `${
        (verdict === "crc-missing" ? "crc missing" : "crc mismatch").padStart(15)
      } ${f.device.name} ${isRead ? "read" : "write"} tag=${
        hex8(f.tag)
      } lba=${f.lba} n=${f.sectors} ${f.crc} s=${
        formatMac(readSource(frame))
      }@${link.name} try=${f.crcRetries}`,
    );
    if (f.crcRetries > MAX_CRC_RETRIES) {
      this.extensions.counters.crcFailures++;
      if (f.request) f.request.failed = `${f.device.name}: ${f.crc} mismatch persists`;
      if (f.request) {
        f.request.framesOut--;
        this.requests.finish(f.device, f.request);
      }
      return true;
    }
    this.#frames.defer(f);
    this.#rexmitDeferred(f.device);
    return true;
  }

  /** Whether a probe is out on the target, or waits to be sent to it again. */
  #hasProbe(device: AoeDevice, target: TargetPath): boolean {
    if (this.#frames.probes(target) > 0) return true;
    for (const f of this.#frames.deferred(device) ?? []) {
      if (f.probe && f.target === target) return true;
    }
    return false;
  }

  #identifyDone(device: AoeDevice, target: TargetPath, frame: Uint8Array, length: number): void {
    this.#identifyPending.delete(device);
    if (length - ATA_HEADER_LENGTH < IDENTIFY_LENGTH) {
      this.hooks.log(
        `aoe: runt data size in ataid from ${device.name}.  skb->len=${
          length - ATA_HEADER_LENGTH
        } need=512`,
      );
      return;
    }
    const raw = frame.slice(ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + IDENTIFY_LENGTH);
    const info = decodeIdentify(raw);
    // A claim beyond what the device's LBA field carries would alias or fail on the wire.
    const limit = addressableSectors(info.lba48);
    if (info.sectors > limit) {
      this.hooks.log(
        `aoe: ${device.name} claims ${info.sectors} sectors; using the ${limit} that ${
          info.lba48 ? "LBA48" : "LBA28"
        } addresses`,
      );
      info.sectors = limit;
    }
    if (device.identity?.sectors !== info.sectors) {
      this.hooks.log(
        `aoe: ${formatMac(target.mac)} ${device.name} v${
          device.firmwareVersion.toString(16).padStart(4, "0")
        } has ${info.sectors} sectors`,
      );
    }
    device.identity = { ...info, raw };
    device.visible = true;
    device.up = true;
    this.hooks.changed(device);
  }

  // ---- sending ------------------------------------------------------------

  /** The next tag for a device: 15-bit counter and the jiffies' low 16 bits; bit 31 clear (newtag). */
  #newTag(device: AoeDevice): number {
    if (this.params.tags !== "kernel") return this.extensions.nextTag((t) => this.#frames.has(t));
    device.lastTag = (device.lastTag + 1) & 0x7fff;
    let tag = (device.lastTag << 16 | (this.jiffies() & 0xffff)) >>> 0;
    while (this.#frames.has(tag)) tag = (tag + 1) >>> 0; // never two frames under one tag
    return tag;
  }

  /** Writes and sends frame `f` on its interface. */
  #transmit(f: Frame): void {
    const link = f.ifc.link;
    const out = link.txSlot();
    encodeRequestHeader(out, {
      dst: f.target.mac,
      src: link.mac,
      shelf: f.device.shelf,
      slot: f.device.slot,
      command: Command.ata,
      tag: f.tag,
    });
    const isWrite = f.command === AtaOp.writeSectors || f.command === AtaOp.writeSectorsExt ||
      f.command === AtaOp.dataSetManagement;
    const extended = f.command === AtaOp.readSectorsExt || f.command === AtaOp.writeSectorsExt;
    let lba = f.lba;
    if (f.command === AtaOp.readSectors || f.command === AtaOp.writeSectors) {
      lba = (f.lba & 0x0fffffff) + 0xe0000000; // LBA28: device register in lba3 (docs/protocol.md §3)
    } else if (f.command === AtaOp.identifyDevice) {
      lba = 0xa0000000;
    }
    encodeAta(out, {
      aflags: (extended ? AtaFlag.extended : 0) | (isWrite ? AtaFlag.write : 0),
      feature: f.command === AtaOp.dataSetManagement ? 1 : 0,
      sectorCount: f.command === AtaOp.identifyDevice ? 1 : f.sectors,
      command: f.command,
      lba,
    });
    let length = ATA_HEADER_LENGTH;
    f.crc = f.probe ? undefined : this.extensions.crcFor(f.target, link);
    if (isWrite && f.request?.data) {
      const bytes = f.sectors * SECTOR_SIZE;
      out.set(f.request.data.subarray(f.dataOffset, f.dataOffset + bytes), ATA_HEADER_LENGTH);
      length += bytes;
      if (f.crc && f.command !== AtaOp.dataSetManagement) {
        length = appendCrc(f.crc, out, ATA_HEADER_LENGTH, length);
      }
    } else if (f.probe) {
      // Probes carry a full payload of zeros to test full-size frames (aoecmd.c probe()).
      const bytes = f.sectors * SECTOR_SIZE;
      out.fill(0, ATA_HEADER_LENGTH, ATA_HEADER_LENGTH + bytes);
      length += bytes;
    }
    f.sentAt = performance.now();
    link.commit(length);
  }

  #newFrame(
    device: AoeDevice,
    target: TargetPath,
    ifc: TargetInterface,
    fields: Partial<Frame> & { command: number },
  ): Frame {
    const f: Frame = {
      tag: this.#newTag(device),
      device,
      target,
      ifc,
      lba: 0,
      sectors: 0,
      dataOffset: 0,
      probe: false,
      sentAt: 0,
      waited: 0,
      waitedTotal: 0,
      ...fields,
    };
    this.#frames.add(f);
    target.nout++;
    let out = 0;
    for (const t of device.targets) out += t.nout;
    this.deviceCounters.outstanding(device, out);
    return f;
  }

  /** Sends IDENTIFY to a target of the device and resets its RTT estimates (aoecmd_ata_id). */
  #identify(device: AoeDevice, target = device.targets[0]): void {
    const ifc = target?.nextInterface();
    if (!target || !ifc) return;
    // One IDENTIFY at a time per device.
    for (const f of this.#frames.active(device)) if (f.command === AtaOp.identifyDevice) return;
    this.#identifyPending.add(device);
    device.rttavg = RTTAVG_INIT;
    device.rttdev = RTTDEV_INIT;
    const f = this.#newFrame(device, target, ifc, { command: AtaOp.identifyDevice, sectors: 1 });
    this.#transmit(f);
    ifc.link.flush();
  }

  /**
   * Resends the IDENTIFY of up to `max` devices waiting for one whose frame
   * went out more than {@link IDENTIFY_RESEND_MS} ago (its reply may be among
   * the frames dropped); returns how many were sent.
   */
  #resendIdentifies(max: number): number {
    const now = performance.now();
    let sent = 0;
    for (const device of this.#identifyPending) {
      if (sent >= max) break;
      if (device.targets.length === 0) continue;
      let waiting: Frame | undefined;
      for (const f of this.#frames.active(device)) {
        if (f.command === AtaOp.identifyDevice) waiting = f;
      }
      if (!waiting) {
        if (this.#frames.deferred(device)?.length) continue; // the timer resends it
        this.#identify(device);
        sent++;
        continue;
      }
      if (now - waiting.sentAt < IDENTIFY_RESEND_MS) continue;
      this.#frames.remove(waiting);
      waiting.target.nout--;
      this.#frames.defer(waiting);
      this.#rexmitDeferred(device);
      sent++;
    }
    for (const link of this.links) link.flush();
    return sent;
  }

  /** A probe to a tainted target: a read of lba 0 padded with a full payload of zeros. */
  #probe(device: AoeDevice, target: TargetPath): void {
    const ifc = target.nextInterface();
    if (!ifc) return;
    const sectors = Math.max(1, (device.payload || DEFAULT_PAYLOAD) / SECTOR_SIZE);
    const command = device.identity?.lba48 === false ? AtaOp.readSectors : AtaOp.readSectorsExt;
    const f = this.#newFrame(device, target, ifc, { command, sectors, probe: true });
    this.#transmit(f);
    ifc.link.flush();
  }

  #untainted(device: AoeDevice): number {
    return device.targets.filter((t) => t.taint === 0).length;
  }

  /** A target with window and an interface, round robin, avoiding tainted ones while others serve (newframe). */
  #pickTarget(device: AoeDevice): TargetPath | undefined {
    const n = device.targets.length;
    const avoidTainted = this.#untainted(device) > 0;
    for (let i = 0; i < n; i++) {
      const t = device.targets[(device.targetRotate + i) % n];
      if (avoidTainted && t.taint) continue;
      if (t.nout < t.maxout && t.interfaces.length > 0) {
        device.targetRotate = (device.targetRotate + i + 1) % n;
        return t;
      }
    }
    return undefined;
  }

  /** Submits block I/O; resolves when done, rejects with an Error on failure (driver/requests.ts). */
  submit(device: AoeDevice, request: BlockRequest): Promise<void> {
    return this.requests.submit(device, request);
  }

  /** Sends what every link holds; a failing link is logged and the others still send. */
  #flushLinks(): void {
    for (const link of this.links) {
      try {
        link.flush();
      } catch (error) {
        this.hooks.log(
          `aoe: ${link.name}: send failed: ${errorMessage(error)}`,
        );
      }
    }
  }

  /** Cuts queued requests into frames while windows allow (aoecmd_work). */
  service(device: AoeDevice): void {
    this.#rexmitDeferred(device);
    const queue = this.requests.queue(device);
    if (!queue || queue.length === 0 || !device.up) return;
    const payloadSectors = Math.max(
      1,
      Math.floor((device.payload || DEFAULT_PAYLOAD) / SECTOR_SIZE),
    );
    const lba48 = device.identity?.lba48 !== false;
    for (let qi = 0; qi < queue.length; qi++) {
      const request = queue[qi];
      if (request.kind === "flush") {
        // A barrier: it goes out once everything before it has completed, and holds what follows.
        if (qi === 0 && request.flushStage !== "sent" && !this.#sendFlush(device, request)) {
          this.#kickIfIdle(device);
        }
        return;
      }
      if (
        request.fua && request.sent === request.sectors && request.framesOut === 0 &&
        request.flushStage !== "sent"
      ) {
        if (!this.#sendFlush(device, request)) this.#kickIfIdle(device);
        continue;
      }
      while (request.sent < request.sectors) {
        const target = this.#pickTarget(device);
        if (!target) {
          this.#kickIfIdle(device);
          return;
        }
        const ifc = target.nextInterface()!;
        const sectors = request.kind === "trim"
          ? 1
          : Math.min(payloadSectors, request.sectors - request.sent);
        const command = request.kind === "read"
          ? (lba48 ? AtaOp.readSectorsExt : AtaOp.readSectors)
          : request.kind === "write"
          ? (lba48 ? AtaOp.writeSectorsExt : AtaOp.writeSectors)
          : AtaOp.dataSetManagement;
        const f = this.#newFrame(device, target, ifc, {
          command,
          lba: request.lba + request.sent,
          sectors,
          dataOffset: request.sent * SECTOR_SIZE,
          request,
        });
        try {
          this.#transmit(f);
        } catch (error) {
          // Unsent: the frame is forgotten so no timer retransmits what never left.
          this.#frames.remove(f);
          target.nout--;
          throw error;
        }
        request.sent += sectors;
        request.framesOut++;
      }
    }
  }

  /** Nothing could be sent and nothing is outstanding: let the timer rerun the queue (DEVFL_KICKME). */
  #kickIfIdle(device: AoeDevice): void {
    // The targets' counts of frames out say it without scanning the frames.
    if (device.targets.every((t) => t.nout === 0) && !this.#frames.deferred(device)?.length) {
      device.kickme = true;
    }
  }

  #outstanding(device: AoeDevice): number {
    return this.#frames.outstanding(device);
  }

  /** FLUSH CACHE to every target of the device; false if some target had no window. */
  #sendFlush(device: AoeDevice, request: QueuedRequest): boolean {
    const targets = device.targets.filter((t) => t.interfaces.length > 0);
    if (targets.some((t) => t.nout >= Math.max(1, t.maxout))) return false;
    request.flushStage = "sent";
    for (const target of targets) {
      const ifc = target.nextInterface()!;
      // FLUSH CACHE (0xE7): vblade acknowledges it, and aborts FLUSH CACHE EXT.
      const f = this.#newFrame(device, target, ifc, { command: AtaOp.flushCache, request });
      request.framesOut++;
      this.#transmit(f);
    }
    if (targets.length === 0) {
      request.failed = `${device.name} has no path`;
      this.requests.finish(device, request);
    }
    return true;
  }

  // ---- the timer ----------------------------------------------------------

  /** The 100 ms timer: retransmissions, deaths, kicks (rexmit_timer). */
  tick(): void {
    this.extensions.tick();
    for (const link of this.links) this.#readDrops(link);
    for (const device of this.devices.devices.values()) {
      // An idle device (nothing in flight or queued, no kick, no IDENTIFY awaited) has no
      // timer work: the kernel's rexmit_timer finds its lists empty too.
      if (
        this.#frames.busy(device) || device.kickme || this.#identifyPending.has(device) ||
        this.requests.pending(device) > 0
      ) this.#rexmitTimer(device);
    }
    for (const link of this.links) link.flush();
  }

  /** Counts what the kernel dropped on a link since the last tick, and says so on `err`. */
  #readDrops(link: FrameLink): void {
    const n = link.readDrops();
    if (n <= 0) return;
    this.counters.rxDrops += n;
    this.recovery.drops(n, performance.now());
    this.hooks.error(
      `${"rx drops".padStart(15)} ${link.name} n=${n} total=${link.counters.rxDrops}`,
    );
  }

  /** Devices the timer had work for, counted over all ticks (an idle device costs none). */
  timerRuns = 0;

  #rexmitTimer(device: AoeDevice): void {
    this.timerRuns++;
    const timeout = this.rto(device);
    const targetsCount = device.targets.length;
    const now = performance.now();
    const expired: Frame[] = [];
    for (const f of this.#frames.active(device)) {
      if ((now - f.sentAt) * 1000 >= timeout) expired.push(f);
    }
    for (const f of expired) {
      const since = (now - f.sentAt) * 1000;
      if (
        this.params.deadsecs && (f.waitedTotal + since) / 1e6 > this.params.deadsecs && !f.probe
      ) {
        this.downDevice(device);
        return;
      }
      const t = f.target;
      const waitedHere = (f.waited + since) / 1e6;
      if (
        this.params.deadsecs && targetsCount > 0 &&
        (waitedHere > this.params.deadsecs / targetsCount || waitedHere > HARD_SCORN_SECS)
      ) {
        scorn(t);
      }
      shrinkWindow(t);
      this.#frames.remove(f);
      t.nout--;
      // A probe waits on the retransmit queue too, to be sent again slowly (rexmit_timer).
      if (!f.probe) {
        f.ifc.lost++;
        if (f.ifc.lost > t.nframes * 2 && t.interfaces.length > 1) {
          t.ejectInterface(f.ifc);
          this.hooks.changed(device);
        }
      }
      this.#frames.defer(f);
    }
    this.#rexmitDeferred(device);
    if (device.kickme) {
      device.kickme = false;
      this.service(device);
    }
    if (
      this.#identifyPending.has(device) && this.#outstanding(device) === 0 &&
      device.targets.length > 0
    ) {
      this.#identify(device);
    }
  }

  /** Resends deferred frames as windows allow, with a new tag on the next interface (rexmit_deferred, resend). */
  #rexmitDeferred(device: AoeDevice): void {
    const list = this.#frames.deferred(device);
    if (!list || list.length === 0) return;
    const untainted = this.#untainted(device);
    const now = performance.now();
    for (let i = 0; i < list.length;) {
      const f = list[i];
      let t = f.target;
      if (f.probe) {
        // A probe tests only a tainted target while an untainted one serves; it is resent
        // no sooner than taint × rto after its last send, so a dead target is probed slowly.
        if (!t.taint || untainted < 1) {
          list.splice(i, 1);
          device.kickme = true;
          continue;
        }
        if ((now - f.sentAt) * 1000 < t.taint * this.rto(device)) {
          i++;
          continue;
        }
      } else if (t.taint && untainted > 0) {
        // Move the frame to an untainted target, leaving a probe on this one.
        const other = device.targets.find((x) =>
          x !== t && x.taint === 0 && x.nout < x.maxout && x.interfaces.length > 0
        );
        if (other) {
          if (!this.#hasProbe(device, t)) this.#probe(device, t);
          f.target = other;
          f.waited = 0;
          t = other;
        }
      }
      if (t.nout >= Math.max(1, t.maxout)) {
        i++;
        continue;
      }
      list.splice(i, 1);
      const ifc = t.nextInterface();
      if (!ifc) {
        if (f.request) {
          f.request.failed = `${device.name}: resend: no interfaces to rotate to`;
          f.request.framesOut--;
          this.requests.finish(device, f.request);
        }
        continue;
      }
      const since = (now - f.sentAt) * 1000;
      f.waited += since;
      f.waitedTotal += since;
      const oldTag = f.tag;
      f.ifc = ifc;
      f.tag = this.#newTag(device);
      this.#frames.add(f);
      t.nout++;
      this.counters.retransmits++;
      this.deviceCounters.of(device).retransmits++;
      this.hooks.error(
        `${"retransmit".padStart(15)} ${device.name} oldtag=${hex8(oldTag)}@${
          hex8(this.jiffies())
        } newtag=${hex8(f.tag)} s=${formatMac(ifc.link.mac)} d=${formatMac(t.mac)} nout=${t.nout}`,
      );
      this.#transmit(f);
    }
  }

  /** Marks a device down: all queued and outstanding I/O fails (driver/device_life.ts, aoedev_downdev). */
  downDevice(device: AoeDevice): void {
    deviceLife.downDevice(this.#life, device);
  }

  /** Revalidate: fresh estimates, Query Config for the device and IDENTIFY (driver/device_life.ts). */
  revalidate(device: AoeDevice): void {
    deviceLife.revalidate(this.#life, device);
  }

  /** Forgets a device entirely (flush; driver/device_life.ts). */
  forget(device: AoeDevice): void {
    deviceLife.forget(this.#life, device);
  }

  /** Requests submitted and not yet settled, on every device. */
  get queuedRequests(): number {
    return this.requests.size;
  }

  /** Frames outstanding on the whole initiator. */
  get outstandingFrames(): number {
    return this.#frames.size;
  }
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0").toUpperCase();
}
