/**
 * Installed like a storage daemon (issue 12): scripts/install.sh into a
 * scratch root and --uninstall leaving nothing behind, the systemd units
 * verified by systemd-analyze, the man pages linted by mandoc and kept
 * consistent with --help and the config file's keys.
 */
import assert from "node:assert/strict";
import { EXPORT_KEYS, parseConfig, SERVICE_KEYS } from "../target/config_file.ts";
import { TARGET_HELP } from "../target/options.ts";
import { TARGET_CTL_HELP } from "../cli/target_ctl_command.ts";
import { TARGET_SERVICE_HELP } from "../cli/target_service_command.ts";
import { aoeCommand, PROJECT_ROOT } from "../testing/procs.ts";

const UNITS = ["aoe-targets.service", "aoe-target@.service", "aoe-initiator.service"];
const PAGES = ["aoe.8", "aoe-target.8", "aoe-targets.conf.5"];

async function run(
  argv: string[],
  cwd?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

function tree(root: string, dir = ""): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(`${root}${dir}`)) {
    const path = `${dir}/${entry.name}`;
    out.push(entry.isDirectory ? `${path}/` : path);
    if (entry.isDirectory) out.push(...tree(root, path));
  }
  return out.sort();
}

function have(command: string): boolean {
  return new Deno.Command("sh", {
    args: ["-c", `command -v ${command}`],
    stdout: "null",
    stderr: "null",
  })
    .outputSync().success;
}

