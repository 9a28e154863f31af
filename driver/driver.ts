/**
 * The driver as one object: the command engine, the frame links on allowed
 * interfaces (the send and receive side of the kernel's aoenet.c), the
 * attribute tree, the control files, and the loop that drives them.
 *
 * @module
 */

import { type FrameLink, goneLinks, type LinkKind, listInterfaces, openLink } from "../link/mod.ts";
import { eventLoopTurn, EventLoopYield, Reactor, type WaitResult } from "../reactor/mod.ts";
import type { AccessPolicy } from "./access.ts";
import { BlockDevice } from "./blockdev.ts";
import {
  DISCOVERY_INTERVAL_MS,
  Initiator,
  type InitiatorCounters,
  type InitiatorHooks,
  TICK_MS,
} from "./commands.ts";
import { type ControlCommand, ControlFiles } from "./control.ts";
import type { AoeDevice, DeviceTable } from "./device.ts";
import type { InitiatorExtensions } from "./extensions.ts";
import { type DriverParams, parseIflist } from "./params.ts";
import type { DriverPaths } from "./paths.ts";
import { SYSFS_FLUSH_BUDGET_MS, SysfsTree } from "./sysfs.ts";
import { errorMessage } from "../util/errors.ts";
import {
  checkHeader,
  Command,
  EXTENSION_COMMAND,
  isError,
  readCommand,
  readErrorCode,
  readShelf,
  readSlot,
  readTag,
} from "../wire/mod.ts";

/**
 * Longest sleep on the thread while (nearly) idle, in milliseconds, before
 * Deno's event loop gets a turn for timers and its own sockets.
 */
export const IDLE_BLOCK_MS = 10;
/** Longest run of frame handling before Deno's event loop gets a turn, in milliseconds. */
export const BUSY_YIELD_MS = 20;
/** Whether an idle loop sleeps on its own thread by default (`AOE_IDLE_BLOCK=0` turns it off). */
function idleBlockFromEnv(): boolean {
  return Deno.env.get("AOE_IDLE_BLOCK") !== "0";
}

/** The error codes' texts, as the kernel logs them (docs/protocol.md). */
const ERROR_TEXT = [
  "no such error",
  "unrecognized command code",
  "bad argument parameter",
  "device unavailable",
  "config string present",
  "unsupported version",
];

/**
 * What the receive demux hands frames to: the command engine's response
 * handlers (aoecmd.c's aoecmd_ata_rsp and aoecmd_cfg_rsp) and what it counts
 * and logs with. {@link Initiator} is one.
 */
export interface AoeResponses {
  /** The counters the demux adds to (received, filtered, malformed, ignored, error responses). */
  readonly counters: InitiatorCounters;
  /** Where the demux logs (the kernel log). */
  readonly hooks: InitiatorHooks;
  /** The devices, for the extension command's shelf.slot. */
  readonly devices: DeviceTable;
  /** The extensions, which take the extension command (docs/extensions.md). */
  readonly extensions: InitiatorExtensions;
  /** Whether frames on the interface are allowed by aoe_iflist. */
  allowed(name: string): boolean;
  /** An ATA response (aoecmd_ata_rsp). */
  ataResponse(frame: Uint8Array, length: number, link: FrameLink): void;
  /** A Query Config response (aoecmd_cfg_rsp). */
  configResponse(frame: Uint8Array, length: number, link: FrameLink): void;
}

/** How to run a {@link Driver}. */
export interface DriverOptions {
  /** The module parameters (changed live by the control files). */
  params: DriverParams;
  /** Where the files go. */
  paths: DriverPaths;
  /** Frame I/O kind (default: the link module's default). */
  link?: LinkKind;
  /** Receive room of each link in frames (default: the link's own, docs/frame-io.md §8). */
  rxFrames?: number;
  /** Opens a link by interface name (tests inject in-memory links). */
  openLink?: (name: string) => FrameLink;
  /** Lists candidate interfaces (default: every interface in this namespace but lo). */
  listInterfaces?: () => string[];
  /** Writes the sysfs tree and control FIFOs (default true). */
  files?: boolean;
  /** The group granted access to the control files (default: root only). */
  access?: AccessPolicy;
  /**
   * Once idle (a whole wait of {@link IDLE_BLOCK_MS} saw nothing), sleep on the
   * thread until something happens (default true, `AOE_IDLE_BLOCK=0`: never).
   */
  idleBlock?: boolean;
}

