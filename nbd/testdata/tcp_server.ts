/**
 * A test fixture: an NBD server with one 1 MiB memory export on a TCP port of
 * loopback; prints the port on standard output, logs to standard error, and
 * serves until killed.
 *
 * @module
 */

import { NbdServer } from "../server.ts";
import type { NbdExport } from "../export.ts";

const data = new Uint8Array(1 << 20);
const exp: NbdExport = {
  name: "mem",
  size: data.length,
  canTrim: false,
  trimReadsZeros: false,
  read: (offset, length) => Promise.resolve(data.slice(offset, offset + length)),
  write: (offset, bytes) => Promise.resolve(void data.set(bytes, offset)),
  flush: () => Promise.resolve(),
  trim: () => Promise.resolve(),
};
const server = new NbdServer({ names: () => ["mem"], get: (n) => n === "mem" ? exp : undefined }, {
  maxConnections: 10_000,
  log: (line) => console.error(line),
});
const addr = server.listenTcp({ port: 0 });
console.log(addr.port);
setInterval(() => {}, 1 << 30); // serve until killed, whatever the listener does
