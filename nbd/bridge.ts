/**
 * The bridge: every initiator device that is up becomes an NBD export named
 * like the device, served on `$AOE_RUNDIR/nbd.sock` (TCP only when asked), and,
 * where the kernel has nbd, attached to a real /dev/nbdN with the device name
 * as its backend identifier. The initiator's {@link BlockDevice} is the export
 * itself: it declares what it can do (trim, FUA, multi-connection).
 *
 * @module
 */

import type { DaemonExtension } from "../driver/daemon.ts";
import type { Driver } from "../driver/driver.ts";
import type { ExportProvider } from "./export.ts";
import { NbdServer, type NbdServerOptions, type TcpListenOptions } from "./server.ts";
import { KernelNbd } from "./attach.ts";
import { errorMessage } from "../util/errors.ts";

/** The driver's devices as exports. */
export function driverExports(driver: Driver): ExportProvider {
  return {
    names: () => driver.initiator.devices.list().filter((d) => d.up).map((d) => d.name),
    get: (name) => {
      const device = driver.blockDevice(name);
      return device && device.up ? device : undefined;
    },
  };
}

/** Options for {@link NbdBridge}. */
export interface BridgeOptions {
  /** Unix socket path. */
  socketPath: string;
  /** The Unix socket's mode (default 0o600, root only). */
  socketMode?: number;
  /** The Unix socket's group (default: unchanged). */
  socketGid?: number;
  /** Also listen on TCP: port, address (default loopback), allow-list, TLS, read-only. */
  tcp?: TcpListenOptions;
  /** Connection and memory limits of the server. */
  limits?: Pick<
    NbdServerOptions,
    "maxConnections" | "maxBytes" | "maxBytesPerConnection" | "maxRequestsPerConnection"
  >;
  /** Attach devices to the kernel's nbd driver: "auto" (when it is there), "yes", "no". */
  attach?: "auto" | "yes" | "no";
}

/** The NBD bridge as a daemon extension. */
export class NbdBridge implements DaemonExtension {
  /** The server, once started. */
  server?: NbdServer;
  /** The kernel attachments, where the kernel has nbd. */
  kernel?: KernelNbd;

  /**
   * A bridge, started with the daemon.
   * @param options where to listen, whether to attach
   */
  constructor(readonly options: BridgeOptions) {}

  /** Starts serving the driver's devices. */
  start(driver: Driver): void {
    const provider = driverExports(driver);
    // The driver's loop polls the bridge's sockets together with its frames.
    this.server = new NbdServer(provider, {
      ...this.options.limits,
      reactor: driver.reactor,
      // Into the driver's messages (as the kernel's log) and the daemon's log file.
      log: (line) => {
        driver.initiator.hooks.log(`aoe: ${line}`);
        console.error(`aoe: ${line}`);
      },
    });
    this.server.listenUnix({
      path: this.options.socketPath,
      mode: this.options.socketMode,
      gid: this.options.socketGid,
    });
    const tcp = this.options.tcp;
    if (tcp) {
      try {
        this.server.listenTcp(tcp);
      } catch (error) {
        throw new Error(
          `cannot listen on ${tcp.hostname ?? "127.0.0.1"}:${tcp.port}: ${errorMessage(error)}`,
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
          // Attached already: a revalidated size reaches /dev/nbdN (NBD_CMD_RECONFIGURE).
          this.kernel!.attach(block).then(() => this.kernel!.resize(block)).catch((error) =>
            driver.messages.push(`aoe: nbd attach ${device.name}: ${errorMessage(error)}`)
          );
        } else this.kernel!.detach(device.name);
      };
    }
  }

  /** Detaches from the kernel and closes the server. */
  async stop(): Promise<void> {
    await this.kernel?.detachAll();
    this.server?.close();
    try {
      Deno.removeSync(this.options.socketPath);
    } catch { /* gone */ }
  }
}
