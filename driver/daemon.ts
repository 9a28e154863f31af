/**
 * The driver's daemon: runs the {@link Driver} in the background with a Unix
 * socket for the CLI verbs (one JSON object a line each way), a pid file,
 * and orderly removal of its files when unloaded.
 *
 * @module
 */

import { decodeBase64, encodeBase64 } from "./base64.ts";
import { Driver } from "./driver.ts";
import type { DriverParams } from "./params.ts";
import { type DriverPaths } from "./paths.ts";
import type { LinkKind } from "../link/mod.ts";

/** A request to the daemon. */
export interface DaemonRequest {
  cmd: string;
  [key: string]: unknown;
}

/** Services living beside the driver in the daemon (the NBD bridge). */
export interface DaemonExtension {
  start(driver: Driver): Promise<void> | void;
  stop(): Promise<void> | void;
}

/** Runs the daemon until rmmod or SIGTERM. */
export async function runDaemon(
  params: DriverParams,
  paths: DriverPaths,
  options: { link?: LinkKind; extensions?: DaemonExtension[] } = {},
): Promise<number> {
  Deno.mkdirSync(paths.runDir, { recursive: true });
  try {
    Deno.removeSync(paths.socket);
  } catch { /* none */ }
  const driver = new Driver({ params, paths, link: options.link });
  driver.start();
  for (const extension of options.extensions ?? []) await extension.start(driver);
  Deno.writeTextFileSync(paths.pidFile, `${Deno.pid}\n`);
  const listener = Deno.listen({ transport: "unix", path: paths.socket });
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const onSignal = () => stop();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);

  const serve = async () => {
    for await (const connection of listener) {
      handleConnection(connection, driver, stop).catch(() => {});
    }
  };
  const serving = serve().catch(() => {});
  await stopped;
  listener.close();
  await serving;
  for (const extension of options.extensions ?? []) await extension.stop();
  await driver.stop();
  for (const path of [paths.socket, paths.pidFile]) {
    try {
      Deno.removeSync(path);
    } catch { /* gone */ }
  }
  Deno.removeSignalListener("SIGTERM", onSignal);
  Deno.removeSignalListener("SIGINT", onSignal);
  return 0;
}

async function handleConnection(
  connection: Deno.Conn,
  driver: Driver,
  stop: () => void,
): Promise<void> {
  const opened: string[] = [];
  const writer = connection.writable.getWriter();
  const encoder = new TextEncoder();
  let pending = "";
  try {
    for await (const chunk of connection.readable.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        let reply: unknown;
        try {
          reply = await answer(JSON.parse(line) as DaemonRequest, driver, stop, opened);
        } catch (error) {
          reply = { ok: false, error: error instanceof Error ? error.message : String(error) };
        }
        await writer.write(encoder.encode(`${JSON.stringify(reply)}\n`));
      }
    }
  } finally {
    // A connection that opened devices holds them until it ends.
    for (const name of opened) driver.blockDevice(name)?.close();
    try {
      writer.releaseLock();
      connection.close();
    } catch { /* closed */ }
  }
}

async function answer(
  request: DaemonRequest,
  driver: Driver,
  stop: () => void,
  opened: string[],
): Promise<unknown> {
  const name = String(request.name ?? "");
  switch (request.cmd) {
    case "ping":
      return { ok: true, pid: Deno.pid };
    case "status":
      return {
        ok: true,
        params: driver.params,
        counters: driver.initiator.counters,
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
          targets: d.targets.map((t) => ({
            mac: t.mac.toString(16).padStart(12, "0"),
            nout: t.nout,
            maxout: t.maxout,
            nframes: t.nframes,
            taint: t.taint,
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
