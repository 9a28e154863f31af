/**
 * The target as a service (issue 12): config-file errors, many exports from
 * one file, a reload under load, state kept across a restart, the control
 * socket and `aoe target-ctl`, the Prometheus textfile, online resize and
 * systemd readiness.
 */
import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../target/config_file.ts";
import { libc, linux } from "../ffi/libc.ts";
import {
  AtaOp,
  Command,
  ConfigCommand,
  decodeConfig,
  decodeIdentify,
  decodeMask,
  DirectiveCommand,
  encodeMask,
  MaskCommand,
} from "../wire/mod.ts";
import type { TestClient } from "../testing/client.ts";
import type { TestNet } from "../testing/netns.ts";
import { TestInitiator } from "../testing/initiator.ts";
import { NbdAttr, NbdCmd, parseMessages, resizeMessage } from "../nbd/netlink.ts";
import { aoeCommand, Daemon } from "../testing/procs.ts";
import { clientIn, patternSectors, withNet, writePatternFile } from "../testing/target.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

function problems(text: string): string[] {
  try {
    parseConfig(text, "/etc/aoe/targets.conf");
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  assert.fail("the config was accepted");
}

Deno.test("config: every error names file, line and key, and the file is refused whole", () => {
  assert.deepEqual(problems("[[export]]\nshelf = 1\nshelf = 2\n"), [
    "/etc/aoe/targets.conf:3:1: shelf: trying to redefine an already defined table or value",
  ]);
  const syntax = problems('[defaults]\ninterfaces = ["eth0"\n')[0];
  assert.match(syntax, /^\/etc\/aoe\/targets\.conf:\d+:\d+: /);

  const text = [
    "[service]", // 1
    'link = "raw"', // 2
    "colour = 1", // 3
    "", // 4
    "[defaults]", // 5
    'interfaces = ["eth0"]', // 6
    "buffer_count = 1", // 7
    "", // 8
    "[[export]]", // 9
    "shelf = 9", // 10
    "slot = 0", // 11
    'file = "/srv/a.img"', // 12
    "buffer_count = 16", // 13
    "", // 14
    "[[export]]", // 15
    "shelf = 70000", // 16
    "slot = 0", // 17
    'file = "/srv/b.img"', // 18
    "", // 19
    "[[export]]", // 20
    "shelf = 9", // 21
    "slot = 1", // 22
    'masks = ["52:54:00:00:00:01", "nonsense"]', // 23
    'file = "/srv/c.img"', // 24
    'read_only = "yes"', // 25
    "", // 26
    "[[export]]", // 27
    "slot = 2", // 28
    'file = "/srv/d.img"', // 29
    "", // 30
    "[[export]]", // 31
    "shelf = 9", // 32
    "slot = 0", // 33
    'file = "/srv/e.img"', // 34
    "buffer_count = 8", // 35
  ].join("\n");
  assert.deepEqual(problems(text), [
    "/etc/aoe/targets.conf:3: colour: unknown key (known: state_dir, control_socket, control_group, link, stats_file, prometheus_dir, prometheus_interval)",
    '/etc/aoe/targets.conf:2: link: must be "ring", "packet" or "pcap", not "raw"',
    '/etc/aoe/targets.conf:16: shelf: must be an integer from 0 to 65534, not "70000"',
    '/etc/aoe/targets.conf:7: buffer_count: must be an integer from 2 to 65535, not "1"',
    '/etc/aoe/targets.conf:23: masks: not a MAC address: "nonsense"',
    "/etc/aoe/targets.conf:25: read_only: must be true or false",
    "/etc/aoe/targets.conf:27: [export.3]: shelf is missing",
    "/etc/aoe/targets.conf:32: shelf: e9.0 is already exported by the [[export]] at line 9",
  ]);
  assert.deepEqual(problems('[service]\nstate_dir = "/x"\n'), [
    "/etc/aoe/targets.conf:1: [service]: no [[export]] table: nothing to serve",
  ]);
  assert.deepEqual(problems('[[export]]\nshelf = 1\nslot = 1\nfile = "/a"\ninterfaces = []\n'), [
    '/etc/aoe/targets.conf:5: interfaces: must be a list of interface names, e.g. ["eth0"]',
  ]);
  assert.deepEqual(problems('[[export]]\nshelf = 1\nslot = 1\nfile = "/a"\n'), [
    "/etc/aoe/targets.conf:1: [export.0]: interfaces is missing (here or in [defaults])",
  ]);
  assert.deepEqual(
    problems('[defaults]\nshelf = 1\n[[export]]\nslot = 1\nfile = "/a"\ninterfaces = ["e"]\n'),
    [
      "/etc/aoe/targets.conf:2: shelf: belongs in each [[export]], not in [defaults]",
    ],
  );

  const good = parseConfig(
    [
      "[service]",
      'state_dir = ""',
      "[defaults]",
      'interfaces = ["eth0", "eth1"]',
      "sync = true",
      "[[export]]",
      "shelf = 9",
      "slot = 0",
      'file = "/srv/a.img"',
      "[[export]]",
      "shelf = 9",
      "slot = 1",
      'file = "/srv/b.img"',
      'interfaces = ["eth2"]',
      "offset = 8",
      "length = 100",
      'masks = ["525400000001"]',
    ].join("\n"),
    "x.conf",
  );
  assert.equal(good.service.stateDir, "");
  assert.equal(good.service.controlSocket, "/run/aoe/target.sock");
  assert.deepEqual(
    good.exports.map((e) => [e.shelf, e.slot, e.interfaces, e.sync, e.offset, e.length, e.masks]),
    [
      [9, 0, ["eth0", "eth1"], true, 0, undefined, []],
      [9, 1, ["eth2"], true, 8, 100, [0x525400000001]],
    ],
  );
});

Deno.test(
  "config: aoe target --config refuses a bad file with exit 1 and starts nothing",
  opts,
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "aoe-h5-" });
    try {
      Deno.writeTextFileSync(
        `${dir}/t.conf`,
        '[[export]]\nshelf = 1\nslot = 300\nfile = "/nonexistent"\ninterfaces = ["lo"]\n',
      );
      const argv = aoeCommand("target", "--config", `${dir}/t.conf`);
      const out = await new Deno.Command(argv[0], {
        args: argv.slice(1),
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1);
      assert.match(
        stderr,
        new RegExp(`${dir}/t.conf:3: slot: must be an integer from 0 to 254, not "300"`),
      );
      assert.match(stderr, /refused, nothing started/);
      const check = aoeCommand("target", "--config", `${dir}/t.conf`, "--check");
      const checked = await new Deno.Command(check[0], {
        args: check.slice(1),
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(checked.code, 1);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

interface ExportLine {
  shelf: number;
  slot: number;
  file: string;
  extra?: string[];
}

function configText(dir: string, exports: ExportLine[], service: string[] = []): string {
  return [
    "[service]",
    `state_dir = "${dir}/state"`,
    `control_socket = "${dir}/run/target.sock"`,
    `prometheus_dir = "${dir}/prom"`,
    "prometheus_interval = 1",
    ...service,
    "",
    "[defaults]",
    'interfaces = ["t1p0"]',
    "",
    ...exports.flatMap((e) => [
      "[[export]]",
      `shelf = ${e.shelf}`,
      `slot = ${e.slot}`,
      `file = "${e.file}"`,
      ...(e.extra ?? []),
      "",
    ]),
  ].join("\n");
}

async function startService(net: TestNet, config: string, exports: number): Promise<Daemon> {
  const daemon = new Daemon(net.in(0, aoeCommand("target", "--config", config)));
  await daemon.waitFor(new RegExp(`(pid \\d+: e[\\d.]+, \\d+ sectors O_\\w+\\n[^]*){${exports}}`));
  return daemon;
}

async function ctl(
  dir: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = aoeCommand("target-ctl", "--socket", `${dir}/run/target.sock`, ...args);
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function identifySectors(
  client: TestClient,
  shelf: number,
  slot: number,
): Promise<number | undefined> {
  const r = await client.ata(shelf, slot, { command: AtaOp.identifyDevice, count: 1 }, 500);
  return r ? decodeIdentify(r.subarray(36, 36 + 512)).sectors : undefined;
}

Deno.test(
  "service: a reload adds, removes and changes exports while a client reads another without one lost request",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      for (const name of ["a", "b", "c", "d"]) {
        writePatternFile(`${dir}/${name}.img`, 2048, name.charCodeAt(0));
      }
      const config = `${dir}/targets.conf`;
      Deno.writeTextFileSync(
        config,
        configText(dir, [
          { shelf: 1, slot: 0, file: `${dir}/a.img` },
          { shelf: 1, slot: 1, file: `${dir}/b.img` },
          { shelf: 1, slot: 2, file: `${dir}/c.img` },
        ]),
      );
      daemons.push(await startService(net, config, 3));
      const client = clientIn(net, 1, "i0");
      for (const slot of [0, 1, 2]) assert.equal(await identifySectors(client, 1, slot), 2048);

      // The reader: e1.0, one request outstanding at a time, a short timeout, no retries.
      let reading = true;
      let reads = 0;
      const failures: string[] = [];
      const reader = (async () => {
        while (reading) {
          const lba = (reads * 7) % 2000;
          const r = await client.ata(1, 0, { command: AtaOp.readSectorsExt, lba, count: 2 }, 1000);
          if (!r) failures.push(`read ${reads} at ${lba}: no reply`);
          else if (r[27] !== 0x40) failures.push(`read ${reads}: status ${r[27]}`);
          else if (!patternSectors(lba, 2, 97).every((b, i) => b === r[36 + i])) {
            failures.push(`read ${reads}: wrong data`);
          }
          reads++;
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      const before = reads;
      // Remove e1.1, change e1.2 (read-only now), add e1.3.
      Deno.writeTextFileSync(
        config,
        configText(dir, [
          { shelf: 1, slot: 0, file: `${dir}/a.img` },
          { shelf: 1, slot: 2, file: `${dir}/c.img`, extra: ["read_only = true"] },
          { shelf: 1, slot: 3, file: `${dir}/d.img` },
        ]),
      );
      const reload = await ctl(dir, "reload");
      assert.equal(reload.code, 0, reload.stderr);
      assert.equal(
        reload.stdout.trim(),
        "reloaded: added e1.3; removed e1.1; changed e1.2; resized -; unchanged e1.0",
      );
      await new Promise((r) => setTimeout(r, 300));
      reading = false;
      await reader;
      assert.deepEqual(failures, []);
      assert.ok(reads - before > 10, `reads went on during the reload (${reads - before})`);
      // The reads are also counted once each by the unchanged export: nothing retransmitted.
      const stats = JSON.parse((await ctl(dir, "stats", "--json")).stdout);
      assert.equal(stats.exports["e1.0"].reads, reads);

      // The new export announced itself (a Query Config response with tag 0).
      const announced = client.unmatched.some((f) =>
        f[19] === Command.config && (f[16] << 8 | f[17]) === 1 && f[18] === 3 &&
        (f[20] | f[21] | f[22] | f[23]) === 0
      );
      assert.ok(announced, "e1.3 announced");
      assert.equal(await identifySectors(client, 1, 3), 2048);
      assert.equal(await identifySectors(client, 1, 1), undefined, "e1.1 is gone");
      const write = await client.ata(1, 2, {
        command: AtaOp.writeSectorsExt,
        lba: 0,
        count: 1,
        data: new Uint8Array(512),
      });
      assert.equal(write![27], 0x41, "e1.2 is read-only now");

      // A reload of a broken file changes nothing.
      Deno.writeTextFileSync(
        config,
        configText(dir, [{ shelf: 1, slot: 0, file: `${dir}/a.img`, extra: ["slot = 4"] }]),
      );
      const refused = await ctl(dir, "reload");
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, new RegExp(`reload refused:\\n${config}:\\d+:\\d+: `));
      const list = await ctl(dir, "list");
      assert.equal(list.code, 0);
      assert.deepEqual(
        list.stdout.trim().split("\n").map((l) => l.split(/\s+/).slice(0, 5).join(" ")),
        [
          "export state sectors mode interfaces",
          "e1.0 serving 2048 rw t1p0",
          "e1.2 serving 2048 ro t1p0",
          "e1.3 serving 2048 rw t1p0",
        ],
      );
      // SIGHUP reloads too: the same refusal in the log.
      daemons[0].signal("SIGHUP");
      await daemons[0].waitFor(/reload refused[^]*reload refused/);

      // The Prometheus textfile counts what was served.
      const prom = Deno.readTextFileSync(`${dir}/prom/aoe_target.prom`);
      assert.match(prom, /^# TYPE aoe_target_export_reads_total counter$/m);
      assert.match(prom, /^aoe_target_export_sectors\{export="e1.3"\} 2048$/m);
      assert.ok((Deno.statSync(`${dir}/prom/aoe_target.prom`).mode! & 0o777) === 0o644);
      const stop = await daemons[0].stop();
      assert.equal(stop.code, 0, daemons[0].stderr);
    });
  },
);

Deno.test(
  "service: config string and MAC mask list are kept across a restart (0600 files, 0700 dir)",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 256);
      const config = `${dir}/targets.conf`;
      Deno.writeTextFileSync(
        config,
        configText(dir, [{ shelf: 2, slot: 5, file: `${dir}/a.img` }]),
      );
      daemons.push(await startService(net, config, 1));
      const client = clientIn(net, 1, "i0");
      const set = await client.config(2, 5, ConfigCommand.set, "kept by h5");
      assert.equal(set![14] & 0x04, 0, "config string set");
      const mask = await client.exchange((frame, tag) => {
        client.header(frame, 2, 5, Command.macMask, tag);
        return encodeMask(frame, {
          mcmd: MaskCommand.edit,
          merror: 0,
          directives: [{ dcmd: DirectiveCommand.add, mac: client.link.mac }],
        });
      });
      assert.deepEqual(decodeMask(mask!).directives.map((d) => d.mac), [client.link.mac]);
      assert.equal((await daemons[0].stop()).code, 0);
      daemons.length = 0;

      assert.equal(Deno.statSync(`${dir}/state`).mode! & 0o777, 0o700);
      assert.equal(Deno.statSync(`${dir}/state/e2.5.json`).mode! & 0o777, 0o600);
      assert.deepEqual(Deno.readDirSync(`${dir}/state`).map((e) => e.name).toArray(), [
        "e2.5.json",
      ]);

      daemons.push(await startService(net, config, 1));
      const read = await client.config(2, 5, ConfigCommand.read);
      assert.equal(new TextDecoder().decode(decodeConfig(read!).config), "kept by h5");
      const maskRead = await client.exchange((frame, tag) => {
        client.header(frame, 2, 5, Command.macMask, tag);
        return encodeMask(frame, { mcmd: MaskCommand.read, merror: 0, directives: [] });
      });
      assert.deepEqual(decodeMask(maskRead!).directives.map((d) => d.mac), [client.link.mac]);
    });
  },
);

Deno.test(
  "service: online resize by target-ctl resize and by a reload with a new length",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 1024);
      const config = `${dir}/targets.conf`;
      Deno.writeTextFileSync(
        config,
        configText(dir, [{ shelf: 3, slot: 0, file: `${dir}/a.img` }]),
      );
      daemons.push(await startService(net, config, 1));
      const client = clientIn(net, 1, "i0");
      await client.config(3, 0, ConfigCommand.set, "survives resize");
      assert.equal(await identifySectors(client, 3, 0), 1024);
      Deno.truncateSync(`${dir}/a.img`, 4096 * 512);
      const resize = await ctl(dir, "resize", "e3.0");
      assert.equal(resize.stdout.trim(), "e3.0: 1024 -> 4096 sectors");
      assert.equal(await identifySectors(client, 3, 0), 4096);
      const past = await client.ata(3, 0, { command: AtaOp.readSectorsExt, lba: 4000, count: 1 });
      assert.equal(past![27], 0x40, "the new sectors are readable");
      const read = await client.config(3, 0, ConfigCommand.read);
      assert.equal(new TextDecoder().decode(decodeConfig(read!).config), "survives resize");

      Deno.writeTextFileSync(
        config,
        configText(dir, [{ shelf: 3, slot: 0, file: `${dir}/a.img`, extra: ["length = 2000"] }]),
      );
      daemons[0].signal("SIGHUP");
      await daemons[0].waitFor(/changed e3\.0/);
      assert.equal(await identifySectors(client, 3, 0), 2000);
      Deno.truncateSync(`${dir}/a.img`, 8192 * 512);
      Deno.writeTextFileSync(
        config,
        configText(dir, [{ shelf: 3, slot: 0, file: `${dir}/a.img` }]),
      );
      Deno.truncateSync(`${dir}/a.img`, 8192 * 512);
      const reload = await ctl(dir, "reload");
      assert.match(reload.stdout, /changed e3\.0/);
      assert.equal(await identifySectors(client, 3, 0), 8192);
      Deno.truncateSync(`${dir}/a.img`, 9000 * 512);
      const grown = await ctl(dir, "reload");
      assert.match(grown.stdout, /resized e3\.0/);
      assert.equal(await identifySectors(client, 3, 0), 9000);
    });
  },
);

