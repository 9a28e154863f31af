import assert from "node:assert/strict";
import { aoeStatRows, formatSize, statusObjects } from "./status.ts";

/** Runs status.sh on the tree at `sysDir`. */
function statusSh(sysDir: string): { code: number; stdout: string } {
  const out = new Deno.Command("sh", {
    args: [new URL("../status.sh", import.meta.url).pathname],
    env: { sysfs_dir: sysDir },
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
}

Deno.test("status: aoe-stat's size column in shell integer math", () => {
  assert.equal(formatSize("2097152"), "1.073GB");
  assert.equal(formatSize("0"), "0.000GB");
  assert.equal(formatSize("4096"), "0.002GB");
  assert.equal(formatSize("1953525168"), "1000.204GB");
  assert.equal(formatSize("(NA)"), "(NA)");
});

Deno.test("status: rows as aoe-stat prints them, sorted, partitions left out, missing files (NA)", () => {
  const sys = Deno.makeTempDirSync({ prefix: "aoe-status-tmp-" }); // a path with a "p" in it
  try {
    const dev = (name: string, files: Record<string, string>) => {
      Deno.mkdirSync(`${sys}/block/etherd!${name}`, { recursive: true });
      for (const [k, v] of Object.entries(files)) {
        Deno.writeTextFileSync(`${sys}/block/etherd!${name}/${k}`, `${v}\n`);
      }
    };
    dev("e50.0", { size: "1953525168", netif: "em1", payload: "8704", state: "up" });
    dev("e9.1", { size: "0", netif: "eth1,eth3", payload: "1024", state: "down,closewait" });
    dev("e9.1p1", { size: "100", netif: "eth1", payload: "1024", state: "up" });
    dev("e9.2", { netif: "eth1", payload: "1024", state: "up" });
    const rows = aoeStatRows(sys);
    // Sorted bytewise, as `sort` under LC_ALL=C: the longer name has one space less in front.
    assert.deepEqual(rows, [
      "      e9.1         0.000GB  eth1,eth3 1024  down,closewait",
      "      e9.2            (NA)       eth1 1024  up            ",
      "     e50.0      1000.204GB        em1 8704  up            ",
    ]);
    assert.deepEqual(aoeStatRows(sys, "e9\\."), rows.slice(0, 2));
    assert.equal(statusObjects(sys).find((d) => d.device === "e50.0")!.sectors, 1953525168);
  } finally {
    Deno.removeSync(sys, { recursive: true });
  }
});

Deno.test({
  name:
    "status: a tree behind a symlink is read only when the directory it names is the symlink owner's (a memory copy's name on /dev/shm, gone, made by another user)",
  ignore: Deno.uid() !== 0,
  fn() {
    const dir = Deno.makeTempDirSync({ prefix: "aoe-status-link-" });
    try {
      const tree = (at: string) => {
        Deno.mkdirSync(`${at}/block/etherd!e1.1`, { recursive: true });
        Deno.writeTextFileSync(`${at}/block/etherd!e1.1/state`, "up\n");
      };
      tree(`${dir}/ours`);
      Deno.symlinkSync(`${dir}/ours`, `${dir}/sys`);
      assert.deepEqual(statusObjects(`${dir}/sys`).map((d) => d.device), ["e1.1"]);
      assert.equal(statusSh(`${dir}/sys`).stdout, "    e1.1\t        \t      up\n");

      // The daemon's memory copy is gone and somebody else made a directory of its name.
      Deno.removeSync(`${dir}/ours`, { recursive: true });
      tree(`${dir}/ours`);
      Deno.chownSync(`${dir}/ours`, 65534, 65534);
      assert.deepEqual(statusObjects(`${dir}/sys`), [], "a forged tree is not shown");
      assert.deepEqual(aoeStatRows(`${dir}/sys`), []);
      const script = statusSh(`${dir}/sys`);
      assert.notEqual(script.code, 0, "status.sh refuses it too");
      assert.equal(script.stdout, "");

      // Or a symlink of that name to some directory of root's they can write in.
      Deno.removeSync(`${dir}/ours`, { recursive: true });
      tree(`${dir}/shared`);
      Deno.symlinkSync(`${dir}/shared`, `${dir}/ours`);
      assert.deepEqual(statusObjects(`${dir}/sys`), [], "not through a second symlink");
      assert.notEqual(statusSh(`${dir}/sys`).code, 0);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
