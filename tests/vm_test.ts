/**
 * Real Linux kernels end to end: Debian's kernel booted in qemu (software
 * emulation) on a private LAN (vm/run.sh). Its aoe driver is the initiator of
 * `aoe target` on the host side; and inside the guest, the project's own
 * initiator attaches its devices to the guest's nbd driver, named by udev.
 */
import assert from "node:assert/strict";
import { aoeCommand, PROJECT_ROOT } from "../testing/procs.ts";
import { tempDir } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function md5(path: string): Promise<string> {
  const out = await new Deno.Command("md5sum", { args: [path], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).slice(0, 32);
}

/** A sparse image whose first 64 KiB are random; resolves with its md5. */
async function image(path: string, bytes: number): Promise<string> {
  Deno.writeFileSync(path, new Uint8Array(0));
  Deno.truncateSync(path, bytes);
  const file = await Deno.open(path, { write: true });
  await file.write(crypto.getRandomValues(new Uint8Array(65536)));
  file.close();
  return md5(path);
}

/** Boots the VM once (vm/run.sh) and returns the guest's output; asserts the guest script succeeded. */
async function bootGuest(
  out: string,
  guest: string,
  host: string,
  options: string[] = [],
): Promise<string> {
  const run = await new Deno.Command("bash", {
    args: [
      `${PROJECT_ROOT}vm/run.sh`,
      "--timeout",
      "500",
      "--out",
      out,
      ...options,
      "--host",
      host,
      guest,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const log = Deno.readTextFileSync(`${out}/guest.log`);
  assert.equal(run.code, 0, `${log}\n${new TextDecoder().decode(run.stderr)}`);
  return log;
}

/** e2fsck is clean and /hooray says "hooray" in a file system image. */
async function assertHooray(fsImage: string): Promise<void> {
  const fsck = await new Deno.Command("e2fsck", {
    args: ["-fn", fsImage],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.equal(fsck.code, 0, "e2fsck finds the guest's file system clean");
  const cat = await new Deno.Command("debugfs", {
    args: ["-R", "cat /hooray", fsImage],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.equal(new TextDecoder().decode(cat.stdout), "hooray\n");
}

const guestScript = (name: string) => `${PROJECT_ROOT}vm/guest/${name}`;

for (const mtu of [1500, 9000]) {
  Deno.test(
    `kernel aoe driver against aoe target at MTU ${mtu}: discovery, attributes, checksum, writes, the kernel documentation's example`,
    opts,
    async () => {
      const dir = tempDir();
      try {
        const disk = `${dir.path}/disk.img`;
        const want = await image(disk, 64 << 20);
        const target = aoeCommand("target", "9", "0", "aoevm1", disk).join(" ");
        const log = await bootGuest(
          `${dir.path}/out`,
          guestScript("aoe_kernel_initiator.sh"),
          `exec ${target}`,
          ["--mtu", String(mtu)],
        );
        const attr = (name: string) => log.match(new RegExp(`^ATTR ${name}=(.*)$`, "m"))?.[1];
        assert.equal(attr("state"), "up");
        assert.equal(attr("size"), String((64 << 20) / 512));
        assert.equal(attr("mac"), "027700000001");
        assert.equal(attr("netif"), "eth0");
        assert.equal(attr("payload"), mtu === 9000 ? "8704" : "1024");
        assert.equal(log.match(/^MD5 (\w+)$/m)?.[1], want, "the guest read the host file's bytes");
        assert.match(log, /^RESULT write ok$/m);
        assert.match(log, /^RESULT fs ok$/m);
        const bytes = Deno.readFileSync(disk);
        assert.equal(
          new TextDecoder().decode(bytes.subarray(bytes.length - 512, bytes.length - 485)),
          "written by the guest kernel",
        );
        await assertHooray(disk);
      } finally {
        dir.remove();
      }
    },
  );
}

Deno.test(
  "kernel aoe driver against aoe target with every extension on (docs/extensions.md): it declares nothing, nothing changes; frozen while it writes, merged while it makes a file system",
  opts,
  async () => {
    const dir = tempDir();
    try {
      const disk = `${dir.path}/disk.img`;
      const shadow = `${dir.path}/shadow.img`;
      const want = await image(disk, 64 << 20);
      const target = aoeCommand(
        "target",
        "-f",
        shadow,
        "--crc",
        "crc32c,crc8x4",
        "9",
        "0",
        "aoevm1",
        disk,
      )
        .join(" ");
      const hostLog = `${dir.path}/out/host-0.log`;
      const guestLog = `${dir.path}/out/guest.log`;
      // Freeze once the target runs (AoEde's signals, a moment apart); unfreeze after the guest's first
      // write. The guest goes on making a file system and cannot see the merge: the host marks it done
      // (host-0.done) and run.sh waits for that mark once the VM is off (--host-drain).
      const host =
        `${target} & p=$!; until grep -q "^pid .*e9.0" ${hostLog}; do sleep 0.1; done; ` +
        `kill -USR1 $p; sleep 0.3; kill -USR2 $p; ` +
        `until grep -q "^RESULT write ok" ${guestLog} 2>/dev/null; do sleep 0.2; done; ` +
        `kill -USR1 $p; sleep 0.3; kill -USR1 $p; sleep 0.3; kill -USR2 $p; ` +
        `until grep -q "merged and unfrozen" ${hostLog}; do sleep 0.2; done; ` +
        `touch ${dir.path}/out/host-0.done; wait $p`;
      const log = await bootGuest(
        `${dir.path}/out`,
        guestScript("aoe_kernel_initiator.sh"),
        host,
        ["--host-drain", "60"],
      );
      const attr = (name: string) => log.match(new RegExp(`^ATTR ${name}=(.*)$`, "m"))?.[1];
      assert.equal(attr("state"), "up");
      assert.equal(attr("payload"), "1024");
      assert.equal(log.match(/^MD5 (\w+)$/m)?.[1], want, "the guest read the host file's bytes");
      assert.match(log, /^RESULT write ok$/m);
      assert.match(log, /^RESULT fs ok$/m);
      const targetLog = Deno.readTextFileSync(hostLog);
      assert.match(targetLog, /e9\.0: frozen/, targetLog);
      assert.match(targetLog, /e9\.0: merged and unfrozen/, targetLog);
      assert.doesNotMatch(targetLog, /declares/, "the kernel declares nothing");
      assert.throws(
        () => Deno.statSync(shadow),
        /No such file/,
        "the shadow is merged and removed",
      );
      const bytes = Deno.readFileSync(disk);
      assert.equal(
        new TextDecoder().decode(bytes.subarray(bytes.length - 512, bytes.length - 485)),
        "written by the guest kernel",
        "the write made while frozen reached the image",
      );
      await assertHooray(disk);
    } finally {
      dir.remove();
    }
  },
);

Deno.test(
  "kernel aoe driver: e9.0 and e10.1 from one aoe target on two ports, target restarted while the guest reads; the data stays right",
  opts,
  async () => {
    const dir = tempDir();
    try {
      const images = [`${dir.path}/a.img`, `${dir.path}/b.img`];
      const sums = await Promise.all(images.map((path) => image(path, 16 << 20)));
      const target = aoeCommand(
        "target",
        "9",
        "0",
        "aoevm1",
        "aoevm3",
        images[0],
        "--and",
        "10",
        "1",
        "aoevm1",
        "aoevm3",
        images[1],
      ).join(" ");
      // Once the guest has read e9.0 through once (its log says so), stop the target for 3 s, start it again.
      const guestLog = `${dir.path}/out/guest.log`;
      const host =
        `${target} & p=$!; until grep -q "^MD5 e9.0" ${guestLog} 2>/dev/null; do sleep 0.2; done; kill $p; wait $p; sleep 3; exec ${target}`;
      const log = await bootGuest(`${dir.path}/out`, guestScript("aoe_kernel_restart.sh"), host, [
        "--veths",
        "2",
      ]);
      assert.match(log, /^ATTR e9\.0 state=up size=32768 mac=0277000000\d\d$/m);
      assert.match(log, /^ATTR e10\.1 state=up size=32768 mac=0277000000\d\d$/m);
      assert.equal(log.match(/^MD5 e10\.1 (\w+)$/m)?.[1], sums[1]);
      const reads = [...log.matchAll(/^MD5 e9\.0 (\w+) t=/gm)].map((m) => m[1]);
      assert.equal(reads.length, 6, log);
      for (const sum of reads) {
        assert.equal(
          sum,
          sums[0],
          `every read of e9.0 across the restart:\n${log}`,
        );
      }
      const hostLog = Deno.readTextFileSync(`${dir.path}/out/host-0.log`);
      assert.equal(
        hostLog.match(/pid \d+: e9\.0/g)?.length,
        2,
        `the target was started twice:\n${hostLog}`,
      );
    } finally {
      dir.remove();
    }
  },
);

Deno.test(
  "kernel aoe driver: interfaces, discover and revalidate control files; err shows a retransmit when the target stops",
  opts,
  async () => {
    const dir = tempDir();
    try {
      const disk = `${dir.path}/disk.img`;
      await image(disk, 16 << 20);
      const target = aoeCommand("target", "9", "0", "aoevm1", disk).join(" ");
      const log = await bootGuest(
        `${dir.path}/out`,
        guestScript("aoe_kernel_control.sh"),
        `${target} & p=$!; sleep 16; kill $p; wait $p; sleep 600`,
      );
      assert.match(log, /^RESULT interfaces=eth0$/m);
      assert.match(log, /^RESULT state=up$/m, "found through the discover control file");
      assert.match(log, /^RESULT revalidate written$/m);
      assert.match(
        log,
        /^ERR {6}retransmit e9\.0 oldtag=[0-9a-f]{8}@[0-9a-f]{8,} newtag=[0-9a-f]{8} s=525400770002 d=027700000001 nout=\d+$/m,
        log,
      );
    } finally {
      dir.remove();
    }
  },
);

for (const kind of ["aoe target", "vblade"]) {
  Deno.test(
    `in the guest: aoe modprobe against ${kind}, the bridge attaches to nbd.ko, udev names /dev/etherd/e9.0 and e9.0p1, rmmod detaches`,
    opts,
    async () => {
      const dir = tempDir();
      try {
        const disk = `${dir.path}/disk.img`;
        const want = await image(disk, 64 << 20);
        const guest = `${dir.path}/guest.sh`;
        Deno.writeTextFileSync(
          guest,
          `PROJECT=${PROJECT_ROOT.replace(/\/$/, "")}\n. "$PROJECT/vm/guest/bridge_nbd_udev.sh"\n`,
        );
        const target = kind === "vblade"
          ? `vblade 9 0 aoevm1 ${disk}`
          : aoeCommand("target", "9", "0", "aoevm1", disk).join(" ");
        const log = await bootGuest(`${dir.path}/out`, guest, `exec ${target}`, ["--hostroot"]);
        const result = (key: string) => log.match(new RegExp(`^RESULT ${key}=(.*)$`, "m"))?.[1];
        assert.match(log, /^RESULT e9\.0 up$/m, log);
        assert.match(
          result("link") ?? "",
          /^\.\.\/nbd\d+$/,
          "/dev/etherd/e9.0 is a link to an nbd device",
        );
        assert.equal(result("backend"), "e9.0", "the nbd backend identifier is the device name");
        assert.equal(result("group"), "disk mode=660");
        assert.equal(result("md5"), want, "the guest read the host file's bytes through nbd");
        assert.match(
          result("part") ?? "",
          /^\.\.\/nbd\d+p1$/,
          "/dev/etherd/e9.0p1 for the partition",
        );
        assert.match(log, /^RESULT fs ok$/m);
        assert.match(log, /^STATUS {7}e9\.0 {9}0\.067GB {7}eth0 1024 {2}up {12}$/m);
        assert.match(log, /^STATUSSH {5}e9\.0\t {4}eth0\t {6}up$/m);
        assert.match(log, /^RESULT rmmod ok$/m);
        assert.match(log, /^RESULT link gone$/m);
        // The partition's file system, written in the guest, is in the host's image.
        const part = `${dir.path}/part.img`;
        Deno.writeFileSync(
          part,
          Deno.readFileSync(disk).subarray(2048 * 512, (2048 + 32768) * 512),
        );
        await assertHooray(part);
      } finally {
        dir.remove();
      }
    },
  );
}
