/**
 * Where the initiator keeps its files: the control FIFOs in the device
 * directory (aoetools' DEVDIR), and under the run directory the attribute tree
 * laid out like sysfs, the daemon's socket and pid file. `AOE_DEVDIR` and
 * `AOE_RUNDIR` (or options of the same meaning) move them, for tests and for
 * several instances on one host.
 *
 * @module
 */

/** The initiator's file locations. */
export interface DriverPaths {
  /** Control files: err, discover, interfaces, revalidate, flush. */
  devDir: string;
  /** The run directory: attribute tree, sockets, pid file. */
  runDir: string;
  /** The sysfs-like tree: block/etherd!e9.0/..., module/aoe/parameters/... */
  sysDir: string;
  /**
   * Whether the tree is written in place even when the run directory is on
   * a disk filesystem (`AOE_TREE_IN_PLACE=1`; by default it then lives on
   * /dev/shm behind a symlink: driver/memory_tree.ts).
   */
  treeInPlace: boolean;
  /** The daemon's Unix socket for the CLI verbs. */
  socket: string;
  /** The daemon's pid file. */
  pidFile: string;
  /** The NBD bridge's Unix socket. */
  nbdSocket: string;
}

/** Resolves the paths from options, then the environment, then the defaults. */
export function driverPaths(options: { devDir?: string; runDir?: string } = {}): DriverPaths {
  const devDir = options.devDir ?? Deno.env.get("AOE_DEVDIR") ?? "/dev/etherd";
  const runDir = options.runDir ?? Deno.env.get("AOE_RUNDIR") ?? "/run/aoe";
  return {
    devDir,
    runDir,
    sysDir: `${runDir}/sys`,
    treeInPlace: Deno.env.get("AOE_TREE_IN_PLACE") === "1",
    socket: `${runDir}/aoe.sock`,
    pidFile: `${runDir}/aoe.pid`,
    nbdSocket: `${runDir}/nbd.sock`,
  };
}
