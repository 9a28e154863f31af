/**
 * The initiator's verbs, with aoetools' usage: modprobe, rmmod, discover,
 * interfaces, revalidate, flush, err, status; and read/write for
 * administrators and tests.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ask } from "../driver/daemon.ts";
import { type DriverParams, resolveParams } from "../driver/params.ts";
import { type DriverPaths, driverPaths } from "../driver/paths.ts";
import { aoeStatRows, statusObjects } from "../driver/status.ts";
import { trustedTree } from "../driver/memory_tree.ts";
import {
  type DeviceCounters,
  formatDeviceCounters,
  formatInterfaceCounters,
  type InterfaceCounters,
} from "../driver/device_counters.ts";
import { decodeBase64, encodeBase64 } from "../driver/base64.ts";
import { interfaceExists } from "../link/mod.ts";
import { sdNotify } from "./sd_notify.ts";
import { selfCommand } from "./self.ts";
import { NBD_OPTIONS } from "./nbd_options.ts";
import {
  checkTcpListen,
  conciseMessage,
  DAEMON_OPTIONS,
  daemonSettings,
  UsageError,
} from "./daemon_command.ts";
import { errorMessage } from "../util/errors.ts";

/** Thrown for a one-line error and exit status 1. */
class CommandError extends Error {}

function pathsFrom(values: { rundir?: string; devdir?: string }): DriverPaths {
  return driverPaths({ runDir: values.rundir, devDir: values.devdir });
}

const pathOptions = { rundir: { type: "string" }, devdir: { type: "string" } } as const;

async function request(
  paths: DriverPaths,
  body: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const reply = await ask(paths, body as { cmd: string });
  if (!reply) {
    throw new CommandError(
      `the aoe driver is not loaded (no daemon at ${paths.socket}; run "aoe modprobe")`,
    );
  }
  if (!reply.ok) throw new CommandError(String(reply.error));
  return reply;
}

const MODPROBE_CONF = "/etc/modprobe.d/aoe.conf";

async function modprobe(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...DAEMON_OPTIONS,
      config: { type: "string" },
      foreground: { type: "boolean" },
    },
  });
  const paths = pathsFrom(values);
  const words = positionals.filter((word) => word !== "aoe");
  const configPath = values.config ?? Deno.env.get("AOE_MODPROBE_CONF") ?? MODPROBE_CONF;
  let fileText: string | undefined;
  try {
    fileText = Deno.readTextFileSync(configPath);
  } catch (error) {
    if (values.config) {
      throw new CommandError(
        `cannot read ${configPath}: ${errorMessage(error)}`,
      );
    }
  }
  let params: DriverParams;
  try {
    params = resolveParams(words, fileText);
  } catch (error) {
    throw new CommandError(errorMessage(error));
  }
  // Every option is checked before anything starts.
  const settings = daemonSettings(values);
  if (await ask(paths, { cmd: "ping" })) return 0; // already loaded: nothing changes, as modprobe
  if (settings.tcpPort !== undefined) checkTcpListen(settings.tcpPort, settings.tcpHost);
  const daemonArgs = [
    "driver-daemon",
    ...paramWords(params),
    `--rundir=${paths.runDir}`,
    `--devdir=${paths.devDir}`,
  ];
  for (const option of ["link", "rx-frames", "group", ...Object.keys(NBD_OPTIONS)] as const) {
    const value = values[option as keyof typeof values];
    if (value === true) daemonArgs.push(`--${option}`);
    else if (typeof value === "string") daemonArgs.push(`--${option}=${value}`);
  }
  if (values.foreground) {
    const { daemonCommand } = await import("./daemon_command.ts");
    return await daemonCommand(daemonArgs.slice(1));
  }
  Deno.mkdirSync(paths.runDir, { recursive: true });
  const log = `${paths.runDir}/aoe.log`;
  let logStart = 0;
  try {
    logStart = Deno.statSync(log).size;
  } catch { /* a new log */ }
  // setsid(1) without -f execs in this child (not a group leader), so its exit is the daemon's.
  const child = new Deno.Command("setsid", {
    args: [
      "sh",
      "-c",
      'umask 077; exec "$@" >>"$AOE_LOG" 2>&1',
      "sh",
      ...selfCommand(),
      ...daemonArgs,
    ],
    env: { AOE_LOG: log },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => exited = status);
  for (let i = 0; i < 300; i++) {
    const pong = await ask(paths, { cmd: "ping" });
    if (pong) {
      child.unref();
      // Under systemd (aoe-initiator.service, Type=notify) the daemon becomes the main process.
      sdNotify(`READY=1\nMAINPID=${pong.pid}\nSTATUS=driver loaded`);
      return 0;
    }
    if (exited && !exited.success) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.unref();
  throw new CommandError(`the driver did not start${daemonReason(log, logStart)}`);
}

/** The daemon's last word in its log since `from`, as ": reason", or "". */
function daemonReason(log: string, from: number): string {
  try {
    const bytes = Deno.readFileSync(log).subarray(from);
    const lines = new TextDecoder().decode(bytes).trim().split("\n").filter(Boolean);
    const last = lines.findLast((line) => line.startsWith("aoe driver-daemon: ")) ??
      lines.at(-1);
    return last ? `: ${last.replace(/^aoe driver-daemon: /, "")}` : "";
  } catch {
    return "";
  }
}

function paramWords(params: DriverParams): string[] {
  return [
    `aoe_iflist=${params.iflist.join(" ")}`,
    `aoe_deadsecs=${params.deadsecs}`,
    `aoe_maxout=${params.maxout}`,
    `aoe_dyndevs=${params.dyndevs}`,
    `aoe_maxdevs=${params.maxdevs}`,
  ];
}

async function rmmod(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: pathOptions });
  const paths = pathsFrom(values);
  let pid = "";
  try {
    pid = Deno.readTextFileSync(paths.pidFile).trim();
  } catch { /* none */ }
  await request(paths, { cmd: "rmmod" });
  for (let i = 0; i < 200 && pid; i++) {
    try {
      Deno.statSync(`/proc/${pid}`);
    } catch {
      return 0;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return 0;
}

async function interfaces(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...pathOptions, c: { type: "boolean", short: "c" } },
  });
  const paths = pathsFrom(values);
  if (!values.c && positionals.length === 0) {
    const reply = await request(paths, { cmd: "interfaces" });
    console.log(reply.iflist);
    return 0;
  }
  for (const name of positionals) {
    if (!interfaceExists(name)) throw new CommandError(`"${name}" is not a network interface`);
  }
  await request(paths, { cmd: "interfaces", list: values.c ? "" : positionals.join(" ") });
  return 0;
}

