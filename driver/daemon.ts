/**
 * The driver's daemon: runs the {@link Driver} in the background with a Unix
 * socket for the CLI verbs (one JSON object a line each way), a pid file,
 * and orderly removal of its files when unloaded.
 *
 * @module
 */

import { decodeBase64, encodeBase64 } from "./base64.ts";
import {
  type AccessPolicy,
  applyMode,
  MODES,
  peerAllowed,
  peerCredentials,
  restrictUmask,
} from "./access.ts";
import { Driver } from "./driver.ts";
import type { DriverParams } from "./params.ts";
import { type DriverPaths } from "./paths.ts";
import type { LinkKind } from "../link/mod.ts";
import { type SocketStream, UnixListener } from "../reactor/mod.ts";
import { errorMessage } from "../util/errors.ts";

/** A request to the daemon. */
export interface DaemonRequest {
  /** The verb: ping, status, messages, discover, interfaces, revalidate, flush, open, read, write, rmmod. */
  cmd: string;
  /** The verb's arguments (name, offset, length, data, list, arg, fua). */
  [key: string]: unknown;
}

/** Services living beside the driver in the daemon (the NBD bridge). */
export interface DaemonExtension {
  /** Called once the driver has started. */
  start(driver: Driver): Promise<void> | void;
  /** Called before the driver stops. */
  stop(): Promise<void> | void;
}

/** Options of {@link runDaemon}. */
export interface DaemonOptions {
  /** Frame I/O kind (default: the link module's default). */
  link?: LinkKind;
  /** Receive room of each link in frames (default: the link's own, docs/frame-io.md §8). */
  rxFrames?: number;
  /** Services started with the driver and stopped before it (the NBD bridge). */
  extensions?: DaemonExtension[];
  /** The group granted access to the sockets and control files (default: root only). */
  access?: AccessPolicy;
  /** Longest wait at shutdown for outstanding requests and the final FLUSH CACHE (ms, default 30 s). */
  drainMs?: number;
}

/** Signals that end the daemon cleanly (outstanding I/O answered, devices flushed). */
export const SHUTDOWN_SIGNALS: readonly Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP"];

/** Longest request line on the control socket (a write's base64 data included). */
const MAX_REQUEST_LINE = 64 << 20;

/**
 * Runs the daemon until rmmod or a shutdown signal. Throws (having removed
 * everything it created) when it cannot start.
 */
export async function runDaemon(
  params: DriverParams,
  paths: DriverPaths,
  options: DaemonOptions = {},
): Promise<number> {
  const access = options.access ?? {};
  // Everything is created owner-only, then opened as meant: the caller's umask never decides.
  restrictUmask();
  const driver = new Driver({
    params,
    paths,
    link: options.link,
    rxFrames: options.rxFrames,
    access,
  });
  const lastResort = installLastResort(driver);
  const extensions = options.extensions ?? [];
  const started: DaemonExtension[] = [];
  let listener: UnixListener | undefined;
  try {
    Deno.mkdirSync(paths.runDir, { recursive: true });
    applyMode(paths.runDir, MODES.directory);
    try {
      Deno.removeSync(paths.socket);
    } catch { /* none */ }
    driver.start();
    for (const extension of extensions) {
      started.push(extension); // stopped on failure even if it started only in part
      await extension.start(driver);
    }
    listener = new UnixListener(paths.socket, driver.reactor);
    applyMode(paths.socket, MODES.socket, access);
    Deno.writeTextFileSync(paths.pidFile, `${Deno.pid}\n`);
    applyMode(paths.pidFile, MODES.attribute);
  } catch (error) {
    listener?.close();
    for (const extension of started.reverse()) {
      await Promise.resolve(extension.stop()).catch(() => {});
    }
    // Also after a start that failed half-way: the tree and FIFOs made so far go.
    await driver.stop().catch(() => {});
    removeFiles(paths);
    lastResort.remove();
    throw error;
  }
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const onSignal = () => stop();
  for (const signal of SHUTDOWN_SIGNALS) Deno.addSignalListener(signal, onSignal);

  const control = listener;
  const serving = (async () => {
    for await (const connection of control) {
      handleConnection(connection, driver, stop, access).catch(() => {});
    }
  })().catch(() => {});
  await stopped;
  control.close();
  await serving;
  await drainDriver(driver, options.drainMs ?? 30_000);
  for (const extension of extensions) await Promise.resolve(extension.stop()).catch(() => {});
  await driver.stop();
  removeFiles(paths);
  for (const signal of SHUTDOWN_SIGNALS) Deno.removeSignalListener(signal, onSignal);
  lastResort.remove();
  return 0;
}

