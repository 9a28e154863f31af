/**
 * The initiator (`aoe modprobe` and the aoetools-like verbs) over veth against
 * Debian's vblade and `aoe target`: many targets, data with checksums, the
 * administrator's views, impaired links, dead and revived targets, hostile frames.
 */
import assert from "node:assert/strict";
import { AtaOp, Command, encodeAta, encodeHeader } from "../wire/mod.ts";
import { randomBytes, sha256, TestInitiator } from "../testing/initiator.ts";
import type { TestNet } from "../testing/netns.ts";
import { Daemon, PROJECT_ROOT } from "../testing/procs.ts";
import { clientIn, sparseFile, startTarget, withNet } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function withInitiator(
  options: { hosts?: number; mtu?: number },
  fn: (net: TestNet, dir: string, daemons: Daemon[], initiator: TestInitiator) => Promise<void>,
): Promise<void> {
  await withNet(options, async (net, dir, daemons) => {
    const initiator = new TestInitiator(net, 1);
    try {
      await fn(net, dir, daemons, initiator);
    } finally {
      await initiator.close();
    }
  });
}

Deno.test(
  "initiator: three shelves of four slots from five processes (aoe target and vblade); data, aoe status, status.sh",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      const names: string[] = [];
      for (const shelf of [1, 2]) {
        const args: string[] = [];
        for (let slot = 0; slot < 4; slot++) {
          if (slot > 0) args.push("--and");
          args.push(
            String(shelf),
            String(slot),
            "t1p0",
            sparseFile(`${dir}/s${shelf}-${slot}.img`, (8 + slot) << 20),
          );
          names.push(`e${shelf}.${slot}`);
        }
        daemons.push(await startTarget(net, args, 4));
      }
      for (let slot = 0; slot < 4; slot++) {
        const vblade = new Daemon(
          net.in(0, [
            "vblade",
            "3",
            String(slot),
            "t1p0",
            sparseFile(`${dir}/s3-${slot}.img`, 8 << 20),
          ]),
        );
        daemons.push(vblade);
        await vblade.waitFor(/sectors/);
        names.push(`e3.${slot}`);
      }
      await initiator.modprobe();
      await initiator.waitUp(names);

      for (const [i, name] of names.entries()) {
        const data = randomBytes(96 * 1024, i + 1);
        await initiator.write(name, 512 * 100, data);
        const back = await initiator.read(name, 512 * 100, data.length);
        assert.equal(await sha256(back), await sha256(data), `${name} read back`);
        const [, shelf, slot] = name.match(/e(\d)\.(\d)/)!;
        const file = Deno.readFileSync(`${dir}/s${shelf}-${slot}.img`).subarray(
          512 * 100,
          512 * 100 + data.length,
        );
        assert.equal(await sha256(file), await sha256(data), `${name} bytes in the target's file`);
      }

      const ours = await initiator.aoe(["status"]);
      assert.equal(ours.code, 0);
      const real = await new Deno.Command("aoe-stat", {
        env: { sysfs_dir: initiator.sysDir, LC_ALL: "C" },
        stdout: "piped",
      }).output();
      const realText = new TextDecoder().decode(real.stdout);
      assert.equal(ours.stdout, realText, "aoe status is character for character aoe-stat");
      assert.equal(ours.stdout.trim().split("\n").length, 12);
      assert.match(ours.stdout, /^ {6}e1\.0 {9}0\.008GB {9}i0 1024 {2}up {12}$/m);
      const script = await new Deno.Command("sh", {
        args: [`${PROJECT_ROOT}status.sh`],
        env: { AOE_RUNDIR: initiator.runDir },
        stdout: "piped",
      }).output();
      const lines = new TextDecoder().decode(script.stdout).replace(/\n$/, "").split("\n");
      assert.equal(lines.length, 12);
      assert.equal(lines[0], "    e1.0\t      i0\t      up");
      const json = JSON.parse((await initiator.aoe(["status", "--json"])).stdout);
      assert.equal(
        json.find((d: { device: string }) => d.device === "e1.3").sectors,
        (11 << 20) / 512,
      );
    });
  },
);

