/**
 * The initiator: a userspace emulation of the Linux aoe driver.
 *
 * @module
 */

export { BlockDevice } from "./blockdev.ts";
export { type BlockRequest, Initiator, type InitiatorCounters } from "./commands.ts";
export { AoeDevice, DeviceTable, Target } from "./device.ts";
export { Driver, type DriverOptions } from "./driver.ts";
export { ask, runDaemon } from "./daemon.ts";
export { DEFAULT_PARAMS, type DriverParams, parseIflist, resolveParams } from "./params.ts";
export { type DriverPaths, driverPaths } from "./paths.ts";
export { aoeStatRows, formatSize, statusObjects } from "./status.ts";
