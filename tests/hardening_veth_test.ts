/**
 * Issue 10's target items as a process on veth: interfaces of different MTU,
 * signals, the stats file, broadcast and foreign-MAC frames, reservations.
 */
import assert from "node:assert/strict";
import {
  AoeError,
  AtaOp,
  BROADCAST_MAC,
  Command,
  ConfigCommand,
  decodeMask,
  decodeReserve,
  DirectiveCommand,
  encodeMask,
  encodeReserve,
  isError,
  MaskCommand,
  MaskError,
  parseMac,
  readErrorCode,
  ReserveCommand,
} from "../wire/mod.ts";
import type { TestClient } from "../testing/client.ts";
import { aoeCommand } from "../testing/procs.ts";
import { loopDevice } from "../testing/loop.ts";
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

/** Attaches strace to every thread of `pid`, logging the system calls named to `log`. */
async function traceCalls(pid: number, calls: string, log: string) {
  const child = new Deno.Command("strace", {
    args: ["-f", "-p", String(pid), "-e", `trace=${calls}`, "-o", log],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // strace says "Process N attached" on stderr once it traces.
  const reader = child.stderr.getReader();
  let text = "";
  const deadline = Date.now() + 5000;
  while (!/attached/.test(text) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  child.stderr.cancel().catch(() => {});
  return child;
}

Deno.test(
  "SIGHUP, SIGTERM, SIGINT: the target exits 0 after a final fdatasync; the data are in the file",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = `${dir}/disk.img`;
      writePatternFile(image, 64, 1);
      const client = clientIn(net, 1, "i0");
      for (const [i, signal] of (["SIGHUP", "SIGTERM", "SIGINT"] as const).entries()) {
        const target = await startTarget(net, ["9", "0", "t1p0", image]);
        daemons.push(target);
        const log = `${dir}/strace-${signal}.log`;
        const strace = await traceCalls(target.pid, "pwrite64,fdatasync", log);
        const data = patternSectors(20 + i, 1, 77);
        const w = await client.ata(9, 0, {
          command: AtaOp.writeSectorsExt,
          lba: 20 + i,
          count: 1,
          data,
        });
        assert.equal(w![27], 0x40);
        target.signal(signal);
        const status = await Promise.race([
          target.status,
          new Promise<undefined>((res) => setTimeout(() => res(undefined), 5000)),
        ]);
        assert.ok(status, `${signal}: the target exited`);
        daemons.pop();
        await strace.status;
        assert.equal(status.code, 0, `${signal}: exit code; ${target.stderr}`);
        assert.equal(status.signal, null, `${signal}: not killed by it`);
        const calls = Deno.readTextFileSync(log);
        const lastWrite = calls.lastIndexOf("pwrite64(");
        const sync = calls.indexOf("fdatasync(", lastWrite);
        assert.ok(lastWrite >= 0, `${signal}: the write was traced:\n${calls}`);
        assert.ok(sync > lastWrite, `${signal}: fdatasync after the write:\n${calls}`);
        assert.match(calls.slice(sync).split("\n")[0], /= 0$/, `${signal}: fdatasync succeeded`);
        const onDisk = Deno.readFileSync(image).subarray((20 + i) * 512, (21 + i) * 512);
        assert.deepEqual(onDisk, data, `${signal}: data in the file`);
      }
    });
  },
);

Deno.test(
  "--stats: an unwritable path is refused at start; a file that cannot be written later is warned about once",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = `${dir}/disk.img`;
      writePatternFile(image, 64, 2);
      const refused = await net.run(
        0,
        aoeCommand("target", "--stats", `${dir}/no/such/dir/s.json`, "9", "0", "t1p0", image),
      );
      assert.equal(refused.code, 1);
      assert.equal(refused.stdout, "", "no start line");
      assert.match(refused.stderr, /^aoe target: --stats .*s\.json: .*No such file/);
      assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);

      Deno.mkdirSync(`${dir}/stats`);
      const stats = `${dir}/stats/s.json`;
      const target = await startTarget(net, ["--stats", stats, "9", "0", "t1p0", image]);
      daemons.push(target);
      Deno.removeSync(`${dir}/stats`, { recursive: true });
      await new Promise((r) => setTimeout(r, 2500));
      const client = clientIn(net, 1, "i0");
      const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 5, count: 1 });
      assert.deepEqual(r?.subarray(36), patternSectors(5, 1, 2), "still serving");
      const status = await target.stop();
      daemons.pop();
      assert.equal(status.code, 0, target.stderr);
      assert.equal(target.stderr.match(/--stats/g)?.length, 1, target.stderr);
      assert.doesNotMatch(target.stderr, /Uncaught|\n\s+at /);
    });
  },
);

