/**
 * The `aoe` command line: errors are one line with a non-zero exit, help
 * explains, the daemon form detaches and serves.
 */
import assert from "node:assert/strict";
import { aoeCommand } from "../testing/procs.ts";
import type { TestNet } from "../testing/netns.ts";
import { withNet, writePatternFile } from "../testing/target.ts";

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
    [
      [
        "target",
        "-m",
        Array.from({ length: 33 }, (_, i) => `0200000001${i.toString(16).padStart(2, "0")}`)
          .join(","),
        "9",
        "0",
        "eth0",
        "f",
      ],
      /-m: 33 MACs given, the MAC mask list holds at most 32/,
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

/** `aoe ARGS` in host 0 of `net` with its own run and device directories. */
function driverAoe(net: TestNet, runDir: string, args: string[], prefix: string[] = []) {
  return net.run(0, [
    ...prefix,
    "env",
    `AOE_RUNDIR=${runDir}`,
    `AOE_DEVDIR=${runDir}/dev`,
    ...aoeCommand(...args),
  ]);
}

/** The paths under `dir`, relative, sorted. */
function listTree(dir: string): string[] {
  const found: string[] = [];
  const walk = (path: string) => {
    for (const entry of Deno.readDirSync(path)) {
      const full = `${path}/${entry.name}`;
      found.push(full.slice(dir.length + 1));
      if (entry.isDirectory) walk(full);
    }
  };
  try {
    walk(dir);
  } catch { /* no directory */ }
  return found.sort();
}

/** As uid/gid 65534 with no supplementary groups, under umask 000. */
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/** Connects to a Unix socket as nobody and asks to change aoe_iflist; prints the reply. */
const PEER_SCRIPT = `
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", e.strerror); sys.exit(2)
s.sendall(b'{"cmd":"interfaces","list":"evil0"}\\n')
print(s.recv(4096).decode().strip())
`;

function peerAsk(net: TestNet, socket: string, asNobody = true) {
  return net.run(0, [...(asNobody ? NOBODY : []), "/usr/bin/python3", "-c", PEER_SCRIPT, socket]);
}

function mode(path: string): string {
  const info = Deno.statSync(path);
  return `${(info.mode! & 0o777).toString(8)} ${info.gid}`;
}

const netOpts = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "cli: bad initiator command lines give one line and a non-zero exit at once, leaving nothing",
  netOpts,
  async () => {
    await withNet({ hosts: 1 }, async (net, dir) => {
      const runDir = `${dir}/run`;
      // A daemon holding a TCP port, so a second one cannot bind it.
      const port = String(20000 + (Deno.pid % 20000));
      const first = await driverAoe(net, `${dir}/first`, ["modprobe", "--nbd-tcp", port]);
      assert.equal(first.code, 0, first.stderr);
      const cases: [string[], RegExp][] = [
        [["modprobe", "--nbd-tcp", "abc"], /^aoe modprobe: --nbd-tcp: not a TCP port/],
        [["modprobe", "--nbd-tcp", "99999"], /^aoe modprobe: --nbd-tcp: not a TCP port/],
        [
          ["modprobe", "--nbd-tcp", port],
          /^aoe modprobe: cannot listen on 127\.0\.0\.1:\d+: .*in use/,
        ],
        [
          ["modprobe", "--nbd-tcp", "10809", "--nbd-host", "192.0.2.1"],
          /^aoe modprobe: cannot listen on 192\.0\.2\.1:10809: Cannot assign/,
        ],
        [["modprobe", "--link", "bogus"], /^aoe modprobe: --link must be ring, packet or pcap/],
        [
          ["modprobe", "aoe_maxout=99999999999999999999"],
          /^aoe modprobe: aoe_maxout: .* out of range/,
        ],
        [["modprobe", "aoe_deadsecs=-3"], /^aoe modprobe: aoe_deadsecs: not a non-negative/],
        [["modprobe", "--group", "nosuchgroup"], /^aoe modprobe: --group: no such group/],
        [["modprobe", "--frob"], /^aoe modprobe: Unknown option '--frob'/],
        [["status", "--wait", "e1.1", "--timeout", "abc"], /^aoe status: --timeout: not a number/],
        [["read", "e1.1", "abc", "512"], /^aoe read: OFFSET: not a non-negative integer/],
        [["driver-daemon", "--bogus"], /^aoe driver-daemon: Unknown option '--bogus'\n$/],
        [["flush", "--bogus"], /^aoe flush: Unknown option '--bogus'\n$/],
        [["rmmod", "extra"], /^aoe rmmod: Unexpected argument 'extra'/],
        [["status", "--wait", "bogus"], /^aoe status: --wait: not a device name/],
        [["version", "extra"], /^aoe version: unexpected argument "extra"/],
        [["driver-daemon", "--link=bogus"], /^aoe driver-daemon: --link must be/],
        // The daemon itself cannot start: its one-line reason, and its files are gone.
        [["driver-daemon", `--nbd-tcp=${port}`], /^aoe driver-daemon: cannot listen on .*in use/],
      ];
      for (const [args, message] of cases) {
        const started = Date.now();
        const r = await driverAoe(net, runDir, args);
        const what = args.join(" ");
        assert.notEqual(r.code, 0, `${what} should fail`);
        assert.equal(r.stderr.trim().split("\n").length, 1, `${what}: one line: ${r.stderr}`);
        assert.match(r.stderr, message, what);
        assert.ok(Date.now() - started < 8000, `${what} took ${Date.now() - started} ms`);
        assert.deepEqual(listTree(runDir).filter((p) => p !== "aoe.log"), [], `${what} left files`);
      }
      await driverAoe(net, `${dir}/first`, ["rmmod"]);
    });
  },
);

