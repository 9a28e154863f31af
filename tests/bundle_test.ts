/**
 * The shipped form, not only the sources: `deno bundle` builds one file
 * (dist/aoe.js; `deno task compile` makes the single binary where Deno can
 * fetch its runtime), and that file runs the target, the initiator daemon it
 * re-executes, and the NBD bridge.
 */
import assert from "node:assert/strict";
import { TestInitiator } from "../testing/initiator.ts";
import { Daemon, PROJECT_ROOT } from "../testing/procs.ts";
import { sparseFile, withNet } from "../testing/target.ts";

Deno.test("bundle: the bundled aoe serves a target, loads the driver and exports over NBD", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await withNet({}, async (net, dir, daemons) => {
    const bundle = `${dir}/aoe.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "-o", bundle, `${PROJECT_ROOT}mod.ts`],
      stderr: "piped",
    }).output();
    assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
    const aoe = (...args: string[]) => [Deno.execPath(), "run", "-A", bundle, ...args];
    const target = new Daemon(
      net.in(0, aoe("target", "9", "0", "t1p0", sparseFile(`${dir}/d.img`, 8 << 20))),
    );
    daemons.push(target);
    await target.waitFor(/e9\.0, 16384 sectors/);
    const ping = await net.run(1, ["timeout", "10", "aoeping", "-i", "9", "0", "i0"]);
    assert.equal(ping.code, 0);
    assert.match(ping.stdout, /device identify response/);
    const initiator = new TestInitiator(net, 1);
    try {
      const env = ["env", `AOE_RUNDIR=${initiator.runDir}`, `AOE_DEVDIR=${initiator.devDir}`];
      const loaded = await net.run(1, [...env, ...aoe("modprobe")]);
      assert.equal(loaded.code, 0, loaded.stderr);
      const cmdline = Deno.readTextFileSync(
        `/proc/${Deno.readTextFileSync(`${initiator.runDir}/aoe.pid`).trim()}/cmdline`,
      );
      assert.ok(cmdline.includes(bundle), "the daemon runs from the bundle");
      await initiator.waitUp(["e9.0"]);
      const status = await net.run(1, [...env, ...aoe("status")]);
      assert.match(status.stdout, /^ {6}e9\.0 {9}0\.008GB {9}i0 1024 {2}up {12}$/m);
      const info = await net.run(1, [
        "nbdinfo",
        "--size",
        `nbd+unix:///e9.0?socket=${initiator.runDir}/nbd.sock`,
      ]);
      assert.equal(info.stdout.trim(), String(8 << 20));
    } finally {
      await net.run(1, ["env", `AOE_RUNDIR=${initiator.runDir}`, ...aoe("rmmod")]);
      await initiator.close();
    }
  });
});
