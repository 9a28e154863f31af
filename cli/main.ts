/**
 * The `aoe` command: one program for target, initiator, NBD bridge and status.
 *
 * @module
 */

import { daemonCommand } from "./daemon_command.ts";
import { DRIVER_VERBS, driverCommand } from "./driver_command.ts";
import { targetCommand } from "./target_command.ts";
import { targetCtlCommand } from "./target_ctl_command.ts";
import { errorMessage } from "../util/errors.ts";

/** The version of this program. */
export const VERSION = "0.1.0";

const HELP = `usage: aoe <command> [arguments]

commands:
  target    export a file or block device as an AoE target (vblade's arguments)
  targetd   the same, in the background, logging to syslog (as vbladed)
  target --config FILE   serve every export of a config file (/etc/aoe/targets.conf);
            SIGHUP reloads it (aoe-targets.conf(5))
  target-ctl [--json] list|stats|reload|freeze eX.Y|unfreeze eX.Y|resize eX.Y
            control a running config-file target over its socket (/run/aoe/target.sock)

initiator (the Linux aoe driver and aoetools, in userspace):
  modprobe [aoe_iflist="eth1 eth3"] [aoe_deadsecs=N] [aoe_maxout=N] [aoe_dyndevs=0|1]
           [aoe_maxdevs=N] [--group NAME] [--link ring|packet|pcap]
            load the driver (a background daemon); options also from /etc/modprobe.d/aoe.conf.
            aoe_maxdevs (default 1024, not a kernel parameter) bounds the device table; new
            devices beyond it, or more than 64 at once and 16 a second after, are refused and
            counted (refusedDevices in "aoe status --json"'s daemon counters).
            The sockets, control files and aoe_iflist are root's alone (aoe.sock and nbd.sock
            0600, whatever the umask); --group NAME gives that group the sockets (0660) and
            the control files (err 0440, the others 0220), as the udev rules do for the block
            devices. aoe.sock also checks each peer's credentials.
  rmmod     unload it (refused while a device is open)
  discover  broadcast a Query Config on the allowed interfaces
  interfaces [-c] [netif...]   show or set aoe_iflist
  revalidate eX.Y              ask a device again for its size
  flush [-a] [eX.Y...]         forget down devices (-a: every device not open)
  err       print diagnostics as they arrive (/dev/etherd/err)
  status [--json] [--wait eX.Y] [regex]   the aoe-stat table
  status --counters [--json]              per-device counters (requests, bytes, retransmits, CRC)
  read eX.Y OFFSET LENGTH / write eX.Y OFFSET   block I/O through the driver

  modprobe also starts the NBD bridge: every device that is up is an NBD export
  named like it on $AOE_RUNDIR/nbd.sock (mode 0600: root only), attached to
  /dev/nbdN where the kernel has nbd (--nbd-attach auto|yes|no).
    --nbd-tcp PORT [--nbd-host ADDR]   also serve on TCP (127.0.0.1 unless ADDR)
      WARNING: TCP has no file permissions: every device, read and write, is
      open to anyone who can connect (on 127.0.0.1: every local user). Limit it:
    --nbd-allow ADDR[,CIDR...]   only these client addresses (e.g. 10.0.0.0/8)
    --nbd-read-only              TCP clients may only read
    --nbd-tls DIR [--nbd-tls-verify]   require TLS (NBD STARTTLS) with
                                 DIR/server-cert.pem and server-key.pem; with
                                 --nbd-tls-verify clients need a certificate
                                 signed by DIR/ca-cert.pem
    --nbd-max-connections N      client connections at once (default 64)
    --nbd-max-buffer MIB         request data held in memory (default 256 MiB;
                                 32 MiB a connection); past it, reading waits

  AOE_DEVDIR (default /dev/etherd) and AOE_RUNDIR (default /run/aoe) move the
  control files and the run-time tree; --devdir and --rundir do the same. On a
  disk filesystem the attribute tree lives on /dev/shm behind a symlink
  (AOE_TREE_IN_PLACE=1 keeps it in place).
  version   print the version
  help      this text

"aoe <command> --help" explains each command.`;

/** Runs the `aoe` command line; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    return await dispatch(args);
  } catch (error) {
    // A bad command line, or a failure no verb foresaw: one line, never a stack trace.
    console.error(`aoe ${args[0] ?? ""}: ${errorMessage(error)}`);
    return 1;
  }
}

async function dispatch(args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case "target":
      return await targetCommand(rest);
    case "targetd":
      return await targetCommand([...rest, "--daemon"]);
    case "target-ctl":
      return await targetCtlCommand(rest);
    case "driver-daemon":
      return await daemonCommand(rest);
    case "version":
    case "--version":
      if (rest.length > 0) throw new Error(`unexpected argument "${rest[0]}"`);
      console.log(`aoe ${VERSION}`);
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(HELP);
      return verb === undefined ? 1 : 0;
    default:
      // Own properties only: "toString" or "constructor" are not verbs (Object.prototype).
      if (Object.hasOwn(DRIVER_VERBS, verb)) return await driverCommand(verb, rest);
      console.error(`aoe: unknown command "${verb}" (try "aoe help")`);
      return 1;
  }
}
