/**
 * The NBD bridge: an NBD server for the initiator's devices and their attachment
 * to the kernel's nbd driver.
 *
 * @module
 */

export { type BridgeOptions, DeviceExport, driverExports, NbdBridge } from "./bridge.ts";
export { KernelNbd, nbdFamily } from "./attach.ts";
export {
  exportFlags,
  type ExportProvider,
  type NbdCounters,
  type NbdExport,
  NbdServer,
  type NbdServerOptions,
} from "./server.ts";
export * as nbdProtocol from "./protocol.ts";
export * as nbdNetlink from "./netlink.ts";