Deno.test(
  "service: the control socket is 0600 and refuses other users, by file mode and by SO_PEERCRED",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 64);
      Deno.chmodSync(dir, 0o755);
      const config = `${dir}/targets.conf`;
      Deno.writeTextFileSync(
        config,
        configText(dir, [{ shelf: 4, slot: 0, file: `${dir}/a.img` }]),
      );
      daemons.push(await startService(net, config, 1));
      const socket = `${dir}/run/target.sock`;
      const info = Deno.statSync(socket);
      assert.equal(info.mode! & 0o777, 0o600);
      assert.equal(info.uid, 0);
      const asNobody = async (groups = ["--clear-groups"]) => {
        const argv = [
          "setpriv",
          "--reuid=65534",
          "--regid=65534",
          ...groups,
          ...aoeCommand("target-ctl", "--socket", socket, "list"),
        ];
        const out = await new Deno.Command(argv[0], {
          args: argv.slice(1),
          stdout: "piped",
          stderr: "piped",
          env: { DENO_DIR: `${Deno.env.get("HOME")}/.cache/deno` },
        }).output();
        return {
          code: out.code,
          stderr: new TextDecoder().decode(out.stderr),
          stdout: new TextDecoder().decode(out.stdout),
        };
      };
      const refused = await asNobody();
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /Permission denied|permission denied|EACCES/i);
      // Opened up by hand, the daemon still refuses: it checks the peer's credentials.
      Deno.chmodSync(socket, 0o666);
      const checked = await asNobody();
      assert.equal(checked.code, 1, checked.stdout);
      assert.match(checked.stderr, /list: permission denied/);
      await daemons[0].waitFor(/control: refused uid 65534/);
      const root = await ctl(dir, "list");
      assert.equal(root.code, 0);
      assert.match(root.stdout, /^e4\.0 +serving/m);
      const freeze = await ctl(dir, "freeze", "e4.0");
      assert.equal(freeze.code, 1);
      assert.match(freeze.stderr, /e4\.0 has no shadow file/);
      const bad = await ctl(dir, "resize", "e9.9");
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /no export e9\.9/);
      // With a control group: 0660, owned by the group, and its members are answered.
      assert.equal((await daemons[0].stop()).code, 0);
      daemons.length = 0;
      Deno.writeTextFileSync(
        config,
        configText(dir, [{ shelf: 4, slot: 0, file: `${dir}/a.img` }], ['control_group = "disk"']),
      );
      daemons.push(await startService(net, config, 1));
      const grouped = Deno.statSync(socket);
      const disk = Number(Deno.readTextFileSync("/etc/group").match(/^disk:[^:]*:(\d+):/m)![1]);
      assert.equal(grouped.mode! & 0o777, 0o660);
      assert.equal(grouped.gid, disk);
      const member = await asNobody([`--groups=${disk}`]);
      assert.equal(member.code, 0, member.stderr);
      assert.match(member.stdout, /^e4\.0 +serving/m);
      assert.equal((await asNobody()).code, 1, "not a member: refused");
      const usage = await ctl(dir, "frobnicate");
      assert.equal(usage.code, 1);
      assert.match(usage.stderr, /unknown command frobnicate/);
    });
  },
);

