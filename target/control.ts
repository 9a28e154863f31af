/**
 * The target service's control socket, used by `aoe target-ctl`: a Unix
 * stream socket where a client writes one JSON request line and reads one
 * JSON reply line. Closed by default: the socket is created with mode 0600
 * (0660 and the configured group's ownership with a control group), bound in
 * a private directory and renamed into place so it is never reachable with
 * looser modes, and every peer's credentials (SO_PEERCRED) are checked again:
 * root, the daemon's own user, or a member of the control group. Up to
 * {@link MAX_CONTROL_CLIENTS} clients are served side by side, so a request
 * that waits (an unfreeze during a long merge) holds up no other; at close a
 * request still waiting is answered that the service stops.
 *
 * @module
 */

import { check, errno, libc, linux } from "../ffi/libc.ts";

/** One request: a verb and its arguments. */
export interface ControlRequest {
  /** The verb. */
  command: string;
  /** Its arguments. */
  args: string[];
}

/** The reply: a result, or a one-line error. */
export interface ControlReply {
  /** Whether the verb succeeded. */
  ok: boolean;
  /** What it returned. */
  result?: unknown;
  /** Why it failed, in one line. */
  error?: string;
}

/** How to run a {@link ControlServer}. */
export interface ControlServerOptions {
  /** A group name or number whose members may connect besides root. */
  group?: string;
  /** Answers one request. */
  handler: (request: ControlRequest) => ControlReply | Promise<ControlReply>;
  /** Where refused peers and failures are logged. */
  log?: (message: string) => void;
}

/** Looks a group up in /etc/group by name or number; throws if it does not exist. */
export function groupId(group: string): number {
  if (/^[0-9]+$/.test(group)) return Number(group);
  let text = "";
  try {
    text = Deno.readTextFileSync("/etc/group");
  } catch { /* no group file */ }
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new Error(`control group ${group}: no such group`);
}

/** uid, gid and supplementary groups of a connected peer. */
function peerCredentials(fd: number): { pid: number; uid: number; groups: number[] } {
  const ucred = new Uint8Array(12);
  const length = new Uint32Array([12]);
  check(
    libc().getsockopt(
      fd,
      linux.SOL_SOCKET,
      linux.SO_PEERCRED,
      ucred,
      new Uint8Array(length.buffer),
    ),
    "SO_PEERCRED",
  );
  const view = new DataView(ucred.buffer);
  const pid = view.getInt32(0, true);
  const uid = view.getUint32(4, true);
  const groups = [view.getUint32(8, true)];
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const line = /^Groups:(.*)$/m.exec(status);
    if (line) groups.push(...line[1].trim().split(/\s+/).filter(Boolean).map(Number));
  } catch { /* the peer is gone, or in another pid namespace: its primary group only */ }
  return { pid, uid, groups };
}

function unixAddress(path: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length > 107) throw new Error(`control socket path too long: ${path}`);
  const address = new Uint8Array(110);
  new DataView(address.buffer).setUint16(0, linux.AF_UNIX, true);
  address.set(bytes, 2);
  return address;
}

async function waitFd(fd: number, events: number, timeoutMs: number): Promise<boolean> {
  const pollfd = new Uint8Array(8);
  const view = new DataView(pollfd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, events, true);
  return await libc().poll_async(pollfd, 1n, timeoutMs) > 0;
}

/** Clients served at once; more are closed at once. */
export const MAX_CONTROL_CLIENTS = 16;

/** Serves the control socket at a path until {@link close}. */
export class ControlServer {
  #fd: number;
  #closed = false;
  #loop: Promise<void>;
  /** Clients being served, by the promise of their service. */
  #clients = new Map<Promise<void>, { fd: number; open: boolean }>();
  /** Resolved by close(): a request still waiting is answered that the service stops. */
  #stopping = Promise.withResolvers<ControlReply>();
  #gid: number | undefined;
  #options: ControlServerOptions;