/** The running driver. */
export class Driver {
  /** The command engine: devices, frames, retransmission. */
  readonly initiator: Initiator;
  /** The sysfs-like attribute tree. */
  readonly sysfs: SysfsTree;
  /** The control FIFOs. */
  readonly control: ControlFiles;
  /** The open frame links by interface name. */
  readonly links = new Map<string, FrameLink>();
  /** Kernel-log lines (dmesg), newest last, at most 1000. */
  readonly messages: string[] = [];
  /** Called when a device's state or size changes (the NBD bridge listens). */
  onDeviceChange?: (device: AoeDevice) => void;
  #running = false;
  #loop?: Promise<void>;
  #iflistStamp = "";
  #files: boolean;
  #turn?: EventLoopYield;
  /**
   * Descriptors of this process's other I/O (the NBD bridge's sockets), polled
   * together with the frame links so one wait serves both.
   */
  readonly reactor = new Reactor();

  /**
   * A driver that does nothing until {@link start}.
   *
   * @param options parameters, paths and hooks
   */
  constructor(readonly options: DriverOptions) {
    this.#files = options.files ?? true;
    this.sysfs = new SysfsTree(options.paths.sysDir, options.access, {
      inPlace: options.paths.treeInPlace,
    });
    this.sysfs.onError = (error) => {
      if (this.sysfs.writeErrors === 1) {
        this.messages.push(
          `aoe: cannot write the attribute tree (counted): ${errorMessage(error)}`,
        );
      }
    };
    this.control = new ControlFiles(options.paths.devDir, options.access);
    this.initiator = new Initiator(options.params, {
      error: (line) => this.control.error(line),
      log: (line) => {
        this.messages.push(line);
        if (this.messages.length > 1000) this.messages.shift();
      },
      changed: (device) => {
        if (this.#files) this.sysfs.writeDevice(device);
        this.onDeviceChange?.(device);
      },
    });
  }

  /**
   * Handles one received frame (aoenet_rcv): frames on interfaces outside
   * aoe_iflist, malformed ones, requests and replies to userland tools are
   * counted and dropped; error responses are logged and dropped; the rest go
   * to the command engine by command (docs/driver.md).
   */
  receive(frame: Uint8Array, length: number, link: FrameLink): void {
    const engine: AoeResponses = this.initiator;
    const counters = engine.counters;
    counters.received++;
    if (!engine.allowed(link.name)) {
      counters.filtered++;
      return;
    }
    const problem = checkHeader(frame, length, true);
    if (problem === "short" || problem === "ethertype") {
      counters.malformed++;
      return;
    }
    const tag = readTag(frame);
    // Requests from other initiators, and replies to userland tools (tag bit 31), are not ours.
    if (problem === "direction" || tag & 0x80000000) {
      counters.ignored++;
      return;
    }
    // No version check: the kernel's aoenet_rcv() has none, and vblade's start-up announcement
    // (aoead() zeroes the header and sets only R) carries version 0 (docs/protocol.md §10).
    if (readCommand(frame) === EXTENSION_COMMAND) {
      engine.extensions.receive(
        frame,
        length,
        link,
        engine.devices.get(readShelf(frame), readSlot(frame)),
      );
      return;
    }
    if (isError(frame)) {
      // The kernel logs and drops these; the request stays outstanding and is retransmitted.
      counters.errorResponses++;
      const code = readErrorCode(frame);
      engine.hooks.log(
        `aoe: error packet from ${readShelf(frame)}.${
          readSlot(frame)
        }@${link.name}; ecode=${code} '${ERROR_TEXT[code] ?? ERROR_TEXT[0]}'`,
      );
      return;
    }
    const command = readCommand(frame);
    switch (command) {
      case Command.ata:
        engine.ataResponse(frame, length, link);
        return;
      case Command.config:
        engine.configResponse(frame, length, link);
        return;
      default:
        if (command < 0xf0) {
          engine.hooks.log(
            `aoe: unknown AoE command type 0x${command.toString(16).padStart(2, "0")}`,
          );
        }
        counters.ignored++;
    }
  }

  /** The module parameters in use. */
  get params(): DriverParams {
    return this.options.params;
  }

  /** Creates the files, opens the links, broadcasts discovery and starts the loop. */
  start(): void {
    if (this.#files) {
      this.sysfs.init(this.params);
      this.control.create();
      this.#iflistStamp = this.#readIflistFile() ?? "";
    }
    this.refreshLinks();
    this.messages.push(`aoe: AoE v85 initialised.`);
    this.initiator.discover();
    this.#running = true;
    this.#turn = new EventLoopYield();
    this.#loop = this.#run();
  }

  /** Opens links for allowed interfaces not yet open. */
  refreshLinks(): void {
    const names = (this.options.listInterfaces ?? listInterfaces)();
    for (const name of names) {
      if (this.links.has(name) || !this.initiator.allowed(name)) continue;
      try {
        const link = this.options.openLink
          ? this.options.openLink(name)
          : openLink(name, { kind: this.options.link, rxFrames: this.options.rxFrames });
        this.links.set(name, link);
      } catch (error) {
        this.messages.push(
          `aoe: cannot use ${name}: ${errorMessage(error)}`,
        );
      }
    }
    this.initiator.links = [...this.links.values()];
  }

  /** An interface went away: forget its link and every path through it. */
  #dropLink(link: FrameLink): void {
    this.messages.push(`aoe: ${link.name} went away`);
    this.links.delete(link.name);
    link.close();
    this.initiator.links = [...this.links.values()];
    for (const device of this.initiator.devices.list()) {
      for (const target of device.targets) {
        const ifc = target.interfaceFor(link);
        if (ifc) target.ejectInterface(ifc);
      }
      this.initiator.hooks.changed(device);
    }
  }