Deno.test(
  "item 11: frames sent to another host's unicast MAC are dropped and counted; own, broadcast and multicast answered",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = `${dir}/disk.img`;
      writePatternFile(image, 64, 6);
      const stats = `${dir}/stats.json`;
      const target = await startTarget(net, ["--stats", stats, "9", "0", "t1p0", image]);
      daemons.push(target);
      const targetMac = parseMac(await net.mac(0, "t1p0"));
      const client = clientIn(net, 1, "i0");
      const data = patternSectors(8, 1, 123);
      client.dst = 0x02aabbccddee; // someone else's
      const foreign = await client.ata(9, 0, {
        command: AtaOp.writeSectorsExt,
        lba: 8,
        count: 1,
        data,
      }, 500);
      assert.equal(foreign, undefined, "no reply for another host's frame");
      assert.equal(await client.config(9, 0, ConfigCommand.forceSet, "stolen", 300), undefined);
      assert.deepEqual(
        Deno.readFileSync(image).subarray(8 * 512, 9 * 512),
        patternSectors(8, 1, 6),
        "not written",
      );
      for (const dst of [targetMac, BROADCAST_MAC, 0x01005e000001]) {
        client.dst = dst;
        const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 8, count: 1 });
        assert.deepEqual(r?.subarray(36), patternSectors(8, 1, 6), `to ${dst.toString(16)}`);
      }
      await target.stop();
      daemons.pop();
      const counters = JSON.parse(Deno.readTextFileSync(stats));
      assert.equal(counters.dispatch.otherHost, 2);
      assert.equal(counters.interfaces.t1p0.otherHost, 2);
      assert.equal(counters.exports["e9.0"].writes, 0);
    });
  },
);

Deno.test(
  "item 8: a listed host cannot wipe the -m list from the network; the export stays closed to others",
  opts,
  async () => {
    await withNet({ hosts: 3 }, async (net, dir, daemons) => {
      const image = `${dir}/disk.img`;
      writePatternFile(image, 64);
      const allowed = await net.mac(1, "i0");
      daemons.push(await startTarget(net, ["-m", allowed, "9", "0", "t1p0", "t2p0", image]));
      const listed = clientIn(net, 1, "i0");
      const outsider = clientIn(net, 2, "i0");
      const wipe = await listed.exchange((frame, tag) => {
        listed.header(frame, 9, 0, Command.macMask, tag);
        return encodeMask(frame, {
          mcmd: MaskCommand.edit,
          merror: 0,
          directives: [{ dcmd: DirectiveCommand.delete, mac: parseMac(allowed) }],
        });
      });
      assert.equal(decodeMask(wipe!).merror, MaskError.unspecified);
      assert.equal(decodeMask(wipe!).directives.length, 0);
      assert.equal(
        await outsider.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 1, count: 1 }, 500),
        undefined,
        "the outsider is still ignored",
      );
      const r = await listed.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 1, count: 1 });
      assert.deepEqual(r?.subarray(36), patternSectors(1, 1));
    });
  },
);

Deno.test(
  "item 9: aoe target -d on a 4096-byte-sector device serves 512-byte sectors to a client",
  opts,
  async () => {
    const loop = await loopDevice({ sectorSize: 4096, bytes: 4 << 20 });
    if (typeof loop === "string") {
      console.log(`skipped: ${loop}`);
      return;
    }
    try {
      await withNet({}, async (net, _dir, daemons) => {
        const target = await startTarget(net, ["-d", "9", "0", "t1p0", loop.device]);
        daemons.push(target);
        assert.match(target.stdout, /e9\.0, 8192 sectors O_RDWR/);
        const client = clientIn(net, 1, "i0");
        for (const lba of [0, 1, 7, 8, 4095, 8190]) {
          const data = patternSectors(lba, 2, 31);
          const w = await client.ata(9, 0, {
            command: AtaOp.writeSectorsExt,
            lba,
            count: 2,
            data,
          });
          assert.equal(w![27], 0x40, `write at ${lba}`);
          const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba, count: 2 });
          assert.deepEqual(r?.subarray(36), data, `read at ${lba}`);
        }
        assert.equal((await client.ata(9, 0, { command: AtaOp.flushCacheExt }))![27], 0x40);
        await target.stop();
        daemons.pop();
        const file = await Deno.open(loop.device);
        try {
          const bytes = new Uint8Array(1024);
          await file.seek(7 * 512, Deno.SeekMode.Start);
          assert.equal(await file.read(bytes), 1024);
          assert.deepEqual(bytes, patternSectors(7, 2, 31), "on the device");
        } finally {
          file.close();
        }
      });
    } finally {
      await loop.remove();
    }
  },
);
