/**
 * `aoe target` as a process on a real veth link, driven by the project's test
 * client: data, errors, allow-list, read-only, offsets, jumbo frames, several
 * interfaces and exports, counters.
 */
import assert from "node:assert/strict";
import {
  AoeError,
  AtaFlag,
  AtaOp,
  Command,
  ConfigCommand,
  decodeConfig,
  decodeHeader,
  decodeIdentify,
  encodeAta,
  parseMac,
} from "../wire/mod.ts";
import {
  clientIn,
  patternSectors,
  startTarget,
  withNet,
  writePatternFile,
} from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "veth: pattern read back, writes land in the file, errors in the ATA registers",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = `${dir}/disk.img`;
      writePatternFile(image, 4096, 5);
      daemons.push(await startTarget(net, ["9", "0", "t1p0", image]));
      const client = clientIn(net, 1, "i0");
      for (const lba of [0, 1, 777, 4094]) {
        const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba, count: 2 });
        assert.ok(r, `reply for lba ${lba}`);
        assert.equal(r[27], 0x40);
        assert.deepEqual(r.subarray(36), patternSectors(lba, 2, 5), `data at lba ${lba}`);
      }
      const data = patternSectors(1, 2, 99);
      const w = await client.ata(9, 0, {
        command: AtaOp.writeSectorsExt,
        lba: 2000,
        count: 2,
        data,
      });
      assert.equal(w![27], 0x40);
      const f = await client.ata(9, 0, { command: AtaOp.flushCacheExt });
      assert.equal(f![27], 0x40);
      const onDisk = Deno.readFileSync(image).subarray(2000 * 512, 2002 * 512);
      assert.deepEqual(onDisk, data);

      const past = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 4095, count: 2 });
      assert.equal(past![27], 0x41);
      assert.equal(past![25], 0x10);
      assert.equal(past!.length, 60, "padded on veth");
      const tooMany = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 3 });
      assert.equal(tooMany![15], AoeError.badArgument);
      const smart = await client.ata(9, 0, { command: AtaOp.smart });
      assert.equal(smart![27], 0x41);
      assert.equal(smart![25], 0x04);
      const ident = await client.ata(9, 0, { command: AtaOp.identifyDevice, count: 1 });
      const info = decodeIdentify(ident!.subarray(36));
      assert.equal(info.sectors, 4096);
      assert.equal(info.writeCache, true, "without -s a write cache is declared");
    });
  },
);

Deno.test(
  "veth: -r read-only refuses writes; -s and -d open the file O_SYNC and O_DIRECT",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = `${dir}/ro.img`;
      writePatternFile(image, 256, 1);
      const ro = await startTarget(net, ["-r", "9", "0", "t1p0", image]);
      daemons.push(ro);
      assert.match(ro.stdout, /e9\.0, 256 sectors O_RDONLY/);
      const client = clientIn(net, 1, "i0");
      const w = await client.ata(9, 0, {
        command: AtaOp.writeSectorsExt,
        lba: 3,
        count: 1,
        data: new Uint8Array(512),
      });
      assert.equal(w![27], 0x41);
      assert.equal(w![25], 0x04);
      assert.deepEqual(
        Deno.readFileSync(image).subarray(3 * 512, 4 * 512),
        patternSectors(3, 1, 1),
      );
      await ro.stop();
      daemons.pop();

      const sync = await startTarget(net, ["9", "0", "t1p0", image, "-s", "-d"]);
      daemons.push(sync);
      const fdFlags = findOpenFlags(sync.pid, image);
      assert.ok(fdFlags !== undefined, "image open in the target");
      assert.ok((fdFlags & 0o4010000) === 0o4010000, `O_SYNC in ${fdFlags.toString(8)}`);
      assert.ok((fdFlags & 0o40000) !== 0, `O_DIRECT in ${fdFlags.toString(8)}`);
      const ident = await client.ata(9, 0, { command: AtaOp.identifyDevice, count: 1 });
      assert.equal(
        decodeIdentify(ident!.subarray(36)).writeCache,
        false,
        "-s: no volatile cache declared",
      );
      const data = patternSectors(7, 2, 7);
      const ok = await client.ata(9, 0, {
        command: AtaOp.writeSectorsExt,
        lba: 10,
        count: 2,
        data,
      });
      assert.equal(ok![27], 0x40);
      assert.deepEqual(Deno.readFileSync(image).subarray(10 * 512, 12 * 512), data);
    });
  },
);

