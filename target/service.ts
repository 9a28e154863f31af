/**
 * The target as a service: the exports of a config file served by one
 * {@link TargetServer}, reloaded in place. The server answers every request
 * synchronously inside its loop, so between two turns of the loop no request
 * is outstanding: a reload swaps exports in the server's own arrays at such a
 * moment, and an export that did not change keeps its object, store and
 * counters and is never paused. New and changed exports are opened before
 * anything is swapped, so a reload that fails leaves the service as it was.
 *
 * @module
 */

import { type FrameLink, type LinkKind, openLink } from "../link/mod.ts";
import { FileStore } from "./backing.ts";
import { openExportStore } from "./open_store.ts";
import type { ServiceConfig } from "./config_file.ts";
import { Export } from "./export.ts";
import type { ExportSpec } from "./options.ts";
import { TargetServer } from "./server.ts";
import { StateDir } from "./state_dir.ts";
import { FailureLatch } from "../util/failure_latch.ts";

/** What a reload did, by export name. */
export interface ReloadResult {
  /** Exports started. */
  added: string[];
  /** Exports stopped. */
  removed: string[];
  /** Exports restarted with a new configuration. */
  changed: string[];
  /** Changed only in size (the file grew or shrank): restarted with the new size. */
  resized: string[];
  /** Exports that kept serving untouched. */
  unchanged: string[];
}

/** One export as `aoe target-ctl list` shows it. */
export interface ExportStatus {
  /** The device name, e.g. "e9.0". */
  name: string;
  /** The file or block device exported. */
  file: string;
  /** Interfaces it is served on. */
  interfaces: readonly string[];
  /** Capacity in 512-byte sectors. */
  sectors: number;
  /** Writes are refused. */
  readOnly: boolean;
  /** "serving", or "frozen" when the export says so. */
  state: string;
  /** The config string. */
  config: string;
  /** Entries on the MAC mask list. */
  masks: number;
}

/** How to run a {@link TargetService}. */
export interface TargetServiceOptions {
  /** Opens an interface (default: {@link openLink} with the config's link kind). */
  openLink?: (name: string, kind?: LinkKind) => FrameLink;
  /** Where one-line messages go (default: stderr). */
  log?: (message: string) => void;
}

/** One served export of a {@link TargetService}: how it was configured, and the export itself. */
export interface ServiceEntry {
  /** Its configuration. */
  spec: ExportSpec;
  /** The running export. */
  device: Export;
}

/** Serves the exports of a config file; reloads, resizes and keeps state. */
export class TargetService {
  /** The server's own arrays: changed in place between two turns of its loop. */
  readonly #exports: Export[] = [];
  readonly #links: FrameLink[] = [];
  /** The frame loop serving every export. */
  readonly server: TargetServer;
  #entries = new Map<string, ServiceEntry>();
  #linkUsers = new Map<string, number>();
  #config: ServiceConfig;
  #state: StateDir | undefined;
  #saved = new Map<string, string>();
  #stateTimer: ReturnType<typeof setInterval> | undefined;
  #openLink: (name: string, kind?: LinkKind) => FrameLink;
  #log: (message: string) => void;
  /** A state directory that cannot be written is logged once, not at every save (every second). */
  #stateLatch: FailureLatch;

