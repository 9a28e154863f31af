/**
 * Target mode: `aoe target`, a vblade drop-in.
 *
 * @module
 */

import { type FrameLink, type LinkKind, openLink } from "../link/mod.ts";
import { openExportStore } from "./open_store.ts";
import { Export } from "./export.ts";
import type { ExportSpec } from "./options.ts";
import { TargetServer } from "./server.ts";

export { type BackingStore, FileStore, MemoryStore, NullStore } from "./backing.ts";
export { Export, type ExportCounters, FIRMWARE_VERSION } from "./export.ts";
export { type DispatchCounters, TargetServer, type TargetServerOptions } from "./server.ts";
export {
  MAX_PACED_REQUESTS,
  PACE_EXPIRY_MS,
  PACE_WINDOW,
  type PacingCounters,
  type PacingOptions,
  pacingSeed,
  ReplyPacer,
} from "./pacing.ts";
export {
  type ExportSpec,
  parseTargetArgs,
  TARGET_HELP,
  TARGET_USAGE,
  type TargetCommandLine,
  UsageError,
} from "./options.ts";
export { type AtaDevice, type AtaExchange, executeAta } from "./ata.ts";
export { type FreezeState, ShadowStore } from "./shadow.ts";
export { openExportStore } from "./open_store.ts";
export {
  type ExtensionCounters,
  type ExtensionPolicy,
  ExtensionTable,
  Session,
} from "./extensions.ts";
export { type SignalActions, SignalSequence } from "./signals.ts";
export { StatsFile } from "./stats_file.ts";
export { RxTagTracker, WriteTagTracker } from "./tag_tracking.ts";

/** A running target: its server, and how to stop it. */
export interface RunningTarget {
  /** The frame loop serving the exports. */
  server: TargetServer;
  /**
   * Stops the loop, flushes (fdatasync) and closes every store and link;
   * resolves with the names of the exports whose final flush failed, or that
   * had a failed flush latched (target/ata.ts): their acknowledged writes may be lost.
   */
  close(): Promise<string[]>;
}

/**
 * Opens the files and interfaces of `specs`, announces every export and
 * starts serving. Throws a one-line Error if a file or interface cannot be opened.
 */
export function startTarget(
  specs: readonly ExportSpec[],
  options: { link?: LinkKind } = {},
): RunningTarget {
  const exports: Export[] = [];
  const links = new Map<string, FrameLink>();
  try {
    for (const spec of specs) {
      const store = openExportStore(spec);
      exports.push(
        new Export({
          shelf: spec.shelf,
          slot: spec.slot,
          store,
          bufferCount: spec.bufferCount,
          masks: spec.masks,
          policyMasks: spec.masks,
          interfaces: spec.interfaces,
          extensions: spec.extensions,
        }),
      );
      for (const name of spec.interfaces) {
        if (!links.has(name)) links.set(name, openLink(name, { kind: options.link }));
      }
    }
  } catch (error) {
    for (const device of exports) device.store.close();
    for (const link of links.values()) link.close();
    throw error;
  }
  const server = new TargetServer(exports, [...links.values()]);
  server.announce();
  server.run();
  return {
    server,
    async close() {
      await server.stop();
      const failed: string[] = [];
      for (const device of exports) {
        if (!device.store.flush() || device.flushFailed) failed.push(device.name);
        device.store.close();
      }
      for (const link of links.values()) link.close();
      return failed;
    },
  };
}
export {
  ConfigError,
  parseConfig,
  readConfigFile,
  SERVICE_DEFAULTS,
  type ServiceConfig,
  type ServiceSettings,
} from "./config_file.ts";
export {
  type ExportStatus,
  type ReloadResult,
  type ServiceEntry,
  TargetService,
} from "./service.ts";
export { type ExportState, StateDir, writeFileAtomic } from "./state_dir.ts";
export {
  type ControlReply,
  type ControlRequest,
  controlRequest,
  ControlServer,
} from "./control.ts";
export { prometheusText, writePrometheusFile } from "./prometheus.ts";