function removeFiles(paths: DriverPaths): void {
  for (const path of [paths.socket, paths.pidFile]) {
    try {
      Deno.removeSync(path);
    } catch { /* gone */ }
  }
}

/**
 * The last line of defence: a rejection nobody handled or an exception nobody
 * caught is logged, and the daemon goes on serving its other devices.
 */
export function installLastResort(driver: Driver): { remove(): void } {
  const report = (what: string, reason: unknown) => {
    const text = errorMessage(reason);
    const line = `aoe: ${what}: ${text}`;
    driver.messages.push(line);
    console.error(line);
  };
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    report("unhandled rejection", event.reason);
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    report("uncaught error", event.error ?? event.message);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return {
    remove() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    },
  };
}

/**
 * Before stopping: lets outstanding requests finish, then asks every device
 * that is up for FLUSH CACHE, so what was acknowledged is durable on the targets.
 * Gives up after `limitMs`.
 */
export async function drainDriver(driver: Driver, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (driver.initiator.queuedRequests > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const flushes = driver.initiator.devices.list().filter((d) => d.up).map((d) =>
    driver.blockDevice(d.name)!.flush().catch((error) =>
      driver.messages.push(`aoe: ${d.name}: final flush failed: ${error.message}`)
    )
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(flushes),
    new Promise((resolve) => timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))),
  ]);
  clearTimeout(timer);
}

async function writeAll(connection: SocketStream, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await connection.write(bytes.subarray(done));
}

async function handleConnection(
  connection: SocketStream,
  driver: Driver,
  stop: () => void,
  access: AccessPolicy,
): Promise<void> {
  const opened: string[] = [];
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(64 * 1024);
  let pending = "";
  try {
    // Modes keep others off the socket; the peer's credentials decide even if they did not.
    let peer;
    try {
      peer = peerCredentials(connection.fd);
    } catch { /* refused below */ }
    const allowed = peer !== undefined && peerAllowed(peer, access);
    if (!allowed) driver.messages.push(`aoe: control socket: refused uid ${peer?.uid ?? "?"}`);
    for (;;) {
      const n = await connection.read(buffer);
      if (n === null) break;
      pending += decoder.decode(buffer.subarray(0, n), { stream: true });
      if (pending.length > MAX_REQUEST_LINE) {
        const reply = { ok: false, error: "request too long" };
        await writeAll(connection, encoder.encode(`${JSON.stringify(reply)}\n`));
        break;
      }
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (!allowed) {
          // Answered after the request is read: closing on unread data would reset the peer.
          const reply = { ok: false, error: `permission denied (uid ${peer?.uid ?? "?"})` };
          await writeAll(connection, encoder.encode(`${JSON.stringify(reply)}\n`));
          return;
        }
        let reply: unknown;
        try {
          reply = await answer(JSON.parse(line) as DaemonRequest, driver, stop, opened);
        } catch (error) {
          reply = { ok: false, error: errorMessage(error) };
        }
        // Whoever sees a reply sees the attribute tree as of that reply (it is written lazily).
        driver.flushFiles();
        await writeAll(connection, encoder.encode(`${JSON.stringify(reply)}\n`));
      }
    }
  } finally {
    // A connection that opened devices holds them until it ends.
    for (const name of opened) driver.blockDevice(name)?.close();
    connection.close();
  }
}