Deno.test("service: READY=1 reaches $NOTIFY_SOCKET once the exports are served", opts, async () => {
  await withNet({}, async (net, dir, daemons) => {
    writePatternFile(`${dir}/a.img`, 64);
    const config = `${dir}/targets.conf`;
    Deno.writeTextFileSync(config, configText(dir, [{ shelf: 5, slot: 0, file: `${dir}/a.img` }]));
    const notifyPath = `${dir}/notify.sock`;
    const fd = libc().socket(linux.AF_UNIX, linux.SOCK_DGRAM | linux.SOCK_CLOEXEC, 0);
    const address = new Uint8Array(110);
    new DataView(address.buffer).setUint16(0, linux.AF_UNIX, true);
    address.set(new TextEncoder().encode(notifyPath), 2);
    assert.equal(libc().bind(fd, address, 110), 0);
    try {
      const argv = net.in(0, [
        "env",
        `NOTIFY_SOCKET=${notifyPath}`,
        ...aoeCommand("target", "--config", config),
      ]);
      const daemon = new Daemon(argv);
      daemons.push(daemon);
      const buffer = new Uint8Array(4096);
      let message = "";
      const deadline = Date.now() + 15000;
      while (!message && Date.now() < deadline) {
        const n = Number(libc().recv(fd, buffer, BigInt(buffer.length), linux.MSG_DONTWAIT));
        if (n > 0) message = new TextDecoder().decode(buffer.subarray(0, n));
        else await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(message, /^READY=1$/m);
      assert.match(message, new RegExp(`^MAINPID=\\d+$`, "m"));
      assert.match(message, /^STATUS=serving 1 exports$/m);
      // Ready means served: the export answers now.
      const client = clientIn(net, 1, "i0");
      assert.equal(await identifySectors(client, 5, 0), 64);
    } finally {
      libc().close(fd);
    }
  });
});

Deno.test(
  "resize chain: target-ctl resize, then aoe revalidate: the initiator and its NBD export see the new size",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      const initiator = new TestInitiator(net, 1);
      try {
        const image = `${dir}/a.img`;
        writePatternFile(image, 32768, 3); // 16 MiB
        const config = `${dir}/targets.conf`;
        Deno.writeTextFileSync(config, configText(dir, [{ shelf: 9, slot: 0, file: image }]));
        daemons.push(await startService(net, config, 1));
        await initiator.modprobe("--nbd-attach", "no");
        await initiator.waitUp(["e9.0"]);
        const sectors = async () =>
          (await initiator.status()).devices.find((d) => d.name === "e9.0")?.sectors;
        const nbdSize = async () => {
          const sock = `${initiator.runDir}/nbd.sock`;
          const out = await new Deno.Command("nbdinfo", {
            args: ["--json", `nbd+unix:///e9.0?socket=${sock}`],
            stdout: "piped",
            stderr: "piped",
          }).output();
          return JSON.parse(new TextDecoder().decode(out.stdout)).exports[0]["export-size"];
        };
        assert.equal(await sectors(), 32768);
        assert.equal(await nbdSize(), 16 << 20);

        // The image grows by 8 MiB of new pattern while served.
        const file = Deno.openSync(image, { write: true });
        file.seekSync(32768 * 512, Deno.SeekMode.Start);
        file.writeSync(patternSectors(32768, 16384, 3));
        file.close();
        const resize = await ctl(dir, "resize", "e9.0");
        assert.equal(resize.stdout.trim(), "e9.0: 32768 -> 49152 sectors", resize.stderr);

        const revalidate = await initiator.aoe(["revalidate", "e9.0"]);
        assert.equal(revalidate.code, 0, revalidate.stderr);
        const deadline = Date.now() + 10000;
        while (await sectors() !== 49152 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(await sectors(), 49152, "the initiator took the new size on revalidate");
        assert.equal(await nbdSize(), 24 << 20, "the NBD export has the new size");
        const tail = await initiator.read("e9.0", 40000 * 512, 4096);
        assert.deepEqual(tail, patternSectors(40000, 8, 3), "the new sectors read back");
      } finally {
        await initiator.close();
      }
    });
  },
);

