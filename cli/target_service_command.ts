/**
 * `aoe target --config FILE` (and `aoe targetd --config FILE`): the exports of
 * a config file served as one service. SIGHUP and `aoe target-ctl reload`
 * reload the file; SIGTERM and SIGINT stop after a final flush. Readiness
 * and reloads are told to systemd (sd_notify); logs go to stderr (the
 * journal), or to syslog when run as `targetd`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  ConfigError,
  readConfigFile,
  SERVICE_DEFAULTS,
  type ServiceConfig,
} from "../target/config_file.ts";
import { type ControlReply, type ControlRequest, ControlServer } from "../target/control.ts";
import { writePrometheusFile } from "../target/prometheus.ts";
import { type ReloadResult, TargetService } from "../target/service.ts";
import { writeFileAtomic } from "../target/state_dir.ts";
import { descriptorsNeeded, ensureDescriptors } from "../target/fd_limit.ts";
import { sdNotify } from "./sd_notify.ts";
import { daemonize } from "./target_command.ts";
import { errorMessage } from "../util/errors.ts";
import { FailureLatch } from "../util/failure_latch.ts";
import { StatsFile } from "../target/stats_file.ts";

/** The usage line of the config-file form. */
export const TARGET_SERVICE_USAGE =
  "usage: aoe target --config FILE [--check] [--state-dir DIR] [--control-socket PATH] [--control-group GROUP] [--prometheus-dir DIR] [--link ring|packet|pcap] [--stats FILE] [--daemon]";

/** The --help text of the config-file form. */
export const TARGET_SERVICE_HELP = `${TARGET_SERVICE_USAGE}

Serves every export of a config file (TOML, see aoe-targets.conf(5); default
${SERVICE_DEFAULTS.configFile}) in one process. SIGHUP or "aoe target-ctl reload"
reloads it: unchanged exports go on serving, new ones start and announce,
removed ones stop, changed ones (or ones whose file changed size) restart
alone. A file with any error is refused whole, at start and at reload.

  --config FILE          the config file
  --check                check the config file and exit (0 if it is valid)
  --state-dir DIR        keep config strings and MAC masks here ("" = off;
                         default ${SERVICE_DEFAULTS.stateDir})
  --control-socket PATH  the socket of "aoe target-ctl" ("" = off; default
                         ${SERVICE_DEFAULTS.controlSocket})
  --control-group GROUP  members of GROUP may use the control socket besides root
  --prometheus-dir DIR   write aoe_target.prom there for node_exporter
  --link K               frame I/O: ring, packet or pcap
  --stats FILE           write JSON counters to FILE every second and at exit
  --daemon               run in the background and log to syslog (as targetd)

The options override the [service] table of the file.`;

function loadConfig(path: string, overrides: Partial<ServiceConfig["service"]>): ServiceConfig {
  const config = readConfigFile(path);
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (config.service as unknown as Record<string, unknown>)[key] = value;
  }
  return config;
}

/** Describes a reload in one line. */
export function describeReload(result: ReloadResult): string {
  const parts = (["added", "removed", "changed", "resized", "unchanged"] as const)
    .map((key) => `${key} ${result[key].length ? result[key].join(",") : "-"}`);
  return parts.join("; ");
}

/** Runs `aoe target --config FILE ...`; resolves with the exit code. */
export async function targetServiceCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: "string" },
        check: { type: "boolean" },
        "state-dir": { type: "string" },
        "control-socket": { type: "string" },
        "control-group": { type: "string" },
        "prometheus-dir": { type: "string" },
        link: { type: "string" },
        stats: { type: "string" },
        daemon: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    console.error(`aoe target: ${(error as Error).message}\n${TARGET_SERVICE_USAGE}`);
    return 1;
  }
  if (values.help) {
    console.log(TARGET_SERVICE_HELP);
    return 0;
  }
  const link = values.link;
  if (link !== undefined && link !== "ring" && link !== "packet" && link !== "pcap") {
    console.error(`aoe target: --link must be ring, packet or pcap, not ${link}`);
    return 1;
  }
  const path = values.config ?? SERVICE_DEFAULTS.configFile;
  const overrides = {
    stateDir: values["state-dir"],
    controlSocket: values["control-socket"],
    controlGroup: values["control-group"],
    prometheusDir: values["prometheus-dir"],
    link,
    statsFile: values.stats,
  } as Partial<ServiceConfig["service"]>;
  let config: ServiceConfig;
  try {
    config = loadConfig(path, overrides);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.problems.map((p) => `aoe target: ${p}`).join("\n"));
    console.error(`aoe target: ${path} refused, nothing started`);
    return 1;
  }
  if (values.check) {
    console.log(`${path}: ${config.exports.length} exports, valid`);
    return 0;
  }
  try {
    // An unwritable --stats is refused at start with one line, also before --daemon detaches.
    if (config.service.statsFile) new StatsFile(config.service.statsFile).check();
  } catch (error) {
    console.error(`aoe target: ${errorMessage(error)}`);
    return 1;
  }
  if (values.daemon) {
    return await daemonize(args.filter((arg) => arg !== "--daemon"));
  }
  return await serve(config, () => loadConfig(path, overrides));
}

