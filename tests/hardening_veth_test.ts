/**
 * Issue 10's target items as a process on veth: interfaces of different MTU,
 * signals, the stats file, broadcast and foreign-MAC frames, reservations.
 */
import assert from "node:assert/strict";
import {
  AoeError,
  AtaOp,
  Command,
  decodeReserve,
  encodeReserve,
  isError,
  readErrorCode,
  ReserveCommand,
} from "../wire/mod.ts";
import type { TestClient } from "../testing/client.ts";
import {
  clientIn,
  patternSectors,
  startTarget,
  withNet,
  writePatternFile,
} from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

function reserve(client: TestClient, rcmd: number, macs: number[], timeoutMs = 2000) {
  return client.exchange((frame, tag) => {
    client.header(frame, 9, 0, Command.reserve, tag);
    return encodeReserve(frame, { rcmd, macs });
  }, timeoutMs);
}

Deno.test(
  "item 1: MTU 9000 and 1500 interfaces: a 255-MAC reserve set, then a read on the small one; every link kind",
  opts,
  async () => {
    await withNet({ hosts: 3 }, async (net, dir, daemons) => {
      await net.setMtu(0, "t1p0", 9000);
      await net.setMtu(1, "i0", 9000);
      const image = `${dir}/disk.img`;
      writePatternFile(image, 64, 4);
      const jumbo = clientIn(net, 1, "i0");
      const small = clientIn(net, 2, "i0");
      const macs = Array.from({ length: 255 }, (_, i) => 0x0a0000000000 + i);
      for (const kind of ["packet", "pcap", "ring"]) {
        const target = await startTarget(net, ["--link", kind, "9", "0", "t1p0", "t2p0", image]);
        daemons.push(target);
        const set = await reserve(jumbo, ReserveCommand.set, macs);
        assert.ok(set, `${kind}: the set is answered`);
        assert.equal(readErrorCode(set), AoeError.badArgument, kind);
        const read = await reserve(small, ReserveCommand.read, []);
        assert.ok(read, `${kind}: the read on the 1500 interface is answered`);
        assert.equal(isError(read), false);
        assert.deepEqual(decodeReserve(read).macs, []);
        for (const client of [jumbo, small]) {
          const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 3, count: 1 });
          assert.deepEqual(r?.subarray(36), patternSectors(3, 1, 4), `${kind}: still serving`);
        }
        const status = await target.stop();
        daemons.pop();
        assert.equal(status.code, 0, `${kind}: ${target.stderr}`);
      }
    });
  },
);
