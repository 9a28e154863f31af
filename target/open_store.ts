/**
 * Opening what an export spec names: the image file with its options, wrapped
 * by the shadow file of a freeze (-f) when the spec has one. Shared by the
 * command-line target and the config-file service.
 *
 * @module
 */

import { type BackingStore, FileStore } from "./backing.ts";
import type { ExportSpec } from "./options.ts";
import { ShadowStore } from "./shadow.ts";

/** Opens the backing store an export spec names: its file, wrapped by its shadow file (-f) if any. */
export function openExportStore(spec: ExportSpec): BackingStore {
  const image = new FileStore(spec.file, {
    readOnly: spec.readOnly,
    direct: spec.direct,
    sync: spec.sync,
    offsetSectors: spec.offset,
    lengthSectors: spec.length,
  });
  if (!spec.shadow) return image;
  try {
    return new ShadowStore(image, spec.shadow);
  } catch (error) {
    image.close();
    throw error;
  }
}
