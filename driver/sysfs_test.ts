import assert from "node:assert/strict";
import { AoeDevice, TargetPath } from "./device.ts";
import { DEFAULT_PARAMS } from "./params.ts";
import { SYSFS_FLUSH_MS, SysfsTree } from "./sysfs.ts";

function visibleDevice(slot: number): AoeDevice {
  const device = new AoeDevice(9, slot, slot * 16);
  device.visible = true;
  device.up = true;
  device.targets.push(new TargetPath(0x020000000001, 16));
  return device;
}

Deno.test("sysfs: writes are deferred and coalesced; a new device's directory appears whole", async () => {
  const root = Deno.makeTempDirSync({ prefix: "aoe-sysfs-" });
  const tree = new SysfsTree(`${root}/sys`);
  try {
    tree.init(DEFAULT_PARAMS);
    const devices = Array.from({ length: 50 }, (_, i) => visibleDevice(i));
    for (const d of devices) for (let i = 0; i < 10; i++) tree.writeDevice(d);
    // Nothing touched the filesystem yet: the receive path only marked the devices.
    assert.deepEqual([...Deno.readDirSync(`${root}/sys/block`)], []);
    assert.ok(tree.pending);
    // A reader racing the flush sees each directory either absent or with every file.
    let halfSeen = 0;
    const reader = setInterval(() => {
      for (const entry of Deno.readDirSync(`${root}/sys/block`)) {
        const files = [...Deno.readDirSync(`${root}/sys/block/${entry.name}`)].map((e) => e.name);
        if (files.length !== 6) halfSeen++;
      }
    }, 1);
    const deadline = Date.now() + 3000;
    while (tree.pending && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, SYSFS_FLUSH_MS));
    }
    clearInterval(reader);
    assert.equal(halfSeen, 0);
    assert.equal(tree.pending, false, "written by the timer");
    const names = [...Deno.readDirSync(`${root}/sys/block`)].map((e) => e.name).sort();
    assert.equal(names.length, 50);
    assert.equal(Deno.readTextFileSync(`${root}/sys/block/etherd!e9.3/state`), "up\n");
    assert.equal(Deno.readTextFileSync(`${root}/sys/block/etherd!e9.3/mac`), "020000000001\n");
    // A change replaces the file by rename; the latest state wins.
    devices[3].up = false;
    tree.writeDevice(devices[3]);
    assert.equal(Deno.readTextFileSync(`${root}/sys/block/etherd!e9.3/state`), "up\n");
    tree.flush();
    assert.equal(Deno.readTextFileSync(`${root}/sys/block/etherd!e9.3/state`), "down\n");
    // A removed device's pending change never brings its directory back.
    devices[4].up = false;
    tree.writeDevice(devices[4]);
    tree.removeDevice("e9.4");
    tree.flush();
    assert.throws(() => Deno.statSync(`${root}/sys/block/etherd!e9.4`));
    assert.deepEqual([...Deno.readDirSync(`${root}/sys/.new`)], [], "nothing left aside");
  } finally {
    tree.remove();
    Deno.removeSync(root, { recursive: true });
  }
});
