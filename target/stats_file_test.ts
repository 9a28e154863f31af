import assert from "node:assert/strict";
import { StatsFile } from "./stats_file.ts";

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
