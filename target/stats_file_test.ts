import assert from "node:assert/strict";
import { StatsFile } from "./stats_file.ts";
import { writeFileAtomic } from "./state_dir.ts";

Deno.test("stats file: an unwritable path is refused with one line", () => {
  const file = new StatsFile("/nonexistent-dir/stats.json", { log: () => {} });
  assert.throws(() => file.check(), (error: Error) => {
    assert.match(error.message, /^--stats \/nonexistent-dir\/stats.json: /);
    assert.doesNotMatch(error.message, /\n/);
    return true;
  });
});

Deno.test("stats file: a write failing while running warns once, never throws, recovers", () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-stats-" });
  try {
    const logged: string[] = [];
    const file = new StatsFile(`${dir}/sub/stats.json`, { log: (m) => logged.push(m) });
    Deno.mkdirSync(`${dir}/sub`);
    file.check();
    assert.equal(file.write({ a: 1 }), true);
    assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${dir}/sub/stats.json`)), { a: 1 });
    Deno.removeSync(`${dir}/sub`, { recursive: true });
    for (let i = 0; i < 5; i++) assert.equal(file.write({ a: 2 }), false);
    assert.equal(logged.length, 1, logged.join("\n"));
    assert.match(logged[0], /--stats .*stats.json: .*still serving/);
    Deno.mkdirSync(`${dir}/sub`);
    assert.equal(file.write({ a: 3 }), true);
    assert.equal(logged.length, 2);
    assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${dir}/sub/stats.json`)), { a: 3 });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("stats file and atomic writes: a symlink planted at the temporary name is not followed", () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-stats-" });
  try {
    // What an unprivileged user can do in a world-writable directory (the target runs as root).
    Deno.writeTextFileSync(`${dir}/victim`, "precious\n");
    Deno.symlinkSync(`${dir}/victim`, `${dir}/stats.json.tmp`);
    Deno.symlinkSync(`${dir}/victim`, `${dir}/.stats.json.${Deno.pid}.tmp`);
    const victimMode = Deno.statSync(`${dir}/victim`).mode! & 0o777;
    const file = new StatsFile(`${dir}/stats.json`, { log: () => {} });
    file.check();
    assert.equal(file.write({ a: 1 }), true);
    assert.equal(Deno.readTextFileSync(`${dir}/victim`), "precious\n");
    assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${dir}/stats.json`)), { a: 1 });
    assert.ok(!Deno.lstatSync(`${dir}/stats.json`).isSymlink);

    Deno.symlinkSync(`${dir}/victim`, `${dir}/.state.json.${Deno.pid}.tmp`);
    writeFileAtomic(`${dir}/state.json`, "{}\n", { mode: 0o600 });
    assert.equal(Deno.readTextFileSync(`${dir}/victim`), "precious\n");
    assert.equal(Deno.readTextFileSync(`${dir}/state.json`), "{}\n");
    assert.equal(Deno.statSync(`${dir}/state.json`).mode! & 0o777, 0o600);
    assert.equal(Deno.statSync(`${dir}/victim`).mode! & 0o777, victimMode, "not chmod-ed either");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("stats file: counters that cannot be gathered are a failure logged once, never thrown", () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-stats-" });
  try {
    const logged: string[] = [];
    const file = new StatsFile(`${dir}/stats.json`, { log: (m) => logged.push(m) });
    const broken = () => {
      throw new RangeError("Maximum call stack size exceeded");
    };
    for (let i = 0; i < 3; i++) assert.equal(file.write(broken), false);
    assert.equal(logged.length, 1);
    assert.match(logged[0], /Maximum call stack/);
    assert.equal(file.write(() => ({ a: 1 })), true);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
