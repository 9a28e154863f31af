/**
 * The `aoe` command: one program for target, initiator, NBD bridge and status.
 *
 * @module
 */

import { targetCommand } from "./target_command.ts";

/** The version of this program. */
export const VERSION = "0.1.0";

const HELP = `usage: aoe <command> [arguments]

commands:
  target    export a file or block device as an AoE target (vblade's arguments)
  targetd   the same, in the background, logging to syslog (as vbladed)
  version   print the version
  help      this text

"aoe <command> --help" explains each command.`;

/** Runs the `aoe` command line; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case "target":
      return await targetCommand(rest);
    case "targetd":
      return await targetCommand([...rest, "--daemon"]);
    case "version":
    case "--version":
      console.log(`aoe ${VERSION}`);
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(HELP);
      return verb === undefined ? 1 : 0;
    default:
      console.error(`aoe: unknown command "${verb}" (try "aoe help")`);
      return 1;
  }
}