  /**
   * Opens every export of `config` and starts serving; throws a one-line
   * Error (nothing left open) if a file or interface cannot be opened.
   */
  constructor(config: ServiceConfig, options: TargetServiceOptions = {}) {
    this.#config = config;
    this.#openLink = options.openLink ?? ((name, kind) => openLink(name, { kind }));
    this.#log = options.log ?? ((message) => console.error(message));
    this.#stateLatch = new FailureLatch(this.#log, {
      failed: (message) =>
        `aoe target: cannot keep the state of ${message}; still serving, retried every second`,
      recovered: `aoe target: state ${config.service.stateDir}: written again`,
    });
    if (config.service.stateDir) this.#state = new StateDir(config.service.stateDir);
    this.server = new TargetServer(this.#exports, this.#links);
    const opened = this.#open(config.exports, new Map());
    this.#commit(opened, []);
    this.server.run();
    this.#stateTimer = setInterval(() => this.saveState(), 1000);
  }

  /** The config now served. */
  get config(): ServiceConfig {
    return this.#config;
  }

  /** The exports now served. */
  get exports(): readonly Export[] {
    return this.#exports;
  }

  /** The export named `name` ("e9.0"), if served. */
  export(name: string): Export | undefined {
    return this.#entries.get(name)?.device;
  }

  /** Opens stores (and links not yet open) for `specs`; all or nothing. */
  #open(specs: readonly ExportSpec[], carried: Map<string, Export>): {
    entries: ServiceEntry[];
    links: FrameLink[];
  } {
    const entries: ServiceEntry[] = [];
    const links: FrameLink[] = [];
    try {
      for (const spec of specs) {
        const name = `e${spec.shelf}.${spec.slot}`;
        const store = openExportStore(spec);
        const { config, masks, reservations } = this.#initialState(name, spec, carried.get(name));
        const device = new Export({
          shelf: spec.shelf,
          slot: spec.slot,
          store,
          bufferCount: spec.bufferCount,
          masks,
          policyMasks: spec.masks,
          interfaces: spec.interfaces,
          config,
          extensions: spec.extensions,
        });
        device.reservations = reservations;
        entries.push({ spec, device });
        for (const link of spec.interfaces) {
          const open = this.#links.some((l) => l.name === link) ||
            links.some((l) => l.name === link);
          if (!open) links.push(this.#openLink(link, this.#config.service.link));
        }
      }
    } catch (error) {
      for (const entry of entries) entry.device.store.close();
      for (const link of links) link.close();
      throw error;
    }
    return { entries, links };
  }

  /**
   * Config string and masks of a (re)started export: carried over from the
   * export it replaces, else from the state directory. The config file's mask
   * list wins when it differs from the one it gave when the state was kept.
   */
  #initialState(name: string, spec: ExportSpec, previous: Export | undefined) {
    const old = previous ? this.#entries.get(name)?.spec : undefined;
    if (previous && old) {
      const masksEdited = !sameList(old.masks, spec.masks);
      return {
        config: previous.config.slice(),
        masks: masksEdited ? spec.masks : [...previous.masks],
        reservations: [...previous.reservations],
      };
    }
    const kept = this.#state?.load(name);
    if (kept) {
      const masksEdited = !sameList(kept.configuredMasks, spec.masks);
      return {
        config: kept.config,
        masks: masksEdited ? spec.masks : kept.masks,
        reservations: [],
      };
    }
    return { config: undefined, masks: spec.masks, reservations: [] };
  }

  /** Swaps the opened entries in and `removed` out, between two turns of the server's loop. */
  #commit(opened: { entries: ServiceEntry[]; links: FrameLink[] }, removed: string[]): void {
    const leaving = removed.map((name) => this.#entries.get(name)!);
    for (const entry of leaving) this.saveExportState(entry.device.name, entry);
    this.#links.push(...opened.links);
    for (const entry of opened.entries) {
      const name = entry.device.name;
      const previous = this.#entries.get(name);
      this.#entries.set(name, entry);
      // A restarted export takes its predecessor's place; a new one goes last.
      const index = previous ? this.#exports.indexOf(previous.device) : -1;
      if (index >= 0) this.#exports[index] = entry.device;
      else this.#exports.push(entry.device);
      this.server.exportsChanged();
      for (const link of entry.spec.interfaces) {
        this.#linkUsers.set(link, (this.#linkUsers.get(link) ?? 0) + 1);
      }
    }
    // Paced, so that a thousand exports do not overrun an initiator's ring (target/pacing.ts).
    this.server.announce(opened.entries.map((entry) => entry.device));
    for (const entry of leaving) {
      const name = entry.device.name;
      if (this.#entries.get(name) === entry) this.#entries.delete(name);
      const index = this.#exports.indexOf(entry.device);
      if (index >= 0) this.#exports.splice(index, 1);
      this.server.exportsChanged();
      entry.device.store.flush();
      entry.device.store.close();
      for (const link of entry.spec.interfaces) this.#release(link);
    }
    this.saveState();
  }

  #release(name: string): void {
    const users = (this.#linkUsers.get(name) ?? 1) - 1;
    if (users > 0) {
      this.#linkUsers.set(name, users);
      return;
    }
    this.#linkUsers.delete(name);
    const index = this.#links.findIndex((l) => l.name === name);
    if (index < 0) return;
    const [link] = this.#links.splice(index, 1);
    // The server's wait may still poll this descriptor (it waits up to 200 ms): close it later.
    setTimeout(() => link.close(), 1000);
  }

  /**
   * Serves `config` instead of the current one: new exports start and
   * announce, removed ones stop, changed ones (any option, or a file whose
   * size changed) restart alone, the others go on untouched. The [service]
   * table of `config` is not applied (it takes effect at the next start).
   * Throws (and changes nothing) if a new or changed export cannot be opened.
   */
  reload(config: ServiceConfig): ReloadResult {
    const result: ReloadResult = {
      added: [],
      removed: [],
      changed: [],
      resized: [],
      unchanged: [],
    };
    const wanted = new Map(config.exports.map((spec) => [`e${spec.shelf}.${spec.slot}`, spec]));
    const toOpen: ExportSpec[] = [];
    const carried = new Map<string, Export>();
    for (const name of this.#entries.keys()) {
      if (!wanted.has(name)) result.removed.push(name);
    }
    for (const [name, spec] of wanted) {
      const entry = this.#entries.get(name);
      if (!entry) {
        result.added.push(name);
        toOpen.push(spec);
      } else if (JSON.stringify(entry.spec) !== JSON.stringify(spec)) {
        result.changed.push(name);
        toOpen.push(spec);
        carried.set(name, entry.device);
      } else if (currentSectors(spec) !== entry.device.store.sectors) {
        result.resized.push(name);
        toOpen.push(spec);
        carried.set(name, entry.device);
      } else result.unchanged.push(name);
    }
    const previousConfig = this.#config;
    // The [service] table (sockets, directories, link kind) stays as started.
    this.#config = { ...config, service: previousConfig.service };
    let opened;
    try {
      opened = this.#open(toOpen, carried);
    } catch (error) {
      this.#config = previousConfig;
      throw error;
    }
    this.#commit(opened, [...result.removed, ...result.changed, ...result.resized]);
    return result;
  }

  /** Restarts export `name` if its file's size changed; returns its size in sectors. */
  resize(name: string): { before: number; after: number } {
    const entry = this.#entries.get(name);
    if (!entry) throw new Error(`no export ${name}`);
    const before = entry.device.store.sectors;
    if (currentSectors(entry.spec) !== before) {
      const opened = this.#open([entry.spec], new Map([[name, entry.device]]));
      this.#commit(opened, [name]);
    }
    return { before, after: this.#entries.get(name)!.device.store.sectors };
  }

  /**
   * Freezes an export onto its shadow file, or unfreezes it; resolves when the
   * freeze is in place or the merge is complete (docs/extensions.md §5).
   */
  async freeze(name: string, freeze: boolean): Promise<void> {
    const device = this.#entries.get(name)?.device;
    if (!device) throw new Error(`no export ${name}`);
    await (freeze ? device.freeze() : device.unfreeze());
  }

  /** Every export with its state. */
  list(): ExportStatus[] {
    return [...this.#entries.values()].map(({ spec, device }) => ({
      name: device.name,
      file: spec.file,
      interfaces: spec.interfaces,
      sectors: device.store.sectors,
      readOnly: device.store.readOnly,
      state: device.freezeState === "normal" ? "serving" : device.freezeState,
      config: new TextDecoder().decode(device.config),
      masks: device.masks.length,
    }));
  }

  /** Writes one export's state if it changed since it was last written. */
  saveExportState(name: string, entry: ServiceEntry | undefined = this.#entries.get(name)): void {
    if (!this.#state || !entry) return;
    const state = {
      config: entry.device.config.slice(),
      masks: [...entry.device.masks],
      configuredMasks: entry.spec.masks,
    };
    const key = JSON.stringify([[...state.config], state.masks, state.configuredMasks]);
    if (this.#saved.get(name) === key) return;
    const dir = this.#state;
    this.#stateLatch.run(() => {
      try {
        dir.save(name, state);
      } catch (error) {
        throw new Error(`${name}: ${(error as Error).message}`);
      }
      this.#saved.set(name, key);
    });
  }

  /** Writes the state of every export that changed (every second, and at close). */
  saveState(): void {
    for (const name of this.#entries.keys()) this.saveExportState(name);
  }

  /**
   * Stops serving: keeps state, flushes (fdatasync) and closes every store and
   * link; resolves with the names of the exports whose final flush failed or
   * had a failed flush latched (target/ata.ts).
   */
  async close(): Promise<string[]> {
    clearInterval(this.#stateTimer);
    await this.server.stop();
    this.saveState();
    const failed: string[] = [];
    for (const { device } of this.#entries.values()) {
      if (!device.store.flush() || device.flushFailed) failed.push(device.name);
      device.store.close();
    }
    for (const link of this.#links) link.close();
    this.#entries.clear();
    this.#exports.length = 0;
    this.server.exportsChanged();
    this.#links.length = 0;
    return failed;
  }
}

/** The sectors an export of `spec` would have if opened now. */
function currentSectors(spec: ExportSpec): number {
  try {
    const probe = new FileStore(spec.file, {
      readOnly: true,
      offsetSectors: spec.offset,
      lengthSectors: spec.length,
    });
    const sectors = probe.sectors;
    probe.close();
    return sectors;
  } catch {
    return -1;
  }
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}
