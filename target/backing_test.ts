import assert from "node:assert/strict";
import { FileStore } from "./backing.ts";
import { aoeCommand } from "../testing/procs.ts";

/** A loop device with 4096-byte logical sectors over a temporary file, or undefined (with why). */
async function loop4k(): Promise<{ device: string; remove: () => Promise<void> } | string> {
  try {
    Deno.statSync("/dev/loop-control");
  } catch {
    return "no /dev/loop-control";
  }
  const file = Deno.makeTempFileSync({ prefix: "aoe-4k-" });
  Deno.truncateSync(file, 4 << 20);
  const out = await new Deno.Command("losetup", {
    args: ["--find", "--show", "--sector-size", "4096", file],
    stdout: "piped",
    stderr: "piped",
  }).output().catch((e) => ({ success: false, stdout: new Uint8Array(), stderr: e }));
  if (!out.success) {
    Deno.removeSync(file);
    return `losetup failed: ${new TextDecoder().decode(out.stderr as Uint8Array)}`;
  }
  const device = new TextDecoder().decode(out.stdout).trim();
  return {
    device,
    remove: async () => {
      await new Deno.Command("losetup", { args: ["-d", device] }).output();
      Deno.removeSync(file);
    },
  };
}

Deno.test("item 9: -d on a device with 4096-byte logical sectors is refused with one line; without -d it serves", async () => {
  const loop = await loop4k();
  if (typeof loop === "string") {
    console.log(`skipped: ${loop}`);
    return;
  }
  try {
    assert.throws(() => new FileStore(loop.device, { direct: true }), (e: Error) => {
      assert.match(e.message, /^-d: \/dev\/loop\d+ has 4096-byte logical sectors/);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
    for (const daemon of [[], ["--daemon"]]) {
      const argv = aoeCommand("target", ...daemon, "-d", "9", "0", "lo", loop.device);
      const out = await new Deno.Command(argv[0], {
        args: argv.slice(1),
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1, `${daemon}: ${stderr}`);
      assert.match(
        stderr,
        /^aoe target: -d: \/dev\/loop\d+ has 4096-byte logical sectors[^\n]*\n$/,
      );
    }
    const store = new FileStore(loop.device);
    try {
      assert.equal(store.sectors, 8192);
      const data = new Uint8Array(512).fill(0x5a);
      assert.equal(store.write(data, 3, 1), 1);
      const back = new Uint8Array(512);
      assert.equal(store.read(back, 3, 1), 1);
      assert.deepEqual(back, data);
      assert.equal(store.flush(), true);
    } finally {
      store.close();
    }
  } finally {
    await loop.remove();
  }
});

Deno.test("-d on a regular file still opens with O_DIRECT and serves 512-byte sectors", () => {
  const file = Deno.makeTempFileSync({ dir: Deno.cwd(), prefix: ".aoe-direct-" });
  try {
    Deno.truncateSync(file, 64 * 512);
    const store = new FileStore(file, { direct: true });
    try {
      const data = new Uint8Array(512).fill(3);
      assert.equal(store.write(data, 7, 1), 1);
      const back = new Uint8Array(512);
      assert.equal(store.read(back, 7, 1), 1);
      assert.deepEqual(back, data);
    } finally {
      store.close();
    }
  } finally {
    Deno.removeSync(file);
  }
});
