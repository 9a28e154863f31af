/**
 * NBD throughput through the whole chain (nbdcopy and fio → bridge →
 * initiator → `aoe target` over veth → tmpfs file), side by side in one run
 * with nbdkit serving the same file directly (the chain's ceiling) and with
 * the initiator alone (its block interface, same request sizes and depth).
 * 4 KiB random reads with fio's libnbd engine, 1 MiB sequential reads and
 * writes with nbdcopy, 16 in flight. Further tables split the CPU of each
 * workload between the NBD server (or the initiator alone), the AoE target and
 * the client, with what the machine's cores could do at that cost, and compare
 * the NBD layer's own CPU (the bridge's process minus the initiator alone's)
 * with nbdkit's whole server.
 *
 *   deno run -A bench/nbd_bench.ts [--mtu 9000] [--mib 128] [--compare DIR]
 *
 * `--compare DIR` adds a second bridge, the NBD server of another checkout
 * in DIR (its nbd/server.ts and nbd/bridge.ts) on the same driver, measured
 * in the same interleaved rounds: an A/B of the NBD layer in one run.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cpuSeconds } from "./cpu.ts";
import { Driver } from "../driver/driver.ts";
import { DEFAULT_PARAMS } from "../driver/params.ts";
import { driverPaths } from "../driver/paths.ts";
import { inNetns, openLink } from "../link/mod.ts";
import { driverExports } from "../nbd/bridge.ts";
import { NbdServer } from "../nbd/server.ts";
import { TestNet } from "../testing/netns.ts";
import { aoeCommand, Daemon } from "../testing/procs.ts";

const { values } = parseArgs({
  options: {
    mtu: { type: "string", default: "9000" },
    mib: { type: "string", default: "128" },
    seconds: { type: "string", default: "3" },
    compare: { type: "string" },
  },
});
const bytes = Number(values.mib) << 20;
const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "aoe-nbench-" });
const image = `${dir}/disk.img`;
Deno.writeFileSync(image, new Uint8Array(bytes).fill(0x42));
Deno.writeFileSync(`${dir}/src.img`, new Uint8Array(bytes).fill(0x17));

/** Runs a client to completion: its wall time and its own CPU time, in seconds. */
async function timed(argv: string[]): Promise<{ seconds: number; cpu: number }> {
  const start = performance.now();
  const out = await new Deno.Command("bash", {
    args: ["-c", 'TIMEFORMAT="%U %S"; time "$@" >/dev/null', "timed", ...argv],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  if (!out.success) throw new Error(`${argv.join(" ")}: ${stderr}`);
  const [user, system] = stderr.split("\n").at(-1)!.split(" ").map(Number);
  return { seconds: (performance.now() - start) / 1000, cpu: user + system };
}

/** CPU µs per 4 KiB random read: the process serving NBD (or the initiator alone), the AoE target, the client. */
type Cpu = { server: number; target: number; client: number };

/** The processes whose CPU a measurement charges: the NBD server's and the AoE target's. */
let servingPid: number | "self" = "self";
let targetPid: number | undefined;

async function fioIops(uri: string): Promise<{ iops: number; cpu: Cpu }> {
  const job = `${dir}/rand.fio`;
  Deno.writeTextFileSync(
    job,
    `[r]\nioengine=nbd\nuri=${uri}\nrw=randread\nbs=4k\nsize=${values.mib}m\niodepth=16\ntime_based=1\nruntime=${values.seconds}\n`,
  );
  const server0 = cpuSeconds(servingPid);
  const target0 = targetPid ? cpuSeconds(targetPid) : 0;
  const out = await new Deno.Command("fio", {
    args: ["--output-format=json", job],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const server = cpuSeconds(servingPid) - server0;
  const target = targetPid ? cpuSeconds(targetPid) - target0 : 0;
  const text = new TextDecoder().decode(out.stdout);
  const job0 = JSON.parse(text.slice(text.indexOf("{"))).jobs[0];
  const ios = job0.read.total_ios;
  const client = ((job0.usr_cpu + job0.sys_cpu) / 100) * Number(values.seconds);
  return {
    iops: job0.read.iops,
    cpu: {
      server: (server / ios) * 1e6,
      target: (target / ios) * 1e6,
      client: (client / ios) * 1e6,
    },
  };
}

/** Sequential read, sequential write (MB/s) and 4 KiB random read IOPS of one NBD URI. */
async function measureNbd(uri: string): Promise<Row> {
  const mib = bytes / (1 << 20);
  let server0 = cpuSeconds(servingPid);
  let target0 = targetPid ? cpuSeconds(targetPid) : 0;
  const read = await timed(["nbdcopy", "--requests=16", "--request-size=1048576", uri, "null:"]);
  const readCpu: Cpu = {
    server: ((cpuSeconds(servingPid) - server0) / mib) * 1000,
    target: targetPid ? ((cpuSeconds(targetPid) - target0) / mib) * 1000 : 0,
    client: (read.cpu / mib) * 1000,
  };
  server0 = cpuSeconds(servingPid);
  target0 = targetPid ? cpuSeconds(targetPid) : 0;
  const write = await timed([
    "nbdcopy",
    "--requests=16",
    "--request-size=1048576",
    `${dir}/src.img`,
    uri,
  ]);
  const writeCpu: Cpu = {
    server: ((cpuSeconds(servingPid) - server0) / mib) * 1000,
    target: targetPid ? ((cpuSeconds(targetPid) - target0) / mib) * 1000 : 0,
    client: (write.cpu / mib) * 1000,
  };
  return {
    read: bytes / 1e6 / read.seconds,
    write: bytes / 1e6 / write.seconds,
    readCpu,
    writeCpu,
    ...await fioIops(uri),
  };
}

/** `cpu`: µs per 4 KiB random read; `readCpu`, `writeCpu`: ms per MiB read or written sequentially. */
type Row = { read: number; write: number; iops: number; cpu: Cpu; readCpu: Cpu; writeCpu: Cpu };
const rounds: Record<string, Row[]> = {};
const ROUNDS = 3;
const record = (name: string, row: Row) => (rounds[name] ??= []).push(row);
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const medianCpu = (xs: Cpu[]): Cpu => ({
  server: median(xs.map((x) => x.server)),
  target: median(xs.map((x) => x.target)),
  client: median(xs.map((x) => x.client)),
});

// The ceiling: nbdkit serving the file directly.
const nbdkitSock = `${dir}/nbdkit.sock`;
const nbdkit = new Daemon(["nbdkit", "-f", "-U", nbdkitSock, "file", `file=${image}`]);
servingPid = nbdkit.pid;
for (
  let i = 0;
  i < 100 && !(() => {
    try {
      return Deno.statSync(nbdkitSock).isSocket;
    } catch {
      return false;
    }
  })();
  i++
) await new Promise((r) => setTimeout(r, 50));
for (let r = 0; r < ROUNDS; r++) {
  record("nbdkit file (ceiling)", await measureNbd(`nbd+unix:///?socket=${nbdkitSock}`));
}
await nbdkit.stop();
servingPid = "self";

const net = await TestNet.create({ mtu: Number(values.mtu) });
const target = new Daemon(net.in(0, aoeCommand("target", "9", "0", "t1p0", image)));
const driver = new Driver({
  params: { ...DEFAULT_PARAMS, iflist: ["i0"] },
  paths: driverPaths({ runDir: `${dir}/run`, devDir: `${dir}/dev` }),
  openLink: (name) => inNetns(net.namespaces[1], () => openLink(name)),
  listInterfaces: () => ["i0"],
  files: false,
});
const server = new NbdServer(driverExports(driver), { reactor: driver.reactor });
const compareName = values.compare ? `bridge chain (${values.compare})` : undefined;
let other: { listenUnix(o: { path: string }): void; close(): void } | undefined;
if (values.compare) {
  const { NbdServer: OtherServer } = await import(`${values.compare}/nbd/server.ts`);
  const { driverExports: otherExports } = await import(`${values.compare}/nbd/bridge.ts`);
  other = new OtherServer(otherExports(driver), { reactor: driver.reactor });
}
try {
  await target.waitFor(/sectors/);
  targetPid = target.pid;
  driver.start();
  for (let i = 0; i < 100 && !driver.initiator.devices.get(9, 0)?.up; i++) {
    driver.discover();
    await new Promise((r) => setTimeout(r, 100));
  }
  const dev = driver.blockDevice("e9.0")!;
  for (let i = 0; i < 64; i++) await dev.read((i << 20) % bytes, 1 << 20); // warm up the RTT estimate and windows

  // The initiator alone: the same sizes and depth through the block interface.
  const aloneSeqCpu: Record<"read" | "write", Cpu> = {
    read: { server: 0, target: 0, client: 0 },
    write: { server: 0, target: 0, client: 0 },
  };
  const seq = async (kind: "read" | "write") => {
    const server0 = cpuSeconds("self");
    const target0 = cpuSeconds(target.pid);
    let next = 0;
    const buffer = () => new Uint8Array(1 << 20).fill(0x17);
    const start = performance.now();
    await Promise.all(Array.from({ length: 16 }, async () => {
      const b = buffer();
      while (next < bytes) {
        const at = next;
        next += 1 << 20;
        if (kind === "read") await dev.read(at, 1 << 20, b);
        else await dev.write(at, b);
      }
    }));
    const mib = bytes / (1 << 20);
    aloneSeqCpu[kind] = {
      server: ((cpuSeconds("self") - server0) / mib) * 1000,
      target: ((cpuSeconds(target.pid) - target0) / mib) * 1000,
      client: 0, // the requests come from this process: counted in "server"
    };
    return bytes / 1e6 / ((performance.now() - start) / 1000);
  };
  const rand = async (): Promise<{ iops: number; cpu: Cpu }> => {
    const server0 = cpuSeconds("self");
    const target0 = cpuSeconds(target.pid);
    let count = 0;
    const end = performance.now() + Number(values.seconds) * 1000;
    await Promise.all(Array.from({ length: 16 }, async () => {
      const b = new Uint8Array(4096);
      while (performance.now() < end) {
        await dev.read(Math.floor(Math.random() * (bytes / 4096)) * 4096, 4096, b);
        count++;
      }
    }));
    return {
      iops: count / Number(values.seconds),
      cpu: {
        server: ((cpuSeconds("self") - server0) / count) * 1e6,
        target: ((cpuSeconds(target.pid) - target0) / count) * 1e6,
        client: 0, // the requests come from this process: counted in "server"
      },
    };
  };
  server.listenUnix({ path: `${dir}/bridge.sock` });
  other?.listenUnix({ path: `${dir}/other.sock` });
  // Interleaved rounds, so that load elsewhere on the machine falls on both alike.
  for (let r = 0; r < ROUNDS; r++) {
    record("initiator alone", {
      read: await seq("read"),
      write: await seq("write"),
      readCpu: aloneSeqCpu.read,
      writeCpu: aloneSeqCpu.write,
      ...await rand(),
    });
    record("bridge chain", await measureNbd(`nbd+unix:///e9.0?socket=${dir}/bridge.sock`));
    if (compareName) {
      record(compareName, await measureNbd(`nbd+unix:///e9.0?socket=${dir}/other.sock`));
    }
  }
} finally {
  server.close();
  other?.close();
  await driver.stop();
  await target.stop();
  await net.close();
  Deno.removeSync(dir, { recursive: true });
}

const rows: Record<string, Row> = {};
for (const [name, list] of Object.entries(rounds)) {
  rows[name] = {
    read: median(list.map((x) => x.read)),
    write: median(list.map((x) => x.write)),
    iops: median(list.map((x) => x.iops)),
    cpu: medianCpu(list.map((x) => x.cpu)),
    readCpu: medianCpu(list.map((x) => x.readCpu)),
    writeCpu: medianCpu(list.map((x) => x.writeCpu)),
  };
}
console.log(
  `MTU ${values.mtu}, ${values.mib} MiB, 16 requests in flight, medians of ${ROUNDS} interleaved rounds`,
);
console.log("| path | seq read MB/s | seq write MB/s | 4K rand read IOPS |");
console.log("|---|---|---|---|");
for (const [name, r] of Object.entries(rows)) {
  console.log(`| ${name} | ${r.read.toFixed(1)} | ${r.write.toFixed(1)} | ${r.iops.toFixed(0)} |`);
}
const chain = rows["bridge chain"], alone = rows["initiator alone"];
const nbdkitRow = rows["nbdkit file (ceiling)"];
const bridges: [string, Row][] = [["bridge", chain]];
if (compareName) bridges.push([compareName, rows[compareName]]);
for (const [bridgeName, bridge] of bridges) {
  for (const [name, base] of [["initiator alone", alone], ["nbdkit", nbdkitRow]] as const) {
    console.log(
      `| ${bridgeName} / ${name} | ${(bridge.read / base.read).toFixed(2)} | ${
        (bridge.write / base.write).toFixed(2)
      } | ${(bridge.iops / base.iops).toFixed(2)} |`,
    );
  }
}
if (compareName) {
  const o = rows[compareName];
  console.log(
    `| bridge / ${compareName} | ${(chain.read / o.read).toFixed(2)} | ${
      (chain.write / o.write).toFixed(2)
    } | ${(chain.iops / o.iops).toFixed(2)} |`,
  );
}

// Where the CPU goes, and what the machine's cores could do at that cost.
const cores = navigator.hardwareConcurrency;
const cpuTable = (
  title: string,
  unit: string,
  pick: (r: Row) => Cpu,
  rate: (total: number) => string,
) => {
  console.log("");
  console.log(
    `| ${title}, CPU ${unit} | NBD server (or initiator alone) | AoE target | client | total | ${cores} cores busy could do |`,
  );
  console.log("|---|---|---|---|---|---|");
  for (const [name, r] of Object.entries(rows)) {
    const cpu = pick(r);
    const total = cpu.server + cpu.target + cpu.client;
    console.log(
      `| ${name} | ${cpu.server.toFixed(2)} | ${cpu.target.toFixed(2)} | ${
        cpu.client.toFixed(2)
      } | ${total.toFixed(2)} | ${rate(total)} |`,
    );
  }
};
cpuTable(
  "seq read (nbdcopy)",
  "ms per MiB",
  (r) => r.readCpu,
  (total) => `${((cores * 1000 / total) * 1.048576).toFixed(0)} MB/s`,
);
cpuTable(
  "seq write (nbdcopy)",
  "ms per MiB",
  (r) => r.writeCpu,
  (total) => `${((cores * 1000 / total) * 1.048576).toFixed(0)} MB/s`,
);
cpuTable(
  "4K rand read (fio)",
  "µs per I/O",
  (r) => r.cpu,
  (total) => `${(cores * 1e6 / total).toFixed(0)} IOPS`,
);

// The NBD layer alone: what the bridge's process spends beyond the initiator
// alone (same requests through the block interface), against nbdkit's whole server.
console.log("");
console.log(
  "| workload | NBD layer CPU (bridge minus initiator alone) | nbdkit server CPU | NBD layer / nbdkit |",
);
console.log("|---|---|---|---|");
for (
  const [name, unit, pick] of [
    ["4K rand read (fio)", "µs per I/O", (r: Row) => r.cpu],
    ["1 MiB seq read (nbdcopy)", "ms per MiB", (r: Row) => r.readCpu],
    ["1 MiB seq write (nbdcopy)", "ms per MiB", (r: Row) => r.writeCpu],
  ] as const
) {
  for (const [bridgeName, bridge] of bridges) {
    const layer = pick(bridge).server - pick(alone).server;
    const whole = pick(nbdkitRow).server;
    const label = bridgeName === "bridge" ? name : `${name} [${bridgeName}]`;
    console.log(
      `| ${label}, ${unit} | ${layer.toFixed(2)} | ${whole.toFixed(2)} | ${
        (layer / whole).toFixed(2)
      } |`,
    );
  }
}