  /** Creates the socket at `path` and starts accepting; throws a one-line Error. */
  constructor(readonly path: string, options: ControlServerOptions) {
    this.#options = options;
    this.#gid = options.group === undefined ? undefined : groupId(options.group);
    const slash = path.lastIndexOf("/");
    const dir = slash > 0 ? path.slice(0, slash) : ".";
    Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
    // Bound in a directory only we can enter, given its modes, then moved into place.
    const privateDir = Deno.makeTempDirSync({ dir, prefix: ".control." });
    Deno.chmodSync(privateDir, 0o700);
    const temporary = `${privateDir}/s`;
    this.#fd = check(
      libc().socket(linux.AF_UNIX, linux.SOCK_STREAM | linux.SOCK_CLOEXEC | linux.SOCK_NONBLOCK, 0),
      "control socket",
    );
    try {
      check(libc().bind(this.#fd, unixAddress(temporary), 110), `bind ${path}`);
      if (this.#gid === undefined) Deno.chmodSync(temporary, 0o600);
      else {
        Deno.chownSync(temporary, null, this.#gid);
        Deno.chmodSync(temporary, 0o660);
      }
      check(libc().listen(this.#fd, 16), `listen ${path}`);
      Deno.renameSync(temporary, path);
    } catch (error) {
      libc().close(this.#fd);
      throw error;
    } finally {
      Deno.removeSync(privateDir, { recursive: true });
    }
    this.#loop = this.#accept();
  }

  #allowed(uid: number, groups: number[]): boolean {
    if (uid === 0 || uid === Deno.uid()) return true;
    return this.#gid !== undefined && groups.includes(this.#gid);
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      if (!await waitFd(this.#fd, linux.POLLIN, 250) || this.#closed) continue;
      const fd = libc().accept4(this.#fd, null, null, linux.SOCK_CLOEXEC | linux.SOCK_NONBLOCK);
      if (fd < 0) continue;
      if (this.#clients.size >= MAX_CONTROL_CLIENTS) {
        libc().close(fd);
        continue;
      }
      // Clients are served side by side: an unfreeze that waits for a long merge
      // must not hold up stats or a reload (each runs whole, between two turns).
      const client = { fd, open: true };
      const served = this.#serve(client).catch((error) => {
        this.#options.log?.(`control: ${(error as Error).message}`);
      }).finally(() => {
        this.#clients.delete(served);
        if (client.open) libc().close(fd);
        client.open = false;
      });
      this.#clients.set(served, client);
    }
  }

  async #serve(client: { fd: number; open: boolean }): Promise<void> {
    const fd = client.fd;
    const peer = peerCredentials(fd);
    // The request is read (bounded) before a refusal, so the client sees the reply, not EPIPE.
    const line = await this.#readLine(fd, 2000);
    if (!this.#allowed(peer.uid, peer.groups)) {
      this.#options.log?.(`control: refused uid ${peer.uid} (pid ${peer.pid})`);
      await this.#send(fd, { ok: false, error: "permission denied" });
      return;
    }
    if (line === undefined) return;
    let reply: ControlReply;
    try {
      const json = JSON.parse(line);
      if (typeof json?.command !== "string" || !Array.isArray(json.args)) {
        throw new Error('a request is {"command": ..., "args": [...]}');
      }
      reply = await Promise.race([
        this.#options.handler({ command: json.command, args: json.args.map(String) }),
        this.#stopping.promise,
      ]);
    } catch (error) {
      reply = { ok: false, error: (error as Error).message };
    }
    if (client.open) await this.#send(fd, reply);
  }

  async #readLine(fd: number, timeoutMs: number): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    const chunk = new Uint8Array(4096);
    const parts: number[] = [];
    while (Date.now() < deadline && parts.length < 65536) {
      const n = Number(libc().recv(fd, chunk, BigInt(chunk.length), linux.MSG_DONTWAIT));
      if (n === 0) break;
      if (n < 0) {
        if (errno() !== linux.EAGAIN && errno() !== linux.EINTR) return undefined;
        await waitFd(fd, linux.POLLIN, Math.max(1, deadline - Date.now()));
        continue;
      }
      parts.push(...chunk.subarray(0, n));
      if (chunk.subarray(0, n).includes(10)) break;
    }
    const text = new TextDecoder().decode(new Uint8Array(parts));
    const end = text.indexOf("\n");
    return end >= 0 ? text.slice(0, end) : text || undefined;
  }

  async #send(fd: number, reply: ControlReply): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(reply) + "\n");
    const deadline = Date.now() + 2000;
    let done = 0;
    while (done < bytes.length && Date.now() < deadline) {
      const n = Number(
        libc().send(fd, bytes.subarray(done), BigInt(bytes.length - done), linux.MSG_NOSIGNAL),
      );
      if (n > 0) done += n;
      else if (n < 0 && errno() !== linux.EAGAIN && errno() !== linux.EINTR) return;
      else await waitFd(fd, linux.POLLOUT, 100);
    }
  }

  /** Stops accepting and removes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopping.resolve({ ok: false, error: "the service is stopping" });
    await this.#loop;
    // The clients' replies are sent (each within 2 s) before the socket goes.
    await Promise.all(this.#clients.keys());
    libc().close(this.#fd);
    try {
      Deno.removeSync(this.path);
    } catch { /* already gone */ }
  }
}

/** Sends one request to the control socket at `path`; resolves with the reply. */
export async function controlRequest(
  path: string,
  request: ControlRequest,
  timeoutMs = 30000,
): Promise<ControlReply> {
  const connection = await Deno.connect({ transport: "unix", path });
  const timer = setTimeout(() => connection.close(), timeoutMs);
  try {
    await connection.write(new TextEncoder().encode(JSON.stringify(request) + "\n"));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(65536);
    while (true) {
      const n = await connection.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
    const text = new TextDecoder().decode(
      chunks.reduce((all, c) => {
        const out = new Uint8Array(all.length + c.length);
        out.set(all);
        out.set(c, all.length);
        return out;
      }, new Uint8Array()),
    );
    return JSON.parse(text) as ControlReply;
  } finally {
    clearTimeout(timer);
    try {
      connection.close();
    } catch { /* closed by the timer */ }
  }
}