Deno.test("resize chain: NBD_CMD_RECONFIGURE carries the device index and the new size (nbd-netlink.h)", () => {
  const message = resizeMessage(0x25, 7, { index: 3, sizeBytes: 24 << 20 });
  const [parsed] = parseMessages(message);
  assert.equal(parsed.type, 0x25);
  assert.equal(parsed.seq, 7);
  assert.equal(message[16], NbdCmd.reconfigure);
  assert.equal(NbdCmd.reconfigure, 3);
  const u32 = parsed.attributes.get(NbdAttr.index)!;
  const u64 = parsed.attributes.get(NbdAttr.sizeBytes)!;
  assert.equal(new DataView(u32.buffer, u32.byteOffset).getUint32(0, true), 3);
  assert.equal(new DataView(u64.buffer, u64.byteOffset).getBigUint64(0, true), BigInt(24 << 20));
  assert.deepEqual([...parsed.attributes.keys()], [1, 2]);
});

Deno.test(
  "service: a reload that moves an export to another interface opens the new link and closes the old one",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      await net.addPair(0, 1, "t1q0", "i9");
      writePatternFile(`${dir}/a.img`, 128);
      writePatternFile(`${dir}/b.img`, 256);
      const config = `${dir}/targets.conf`;
      const exports = (iface: string) => [
        { shelf: 6, slot: 0, file: `${dir}/a.img`, extra: [`interfaces = ["${iface}"]`] },
        { shelf: 6, slot: 1, file: `${dir}/b.img` },
      ];
      Deno.writeTextFileSync(config, configText(dir, exports("t1p0")));
      daemons.push(await startService(net, config, 2));
      const first = clientIn(net, 1, "i0");
      const second = clientIn(net, 1, "i9");
      assert.equal(await identifySectors(first, 6, 0), 128);
      assert.equal(await identifySectors(second, 6, 0), undefined);

      Deno.writeTextFileSync(config, configText(dir, exports("t1q0")));
      const reload = await ctl(dir, "reload");
      assert.match(reload.stdout, /changed e6\.0; resized -; unchanged e6\.1/, reload.stderr);
      assert.equal(await identifySectors(second, 6, 0), 128, "served on the new interface");
      assert.equal(await identifySectors(first, 6, 0), undefined, "no longer on the old one");
      assert.equal(await identifySectors(first, 6, 1), 256, "e6.1 stays on t1p0");

      // Both exports off t1p0: its link is closed (after the server's wait let go of it).
      Deno.writeTextFileSync(
        config,
        configText(dir, [
          exports("t1q0")[0],
          { ...exports("t1q0")[1], extra: ['interfaces = ["t1q0"]'] },
        ]),
      );
      assert.equal((await ctl(dir, "reload")).code, 0);
      await new Promise((r) => setTimeout(r, 1500));
      const stats = JSON.parse((await ctl(dir, "stats", "--json")).stdout);
      assert.deepEqual(Object.keys(stats.links), ["t1q0"]);
      assert.equal(await identifySectors(second, 6, 1), 256);
      assert.equal(await identifySectors(first, 6, 1), undefined);
      const stop = await daemons[0].stop();
      assert.equal(stop.code, 0, daemons[0].stderr);
      assert.doesNotMatch(daemons[0].stderr, /went away/);
    });
  },
);