  /** Replaces aoe_iflist (the `interfaces` control file, the parameter file). */
  setInterfaces(text: string): void {
    this.params.iflist = parseIflist(text);
    if (this.#files) {
      this.sysfs.writeParams(this.params);
      this.#iflistStamp = this.#readIflistFile() ?? "";
    }
    this.refreshLinks();
  }

  /** Broadcast discovery on every allowed interface (new ones included). */
  discover(): void {
    this.refreshLinks();
    this.initiator.discover();
  }

  /** `eX.Y`: revalidate one device; false if unknown. */
  revalidate(name: string): boolean {
    const device = this.initiator.devices.byName(name);
    if (!device) return false;
    this.initiator.revalidate(device);
    return true;
  }

  /**
   * The flush control file: nothing (or under 3 bytes) removes down devices,
   * "all" every device not open, otherwise devices whose name starts with the
   * written text (the kernel's strncmp; a newline never matches). Returns the names removed.
   */
  flushDevices(written: string): string[] {
    const removed: string[] = [];
    for (const device of this.initiator.devices.list()) {
      let remove: boolean;
      if (written.length < 3) remove = !device.up && device.openCount === 0;
      else if (written.startsWith("all")) remove = device.openCount === 0;
      else remove = device.name.startsWith(written);
      if (!remove) continue;
      this.initiator.forget(device);
      if (this.#files) {
        try {
          this.sysfs.removeDevice(device.name);
        } catch { /* never visible */ }
      }
      this.onDeviceChange?.(device);
      removed.push(device.name);
    }
    return removed;
  }

  /** A block I/O handle for a device that is up. */
  blockDevice(name: string): BlockDevice | undefined {
    const device = this.initiator.devices.byName(name);
    return device ? new BlockDevice(this.initiator, device) : undefined;
  }

