/**
 * `aoe driver-daemon`: the background process `aoe modprobe` starts. Every
 * option is checked before anything is created; a daemon that cannot start
 * says why in one line and leaves nothing behind.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type AccessPolicy, MODES, resolveGroup } from "../driver/access.ts";
import { runDaemon } from "../driver/daemon.ts";
import { type BridgeOptions, NbdBridge } from "../nbd/bridge.ts";
import { bridgeOptions, NBD_OPTIONS, type NbdValues } from "./nbd_options.ts";
import { resolveParams } from "../driver/params.ts";
import { driverPaths } from "../driver/paths.ts";
import type { LinkKind } from "../link/mod.ts";
import { errorMessage } from "../util/errors.ts";

/** A bad option: one line on stderr, exit 1. */
export class UsageError extends Error {}

/** The options `aoe modprobe` and `aoe driver-daemon` share. */
export const DAEMON_OPTIONS = {
  rundir: { type: "string" },
  devdir: { type: "string" },
  link: { type: "string" },
  "rx-frames": { type: "string" },
  group: { type: "string" },
  ...NBD_OPTIONS,
} as const;

/** What the shared options mean, checked. */
export interface DaemonSettings {
  link?: LinkKind;
  /** Receive room of each link in frames (`--rx-frames`; default: the link's own, docs/frame-io.md §8). */
  rxFrames?: number;
  access: AccessPolicy;
  tcpPort?: number;
  tcpHost?: string;
  attach: "auto" | "yes" | "no";
  /** The bridge's TCP exposure and limits (all but the Unix socket's path, mode and group). */
  nbd: Omit<BridgeOptions, "socketPath" | "socketMode" | "socketGid">;
}

/** Checks the shared options; throws a {@link UsageError} naming the first bad one. */
export function daemonSettings(
  values: { link?: string; group?: string; "rx-frames"?: string } & NbdValues,
): DaemonSettings {
  const link = values.link;
  if (link !== undefined && !["ring", "packet", "pcap"].includes(link)) {
    throw new UsageError(`--link must be ring, packet or pcap, not "${link}"`);
  }
  let rxFrames: number | undefined;
  if (values["rx-frames"] !== undefined) {
    const text = values["rx-frames"];
    rxFrames = /^\d{1,7}$/.test(text) ? Number(text) : NaN;
    if (!(rxFrames >= 1 && rxFrames <= 1 << 20)) {
      throw new UsageError(`--rx-frames: not a frame count (1-1048576): "${text}"`);
    }
  }
  const attach = (values["nbd-attach"] as string | undefined) ?? "auto";
  if (!["auto", "yes", "no"].includes(attach)) {
    throw new UsageError("--nbd-attach must be auto, yes or no");
  }
  let tcpPort: number | undefined;
  if (values["nbd-tcp"] !== undefined) {
    const text = values["nbd-tcp"] as string;
    tcpPort = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
    if (!(tcpPort >= 1 && tcpPort <= 65535)) {
      throw new UsageError(`--nbd-tcp: not a TCP port (1-65535): "${text}"`);
    }
  } else if (values["nbd-host"] !== undefined) {
    throw new UsageError("--nbd-host needs --nbd-tcp PORT");
  }
  const access: AccessPolicy = {};
  if (values.group !== undefined) {
    try {
      access.gid = resolveGroup(values.group);
    } catch (error) {
      throw new UsageError(`--group: ${errorMessage(error)}`);
    }
    access.groupName = values.group;
  }
  let nbd: DaemonSettings["nbd"];
  try {
    nbd = bridgeOptions(values, "");
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  return {
    link: link as LinkKind | undefined,
    rxFrames,
    access,
    tcpPort,
    tcpHost: values["nbd-host"] as string | undefined,
    attach: attach as DaemonSettings["attach"],
    nbd,
  };
}

/** Binds the TCP address once and lets it go: a port in use or a foreign address fails here, in one line. */
export function checkTcpListen(port: number, host = "127.0.0.1"): void {
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ port, hostname: host });
  } catch (error) {
    throw new UsageError(
      `cannot listen on ${host}:${port}: ${errorMessage(error)}`,
    );
  }
  listener.close();
}

/** An error's message; of node:util parseArgs errors only the first sentence (the rest is advice about "--"). */
export function conciseMessage(error: Error): string {
  const code = (error as { code?: string }).code ?? "";
  return code.startsWith("ERR_PARSE_ARGS") ? error.message.split(". ")[0] : error.message;
}

/** Runs the daemon in the foreground; resolves with the exit code. */
export async function daemonCommand(args: string[]): Promise<number> {
  let settings: DaemonSettings;
  let run: () => Promise<number>;
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: DAEMON_OPTIONS,
    });
    settings = daemonSettings(values);
    const params = resolveParams(positionals);
    const paths = driverPaths({ runDir: values.rundir, devDir: values.devdir });
    const { access } = settings;
    const bridge = new NbdBridge({
      ...settings.nbd,
      socketPath: paths.nbdSocket,
      socketMode: access.gid === undefined ? 0o600 : MODES.socket,
      socketGid: access.gid,
    });
    run = () =>
      runDaemon(params, paths, {
        link: settings.link,
        rxFrames: settings.rxFrames,
        extensions: [bridge],
        access,
      });
  } catch (error) {
    console.error(`aoe driver-daemon: ${error instanceof Error ? conciseMessage(error) : error}`);
    return 1;
  }
  try {
    return await run();
  } catch (error) {
    // The daemon removed what it had created; its reason is the last line of its log.
    console.error(`aoe driver-daemon: ${errorMessage(error)}`);
    return 1;
  }
}
