/**
 * The NBD bridge: an NBD server for the initiator's devices and their attachment
 * to the kernel's nbd driver.
 *
 * @module
 */

export { type BridgeOptions, driverExports, NbdBridge } from "./bridge.ts";
export { KernelNbd, nbdFamily } from "./attach.ts";
export {
  BLOCK_SIZES,
  type ExportFlagOptions,
  exportFlags,
  type ExportProvider,
  type NbdExport,
} from "./export.ts";
export {
  allowList,
  type ListenOptions,
  type NbdCounters,
  type NbdLimits,
  NbdServer,
  type NbdServerOptions,
  type ServeOptions,
  type TcpListenOptions,
  type UnixListenOptions,
} from "./server.ts";
export { readTlsDirectory, type TlsCredentials } from "./tls.ts";
export * as nbdProtocol from "./protocol.ts";
export * as nbdNetlink from "./netlink.ts";
