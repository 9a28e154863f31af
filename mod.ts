/**
 * aoe: a userspace ATA over Ethernet stack. As a library this module is the
 * public API; run as the main module it is the `aoe` command.
 *
 * @module
 */

export * from "./wire/mod.ts";
export * from "./link/mod.ts";
export * from "./target/mod.ts";
export * from "./driver/mod.ts";
export * from "./nbd/mod.ts";
export * from "./reactor/mod.ts";
export { main, VERSION } from "./cli/main.ts";

import { main } from "./cli/main.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
