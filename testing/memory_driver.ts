/**
 * An initiator for unit tests and in-process benchmarks: a {@link Driver}
 * whose only interface is one port of a MemorySegment (or any link), its
 * run-time tree under a scratch directory.
 *
 * @module
 */

import { Driver } from "../driver/driver.ts";
import { DEFAULT_PARAMS, type DriverParams } from "../driver/params.ts";
import { driverPaths } from "../driver/paths.ts";
import type { FrameLink } from "../link/mod.ts";

/** How {@link memoryDriver} differs from the defaults. */
export interface MemoryDriverOptions {
  /** Module parameters over DEFAULT_PARAMS (aoe_iflist defaults to empty: every interface). */
  params?: Partial<DriverParams>;
  /** Write the attribute tree and control files (the Driver's default: true). */
  files?: boolean;
}

/** A driver (not started) on `link`, its tree under `dir`. */
export function memoryDriver(
  link: FrameLink,
  dir: string,
  options: MemoryDriverOptions = {},
): Driver {
  return new Driver({
    params: { ...DEFAULT_PARAMS, iflist: [], ...options.params },
    paths: driverPaths({ devDir: `${dir}/dev`, runDir: `${dir}/run` }),
    openLink: () => link,
    listInterfaces: () => [link.name],
    ...(options.files === undefined ? {} : { files: options.files }),
  });
}
