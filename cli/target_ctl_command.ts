/**
 * `aoe target-ctl`: talks to a running `aoe target --config` over its control
 * socket (ggaoectl's and aoetools' style): list, stats, reload, freeze,
 * unfreeze, resize.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SERVICE_DEFAULTS } from "../target/config_file.ts";
import { controlRequest } from "../target/control.ts";
import type { ExportStatus, ReloadResult } from "../target/service.ts";
import { describeReload } from "./target_service_command.ts";

/** The usage line. */
export const TARGET_CTL_USAGE =
  "usage: aoe target-ctl [--socket PATH] [--json] list|stats|reload|freeze eX.Y|unfreeze eX.Y|resize eX.Y";

/** The --help text. */
export const TARGET_CTL_HELP = `${TARGET_CTL_USAGE}

Controls a running "aoe target --config" service over its control socket
(default ${SERVICE_DEFAULTS.controlSocket}; only root, the service's user or its
control group may use it).

  list          the exports: name, state, sectors, file, interfaces, config string
  stats         the counters of every export, interface and the dispatcher
  reload        reread the config file (as SIGHUP); a file with errors is refused
  freeze eX.Y   flush, then send the export's writes to its shadow file (shadow =
                in the config, -f); returns once the image is frozen
  unfreeze eX.Y merge the shadow back into the image while serving; returns
                once the merge is complete and the shadow removed
  resize eX.Y   pick up a grown or shrunk file: IDENTIFY then reports the new size
  --json        print the reply as JSON
  --socket PATH the control socket`;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd())
    .join("\n");
}

function statsTable(stats: Record<string, Record<string, Record<string, number>>>): string {
  const out: string[] = [];
  const exports = Object.entries(stats.exports ?? {});
  if (exports.length > 0) {
    const keys = Object.keys(exports[0][1]);
    out.push(
      table([
        ["export", ...keys],
        ...exports.map(([n, c]) => [n, ...keys.map((k) => String(c[k]))]),
      ]),
    );
  }
  const links = Object.entries(stats.links ?? {});
  if (links.length > 0) {
    const keys = Object.keys(links[0][1]);
    out.push(
      table([
        ["interface", ...keys],
        ...links.map(([n, c]) => [n, ...keys.map((k) => String(c[k]))]),
      ]),
    );
  }
  const dispatch = stats.dispatch as unknown as Record<string, number> | undefined;
  if (dispatch) {
    out.push(table([Object.keys(dispatch), Object.values(dispatch).map(String)]));
  }
  return out.join("\n\n");
}

/** Runs `aoe target-ctl ARGS`; resolves with the exit code. */
export async function targetCtlCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        socket: { type: "string", default: SERVICE_DEFAULTS.controlSocket },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    console.error(`aoe target-ctl: ${(error as Error).message}\n${TARGET_CTL_USAGE}`);
    return 1;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(TARGET_CTL_HELP);
    return 0;
  }
  const [command, ...rest] = positionals;
  const verbs: Record<string, number> = {
    list: 0,
    stats: 0,
    reload: 0,
    freeze: 1,
    unfreeze: 1,
    resize: 1,
  };
  if (command === undefined || !(command in verbs) || rest.length !== verbs[command]) {
    console.error(
      `aoe target-ctl: ${
        command === undefined
          ? "a command is needed"
          : !(command in verbs)
          ? `unknown command ${command}`
          : `${command} takes ${verbs[command] ? "an export (eX.Y)" : "no arguments"}`
      }\n${TARGET_CTL_USAGE}`,
    );
    return 1;
  }
  if (rest[0] !== undefined && !/^e\d+\.\d+$/.test(rest[0])) {
    console.error(`aoe target-ctl: not an export name (eX.Y): ${rest[0]}`);
    return 1;
  }
  let reply;
  try {
    reply = await controlRequest(values.socket!, { command, args: rest });
  } catch (error) {
    console.error(`aoe target-ctl: ${values.socket}: ${(error as Error).message}`);
    return 1;
  }
  if (!reply.ok) {
    console.error(`aoe target-ctl: ${command}: ${reply.error}`);
    return 1;
  }
  if (values.json) {
    console.log(JSON.stringify(reply.result, null, 1));
    return 0;
  }
  switch (command) {
    case "list": {
      const list = reply.result as ExportStatus[];
      console.log(table([
        ["export", "state", "sectors", "mode", "interfaces", "file", "config"],
        ...list.map((e) => [
          e.name,
          e.state,
          String(e.sectors),
          e.readOnly ? "ro" : "rw",
          e.interfaces.join(","),
          e.file,
          JSON.stringify(e.config),
        ]),
      ]));
      break;
    }
    case "stats":
      console.log(statsTable(reply.result as never));
      break;
    case "reload":
      console.log(`reloaded: ${describeReload(reply.result as ReloadResult)}`);
      break;
    case "resize": {
      const r = reply.result as { name: string; before: number; after: number };
      console.log(`${r.name}: ${r.before} -> ${r.after} sectors`);
      break;
    }
    default:
      console.log(`${rest[0]}: ${command}d`);
  }
  return 0;
}