async function flush(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...pathOptions, a: { type: "boolean", short: "a" } },
  });
  const paths = pathsFrom(values);
  if (values.a) {
    await request(paths, { cmd: "flush", arg: "all" });
    return 0;
  }
  if (positionals.length === 0) {
    await request(paths, { cmd: "flush", arg: "" });
    return 0;
  }
  const known = statusObjects(paths.sysDir).map((d) => d.device);
  for (const name of positionals) {
    if (!known.includes(name)) throw new CommandError(`"${name}" is not an aoe device`);
    await request(paths, { cmd: "flush", arg: name });
  }
  return 0;
}

async function err(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ...pathOptions, counters: { type: "boolean" }, json: { type: "boolean" } },
  });
  const paths = pathsFrom(values);
  if (values.counters) return await errorCounters(paths, values.json ?? false);
  const file = await Deno.open(`${paths.devDir}/err`, { read: true }).catch(() => {
    throw new CommandError(`${paths.devDir}/err does not exist (is the driver loaded?)`);
  });
  await file.readable.pipeTo(Deno.stdout.writable, { preventClose: true });
  return 0;
}

async function status(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...pathOptions,
      json: { type: "boolean" },
      counters: { type: "boolean" },
      wait: { type: "string" },
      timeout: { type: "string", default: "30" },
    },
  });
  const paths = pathsFrom(values);
  const timeout = Number(values.timeout);
  if (!/^\d+(\.\d+)?$/.test(values.timeout) || !Number.isFinite(timeout)) {
    throw new CommandError(`--timeout: not a number of seconds: "${values.timeout}"`);
  }
  if (values.wait !== undefined && !/^e\d+\.\d+$/.test(values.wait)) {
    throw new CommandError(`--wait: not a device name (eX.Y): "${values.wait}"`);
  }
  const given = Deno.env.get("sysfs_dir");
  const sysDir = given ?? paths.sysDir;
  try {
    Deno.statSync(`${sysDir}/block`);
  } catch {
    throw new CommandError(`${sysDir}/block does not exist (is the driver loaded?)`);
  }
  if (!trustedTree(sysDir)) {
    throw new CommandError(
      `${sysDir} names a directory its owner did not make (not the driver's tree)`,
    );
  }
  // A tree the daemon left behind when it died is not the driver's state.
  if (given === undefined && !(await daemonAlive(paths))) {
    throw new CommandError(
      `the aoe driver is not running (no daemon answers at ${paths.socket}; ${sysDir} is stale)`,
    );
  }
  if (values.wait) {
    const deadline = Date.now() + timeout * 1000;
    const isUp = () =>
      statusObjects(sysDir).some((d) => d.device === values.wait && d.state === "up");
    while (!isUp()) {
      if (Date.now() > deadline) {
        throw new CommandError(`${values.wait} is not up after ${values.timeout} s`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (values.counters) return await deviceCounters(paths, values.json ?? false);
  if (values.json) {
    console.log(JSON.stringify(statusObjects(sysDir), null, 1));
    return 0;
  }
  for (const row of aoeStatRows(sysDir, positionals[0])) console.log(row);
  return 0;
}

/** A byte count or offset given on the command line: a non-negative integer. */
function byteCount(what: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new CommandError(`${what}: not a non-negative integer: "${text}"`);
  }
  return n;
}

/**
 * Whether the daemon runs: it answers on its socket, or (for users the socket
 * is closed to) its pid file names a live driver-daemon process.
 */
async function daemonAlive(paths: DriverPaths): Promise<boolean> {
  if (await ask(paths, { cmd: "ping" })) return true;
  try {
    const pid = Deno.readTextFileSync(paths.pidFile).trim();
    return /^\d+$/.test(pid) &&
      Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes("driver-daemon");
  } catch {
    return false;
  }
}

/** What the daemon's status command answers, as far as the counter views read it. */
interface CounterReply {
  counters: Record<string, number>;
  devices: { name: string; counters: DeviceCounters }[];
  interfaces?: { name: string; counters: InterfaceCounters }[];
  extensions: unknown;
}

async function askCounters(paths: DriverPaths): Promise<CounterReply> {
  const reply = await ask(paths, { cmd: "status" }) as CounterReply | undefined;
  if (!reply) throw new CommandError("the driver does not answer (is it loaded?)");
  return reply;
}

/** `aoe status --counters [--json]`: the daemon's per-device and per-interface counters (driver/device_counters.ts). */
async function deviceCounters(paths: DriverPaths, json: boolean): Promise<number> {
  const reply = await askCounters(paths);
  const rows = reply.devices.map((d) => ({ name: d.name, counters: d.counters }));
  const interfaces = reply.interfaces ?? [];
  if (json) {
    console.log(
      JSON.stringify({ devices: rows, interfaces, extensions: reply.extensions }, null, 1),
    );
  } else {
    console.log(formatDeviceCounters(rows));
    console.log(formatInterfaceCounters(interfaces));
  }
  return 0;
}

/**
 * `aoe err --counters [--json]`: what the driver dropped and why (malformed,
 * unexpected, kernel receive drops, ...), and each interface's frame counters.
 */
async function errorCounters(paths: DriverPaths, json: boolean): Promise<number> {
  const reply = await askCounters(paths);
  const interfaces = reply.interfaces ?? [];
  if (json) {
    console.log(JSON.stringify({ counters: reply.counters, interfaces }, null, 1));
    return 0;
  }
  const names = Object.keys(reply.counters);
  const width = Math.max(...names.map((n) => n.length));
  for (const name of names) console.log(`${name.padEnd(width)} ${reply.counters[name]}`);
  console.log(formatInterfaceCounters(interfaces));
  return 0;
}

async function readDevice(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: pathOptions });
  const [name, offset, length] = positionals;
  if (!name || offset === undefined || length === undefined) {
    throw new CommandError("usage: aoe read eX.Y OFFSET LENGTH > file");
  }
  byteCount("OFFSET", offset);
  byteCount("LENGTH", length);
  const reply = await request(pathsFrom(values), {
    cmd: "read",
    name,
    offset: Number(offset),
    length: Number(length),
  });
  const data = decodeBase64(String(reply.data));
  // write() on a pipe may take only part of the buffer.
  for (let done = 0; done < data.length;) done += await Deno.stdout.write(data.subarray(done));
  return 0;
}

