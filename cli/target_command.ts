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
    const problem = preflight(command.exports);
    if (problem) {
      console.error(`aoe target: ${problem}`);
      return 1;
    }
    return daemonize(args.filter((arg) => arg !== "--daemon"));
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

  const writeStats = () => {
    if (!command.statsFile) return;
    const text = JSON.stringify(target.server.stats(), null, 1);
    const temporary = `${command.statsFile}.tmp`;
    Deno.writeTextFileSync(temporary, text);
    Deno.renameSync(temporary, command.statsFile);
  };
  writeStats();
  const statsTimer = setInterval(writeStats, 1000);
  const logStats = () => {
    const stats = target.server.stats();
    console.error(`${formatStatsTable(stats)}\naoe target: ${JSON.stringify(stats)}`);
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
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await Promise.race([stopped, target.server.run()]);
  clearInterval(statsTimer);
  await target.close();
  writeStats();
  sequence.close();
  Deno.removeSignalListener("SIGUSR1", onUsr1);
  Deno.removeSignalListener("SIGUSR2", onUsr2);
  Deno.removeSignalListener("SIGTERM", stop);
  Deno.removeSignalListener("SIGINT", stop);
  if (target.server.failure) {
    console.error(`aoe target: ${target.server.failure.message}`);
    return 1;
  }
  return 0;
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
