/**
 * A worker for target/backing_test.ts: its own FileStore (its own open file
 * description, as a second target process would have) writing one half of
 * each 4096-byte sector of a -d device, to race the other half's writer.
 *
 * @module
 */

import { FileStore } from "../target/backing.ts";

/** What the test posts: the device, which half, how many sectors, the fill byte. */
export interface RmwJob {
  /** The block device. */
  device: string;
  /** 0: sectors 0-3 of each 4K sector; 1: sectors 4-7. */
  half: number;
  /** 4K sectors written. */
  sectors: number;
  /** The byte written. */
  fill: number;
}

/** The worker's global scope (this file runs as a Worker, not in a window). */
const scope = self as unknown as {
  onmessage: ((event: MessageEvent<RmwJob>) => void) | null;
  postMessage(message: unknown): void;
};

scope.onmessage = (event: MessageEvent<RmwJob>) => {
  const { device, half, sectors, fill } = event.data;
  const store = new FileStore(device, { direct: true });
  let failed = 0;
  const data = new Uint8Array(2048).fill(fill);
  for (let k = 0; k < sectors; k++) {
    if (store.write(data, k * 8 + half * 4, 4) !== 4) failed++;
  }
  store.close();
  scope.postMessage({ failed });
};