async function writeDevice(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...pathOptions, fua: { type: "boolean" } },
  });
  const [name, offset] = positionals;
  if (!name || offset === undefined) throw new CommandError("usage: aoe write eX.Y OFFSET < file");
  byteCount("OFFSET", offset);
  const data = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  await request(pathsFrom(values), {
    cmd: "write",
    name,
    offset: Number(offset),
    data: encodeBase64(data),
    fua: values.fua,
  });
  return 0;
}

async function simple(
  args: string[],
  body: (positionals: string[]) => Record<string, unknown>,
  usage?: string,
): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: pathOptions });
  if (usage && positionals.length === 0) throw new CommandError(usage);
  await request(pathsFrom(values), body(positionals));
  return 0;
}

/** The initiator verbs by name. */
export const DRIVER_VERBS: Record<string, (args: string[]) => Promise<number>> = {
  modprobe,
  rmmod,
  interfaces,
  flush,
  err,
  status,
  read: readDevice,
  write: writeDevice,
  discover: (args) => simple(args, () => ({ cmd: "discover" })),
  revalidate: (args) =>
    simple(
      args,
      (p) => ({ cmd: "revalidate", name: p[0] }),
      "Usage: aoe revalidate e{major}.{minor}",
    ),
};

/** Runs an initiator verb, turning expected failures into one line and exit 1. */
export async function driverCommand(verb: string, args: string[]): Promise<number> {
  try {
    return await DRIVER_VERBS[verb](args);
  } catch (error) {
    if (
      error instanceof CommandError || error instanceof UsageError || error instanceof TypeError
    ) {
      console.error(`aoe ${verb}: ${conciseMessage(error)}`);
      return 1;
    }
    throw error;
  }
}