async function answer(
  request: DaemonRequest,
  driver: Driver,
  stop: () => void,
  opened: string[],
): Promise<unknown> {
  if (typeof request !== "object" || request === null) throw new Error("not a request object");
  const name = String(request.name ?? "");
  switch (request.cmd) {
    case "ping":
      return { ok: true, pid: Deno.pid };
    case "status":
      return {
        ok: true,
        params: driver.params,
        counters: driver.initiator.counters,
        extensions: driver.initiator.extensions.counters,
        interfaces: [...driver.links.values()].map((link) => ({
          name: link.name,
          counters: { ...link.counters },
        })),
        devices: driver.initiator.devices.list().map((d) => ({
          name: d.name,
          state: d.state,
          visible: d.visible,
          sectors: d.sectors,
          minor: d.minor,
          payload: d.payload,
          open: d.openCount,
          rttavgUs: Math.round(d.rttavg / 256),
          rtoUs: driver.initiator.rto(d),
          counters: {
            ...driver.initiator.deviceCounters.of(d),
            outstanding: d.targets.reduce((sum, t) => sum + t.nout, 0),
          },
          targets: d.targets.map((t) => ({
            mac: t.mac.toString(16).padStart(12, "0"),
            nout: t.nout,
            maxout: t.maxout,
            nframes: t.nframes,
            taint: t.taint,
            extensions: driver.initiator.extensions.describe(t),
            interfaces: t.interfaces.map((i) => ({
              name: i.link.name,
              payload: i.payload,
              lost: i.lost,
            })),
          })),
        })),
      };
    case "messages":
      return { ok: true, messages: driver.messages };
    case "discover":
      driver.discover();
      return { ok: true };
    case "interfaces":
      if (typeof request.list === "string") driver.setInterfaces(request.list);
      return { ok: true, iflist: driver.params.iflist.join(" ") };
    case "revalidate":
      if (!driver.revalidate(name)) return { ok: false, error: `${name}: no such device` };
      return { ok: true };
    case "flush":
      return { ok: true, removed: driver.flushDevices(String(request.arg ?? "")) };
    case "open": {
      const device = driver.blockDevice(name);
      if (!device) return { ok: false, error: `${name}: no such device` };
      device.open();
      opened.push(name);
      return { ok: true };
    }
    case "read": {
      const device = driver.blockDevice(name);
      if (!device) return { ok: false, error: `${name}: no such device` };
      const data = await device.read(Number(request.offset), Number(request.length));
      return { ok: true, data: encodeBase64(data) };
    }
    case "write": {
      const device = driver.blockDevice(name);
      if (!device) return { ok: false, error: `${name}: no such device` };
      await device.write(Number(request.offset), decodeBase64(String(request.data)), {
        fua: Boolean(request.fua),
      });
      return { ok: true };
    }
    case "rmmod": {
      const busy = driver.initiator.devices.list().filter((d) => d.openCount > 0).map((d) =>
        d.name
      );
      if (busy.length > 0) return { ok: false, error: `aoe in use: ${busy.join(" ")} open` };
      stop();
      return { ok: true };
    }
    default:
      return { ok: false, error: `unknown command ${request.cmd}` };
  }
}

/** Sends one request to a running daemon; undefined if none answers. */
export async function ask(
  paths: DriverPaths,
  request: DaemonRequest,
): Promise<Record<string, unknown> | undefined> {
  let connection: Deno.Conn;
  try {
    connection = await Deno.connect({ transport: "unix", path: paths.socket });
  } catch {
    return undefined;
  }
  try {
    const writer = connection.writable.getWriter();
    await writer.write(new TextEncoder().encode(`${JSON.stringify(request)}\n`));
    writer.releaseLock();
    let text = "";
    for await (const chunk of connection.readable.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("\n")) break;
    }
    return JSON.parse(text.slice(0, text.indexOf("\n")));
  } catch {
    return undefined;
  } finally {
    try {
      connection.close();
    } catch { /* closed */ }
  }
}