Deno.test(
  "initiator: random loss on the veth (nftables), same bytes, retransmissions counted and reported",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      daemons.push(
        await startTarget(net, ["9", "0", "t1p0", sparseFile(`${dir}/d.img`, 16 << 20)]),
      );
      await initiator.modprobe();
      await initiator.waitUp(["e9.0"]);
      // Teach the RTT estimate with clean traffic first: a fresh device waits about 16 s (the kernel's rto).
      for (let i = 0; i < 3; i++) await initiator.read("e9.0", 0, 1 << 20);
      const err = new Daemon(net.in(1, ["cat", `${initiator.devDir}/err`]));
      daemons.push(err);
      const nft = (host: number, device: string) =>
        net.run(host, ["nft", "-f", "-"], {
          stdin:
            `table netdev loss {\n chain c {\n  type filter hook ingress device ${device} priority 0;\n  ether type 0x88a2 numgen random mod 20 0 drop\n }\n}\n`,
        });
      assert.equal((await nft(0, "t1p0")).code, 0, "loss on requests");
      assert.equal((await nft(1, "i0")).code, 0, "loss on responses");
      const data = randomBytes(1 << 20, 42);
      await initiator.write("e9.0", 4096, data);
      const back = await initiator.read("e9.0", 4096, data.length);
      assert.equal(await sha256(back), await sha256(data));
      const status = await initiator.status();
      assert.ok(status.counters.retransmits > 0, `retransmits: ${status.counters.retransmits}`);
      await err.waitFor(
        /^ {5}retransmit e9\.0 oldtag=[0-9a-f]{8}@[0-9a-f]{8} newtag=[0-9a-f]{8} s=[0-9a-f]{12} d=[0-9a-f]{12} nout=\d+$/m,
        5000,
      );
    });
  },
);

Deno.test(
  "initiator: a killed target goes down after aoe_deadsecs, pending reads fail; restarted, revalidate brings it up with the data",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      const image = sparseFile(`${dir}/d.img`, 8 << 20);
      let target = await startTarget(net, ["9", "0", "t1p0", image]);
      await initiator.modprobe("aoe_deadsecs=3");
      await initiator.waitUp(["e9.0"]);
      const data = randomBytes(256 * 1024, 7);
      await initiator.write("e9.0", 0, data);
      for (let i = 0; i < 4; i++) await initiator.read("e9.0", 0, 1 << 20);
      await target.stop();
      const started = Date.now();
      await assert.rejects(() => initiator.read("e9.0", 0, 4096), /not up/);
      const waited = Date.now() - started;
      assert.ok(waited >= 2500 && waited < 20000, `failed after ${waited} ms`);
      assert.equal(Deno.readTextFileSync(`${initiator.sysDir}/block/etherd!e9.0/state`), "down\n");
      assert.equal(Deno.readTextFileSync(`${initiator.sysDir}/block/etherd!e9.0/size`), "0\n");
      target = await startTarget(net, ["9", "0", "t1p0", image]);
      daemons.push(target);
      const r = await initiator.aoe(["revalidate", "e9.0"]);
      assert.equal(r.code, 0, r.stderr);
      await initiator.waitUp(["e9.0"]);
      assert.equal(
        await sha256(await initiator.read("e9.0", 0, data.length)),
        await sha256(data),
        "acknowledged writes survived",
      );
    });
  },
);

Deno.test(
  "initiator: hostile frames (wrong tags, forged MACs, unknown devices, garbage) are dropped and counted",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      daemons.push(await startTarget(net, ["9", "0", "t1p0", sparseFile(`${dir}/d.img`, 8 << 20)]));
      await initiator.modprobe();
      await initiator.waitUp(["e9.0"]);
      const before = (await initiator.status()).counters;
      const attacker = clientIn(net, 0, "t1p0");
      const victim = parseInt((await net.mac(1, "i0")).replaceAll(":", ""), 16);
      const frame = new Uint8Array(1100);
      for (let i = 0; i < 5000; i++) {
        const kind = i % 5;
        encodeHeader(frame, {
          dst: victim,
          src: kind === 1 ? 0x02deadbeef01 : attacker.link.mac,
          version: 1,
          response: kind !== 4,
          error: false,
          errorCode: 0,
          shelf: kind === 2 ? 7 : 9,
          slot: 0,
          command: Command.ata,
          tag: (i * 2654435761) & 0x7fffffff,
        });
        encodeAta(frame, {
          aflags: 0x40,
          feature: 0,
          sectorCount: 2,
          command: AtaOp.readSectorsExt,
          lba: 0,
        });
        if (kind === 3) frame.fill(0xff, 14, 24); // garbage header
        attacker.sendRaw(frame, kind === 0 ? 1060 : 60);
        if (i % 64 === 63) await new Promise((r) => setTimeout(r, 2));
      }
      await new Promise((r) => setTimeout(r, 500));
      const after = (await initiator.status()).counters;
      assert.ok(
        after.unexpected - before.unexpected >= 1000,
        `unexpected: ${after.unexpected - before.unexpected}`,
      );
      assert.ok(
        after.unknownDevice - before.unknownDevice >= 900,
        `unknown device: ${after.unknownDevice - before.unknownDevice}`,
      );
      assert.ok(
        after.ignored - before.ignored >= 900,
        `ignored: ${after.ignored - before.ignored}`,
      );
      const data = randomBytes(64 * 1024, 3);
      await initiator.write("e9.0", 0, data);
      assert.equal(
        await sha256(await initiator.read("e9.0", 0, data.length)),
        await sha256(data),
        "still serving correctly",
      );
    });
  },
);