async function serve(config: ServiceConfig, reread: () => ServiceConfig): Promise<number> {
  const log = (message: string) => console.error(`aoe target: ${message}`);
  let service: TargetService;
  try {
    ensureDescriptors(descriptorsNeeded(config.exports));
    service = new TargetService(config, { log });
  } catch (error) {
    log(errorMessage(error));
    return 1;
  }
  /** Rereads the file and reloads; refuses (and keeps every export) on any error. */
  const reload = (): ControlReply => {
    sdNotify("RELOADING=1");
    try {
      const next = reread();
      // A reload opens new and changed exports before it closes the old ones.
      ensureDescriptors(descriptorsNeeded([...service.config.exports, ...next.exports]));
      const result = service.reload(next);
      log(`reloaded ${next.path}: ${describeReload(result)}`);
      if (JSON.stringify(next.service) !== JSON.stringify(service.config.service)) {
        log("the [service] table changed: it takes effect at the next start");
      }
      return { ok: true, result };
    } catch (error) {
      const text = error instanceof ConfigError
        ? error.problems.join("\n")
        : (error as Error).message;
      log(`reload refused, every export left as it was:\n${text}`);
      return { ok: false, error: `reload refused:\n${text}` };
    } finally {
      sdNotify(`READY=1\nSTATUS=serving ${service.exports.length} exports`);
    }
  };

  const handle = (request: ControlRequest): ControlReply | Promise<ControlReply> => {
    const [name] = request.args;
    try {
      switch (request.command) {
        case "list":
          return { ok: true, result: service.list() };
        case "stats":
          return { ok: true, result: service.server.stats() };
        case "reload":
          return reload();
        case "freeze":
        case "unfreeze":
          if (!name) return { ok: false, error: `${request.command} needs an export (eX.Y)` };
          return service.freeze(name, request.command === "freeze").then(
            () => ({ ok: true, result: { name, state: request.command + "d" } }),
            (error) => ({
              ok: false,
              error: error instanceof Error ? error.message : String(error),
            }),
          );
        case "resize":
          if (!name) return { ok: false, error: "resize needs an export (eX.Y)" };
          return { ok: true, result: { name, ...service.resize(name) } };
        default:
          return { ok: false, error: `unknown command ${request.command}` };
      }
    } catch (error) {
      return { ok: false, error: (error as Error).message };
    }
  };

  let control: ControlServer | undefined;
  const settings = () => service.config.service;
  if (config.service.controlSocket) {
    try {
      control = new ControlServer(config.service.controlSocket, {
        group: config.service.controlGroup,
        handler: handle,
        log,
      });
    } catch (error) {
      log(`control socket: ${(error as Error).message}`);
      await service.close();
      return 1;
    }
  }

  // The start lines say the service is ready: its control socket exists by then.
  for (const device of service.exports) {
    const mode = device.store.readOnly ? "O_RDONLY" : "O_RDWR";
    console.log(`pid ${Deno.pid}: ${device.name}, ${device.store.sectors} sectors ${mode}`);
  }

  // A failure is logged once; the target goes on serving (target/stats_file.ts).
  const stillServing = "still serving, not written until this works again";
  const statsLatch = new FailureLatch(log, {
    failed: (message) => `--stats ${settings().statsFile}: ${message}; ${stillServing}`,
    recovered: "--stats: written again",
  });
  const writeStats = () => {
    const file = settings().statsFile;
    if (!file) return;
    statsLatch.run(() =>
      writeFileAtomic(file, JSON.stringify(service.server.stats(), null, 1), { mode: 0o600 })
    );
  };
  const metricsLatch = new FailureLatch(log, {
    failed: (message) => `prometheus ${settings().prometheusDir}: ${message}; ${stillServing}`,
    recovered: "prometheus: written again",
  });
  const writeMetrics = () => {
    const dir = settings().prometheusDir;
    if (!dir) return;
    metricsLatch.run(() => writePrometheusFile(dir, service.server));
  };
  writeStats();
  writeMetrics();
  const statsTimer = setInterval(writeStats, 1000);
  const metricsTimer = setInterval(writeMetrics, config.service.prometheusInterval * 1000);
  const logStats = () => {
    // A signal listener must never throw: an uncaught error would end the service.
    try {
      log(JSON.stringify(service.server.stats()));
    } catch (error) {
      log(`the counters cannot be shown: ${errorMessage(error)}`);
    }
  };
  Deno.addSignalListener("SIGUSR1", logStats);
  Deno.addSignalListener("SIGHUP", reload);

  sdNotify(`READY=1\nMAINPID=${Deno.pid}\nSTATUS=serving ${service.exports.length} exports`);
  const { promise: stopped, resolve } = Promise.withResolvers<void>();
  const stop = () => resolve();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await Promise.race([stopped, service.server.run()]);
  sdNotify("STOPPING=1");
  clearInterval(statsTimer);
  clearInterval(metricsTimer);
  await control?.close();
  await service.server.stop();
  writeStats();
  writeMetrics();
  const unflushed = await service.close();
  for (const name of unflushed) {
    log(`${name}: the final flush failed: acknowledged writes may be lost`);
  }
  for (
    const [signal, listener] of [
      ["SIGUSR1", logStats],
      ["SIGHUP", reload],
      ["SIGTERM", stop],
      ["SIGINT", stop],
    ] as const
  ) Deno.removeSignalListener(signal, listener);
  if (service.server.failure) {
    log(service.server.failure.message);
    return 1;
  }
  return unflushed.length > 0 ? 1 : 0;
}
