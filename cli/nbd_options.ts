/**
 * The NBD bridge's `--nbd-*` options, shared by `aoe modprobe` (which checks
 * them before it starts the daemon) and `aoe driver-daemon`.
 *
 * @module
 */

import type { BridgeOptions } from "../nbd/bridge.ts";
import { allowList } from "../nbd/server.ts";
import { readTlsDirectory } from "../nbd/tls.ts";

/** The NBD bridge's command-line options (shared by `modprobe`, which passes them on). */
export const NBD_OPTIONS = {
  "nbd-tcp": { type: "string" },
  "nbd-host": { type: "string" },
  "nbd-allow": { type: "string" },
  "nbd-read-only": { type: "boolean" },
  "nbd-tls": { type: "string" },
  "nbd-tls-verify": { type: "boolean" },
  "nbd-max-connections": { type: "string" },
  "nbd-max-buffer": { type: "string" },
  "nbd-attach": { type: "string" },
} as const;

/** Parsed `--nbd-*` values. */
export type NbdValues = { [K in keyof typeof NBD_OPTIONS]?: string | boolean };

/** The bridge's options from parsed `--nbd-*` values; throws an Error with a one-line reason. */
export function bridgeOptions(
  values: NbdValues,
  socketPath: string,
): BridgeOptions {
  const text = (name: keyof typeof NBD_OPTIONS) => values[name] as string | undefined;
  const count = (name: keyof typeof NBD_OPTIONS, max: number) => {
    const value = text(name);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < 1 || n > max) {
      throw new Error(`--${name} must be a number from 1 to ${max}`);
    }
    return n;
  };
  const port = text("nbd-tcp");
  if (port !== undefined && (!/^\d+$/.test(port) || Number(port) > 65535)) {
    throw new Error("--nbd-tcp must be a port number from 0 to 65535");
  }
  const tcpOnly = ["nbd-host", "nbd-allow", "nbd-read-only", "nbd-tls", "nbd-tls-verify"] as const;
  for (const name of tcpOnly) {
    if (port === undefined && values[name] !== undefined) {
      throw new Error(`--${name} needs --nbd-tcp`);
    }
  }
  const allow = text("nbd-allow")?.split(",").map((entry) => entry.trim()).filter(Boolean);
  if (allow) allowList(allow); // a bad entry fails here, with its name
  const tlsDir = text("nbd-tls");
  if (values["nbd-tls-verify"] && tlsDir === undefined) {
    throw new Error("--nbd-tls-verify needs --nbd-tls DIR");
  }
  const attach = text("nbd-attach") ?? "auto";
  if (!["auto", "yes", "no"].includes(attach)) {
    throw new Error("--nbd-attach must be auto, yes or no");
  }
  const maxBuffer = count("nbd-max-buffer", 1 << 20);
  return {
    socketPath,
    tcp: port === undefined ? undefined : {
      port: Number(port),
      hostname: text("nbd-host"),
      allow,
      readOnly: values["nbd-read-only"] === true,
      tls: tlsDir === undefined
        ? undefined
        : readTlsDirectory(tlsDir, { verifyPeer: values["nbd-tls-verify"] === true }),
    },
    limits: {
      maxConnections: count("nbd-max-connections", 1 << 16),
      maxBytes: maxBuffer === undefined ? undefined : maxBuffer << 20,
    },
    attach: attach as "auto" | "yes" | "no",
  };
}