function findOpenFlags(pid: number, path: string): number | undefined {
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`) !== path) continue;
    } catch {
      continue;
    }
    const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
    return parseInt(info.match(/flags:\s+([0-7]+)/)![1], 8);
  }
  return undefined;
}

Deno.test("veth: -m allow-list on two interfaces; answers only the allowed MAC", opts, async () => {
  await withNet({ hosts: 3 }, async (net, dir, daemons) => {
    const image = `${dir}/disk.img`;
    writePatternFile(image, 64);
    const allowed = await net.mac(1, "i0");
    daemons.push(
      await startTarget(net, ["-m", allowed.toUpperCase(), "9", "0", "t1p0", "t2p0", image]),
    );
    const good = clientIn(net, 1, "i0");
    const bad = clientIn(net, 2, "i0");
    assert.equal(good.link.mac, parseMac(allowed));
    const r = await good.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 1, count: 1 });
    assert.deepEqual(r!.subarray(36), patternSectors(1, 1));
    assert.equal(
      await bad.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 1, count: 1 }, 500),
      undefined,
    );
    assert.equal(await bad.config(9, 0, ConfigCommand.read, "", 300), undefined);
  });
});

Deno.test(
  "veth: one process, two exports (--and) on two interfaces, broadcast discovery",
  opts,
  async () => {
    await withNet({ hosts: 3 }, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 128, 1);
      writePatternFile(`${dir}/b.img`, 256, 2);
      daemons.push(
        await startTarget(net, [
          "9",
          "0",
          "t1p0",
          "t2p0",
          `${dir}/a.img`,
          "--and",
          "-r",
          "9",
          "1",
          "t1p0",
          `${dir}/b.img`,
        ], 2),
      );
      const one = clientIn(net, 1, "i0");
      const tag = one.nextTag();
      const frame = new Uint8Array(60);
      one.header(frame, 0xffff, 0xff, 1, tag);
      one.sendRaw(frame, 32);
      const replies = await one.waitTag(tag, { count: 2, timeoutMs: 2000 });
      const found = replies.map((r) => `e${decodeHeader(r).shelf}.${decodeHeader(r).slot}`).sort();
      assert.deepEqual(found, ["e9.0", "e9.1"]);
      const b = await one.ata(9, 1, { command: AtaOp.readSectorsExt, lba: 200, count: 1 });
      assert.deepEqual(b!.subarray(36), patternSectors(200, 1, 2));
      const two = clientIn(net, 2, "i0");
      assert.ok(await two.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 1 }));
      assert.equal(
        await two.ata(9, 1, { command: AtaOp.readSectorsExt, lba: 0, count: 1 }, 400),
        undefined,
        "e9.1 is not on t2p0",
      );
    });
  },
);

Deno.test("veth: -o/-l export a region; jumbo MTU gives 17 sectors a frame", opts, async () => {
  await withNet({ mtu: 9000 }, async (net, dir, daemons) => {
    const image = `${dir}/disk.img`;
    writePatternFile(image, 1024, 3);
    daemons.push(await startTarget(net, ["-o", "100", "-l", "0x200", "9", "0", "t1p0", image]));
    const client = clientIn(net, 1, "i0");
    const qc = decodeConfig((await client.config(9, 0, ConfigCommand.read))!);
    assert.equal(qc.sectorCount, 17);
    assert.ok(qc.bufferCount >= 2);
    const ident = await client.ata(9, 0, { command: AtaOp.identifyDevice, count: 1 });
    assert.equal(decodeIdentify(ident!.subarray(36)).sectors, 512);
    const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 0, count: 17 });
    assert.equal(r!.length, 36 + 17 * 512);
    assert.deepEqual(r!.subarray(36), patternSectors(100, 17, 3));
    const end = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 511, count: 2 });
    assert.equal(end![25], 0x10, "past -l is IDNF");

    // A burst several times the transmit ring (32 frames at this MTU) sent at once:
    // every reply arrives, with its own data.
    const burst = 200;
    const tags: number[] = [];
    for (let i = 0; i < burst; i++) {
      const tag = client.nextTag();
      tags.push(tag);
      const frame = client.link.txSlot();
      client.header(frame, 9, 0, Command.ata, tag);
      const n = encodeAta(frame, {
        aflags: AtaFlag.extended,
        feature: 0,
        sectorCount: 17,
        command: AtaOp.readSectorsExt,
        lba: (i * 17) % 495,
      });
      client.link.commit(n);
    }
    client.link.flush();
    const replies = new Map<number, Uint8Array>();
    const deadline = Date.now() + 5000;
    while (replies.size < burst && Date.now() < deadline) {
      const n = client.link.receive();
      for (let i = 0; i < n; i++) {
        const frame = client.link.rx[i].slice(0, client.link.rxLength[i]);
        if (frame[14] & 0x08) replies.set(decodeHeader(frame).tag, frame);
      }
      if (n === 0) await client.link.wait(50);
    }
    for (let i = 0; i < burst; i++) {
      const reply = replies.get(tags[i]);
      assert.ok(reply, `reply ${i} of the burst`);
      assert.deepEqual(
        reply.subarray(36),
        patternSectors(100 + (i * 17) % 495, 17, 3),
        `burst ${i}`,
      );
    }
  });
});

Deno.test(
  "veth: a sparse image stays sparse; counters readable in the stats file",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = `${dir}/sparse.img`;
      Deno.writeFileSync(image, new Uint8Array(0));
      Deno.truncateSync(image, 1 << 30);
      const stats = `${dir}/stats.json`;
      const target = await startTarget(net, ["--stats", stats, "9", "0", "t1p0", image]);
      daemons.push(target);
      const client = clientIn(net, 1, "i0");
      const w = await client.ata(9, 0, {
        command: AtaOp.writeSectorsExt,
        lba: 1 << 20,
        count: 2,
        data: patternSectors(0, 2),
      });
      assert.equal(w![27], 0x40);
      const frame = new Uint8Array(60);
      client.header(frame, 9, 0, 0, 5);
      frame[14] = 0x20; // AoE version 2
      client.sendRaw(frame);
      client.header(frame, 9, 0, 0, 6);
      frame[14] = 0x18; // a response
      client.sendRaw(frame);
      await target.stop();
      daemons.pop();
      const blocks = Deno.statSync(image).blocks!;
      assert.ok(blocks * 512 < 1 << 20, `allocated ${blocks * 512} bytes of a 1 GiB image`);
      const counters = JSON.parse(Deno.readTextFileSync(stats));
      assert.equal(counters.dispatch.badVersion, 1);
      assert.equal(counters.dispatch.responses, 1);
      assert.equal(counters.exports["e9.0"].writes, 1);
    });
  },
);

Deno.test("veth: every link kind (ring, packet, pcap) serves the same data", opts, async () => {
  await withNet({}, async (net, dir, daemons) => {
    const image = `${dir}/disk.img`;
    writePatternFile(image, 512, 9);
    const client = clientIn(net, 1, "i0");
    for (const kind of ["ring", "packet", "pcap"]) {
      const target = await startTarget(net, ["--link", kind, "9", "0", "t1p0", image]);
      daemons.push(target);
      for (const lba of [0, 300, 510]) {
        const r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba, count: 2 });
        assert.deepEqual(r?.subarray(36), patternSectors(lba, 2, 9), `${kind} lba ${lba}`);
      }
      const data = patternSectors(kind.length, 1, 1);
      const w = await client.ata(9, 0, {
        command: AtaOp.writeSectorsExt,
        lba: 100,
        count: 1,
        data,
      });
      assert.equal(w![27], 0x40, kind);
      assert.deepEqual(Deno.readFileSync(image).subarray(100 * 512, 101 * 512), data, kind);
      await target.stop();
      daemons.pop();
    }
  });
});

Deno.test(
  "veth: an interface going down is survived; one that disappears stops the target with an error",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const image = `${dir}/disk.img`;
      writePatternFile(image, 64);
      const target = await startTarget(net, ["9", "0", "t1p0", image]);
      daemons.push(target);
      await net.run(0, ["ip", "link", "set", "t1p0", "down"]);
      await new Promise((r) => setTimeout(r, 300));
      await net.run(0, ["ip", "link", "set", "t1p0", "up"]);
      const client = clientIn(net, 1, "i0");
      let r;
      for (let i = 0; i < 20 && !r; i++) {
        r = await client.ata(9, 0, { command: AtaOp.readSectorsExt, lba: 1, count: 1 }, 250);
      }
      assert.deepEqual(r?.subarray(36), patternSectors(1, 1), "still serving after down/up");
      await net.run(0, ["ip", "link", "del", "t1p0"]);
      const status = await Promise.race([
        target.status,
        new Promise<undefined>((res) => setTimeout(() => res(undefined), 5000)),
      ]);
      assert.ok(status, "the target exited");
      assert.equal(status.code, 1);
      assert.match(target.stderr, /network interface t1p0 went away/);
    });
  },
);
