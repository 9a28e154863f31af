/**
 * `aoe driver-daemon`: the background process `aoe modprobe` starts.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runDaemon } from "../driver/daemon.ts";
import { NbdBridge } from "../nbd/bridge.ts";
import { resolveParams } from "../driver/params.ts";
import { driverPaths } from "../driver/paths.ts";
import type { LinkKind } from "../link/mod.ts";

/** Runs the daemon in the foreground; resolves with the exit code. */
export async function daemonCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      rundir: { type: "string" },
      devdir: { type: "string" },
      link: { type: "string" },
      "nbd-tcp": { type: "string" },
      "nbd-host": { type: "string" },
      "nbd-attach": { type: "string", default: "auto" },
    },
  });
  const params = resolveParams(positionals);
  const paths = driverPaths({ runDir: values.rundir, devDir: values.devdir });
  const bridge = new NbdBridge({
    socketPath: paths.nbdSocket,
    tcpPort: values["nbd-tcp"] === undefined ? undefined : Number(values["nbd-tcp"]),
    tcpHost: values["nbd-host"],
    attach: values["nbd-attach"] as "auto" | "yes" | "no",
  });
  return await runDaemon(params, paths, {
    link: values.link as LinkKind | undefined,
    extensions: [bridge],
  });
}