  #handleControl(command: ControlCommand, text: string): void {
    switch (command) {
      case "discover":
        this.discover();
        return;
      case "interfaces":
        try {
          this.setInterfaces(text);
        } catch (error) {
          this.messages.push(`aoe: ${errorMessage(error)}`);
        }
        return;
      case "revalidate": {
        const match = text.match(/^e(\d+)\.(\d+)/);
        if (!match || !this.revalidate(`e${match[1]}.${match[2]}`)) {
          this.messages.push(`aoe: revalidate: unknown device ${text.trim()}`);
        }
        return;
      }
      case "flush":
        this.flushDevices(text.replace(/\0/g, ""));
        return;
    }
  }

  #readIflistFile(): string | undefined {
    try {
      return Deno.readTextFileSync(this.sysfs.iflistPath);
    } catch {
      return undefined;
    }
  }

  /** The aoe_iflist parameter file is writable: pick up what an administrator wrote there. */
  #checkIflistFile(): void {
    const text = this.#readIflistFile();
    // Zero bytes is a write caught between its truncate and its data (an empty list is "\n"):
    // taking it would open every interface and write the empty list over the one being written.
    if (text === undefined || text === "" || text === this.#iflistStamp) return;
    this.#iflistStamp = text;
    try {
      this.setInterfaces(text);
    } catch (error) {
      this.messages.push(`aoe: ${errorMessage(error)}`);
    }
  }

  /** Errors while handling one frame or one tick, counted; the first of each kind is logged. */
  readonly failures = { frame: 0, timer: 0 };

  /** Counts and logs once an error no frame or tick may let end the loop. */
  #failed(what: "frame" | "timer", error: unknown): void {
    if (this.failures[what]++ > 0) return;
    const text = errorMessage(error);
    this.messages.push(`aoe: error handling a ${what} (counted, logged once): ${text}`);
  }

  async #run(): Promise<void> {
    let nextTick = performance.now() + TICK_MS;
    let nextDiscovery = performance.now() + DISCOVERY_INTERVAL_MS;
    let hosting = false;
    let lastYield = performance.now();
    const idleBlock = this.options.idleBlock ?? idleBlockFromEnv();
    let idle = false;
    while (this.#running) {
      let received = 0;
      for (const link of this.links.values()) {
        const n = link.receive();
        for (let i = 0; i < n; i++) {
          try {
            this.receive(link.rx[i], link.rxLength[i], link);
          } catch (error) {
            this.#failed("frame", error);
          }
        }
        received += n;
      }
      const now = performance.now();
      if (now >= nextTick) {
        nextTick = Math.max(nextTick + TICK_MS, now);
        try {
          this.initiator.tick();
          if (this.#files) {
            this.control.drain((command, text) => this.#handleControl(command, text));
            this.#checkIflistFile();
          }
        } catch (error) {
          this.#failed("timer", error);
        }
      }
      if (now >= nextDiscovery) {
        nextDiscovery = now + DISCOVERY_INTERVAL_MS;
        this.discover();
      }
      // Idle: the attribute changes of the burst just handled are written now.
      if (received === 0 && this.#files && this.sysfs.pending) {
        this.sysfs.flush(SYSFS_FLUSH_BUDGET_MS);
      }
      // Re-queries go out only once what came before is read: their answers then meet an
      // empty receive ring (driver/recovery.ts).
      if (received === 0 && now >= this.initiator.nextPumpAt) {
        try {
          this.initiator.pump();
        } catch (error) {
          this.#failed("timer", error);
        }
      }
      for (const link of this.links.values()) link.flush();
      if (received === 0 && this.#files && this.sysfs.pending) {
        // More attribute changes to write: look for frames again at once rather than sleep, so
        // a frame waits for at most one slice of writing (SYSFS_FLUSH_BUDGET_MS).
        if (performance.now() - lastYield > BUSY_YIELD_MS) {
          await eventLoopTurn();
          lastYield = performance.now();
        } else await this.#turn!.next();
        continue;
      }
      if (received > 0) {
        idle = false;
        // Let completions reach their callers (the NBD bridge's sockets) at once; a
        // MessageChannel turn runs promise continuations but not the runtime's timers
        // and sockets, so those get a real turn now and then (reactor/poll.ts).
        await this.#turn!.next();
        if (performance.now() - lastYield > BUSY_YIELD_MS) {
          await eventLoopTurn();
          lastYield = performance.now();
        }
        continue;
      }
      const links = [...this.links.values()];
      const wait = Math.max(
        1,
        Math.min(
          TICK_MS,
          nextTick - performance.now(),
          this.initiator.nextPumpAt - performance.now(),
        ),
      );
      const pollable = links.every((link) => link.pollFd >= 0);
      if (pollable !== hosting) {
        hosting = pollable;
        this.reactor.host(hosting);
      }
      if (pollable) {
        const fds = links.map((link) => link.pollFd);
        if (this.#files) fds.push(...this.control.pollFds);
        // Idle (a whole wait saw nothing): sleep on this thread, so whatever comes
        // next (a reply, an NBD request, a control command) wakes us directly, unless
        // Deno's own sockets need the event loop. While I/O flows, wait in the thread
        // pool: a blocking poll then, even only with no frame outstanding, cut
        // nbdcopy through the bridge to a third on two cores (bench/nbd_bench.ts,
        // interleaved runs), as 1 ms blocking polls cut fio's IOPS before.
        const block: boolean = idle && idleBlock && !this.reactor.eventLoopIo;
        if (block && performance.now() - lastYield > BUSY_YIELD_MS) {
          // The event loop's turn is due: take it now, while nothing waits, rather than
          // between the wake-up below and the request that caused it.
          await eventLoopTurn();
          lastYield = performance.now();
          continue;
        }
        const timeout = Math.min(wait, IDLE_BLOCK_MS);
        const result: WaitResult = block
          ? this.reactor.waitBlocking(fds, timeout)
          : await this.reactor.wait(fds, timeout, { syncMs: 0 });
        const { woke, ready, broken } = result;
        idle = ready === 0;
        for (const link of goneLinks(links, broken)) this.#dropLink(link);
        // Let the woken sockets' continuations run before the next poll.
        if (woke > 0) await this.#turn!.next();
        if (!block) lastYield = performance.now(); // the pool wait let the event loop run
        else if (ready === 0) {
          await eventLoopTurn();
          lastYield = performance.now();
        }
      } else {
        // In-memory links have no descriptor; control files are then read on the timer tick.
        await Promise.race(links.map((link) => link.wait(wait)));
      }
      if (this.#files) this.control.drain((command, text) => this.#handleControl(command, text));
    }
    this.reactor.host(false);
  }

  /** Writes the attribute changes that wait (they are written lazily, driver/sysfs.ts). */
  flushFiles(): void {
    if (this.#files) this.sysfs.flush();
  }

  /** Stops the loop, fails nothing further, closes links and removes the files. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    for (const device of this.initiator.devices.list()) this.initiator.downDevice(device);
    this.initiator.extensions.withdrawAll();
    for (const link of this.links.values()) link.close();
    this.links.clear();
    this.#turn?.close();
    if (this.#files) {
      this.sysfs.flush();
      this.control.remove();
      this.sysfs.remove();
    }
  }
}
