/**
 * The `aoe` command line: errors are one line with a non-zero exit, help
 * explains, the daemon form detaches and serves.
 */
import assert from "node:assert/strict";
import { aoeCommand } from "./helpers/procs.ts";
import { withNet, writePatternFile } from "./helpers/target.ts";

async function aoe(...args: string[]) {
  const argv = aoeCommand(...args);
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("cli: bad target command lines give a one-line error and exit 1", async () => {
  const cases: [string[], RegExp][] = [
    [["target"], /expected shelf slot netif/],
    [["target", "9", "0", "eth0"], /expected shelf slot netif/],
    [["target", "-x", "9", "0", "eth0", "f"], /unknown option -x/],
    [["target", "-b", "1", "9", "0", "eth0", "f"], /buffer count must be 2-65535/],
    [["target", "-b"], /option -b needs a value/],
    [["target", "65535", "0", "eth0", "f"], /shelf 65535 out of range/],
    [["target", "9", "255", "eth0", "f"], /slot 255 out of range/],
    [["target", "nine", "0", "eth0", "f"], /shelf: not a number/],
    [["target", "-m", "zz:zz", "9", "0", "eth0", "f"], /-m: not a MAC address/],
    [
      ["target", "9", "0", "eth0", "/nonexistent/disk.img"],
      /open \/nonexistent\/disk.img: No such file/,
    ],
    [["frobnicate"], /unknown command "frobnicate"/],
  ];
  for (const [args, message] of cases) {
    const r = await aoe(...args);
    assert.notEqual(r.code, 0, `${args.join(" ")} should fail`);
    const first = r.stderr.split("\n")[0];
    assert.match(first, message, `${args.join(" ")}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  }
});

Deno.test("cli: a missing interface is a one-line error", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await withNet({}, async (net, dir) => {
    writePatternFile(`${dir}/d.img`, 8);
    const r = await net.run(0, aoeCommand("target", "9", "0", "nosuch0", `${dir}/d.img`));
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), "aoe target: no such network interface: nosuch0");
  });
});

Deno.test("cli: --help explains every vblade option", async () => {
  const r = await aoe("target", "--help");
  assert.equal(r.code, 0);
  for (const option of ["-b", "-d", "-s", "-r", "-m", "-o", "-l"]) {
    assert.match(r.stdout, new RegExp(`^\\s+${option} `, "m"));
  }
  const top = await aoe("help");
  assert.equal(top.code, 0);
  assert.match(top.stdout, /target/);
});

Deno.test("cli: targetd detaches and serves; aoeping reaches it", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await withNet({}, async (net, dir) => {
    writePatternFile(`${dir}/d.img`, 2048);
    const started = await net.run(0, aoeCommand("targetd", "9", "3", "t1p0", `${dir}/d.img`));
    assert.equal(started.code, 0, started.stderr);
    let ping;
    for (let i = 0; i < 50; i++) {
      ping = await net.run(1, ["timeout", "2", "aoeping", "-s", "1", "9", "3", "i0"]);
      if (ping.code === 0) break;
    }
    assert.equal(ping!.code, 0, "the daemon answers");
    // net.close() kills every process left in the namespace.
  });
});
