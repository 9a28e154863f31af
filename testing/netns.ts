/**
 * Private network namespaces joined by veth pairs, for tests that cross a
 * network. Names carry the test process's pid; everything is removed on close,
 * and namespaces left by a dead test process are swept first.
 *
 * @module
 */

const PREFIX = "aoet";
let counter = 0;

/** Runs a command; throws with its stderr unless it succeeds. */
export async function sh(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return text;
}

/** Removes namespaces of this prefix whose creating process is gone. */
export async function sweepStaleNamespaces(): Promise<void> {
  let list = "";
  try {
    list = await sh("ip", ["netns", "list"]);
  } catch {
    return;
  }
  for (const line of list.split("\n")) {
    const name = line.split(" ")[0];
    const match = name.match(new RegExp(`^${PREFIX}(\\d+)x`));
    if (!match) continue;
    const pid = Number(match[1]);
    let alive = false;
    try {
      Deno.statSync(`/proc/${pid}`);
      alive = true;
    } catch { /* gone */ }
    if (!alive) await sh("ip", ["netns", "del", name]).catch(() => {});
  }
}

/** Two or more namespaces; host 0 is joined to every other host by a veth pair. */
export class TestNet {
  readonly namespaces: string[] = [];
  /** Interface names: `links[i]` = [interface in host 0, interface in host i] for i ≥ 1. */
  readonly links: [string, string][] = [];
  #closed = false;

  private constructor() {}

  /**
   * Creates `hosts` namespaces (default 2) with loopback up and a veth pair from
   * host 0 to each other host, at `mtu` (default 1500). `pairs` veth pairs per host.
   */
  static async create(
    options: { hosts?: number; mtu?: number; pairs?: number } = {},
  ): Promise<TestNet> {
    await sweepStaleNamespaces();
    const net = new TestNet();
    const id = `${PREFIX}${Deno.pid}x${counter++}`;
    try {
      const hosts = options.hosts ?? 2;
      for (let i = 0; i < hosts; i++) {
        const name = `${id}h${i}`;
        await sh("ip", ["netns", "add", name]);
        net.namespaces.push(name);
        await sh("ip", ["-n", name, "link", "set", "lo", "up"]);
      }
      const pairs = options.pairs ?? 1;
      for (let i = 1; i < hosts; i++) {
        for (let p = 0; p < pairs; p++) {
          const a = `t${i}p${p}`;
          const b = `i${p}`;
          await net.addPair(0, i, a, b, options.mtu ?? 1500);
        }
      }
    } catch (error) {
      await net.close();
      throw error;
    }
    return net;
  }

  /** Adds a veth pair between hosts `from` and `to` named `a` and `b`. */
  async addPair(from: number, to: number, a: string, b: string, mtu = 1500): Promise<void> {
    const [nsA, nsB] = [this.namespaces[from], this.namespaces[to]];
    await sh("ip", [
      "link",
      "add",
      a,
      "netns",
      nsA,
      "type",
      "veth",
      "peer",
      "name",
      b,
      "netns",
      nsB,
    ]);
    await sh("ip", ["-n", nsA, "link", "set", a, "mtu", String(mtu), "up"]);
    await sh("ip", ["-n", nsB, "link", "set", b, "mtu", String(mtu), "up"]);
    this.links.push([a, b]);
  }

  /** Sets the MTU of an interface in a host. */
  async setMtu(host: number, name: string, mtu: number): Promise<void> {
    await sh("ip", ["-n", this.namespaces[host], "link", "set", name, "mtu", String(mtu)]);
  }

  /** The MAC of an interface in a host, as "aa:bb:...". */
  async mac(host: number, name: string): Promise<string> {
    const out = await sh("ip", ["-n", this.namespaces[host], "-o", "link", "show", name]);
    return out.match(/link\/ether ([0-9a-f:]{17})/)![1];
  }

  /** argv that runs `argv` inside host `host`. */
  in(host: number, argv: string[]): string[] {
    return ["ip", "netns", "exec", this.namespaces[host], ...argv];
  }

  /** Runs a command in a host and collects its output. */
  async run(
    host: number,
    argv: string[],
    options: { stdin?: string } = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const full = this.in(host, argv);
    const child = new Deno.Command(full[0], {
      args: full.slice(1),
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(options.stdin));
      await writer.close();
    }
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  }

  /** Removes every namespace (and so every veth) this net created. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const name of this.namespaces) {
      // Kill anything still running in the namespace before deleting it.
      const pids = await sh("ip", ["netns", "pids", name]).catch(() => "");
      for (const pid of pids.split("\n").filter(Boolean)) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* already gone */ }
      }
      await sh("ip", ["netns", "del", name]).catch(() => {});
    }
  }
}
