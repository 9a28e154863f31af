/**
 * The public API stays documented: `deno doc --lint mod.ts` reports no export
 * without JSDoc, no missing explicit type and no private type reached through
 * an export.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

async function docLint(module: string): Promise<{ code: number; output: string }> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", module],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    output: decoder.decode(result.stdout) + decoder.decode(result.stderr),
  };
}

Deno.test("doc lint: every export of mod.ts is documented and every type it reaches is public", async () => {
  const { code, output } = await docLint("mod.ts");
  const errors = output.split("\n").filter((line) => line.startsWith("error[")).slice(0, 20);
  assert.equal(
    code,
    0,
    `deno doc --lint mod.ts failed:\n${errors.join("\n")}\n${output.slice(-400)}`,
  );
});

Deno.test("doc lint: the check fails on an undocumented export", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-doclint-" });
  try {
    const module = `${dir}/bare.ts`;
    Deno.writeTextFileSync(
      module,
      "interface Hidden { a: number }\nexport const x = (h: Hidden) => h.a;\n",
    );
    const { code, output } = await docLint(module);
    assert.notEqual(code, 0);
    assert.match(output, /missing-jsdoc|private-type-ref/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
