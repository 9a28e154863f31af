/**
 * The initiator: a userspace emulation of the Linux aoe driver.
 *
 * @module
 */

export { BlockDevice } from "./blockdev.ts";
export { Initiator, type InitiatorCounters, type InitiatorHooks } from "./commands.ts";
export { type BlockRequest } from "./requests.ts";
export { CONTROL_FILES, type ControlCommand, ControlFiles } from "./control.ts";
export {
  AoeDevice,
  type DeviceIdentity,
  DeviceTable,
  type TargetInterface,
  TargetPath,
} from "./device.ts";
export { Driver, type DriverOptions } from "./driver.ts";
export {
  ask,
  type DaemonExtension,
  type DaemonOptions,
  type DaemonRequest,
  runDaemon,
} from "./daemon.ts";
export { type AccessPolicy } from "./access.ts";
export { DRIVER_VERSION, SysfsTree } from "./sysfs.ts";
export { DiscoveryRecovery, type RecoveryAction, type RecoveryHooks } from "./recovery.ts";
export { FrameTable, type TableFrame } from "./frames.ts";
export {
  addressableSectors,
  invalidRequest,
  LBA48_MAX_SECTORS,
  type QueuedRequest,
  type RequestEngine,
  RequestQueues,
} from "./requests.ts";
export { type Admission, DiscoveryQueries } from "./discovery.ts";
export { MAX_TAINT, rto, rttSample, scorn, shrinkWindow } from "./timing.ts";
export { DEFAULT_PARAMS, type DriverParams, parseIflist, resolveParams } from "./params.ts";
export { type DriverPaths, driverPaths } from "./paths.ts";
export { aoeStatRows, formatSize, statusObjects } from "./status.ts";
export {
  type ExtensionSettings,
  type InitiatorExtensionCounters,
  InitiatorExtensions,
  type ReplyVerdict,
} from "./extensions.ts";