function ensurePackage(command: string, pkg: string): boolean {
  if (have(command)) return true;
  new Deno.Command("apt-get", {
    args: ["install", "-y", "-qq", pkg],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  return have(command);
}

Deno.test("install: scratch root, every file in place, uninstall leaves nothing behind", async () => {
  const root = Deno.makeTempDirSync({ prefix: "aoe-h5-root-" });
  try {
    // Something the administrator wrote before: never touched.
    Deno.mkdirSync(`${root}/etc/aoe`, { recursive: true });
    Deno.writeTextFileSync(`${root}/etc/aoe/targets.conf`, "# mine\n");
    const before = tree(root);
    const install = await run(["sh", `${PROJECT_ROOT}scripts/install.sh`, "--root", root]);
    assert.equal(install.code, 0, install.stderr);
    const installed = tree(root).filter((p) => !before.includes(p));
    assert.deepEqual(installed, [
      "/etc/aoe/modprobe-aoe.conf.example",
      "/etc/aoe/target-e9.0.env.example",
      "/etc/aoe/targets.conf.example",
      "/etc/udev/",
      "/etc/udev/rules.d/",
      "/etc/udev/rules.d/60-aoe-nbd.rules",
      "/usr/",
      "/usr/local/",
      "/usr/local/bin/",
      "/usr/local/bin/aoe",
      "/usr/local/lib/",
      "/usr/local/lib/systemd/",
      "/usr/local/lib/systemd/system/",
      "/usr/local/lib/systemd/system/aoe-initiator.service",
      "/usr/local/lib/systemd/system/aoe-target@.service",
      "/usr/local/lib/systemd/system/aoe-targets.service",
      "/usr/local/share/",
      "/usr/local/share/aoe/",
      "/usr/local/share/aoe/install-manifest",
      "/usr/local/share/aoe/install-manifest.dirs",
      "/usr/local/share/man/",
      "/usr/local/share/man/man5/",
      "/usr/local/share/man/man5/aoe-targets.conf.5",
      "/usr/local/share/man/man8/",
      "/usr/local/share/man/man8/aoe-target.8",
      "/usr/local/share/man/man8/aoe.8",
    ]);
    assert.equal(Deno.statSync(`${root}/usr/local/bin/aoe`).mode! & 0o777, 0o755);
    assert.equal(
      Deno.statSync(`${root}/usr/local/lib/systemd/system/aoe-targets.service`).mode! & 0o777,
      0o644,
    );
    const unit = Deno.readTextFileSync(`${root}/usr/local/lib/systemd/system/aoe-targets.service`);
    assert.match(
      unit,
      /^ExecStart=\/usr\/local\/bin\/aoe target --config \/etc\/aoe\/targets.conf$/m,
    );
    assert.doesNotMatch(unit, /@BINDIR@/);
    const version = await run([`${root}/usr/local/bin/aoe`, "version"]);
    assert.equal(version.stdout.trim(), "aoe 0.1.0");
    // Installing again over itself is fine; a file it did not install is not overwritten.
    assert.equal((await run(["sh", `${PROJECT_ROOT}scripts/install.sh`, "--root", root])).code, 0);
    assert.equal(Deno.readTextFileSync(`${root}/etc/aoe/targets.conf`), "# mine\n");

    const uninstall = await run([
      "sh",
      `${PROJECT_ROOT}scripts/install.sh`,
      "--root",
      root,
      "--uninstall",
    ]);
    assert.equal(uninstall.code, 0, uninstall.stderr);
    assert.deepEqual(tree(root), before);
    assert.equal(Deno.readTextFileSync(`${root}/etc/aoe/targets.conf`), "# mine\n");
    const again = await run([
      "sh",
      `${PROJECT_ROOT}scripts/install.sh`,
      "--root",
      root,
      "--uninstall",
    ]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /nothing to uninstall/);

    // A foreign file where the command would go stops the install before it overwrites it.
    Deno.mkdirSync(`${root}/opt/bin`, { recursive: true });
    Deno.writeTextFileSync(`${root}/opt/bin/aoe`, "#!/bin/sh\n");
    const refused = await run([
      "sh",
      `${PROJECT_ROOT}scripts/install.sh`,
      "--root",
      root,
      "--prefix",
      "/opt",
    ]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /\/opt\/bin\/aoe exists and was not installed by this script/);
    assert.equal(Deno.readTextFileSync(`${root}/opt/bin/aoe`), "#!/bin/sh\n");
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("systemd: systemd-analyze verify passes on every unit, with no warning", async (t) => {
  if (!ensurePackage("systemd-analyze", "systemd")) {
    console.log("skipped: systemd-analyze is not installed and apt-get could not install it");
    return;
  }
  const dir = Deno.makeTempDirSync({ prefix: "aoe-h5-units-" });
  try {
    // The units as installed, their command pointing at this checkout's launcher (it must exist).
    for (const unit of UNITS) {
      const text = Deno.readTextFileSync(`${PROJECT_ROOT}systemd/${unit}`)
        .replaceAll("@BINDIR@", `${PROJECT_ROOT}scripts`);
      Deno.writeTextFileSync(`${dir}/${unit.replace("@.", "@e9.0.")}`, text);
    }
    const verify = async (...names: string[]) =>
      await run(["systemd-analyze", "verify", "--man=no", ...names.map((n) => `./${n}`)], dir);
    for (const unit of UNITS.map((u) => u.replace("@.", "@e9.0."))) {
      await t.step(unit, async () => {
        const result = await verify(unit);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stderr.trim(), "", "no warning");
      });
    }
    await t.step("a unit with a mistake is caught (the check can fail)", async () => {
      const text = Deno.readTextFileSync(`${dir}/aoe-targets.service`).replace(
        "[Service]",
        "[Service]\nExecReloadd=x",
      );
      Deno.writeTextFileSync(`${dir}/aoe-broken.service`, text);
      const result = await verify("aoe-broken.service");
      assert.match(result.stderr, /Unknown key 'ExecReloadd'/);
    });
    const targets = Deno.readTextFileSync(`${PROJECT_ROOT}systemd/aoe-targets.service`);
    assert.match(targets, /^Type=notify$/m);
    assert.match(targets, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    const template = Deno.readTextFileSync(`${PROJECT_ROOT}systemd/aoe-target@.service`);
    assert.match(template, /^EnvironmentFile=\/etc\/aoe\/target-%i\.env$/m);
    const env = Deno.readTextFileSync(`${PROJECT_ROOT}etc/target-e9.0.env.example`);
    for (const variable of template.match(/^ExecStart=.*$/m)![0].match(/\$[A-Z]+/g)!) {
      assert.match(
        env,
        new RegExp(`^${variable.slice(1)}=`, "m"),
        `${variable} in the example env file`,
      );
    }
    const initiator = Deno.readTextFileSync(`${PROJECT_ROOT}systemd/aoe-initiator.service`);
    assert.match(initiator, /^ExecStart=@BINDIR@\/aoe modprobe$/m);
    assert.match(initiator, /^ExecStop=@BINDIR@\/aoe rmmod$/m);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("man: mandoc -T lint finds no warning in any page (and does find one in a bad page)", async () => {
  assert.ok(ensurePackage("mandoc", "mandoc"), "mandoc is needed (apt-get install mandoc)");
  for (const page of PAGES) {
    const result = await run([
      "mandoc",
      "-T",
      "lint",
      "-W",
      "warning",
      `${PROJECT_ROOT}man/${page}`,
    ]);
    assert.equal(result.code, 0, `${page}: ${result.stdout}${result.stderr}`);
    assert.equal((result.stdout + result.stderr).trim(), "");
  }
  const bad = Deno.makeTempFileSync({ suffix: ".8" });
  try {
    Deno.writeTextFileSync(bad, ".TH BAD 8\n.SH NAME\nbad \\- page\n.PP\n.PP\n");
    const result = await run(["mandoc", "-T", "lint", "-W", "warning", bad]);
    assert.notEqual(result.code, 0);
  } finally {
    Deno.removeSync(bad);
  }
});

Deno.test("man: the pages name every option of --help, every command of aoe help and every config key", async () => {
  const page = (name: string) =>
    Deno.readTextFileSync(`${PROJECT_ROOT}man/${name}`).replaceAll("\\-", "-");
  const target = page("aoe-target.8");
  for (const help of [TARGET_HELP, TARGET_SERVICE_HELP, TARGET_CTL_HELP]) {
    for (const option of new Set(help.match(/(?<![\w-])--?[a-z][a-z-]*/g))) {
      assert.ok(target.includes(option), `aoe-target.8 documents ${option}`);
    }
  }
  for (const verb of ["list", "stats", "reload", "freeze", "unfreeze", "resize"]) {
    assert.match(
      target,
      new RegExp(`^\\.BI? ${verb}\\b`, "m"),
      `aoe-target.8 documents target-ctl ${verb}`,
    );
  }
  const help = (await run(aoeCommand("help"))).stdout;
  const aoe = page("aoe.8");
  const verbs = [...help.matchAll(/^ {2}([a-z][a-z-]+)(?= {2}| \[| eX| -)/gm)].map((m) => m[1]);
  assert.ok(verbs.length >= 14, `verbs found in aoe help: ${verbs}`);
  for (const verb of verbs) {
    assert.match(
      aoe,
      new RegExp(`^\\.(B|BI|TP\\n\\.B) ${verb}\\b`, "m"),
      `aoe.8 documents ${verb}`,
    );
  }
  for (const option of new Set(help.match(/(?<![\w-])(--[a-z][a-z-]*|aoe_[a-z]+|AOE_[A-Z]+)/g))) {
    assert.ok(aoe.includes(option), `aoe.8 documents ${option}`);
  }
  const conf = page("aoe-targets.conf.5");
  for (const key of [...EXPORT_KEYS, ...SERVICE_KEYS]) {
    assert.match(conf, new RegExp(`^\\.B ${key}$`, "m"), `aoe-targets.conf.5 documents ${key}`);
  }
  // The example config files are valid.
  const example = parseConfig(
    Deno.readTextFileSync(`${PROJECT_ROOT}etc/targets.conf.example`),
    "example",
  );
  assert.deepEqual(example.exports.map((e) => `e${e.shelf}.${e.slot}`), ["e9.0", "e9.1"]);
});