Deno.test(
  "service: target-ctl freeze waits until writes go to the shadow; unfreeze waits for the merge",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 64);
      const config = `${dir}/targets.conf`;
      Deno.writeTextFileSync(
        config,
        configText(dir, [{
          shelf: 4,
          slot: 1,
          file: `${dir}/a.img`,
          extra: [`shadow = "${dir}/a.shadow"`],
        }]),
      );
      daemons.push(await startService(net, config, 1));
      const client = clientIn(net, 1, "i0");
      const freeze = await ctl(dir, "freeze", "e4.1");
      assert.equal(freeze.code, 0, freeze.stderr);
      assert.match((await ctl(dir, "list")).stdout, /^e4\.1 +frozen/m);
      const data = new Uint8Array(1024).fill(0x5a);
      const write = await client.ata(4, 1, {
        command: AtaOp.writeSectorsExt,
        lba: 3,
        count: 2,
        data,
      });
      assert.ok(write && (write[14] & 0x04) === 0, "write answered");
      // The image is unchanged while frozen; the shadow holds the write.
      const image = Deno.readFileSync(`${dir}/a.img`);
      assert.deepEqual(image.subarray(3 * 512, 5 * 512), patternSectors(3, 2));
      assert.ok(Deno.statSync(`${dir}/a.shadow`).isFile);
      const unfreeze = await ctl(dir, "unfreeze", "e4.1");
      assert.equal(unfreeze.code, 0, unfreeze.stderr);
      // Merged by the time the command returns, and the shadow removed.
      assert.deepEqual(Deno.readFileSync(`${dir}/a.img`).subarray(3 * 512, 5 * 512), data);
      assert.throws(() => Deno.statSync(`${dir}/a.shadow`), Deno.errors.NotFound);
      assert.match((await ctl(dir, "list")).stdout, /^e4\.1 +serving/m);
    });
  },
);

