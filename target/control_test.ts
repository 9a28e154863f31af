import assert from "node:assert/strict";
import { ControlServer } from "./control.ts";

async function ask(path: string, command: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(new TextEncoder().encode(JSON.stringify({ command, args: [] }) + "\n"));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
      if (buffer.subarray(0, n).includes(10)) break;
    }
    return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  } finally {
    conn.close();
  }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

Deno.test("control socket: a request that waits long (an unfreeze during a merge) blocks neither other clients nor close", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-ctl-" });
  const path = `${dir}/ctl.sock`;
  const never = Promise.withResolvers<never>();
  const server = new ControlServer(path, {
    handler: (request) =>
      request.command === "slow" ? never.promise : { ok: true, result: request.command },
    log: () => {},
  });
  try {
    const slow = ask(path, "slow");
    slow.catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    const reply = await within(ask(path, "list"), 2000, "list while another request waits");
    assert.deepEqual(JSON.parse(reply), { ok: true, result: "list" });
    await within(server.close(), 4000, "close while a request waits");
    const answered = await within(slow, 2000, "the waiting client");
    assert.match(answered, /"ok":false.*stopping/);
  } finally {
    await within(server.close(), 4000, "close").catch(() => {});
    Deno.removeSync(dir, { recursive: true });
  }
});