Deno.test(
  "cli: under umask 000 the daemon's sockets, FIFOs and files are root's; --group opens them to one group; peers are checked",
  netOpts,
  async () => {
    await withNet({ hosts: 1 }, async (net, dir) => {
      Deno.chmodSync(dir, 0o755);
      const runDir = `${dir}/run`;
      const umask0 = ["sh", "-c", 'umask 000; exec "$@"', "sh"];
      const r = await driverAoe(net, runDir, ["modprobe"], umask0);
      assert.equal(r.code, 0, r.stderr);
      try {
        assert.equal(mode(`${runDir}/aoe.sock`), "600 0");
        assert.equal(mode(`${runDir}/nbd.sock`), "600 0");
        assert.equal(mode(runDir), "755 0");
        assert.equal(mode(`${runDir}/dev`), "755 0");
        assert.equal(mode(`${runDir}/dev/err`), "400 0");
        for (const fifo of ["discover", "interfaces", "revalidate", "flush"]) {
          assert.equal(mode(`${runDir}/dev/${fifo}`), "200 0", fifo);
        }
        const parameters = `${runDir}/sys/module/aoe/parameters`;
        assert.equal(mode(`${runDir}/sys`), "755 0");
        assert.equal(mode(parameters), "755 0");
        assert.equal(mode(`${parameters}/aoe_iflist`), "644 0");
        assert.equal(mode(`${parameters}/aoe_deadsecs`), "444 0");
        // Others can neither command the daemon, reach NBD nor rewrite aoe_iflist.
        assert.match(
          (await peerAsk(net, `${runDir}/aoe.sock`)).stdout,
          /connect: Permission denied/,
        );
        assert.match(
          (await peerAsk(net, `${runDir}/nbd.sock`)).stdout,
          /connect: Permission denied/,
        );
        const iflist = await net.run(0, [
          ...NOBODY,
          "sh",
          "-c",
          `echo evil0 > ${parameters}/aoe_iflist`,
        ]);
        assert.notEqual(iflist.code, 0);
        // Even if the socket's mode were opened, the peer's credentials are checked.
        Deno.chmodSync(`${runDir}/aoe.sock`, 0o666);
        const refused = await peerAsk(net, `${runDir}/aoe.sock`);
        assert.match(refused.stdout, /"ok":false,"error":"permission denied \(uid 65534\)"/);
        const root = await peerAsk(net, `${runDir}/aoe.sock`, false);
        assert.match(root.stdout, /"ok":true/);
        const shown = await driverAoe(net, runDir, ["interfaces"]);
        assert.equal(shown.stdout.trim(), "evil0", "only root's change took effect");
      } finally {
        await driverAoe(net, runDir, ["rmmod"]);
      }
      // --group nogroup: the group (gid 65534) may use the sockets and FIFOs.
      const grouped = await driverAoe(net, runDir, ["modprobe", "--group", "nogroup"], umask0);
      assert.equal(grouped.code, 0, grouped.stderr);
      try {
        assert.equal(mode(`${runDir}/aoe.sock`), "660 65534");
        assert.equal(mode(`${runDir}/nbd.sock`), "660 65534");
        assert.equal(mode(`${runDir}/dev/err`), "440 65534");
        assert.equal(mode(`${runDir}/dev/discover`), "220 65534");
        assert.match((await peerAsk(net, `${runDir}/aoe.sock`)).stdout, /"ok":true/);
      } finally {
        await driverAoe(net, runDir, ["rmmod"]);
      }
    });
  },
);

Deno.test(
  "cli: aoe status fails when the daemon is dead; SIGTERM, SIGINT and SIGHUP end it cleanly",
  netOpts,
  async () => {
    await withNet({ hosts: 1 }, async (net, dir) => {
      const runDir = `${dir}/run`;
      for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) {
        assert.equal((await driverAoe(net, runDir, ["modprobe"])).code, 0);
        const pid = Number(Deno.readTextFileSync(`${runDir}/aoe.pid`));
        Deno.kill(pid, signal as Deno.Signal);
        for (let i = 0; i < 100 && listTree(runDir).some((p) => p !== "aoe.log"); i++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.deepEqual(listTree(runDir).filter((p) => p !== "aoe.log"), [], `after ${signal}`);
        assert.doesNotMatch(Deno.readTextFileSync(`${runDir}/aoe.log`), /error/i);
      }
      assert.equal((await driverAoe(net, runDir, ["modprobe"])).code, 0);
      assert.equal((await driverAoe(net, runDir, ["status"])).code, 0);
      Deno.kill(Number(Deno.readTextFileSync(`${runDir}/aoe.pid`)), "SIGKILL");
      await new Promise((r) => setTimeout(r, 200));
      const stale = await driverAoe(net, runDir, ["status"]);
      assert.equal(stale.code, 1);
      assert.match(stale.stderr, /^aoe status: the aoe driver is not running .* is stale\)\n$/);
    });
  },
);

Deno.test("cli: Object.prototype names are not verbs: one-line error, exit 1", async () => {
  for (const verb of ["toString", "valueOf", "constructor", "hasOwnProperty", "__proto__"]) {
    const r = await aoe(verb);
    assert.equal(r.code, 1, `${verb}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.trim(), `aoe: unknown command "${verb}" (try "aoe help")`);
    assert.equal(r.stdout, "");
  }
});
