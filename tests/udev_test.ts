/** The udev rules and their installer. (The rules meet a real udevd in the kernel VM tests.) */
import assert from "node:assert/strict";
import { PROJECT_ROOT } from "../testing/procs.ts";

Deno.test("udev: the installer copies the rules and the uninstaller removes them", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const env = { UDEV_RULES_DIR: `${dir}/rules.d` };
    const install = await new Deno.Command("sh", {
      args: [`${PROJECT_ROOT}scripts/udev-install.sh`],
      env,
      stdout: "piped",
    }).output();
    assert.equal(install.code, 0);
    const installed = Deno.readTextFileSync(`${dir}/rules.d/60-aoe-nbd.rules`);
    assert.equal(installed, Deno.readTextFileSync(`${PROJECT_ROOT}udev/60-aoe-nbd.rules`));
    assert.equal(Deno.statSync(`${dir}/rules.d/60-aoe-nbd.rules`).mode! & 0o777, 0o644);
    const uninstall = await new Deno.Command("sh", {
      args: [`${PROJECT_ROOT}scripts/udev-install.sh`, "--uninstall"],
      env,
      stdout: "piped",
    }).output();
    assert.equal(uninstall.code, 0);
    assert.throws(() => Deno.statSync(`${dir}/rules.d/60-aoe-nbd.rules`));
    const bad = await new Deno.Command("sh", {
      args: [`${PROJECT_ROOT}scripts/udev-install.sh`, "--frob"],
      env,
      stderr: "piped",
    }).output();
    assert.equal(bad.code, 1);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("udev: the rules name disks and partitions from the nbd backend, group disk, mode 0660", () => {
  const rules = Deno.readTextFileSync(`${PROJECT_ROOT}udev/60-aoe-nbd.rules`).split("\n").filter((
    l,
  ) => l && !l.startsWith("#"));
  assert.equal(rules.length, 2);
  const [disk, part] = rules;
  for (const rule of rules) {
    assert.match(rule, /ACTION=="add\|change"/, "netlink CONNECT emits change, not add");
    assert.match(rule, /GROUP="disk", MODE="0660"/);
  }
  assert.match(disk, /ATTR\{backend\}=="e\[0-9\]\*\.\[0-9\]\*"/);
  assert.match(disk, /ATTR\{size\}!="0"/, "a disconnecting device (size 0) loses its link");
  assert.match(disk, /SYMLINK\+="etherd\/\$attr\{backend\}"/);
  assert.match(part, /ATTRS\{backend\}/, "partitions read the parent's backend");
  assert.match(part, /SYMLINK\+="etherd\/\$attr\{backend\}p%n"/);
});