Deno.test(
  "initiator: aoe_iflist filters interfaces; the parameter file and interfaces verb change it at run time",
  opts,
  async () => {
    await withInitiator({ hosts: 3 }, async (net, dir, daemons, initiator) => {
      // Host 1 (initiator) reaches host 0's e9.0 on i0; host 2's e8.0 is bridged in over a second pair.
      daemons.push(await startTarget(net, ["9", "0", "t1p0", sparseFile(`${dir}/a.img`, 8 << 20)]));
      await net.addPair(2, 1, "t2x", "i9");
      const other = new Daemon(
        net.in(2, ["vblade", "8", "0", "t2x", sparseFile(`${dir}/b.img`, 8 << 20)]),
      );
      daemons.push(other);
      await other.waitFor(/sectors/);
      await initiator.modprobe('aoe_iflist="i0"');
      await initiator.waitUp(["e9.0"]);
      await initiator.aoe(["discover"]);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(
        (await initiator.status()).devices.some((d) => d.name === "e8.0"),
        false,
        "e8.0 behind i9 is not seen",
      );
      assert.equal((await initiator.aoe(["interfaces"])).stdout, "i0\n");
      Deno.writeTextFileSync(`${initiator.sysDir}/module/aoe/parameters/aoe_iflist`, "i0 i9\n");
      await initiator.waitUp(["e8.0"]);
      assert.equal((await initiator.aoe(["interfaces"])).stdout, "i0 i9\n");
      const r = await initiator.aoe(["interfaces", "i9"]);
      assert.equal(r.code, 0);
      const bad = await initiator.aoe(["interfaces", "nosuch7"]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /"nosuch7" is not a network interface/);
    });
  },
);

Deno.test(
  "initiator: two paths to one target; I/O spreads over both and survives one going down",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      await net.addPair(0, 1, "t1p1", "i1");
      daemons.push(
        await startTarget(net, ["9", "0", "t1p0", "t1p1", sparseFile(`${dir}/d.img`, 16 << 20)]),
      );
      await initiator.modprobe();
      await initiator.waitUp(["e9.0"]);
      for (
        let i = 0;
        i < 50 &&
        Deno.readTextFileSync(`${initiator.sysDir}/block/etherd!e9.0/netif`) !== "i0,i1\n";
        i++
      ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(
        Deno.readTextFileSync(`${initiator.sysDir}/block/etherd!e9.0/netif`),
        /^(i0,i1|i1,i0)\n$/,
      );
      for (let i = 0; i < 3; i++) await initiator.read("e9.0", 0, 1 << 20);
      const data = randomBytes(1 << 20, 11);
      await initiator.write("e9.0", 0, data);
      await net.run(0, ["ip", "link", "set", "t1p1", "down"]);
      assert.equal(await sha256(await initiator.read("e9.0", 0, data.length)), await sha256(data));
      const data2 = randomBytes(512 * 1024, 12);
      await initiator.write("e9.0", 1 << 21, data2);
      assert.equal(
        await sha256(await initiator.read("e9.0", 1 << 21, data2.length)),
        await sha256(data2),
      );
    });
  },
);

