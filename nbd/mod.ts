/**
 * The NBD bridge: an NBD server for the initiator's devices and their attachment
 * to the kernel's nbd driver.
 *
 * @module
 */

export { DeviceExport, driverExports, NbdBridge } from "./bridge.ts";
export { KernelNbd, nbdFamily } from "./attach.ts";
export { exportFlags, type ExportProvider, type NbdExport, NbdServer } from "./server.ts";
export * as nbdProtocol from "./protocol.ts";
export * as nbdNetlink from "./netlink.ts";
