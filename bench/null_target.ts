/**
 * A target that does no disk I/O (reads return whatever the frame buffer
 * held, writes are dropped), on the default link: the link's limit for the
 * initiator benchmark.
 *
 *   deno run -A bench/null_target.ts shelf slot netif sectors
 *
 * @module
 */

import { openLink } from "../link/mod.ts";
import { Export, NullStore, TargetServer } from "../target/mod.ts";

const [shelf, slot, netif, sectors] = Deno.args;
const link = openLink(netif);
const server = new TargetServer(
  [
    new Export({
      shelf: Number(shelf),
      slot: Number(slot),
      store: new NullStore(Number(sectors)),
      bufferCount: 64,
    }),
  ],
  [link],
);
server.announce();
server.run();
console.log(`pid ${Deno.pid}: e${shelf}.${slot}, ${sectors} sectors O_RDWR (null)`);
Deno.addSignalListener("SIGTERM", async () => {
  await server.stop();
  Deno.exit(0);
});
