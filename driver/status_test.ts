import assert from "node:assert/strict";
import { aoeStatRows, formatSize, statusObjects } from "./status.ts";

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
