/**
 * `aoe target`: parse, open, announce, serve until SIGTERM or SIGINT.
 *
 * @module
 */

import { interfaceInfo } from "../link/mod.ts";
import {
  type ExportSpec,
  FileStore,
  parseTargetArgs,
  SignalSequence,
  startTarget,
  TARGET_HELP,
  TARGET_USAGE,
  UsageError,
} from "../target/mod.ts";
import { formatStatsTable } from "../target/counters.ts";
import { descriptorsNeeded, ensureDescriptors } from "../target/fd_limit.ts";
import { sdNotify } from "./sd_notify.ts";
import { selfCommand } from "./self.ts";
import { targetServiceCommand } from "./target_service_command.ts";
import { StatsFile } from "../target/stats_file.ts";
import { errorMessage } from "../util/errors.ts";

/** Runs `aoe target ARGS`; resolves with the exit code. */
export async function targetCommand(args: string[]): Promise<number> {
  // The config-file service (issue 12); the vblade-style command line is unchanged.
  if (args.some((arg) => arg === "--config" || arg.startsWith("--config="))) {
    return await targetServiceCommand(args);
  }
  let command;
  try {
    command = parseTargetArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`aoe target: ${error.message}\n${TARGET_USAGE}`);
    return 1;
  }
  if (command.help) {
    console.log(TARGET_HELP);
    return 0;
  }
  if (command.daemon) {
    // Check files and interfaces here, where errors can still reach the terminal.
    let problem = preflight(command.exports);
    try {
      if (!problem && command.statsFile) new StatsFile(command.statsFile).check();
    } catch (error) {
      problem = errorMessage(error);
    }
    if (problem) {
      console.error(`aoe target: ${problem}`);
      return 1;
    }
    return daemonize(args.filter((arg) => arg !== "--daemon"));
  }

  // An unwritable --stats path is refused before anything is opened or announced.
  const statsFile = command.statsFile ? new StatsFile(command.statsFile) : undefined;
  try {
    statsFile?.check();
  } catch (error) {
    console.error(`aoe target: ${errorMessage(error)}`);
    return 1;
  }
  let target;
  try {
    ensureDescriptors(descriptorsNeeded(command.exports));
    target = startTarget(command.exports, { link: command.link });
  } catch (error) {
    console.error(`aoe target: ${errorMessage(error)}`);
    return 1;
  }
  for (const device of target.server.exports) {
    // vblade's start line, one per export.
    const mode = device.store.readOnly ? "O_RDONLY" : "O_RDWR";
    console.log(`pid ${Deno.pid}: ${device.name}, ${device.store.sectors} sectors ${mode}`);
  }
  sdNotify(`READY=1\nMAINPID=${Deno.pid}`); // aoe-target@.service (Type=notify)

  // A failed write is logged once; the target goes on serving (target/stats_file.ts).
  // A function: the timer must never throw (an uncaught error in it would end the target).
  const writeStats = () => statsFile?.write(() => target.server.stats());
  writeStats();
  const statsTimer = setInterval(writeStats, 1000);
  const logStats = () => {
    // A signal listener must never throw: an uncaught error would end the target.
    try {
      const stats = target.server.stats();
      console.error(`${formatStatsTable(stats)}\naoe target: ${JSON.stringify(stats)}`);
    } catch (error) {
      console.error(`aoe target: the counters cannot be shown: ${errorMessage(error)}`);
    }
  };
  // AoEde's freeze sequences share SIGUSR1 with the counters (docs/extensions.md §5).
  const each = (verb: "freeze" | "unfreeze") => {
    for (const device of target.server.exports) {
      if (device.freezeState === "normal" && verb === "unfreeze") continue;
      console.error(`aoe target: ${device.name}: ${verb} requested`);
      device[verb]().then(
        () =>
          console.error(
            `aoe target: ${device.name}: ${verb === "freeze" ? "frozen" : "merged and unfrozen"}`,
          ),
        (error) => console.error(`aoe target: ${device.name}: ${verb}: ${error.message}`),
      );
    }
  };
  const sequence = new SignalSequence({
    freeze: () => each("freeze"),
    unfreeze: () => each("unfreeze"),
    counters: logStats,
    ignored: (why) => console.error(`aoe target: ${why}: ignored`),
  });
  const onUsr1 = () => sequence.feed("SIGUSR1");
  const onUsr2 = () => sequence.feed("SIGUSR2");
  Deno.addSignalListener("SIGUSR1", onUsr1);
  Deno.addSignalListener("SIGUSR2", onUsr2);

  const { promise: stopped, resolve } = Promise.withResolvers<void>();
  const stop = () => resolve();
  // Each of them ends the target after a final fdatasync of every export (vblade dies on SIGHUP).
  const endSignals = ["SIGTERM", "SIGINT", "SIGHUP"] as const;
  for (const signal of endSignals) Deno.addSignalListener(signal, stop);
  await Promise.race([stopped, target.server.run()]);
  clearInterval(statsTimer);
  const unflushed = await target.close();
  writeStats();
  sequence.close();
  Deno.removeSignalListener("SIGUSR1", onUsr1);
  Deno.removeSignalListener("SIGUSR2", onUsr2);
  for (const signal of endSignals) Deno.removeSignalListener(signal, stop);
  for (const name of unflushed) {
    console.error(`aoe target: ${name}: the final flush failed: acknowledged writes may be lost`);
  }
  if (target.server.failure) {
    console.error(`aoe target: ${target.server.failure.message}`);
    return 1;
  }
  return unflushed.length > 0 ? 1 : 0;
}

/** Re-runs the target detached, its output going to syslog as vbladed's does. */
export async function daemonize(args: string[]): Promise<number> {
  const child = new Deno.Command("setsid", {
    args: [
      "-f",
      "sh",
      "-c",
      '"$@" 2>&1 | logger -t aoe-target',
      "sh",
      ...selfCommand(),
      "target",
      ...args,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const status = await child.status;
  return status.code;
}

/** Opens and closes every file and looks up every interface; returns the first problem. */
function preflight(specs: readonly ExportSpec[]): string | undefined {
  try {
    for (const spec of specs) {
      new FileStore(spec.file, {
        readOnly: spec.readOnly,
        direct: spec.direct,
        offsetSectors: spec.offset,
        lengthSectors: spec.length,
      }).close();
      for (const name of spec.interfaces) interfaceInfo(name);
    }
  } catch (error) {
    return errorMessage(error);
  }
  return undefined;
}
