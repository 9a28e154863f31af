/**
 * The whole chain over veth: NBD client → bridge → initiator → `aoe target`
 * (and vblade) → file, with real NBD clients no one here wrote: nbdinfo,
 * nbdcopy, qemu-img, qemu-io, fio's nbd engine, nbdsh.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { randomBytes, sha256, TestInitiator } from "../testing/initiator.ts";
import { Daemon } from "../testing/procs.ts";
import { sparseFile, startTarget, withNet } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function run(argv: string[], stdin?: string, cwd?: string) {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test(
  "nbd chain: nbdinfo, nbdcopy, qemu-img, qemu-io, fio and nbdsh through the bridge to aoe target and vblade",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const initiator = new TestInitiator(net, 1);
      try {
        const image = sparseFile(`${dir}/a.img`, 32 << 20);
        daemons.push(await startTarget(net, ["9", "0", "t1p0", image]));
        const vblade = new Daemon(
          net.in(0, ["vblade", "9", "1", "t1p0", sparseFile(`${dir}/b.img`, 16 << 20)]),
        );
        daemons.push(vblade);
        await vblade.waitFor(/sectors/);
        // TCP read-only and for loopback only; the Unix socket (root's) stays read-write.
        await initiator.modprobe(
          "--nbd-tcp",
          "10809",
          "--nbd-read-only",
          "--nbd-allow",
          "127.0.0.0/8",
        );
        await initiator.waitUp(["e9.0", "e9.1"]);
        const sock = `${initiator.runDir}/nbd.sock`;
        const uri = (name: string) => `nbd+unix:///${name}?socket=${sock}`;

        const list = await run(["nbdinfo", "--list", `nbd+unix:///?socket=${sock}`]);
        assert.equal(list.code, 0, list.stderr);
        assert.match(list.stdout, /export="e9\.0":\n\texport-size: 33554432 /);
        assert.match(list.stdout, /export="e9\.1":\n\texport-size: 16777216 /);
        const tcp = await net.run(1, ["nbdinfo", "--json", "nbd://127.0.0.1:10809/e9.0"]);
        assert.equal(tcp.code, 0, tcp.stderr);
        assert.equal(
          JSON.parse(tcp.stdout).exports[0]["export-size"],
          32 << 20,
          "TCP on the namespace's loopback",
        );
        const readOnly = await net.run(1, [
          "/usr/bin/python3",
          "-m",
          "nbd",
          "-u",
          "nbd://127.0.0.1:10809/e9.0",
          "-c",
          `
print(h.is_read_only())
try:
    h.pwrite(b"x" * 512, 0)
    print("written")
except nbd.Error as e:
    print("refused", e.errno)
`,
        ]);
        assert.equal(
          readOnly.stdout.trim(),
          "True\nrefused EPERM",
          `--nbd-read-only: ${readOnly.stderr}`,
        );

        for (
          const [name, file, size] of [["e9.0", image, 32 << 20], [
            "e9.1",
            `${dir}/b.img`,
            16 << 20,
          ]] as const
        ) {
          const data = randomBytes(size, name.length + size);
          Deno.writeFileSync(`${dir}/in-${name}`, data);
          const copyIn = await run(["nbdcopy", `${dir}/in-${name}`, uri(name)]);
          assert.equal(copyIn.code, 0, copyIn.stderr);
          const copyOut = await run(["nbdcopy", uri(name), `${dir}/out-${name}`]);
          assert.equal(copyOut.code, 0, copyOut.stderr);
          const want = await sha256(data);
          assert.equal(
            await sha256(Deno.readFileSync(`${dir}/out-${name}`)),
            want,
            `${name}: nbdcopy out equals what went in`,
          );
          assert.equal(
            await sha256(Deno.readFileSync(file)),
            want,
            `${name}: the target's file has the bytes`,
          );
        }

        const info = await run(["qemu-img", "info", "--output=json", uri("e9.0")]);
        assert.equal(JSON.parse(info.stdout)["virtual-size"], 32 << 20);
        const io = await run([
          "qemu-io",
          "-f",
          "raw",
          "-c",
          "write -P 0x5a 1M 64k",
          "-c",
          "read -P 0x5a 1M 64k",
          uri("e9.0"),
        ]);
        assert.equal(io.code, 0, io.stderr);
        assert.doesNotMatch(io.stdout, /Pattern verification failed/);
        assert.ok(
          Deno.readFileSync(image).subarray(1 << 20, (1 << 20) + 65536).every((b) => b === 0x5a),
          "qemu-io's pattern in the file",
        );

        Deno.writeTextFileSync(
          `${dir}/fio.job`,
          `[verify]\nioengine=nbd\nuri=${
            uri("e9.0")
          }\nrw=randwrite\nbs=4k\nsize=8m\niodepth=16\nverify=crc32c\ndo_verify=1\n`,
        );
        // fio writes its verify state file into the working directory: keep it in the test's own.
        const fio = await run(["fio", "--output-format=json", `${dir}/fio.job`], undefined, dir);
        assert.equal(fio.code, 0, fio.stderr);
        const job = JSON.parse(fio.stdout.slice(fio.stdout.indexOf("{"))).jobs[0];
        assert.equal(job.error, 0);
        assert.ok(job.write.io_bytes >= 8 << 20, "fio wrote its whole verify set");

        const before = Deno.statSync(image).blocks!;
        const sh = await run([
          "/usr/bin/python3",
          "-m",
          "nbd",
          "-u",
          uri("e9.0"),
          "-c",
          `
assert h.can_trim() and h.can_zero()
h.pwrite(b"\\xaa" * 1048576, 8 << 20)
h.trim(1048576, 8 << 20)
assert h.pread(1048576, 8 << 20) == bytes(1048576), "trim reads zeros"
h.pwrite(b"\\xbb" * 65536, 16 << 20)
h.zero(65536, 16 << 20)
assert h.pread(65536, 16 << 20) == bytes(65536), "write zeroes"
h.pwrite(b"\\xcc" * 65536, 20 << 20)
h.zero(65536, 20 << 20, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(65536, 20 << 20) == bytes(65536), "write zeroes, no hole"
h.flush()
print("ok")
`,
        ]);
        assert.equal(sh.stdout.trim(), "ok", sh.stderr);
        assert.ok(Deno.statSync(image).blocks! < before, "TRIM punched holes in the image");
        const file = Deno.readFileSync(image);
        assert.ok(file.subarray(8 << 20, 9 << 20).every((b) => b === 0));
        const noTrim = await run([
          "/usr/bin/python3",
          "-m",
          "nbd",
          "-u",
          uri("e9.1"),
          "-c",
          "print(h.can_trim())",
        ]);
        assert.equal(noTrim.stdout.trim(), "False", "vblade has no TRIM: not advertised");
      } finally {
        await initiator.close();
      }
    });
  },
);

Deno.test(
  "nbd chain: a read of a device that went down fails instead of hanging",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const initiator = new TestInitiator(net, 1);
      try {
        const target = await startTarget(net, [
          "9",
          "0",
          "t1p0",
          sparseFile(`${dir}/a.img`, 8 << 20),
        ]);
        await initiator.modprobe("aoe_deadsecs=2");
        await initiator.waitUp(["e9.0"]);
        const sock = `${initiator.runDir}/nbd.sock`;
        const script = `
import time
for i in range(200): h.pread(65536, i * 4096)
open("${dir}/ready", "w").close()
input()
t = time.time()
try:
    h.pread(65536, 0)
    print("read succeeded")
except nbd.Error as e:
    print("failed after %.1f s: %s" % (time.time() - t, e))
`;
        const child = new Deno.Command("/usr/bin/python3", {
          args: ["-m", "nbd", "-u", `nbd+unix:///e9.0?socket=${sock}`, "-c", script],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        // The reads before the outage must be done first (a loaded machine may take seconds).
        for (let i = 0; i < 600 && !existsSync(`${dir}/ready`); i++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.ok(existsSync(`${dir}/ready`), "the reads before the outage finished");
        await target.stop();
        const w = child.stdin.getWriter();
        await w.write(new TextEncoder().encode("\n"));
        await w.close();
        const timer = setTimeout(() => child.kill("SIGKILL"), 60000);
        const out = await child.output();
        clearTimeout(timer);
        const text = new TextDecoder().decode(out.stdout);
        assert.match(
          text,
          /failed after \d+\.\d s/,
          `${text}${new TextDecoder().decode(out.stderr)}`,
        );
        void daemons;
      } finally {
        await initiator.close();
      }
    });
  },
);