Deno.test(
  "initiator: modprobe twice is a no-op, modprobe.d options apply, rmmod refuses while open and removes its files",
  opts,
  async () => {
    await withInitiator({}, async (net, dir, daemons, initiator) => {
      daemons.push(await startTarget(net, ["9", "0", "t1p0", sparseFile(`${dir}/d.img`, 8 << 20)]));
      Deno.writeTextFileSync(
        `${dir}/aoe.conf`,
        '# test\noptions aoe aoe_deadsecs=7 aoe_iflist="i0"\noptions other x=1\n',
      );
      await initiator.modprobe("--config", `${dir}/aoe.conf`, "aoe_maxout=8", "aoe_dyndevs=0");
      const pid = Deno.readTextFileSync(`${initiator.runDir}/aoe.pid`);
      await initiator.modprobe();
      assert.equal(Deno.readTextFileSync(`${initiator.runDir}/aoe.pid`), pid, "same daemon");
      const params = `${initiator.sysDir}/module/aoe/parameters`;
      assert.equal(Deno.readTextFileSync(`${params}/aoe_deadsecs`), "7\n");
      assert.equal(Deno.readTextFileSync(`${params}/aoe_iflist`), "i0\n");
      assert.equal(Deno.readTextFileSync(`${params}/aoe_maxout`), "8\n");
      await initiator.waitUp(["e9.0"]);
      const status = await initiator.status();
      assert.equal(
        status.devices[0].minor,
        (9 * 16 + 0) * 16,
        "aoe_dyndevs=0: minor from shelf and slot",
      );
      for (const name of ["err", "discover", "interfaces", "revalidate", "flush"]) {
        assert.ok(Deno.statSync(`${initiator.devDir}/${name}`).isFifo, `${name} is a FIFO`);
      }
      // Hold e9.0 open over the socket.
      const conn = await Deno.connect({ transport: "unix", path: `${initiator.runDir}/aoe.sock` });
      const writer = conn.writable.getWriter();
      await writer.write(new TextEncoder().encode('{"cmd":"open","name":"e9.0"}\n'));
      const reader = conn.readable.getReader();
      await reader.read();
      const refused = await initiator.aoe(["rmmod"]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /in use: e9\.0 open/);
      conn.close();
      await new Promise((r) => setTimeout(r, 200));
      const removed = await initiator.aoe(["rmmod"]);
      assert.equal(removed.code, 0, removed.stderr);
      assert.throws(() => Deno.statSync(`${initiator.devDir}/err`));
      assert.throws(() => Deno.statSync(`${initiator.sysDir}`));
      const bad = await initiator.aoe(["modprobe", "aoe_maxout=zero"]);
      assert.equal(bad.code, 1);
      assert.equal(bad.stderr.trim(), "aoe modprobe: aoe_maxout: not a non-negative integer: zero");
    });
  },
);

Deno.test("initiator: the control files work with the kernel's shell usage", opts, async () => {
  await withInitiator({}, async (net, dir, daemons, initiator) => {
    daemons.push(
      await startTarget(net, [
        "9",
        "0",
        "t1p0",
        sparseFile(`${dir}/a.img`, 8 << 20),
        "--and",
        "9",
        "1",
        "t1p0",
        sparseFile(`${dir}/b.img`, 8 << 20),
      ], 2),
    );
    await initiator.modprobe();
    await initiator.waitUp(["e9.0", "e9.1"]);
    const sh = (line: string) => net.run(1, ["sh", "-c", line]);
    const started = Date.now();
    assert.equal((await sh(`echo > ${initiator.devDir}/discover`)).code, 0);
    assert.ok(Date.now() - started < 2000, "a writer never blocks");
    assert.equal((await sh(`echo e9.1 > ${initiator.devDir}/revalidate`)).code, 0);
    await initiator.waitUp(["e9.1"]);
    // aoe-flush writes names without a newline; the kernel's match is a prefix match.
    await daemons[0].stop();
    daemons.pop();
    const flushed = await sh(`printf e9.1 > ${initiator.devDir}/flush`);
    assert.equal(flushed.code, 0);
    for (
      let i = 0;
      i < 30 && (await initiator.status()).devices.some((d) => d.name === "e9.1");
      i++
    ) await new Promise((r) => setTimeout(r, 100));
    const names = (await initiator.status()).devices.map((d) => d.name);
    assert.deepEqual(names, ["e9.0"], "e9.1 forgotten even though it was up");
    assert.throws(() => Deno.statSync(`${initiator.sysDir}/block/etherd!e9.1`));
  });
});
