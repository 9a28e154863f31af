/**
 * The bridge: every initiator device that is up becomes an NBD export named
 * like the device, served on `$AOE_RUNDIR/nbd.sock` (TCP only when asked), and,
 * where the kernel has nbd, attached to a real /dev/nbdN with the device name
 * as its backend identifier.
 *
 * @module
 */

import type { DaemonExtension } from "../driver/daemon.ts";
import type { Driver } from "../driver/driver.ts";
import type { BlockDevice } from "../driver/blockdev.ts";
import { type ExportProvider, type NbdExport, NbdServer } from "./server.ts";
import { KernelNbd } from "./attach.ts";
import { errorMessage } from "../util/errors.ts";

/** An initiator device seen as an NBD export. */
export class DeviceExport implements NbdExport {
  /**
   * The export of `device`.
   *
   * @param device the initiator's block device
   */
  constructor(readonly device: BlockDevice) {}

  /** The device name, which is the export name. */
  get name(): string {
    return this.device.name;
  }
  get size(): number {
    return this.device.size;
  }
  /** Whether the target said in IDENTIFY that it trims. */
  get canTrim(): boolean {
    return this.device.canTrim;
  }
  get trimReadsZeros(): boolean {
    return this.device.trimReadsZeros;
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.device.read(offset, length, into);
  }
  write(offset: number, data: Uint8Array, options: { fua?: boolean }): Promise<void> {
    return this.device.write(offset, data, options);
  }
  flush(): Promise<void> {
    return this.device.flush();
  }
  trim(offset: number, length: number): Promise<void> {
    return this.device.trim(offset, length);
  }
  open(): void {
    this.device.open();
  }
  close(): void {
    this.device.close();
  }
}

/** The driver's devices as exports. */
export function driverExports(driver: Driver): ExportProvider {
  return {
    names: () => driver.initiator.devices.list().filter((d) => d.up).map((d) => d.name),
    get: (name) => {
      const device = driver.blockDevice(name);
      return device && device.up ? new DeviceExport(device) : undefined;
    },
  };
}

/** Options for {@link NbdBridge}. */
export interface BridgeOptions {
  /** Unix socket path. */
  socketPath: string;
  /** Mode of the Unix socket, set right after it is bound (default: as created). */
  socketMode?: number;
  /** Group of the Unix socket (default: unchanged). */
  socketGid?: number;
  /** TCP port to listen on as well (none by default). */
  tcpPort?: number;
  /** TCP address (default 127.0.0.1). */
  tcpHost?: string;
  /** Attach devices to the kernel's nbd driver: "auto" (when it is there), "yes", "no". */
  attach?: "auto" | "yes" | "no";
}

/** The NBD bridge as a daemon extension. */
export class NbdBridge implements DaemonExtension {
  /** The NBD server, once started. */
  server?: NbdServer;
  /** The kernel attachment, when attaching. */
  kernel?: KernelNbd;

  /**
   * A bridge that starts with the driver.
   *
   * @param options where to listen, whether to attach
   */
  constructor(readonly options: BridgeOptions) {}

  /** Starts serving the driver's devices and, if asked, attaching them. */
  start(driver: Driver): void {
    const provider = driverExports(driver);
    // The driver's loop polls the bridge's sockets together with its frames.
    this.server = new NbdServer(provider, { reactor: driver.reactor });
    this.server.listenUnix(this.options.socketPath);
    if (this.options.socketGid !== undefined) {
      Deno.chownSync(this.options.socketPath, null, this.options.socketGid);
    }
    if (this.options.socketMode !== undefined) {
      Deno.chmodSync(this.options.socketPath, this.options.socketMode);
    }
    if (this.options.tcpPort !== undefined) {
      const where = `${this.options.tcpHost ?? "127.0.0.1"}:${this.options.tcpPort}`;
      try {
        this.server.listenTcp(this.options.tcpPort, this.options.tcpHost);
      } catch (error) {
        throw new Error(
          `cannot listen on ${where}: ${errorMessage(error)}`,
        );
      }
    }
    const attach = this.options.attach ?? "auto";
    if (attach !== "no" && (attach === "yes" || KernelNbd.available())) {
      this.kernel = new KernelNbd(this.server, (line) => driver.messages.push(line));
      const previous = driver.onDeviceChange;
      driver.onDeviceChange = (device) => {
        previous?.(device);
        const block = driver.blockDevice(device.name);
        if (device.up && block) {
          const exp = new DeviceExport(block);
          // Attached already: a revalidated size reaches /dev/nbdN (NBD_CMD_RECONFIGURE).
          this.kernel!.attach(exp).then(() => this.kernel!.resize(exp)).catch((error) =>
            driver.messages.push(`aoe: nbd attach ${device.name}: ${errorMessage(error)}`)
          );
        } else this.kernel!.detach(device.name);
      };
    }
  }

  /** Detaches every device, closes the server and removes its socket. */
  async stop(): Promise<void> {
    await this.kernel?.detachAll();
    this.server?.close();
    try {
      Deno.removeSync(this.options.socketPath);
    } catch { /* gone */ }
  }
}