Deno.test(
  "service: a --stats or Prometheus write failing while running is logged once, the target keeps serving; an unwritable --stats is refused at start",
  opts,
  async () => {
    await withNet({}, async (net, dir, daemons) => {
      writePatternFile(`${dir}/a.img`, 64);
      const config = `${dir}/targets.conf`;
      Deno.mkdirSync(`${dir}/out`);
      Deno.writeTextFileSync(
        config,
        configText(dir, [{ shelf: 5, slot: 2, file: `${dir}/a.img` }], [
          `stats_file = "${dir}/out/stats.json"`,
        ]),
      );
      // (timeout: a target that does not refuse would serve for ever)
      const refused = net.in(
        0,
        [
          "timeout",
          "10",
          ...aoeCommand("target", "--config", config, "--stats", `${dir}/nowhere/s.json`),
        ],
      );
      const out = await new Deno.Command(refused[0], {
        args: refused.slice(1),
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1, stderr);
      assert.match(stderr, /^aoe target: --stats .*nowhere\/s\.json: .*\n$/);

      daemons.push(await startService(net, config, 1));
      await new Promise((r) => setTimeout(r, 1200));
      assert.ok(Deno.statSync(`${dir}/out/stats.json`).isFile);
      assert.equal(Deno.statSync(`${dir}/out/stats.json`).mode! & 0o777, 0o600);
      Deno.removeSync(`${dir}/out`, { recursive: true });
      // The Prometheus directory replaced by a file: every write fails from now on.
      Deno.removeSync(`${dir}/prom`, { recursive: true });
      Deno.writeTextFileSync(`${dir}/prom`, "in the way\n");
      await new Promise((r) => setTimeout(r, 3500));
      const client = clientIn(net, 1, "i0");
      assert.equal(await identifySectors(client, 5, 2), 64, "still serving");
      const lines = daemons[0].stderr.split("\n");
      assert.equal(lines.filter((l) => /stats\.json/.test(l)).length, 1, daemons[0].stderr);
      assert.equal(lines.filter((l) => /prom/.test(l)).length, 1, daemons[0].stderr);
      Deno.mkdirSync(`${dir}/out`);
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(Deno.statSync(`${dir}/out/stats.json`).isFile, "written again");
      const stop = await daemons[0].stop();
      assert.equal(stop.code, 0, daemons[0].stderr);
    });
  },
);
