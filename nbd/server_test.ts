import assert from "node:assert/strict";
import { Cmd, CmdFlag, Errno, Option, Reply, TransmissionFlag } from "./protocol.ts";
import { exportFlags, type NbdExport } from "./export.ts";
import { NbdServer } from "./server.ts";
import { MemoryExport, rawClient, withServer } from "./testdata/client.ts";

Deno.test("nbd: LIST, INFO with sizes and flags, unknown options get ERR_UNSUP, STARTTLS refused by policy", async () => {
  await withServer(async (socket) => {
    const c = await rawClient(socket);
    await c.option(Option.list);
    const names: string[] = [];
    for (;;) {
      const r = await c.optionReply();
      if (r.type === Reply.ack) break;
      assert.equal(r.type, Reply.server);
      names.push(new TextDecoder().decode(r.data.subarray(4)));
    }
    assert.deepEqual(names, ["e9.0", "e9.1"]);
    await c.option(99);
    assert.equal((await c.optionReply()).type, Reply.errUnsup);
    await c.option(Option.startTls);
    assert.equal((await c.optionReply()).type, Reply.errPolicy);
    const n = new TextEncoder().encode("e9.1");
    const data = new Uint8Array(4 + n.length + 2);
    new DataView(data.buffer).setUint32(0, n.length);
    data.set(n, 4);
    await c.option(Option.info, data);
    const info = await c.optionReply();
    assert.equal(info.type, Reply.info);
    let rest;
    do rest = await c.optionReply(); while (rest.type === Reply.info);
    assert.equal(rest.type, Reply.ack);
    const iv = new DataView(info.data.buffer);
    assert.equal(Number(iv.getBigUint64(2)), 2 << 20);
    const flags = iv.getUint16(10);
    assert.equal(flags & TransmissionFlag.sendTrim, 0, "e9.1 cannot trim: not advertised");
    assert.ok(
      flags & TransmissionFlag.sendFlush && flags & TransmissionFlag.sendFua &&
        flags & TransmissionFlag.canMultiConn,
    );
    await c.option(Option.info, new Uint8Array([0, 0, 0, 9, 1]));
    assert.equal((await c.optionReply()).type, Reply.errInvalid, "malformed INFO data");
    data.set(new TextEncoder().encode("e9.9"), 4);
    await c.option(Option.go, data);
    let r;
    do r = await c.optionReply(); while (r.type === Reply.info);
    assert.equal(r.type, Reply.errUnknown);
    c.conn().close();
  });
});

Deno.test("nbd: requests in flight, errors for bad ranges and commands, FUA and FLUSH reach the export", async () => {
  await withServer(async (socket, exports) => {
    const c = await rawClient(socket, "e9.0");
    const payload = new Uint8Array(4096).fill(9);
    for (let i = 0; i < 16; i++) {
      await c.request(Cmd.write, i * 4096, 4096, BigInt(i), i === 15 ? CmdFlag.fua : 0, payload);
    }
    const cookies = new Set<bigint>();
    for (let i = 0; i < 16; i++) {
      const r = (await c.reply())!;
      assert.equal(r.error, 0);
      cookies.add(r.cookie);
    }
    assert.equal(cookies.size, 16);
    assert.ok(exports[0].data.subarray(0, 65536).every((b) => b === 9));
    await c.request(Cmd.read, 0, 512, 100n);
    const read = (await c.reply(512))!;
    assert.equal(read.cookie, 100n);
    assert.ok(read.data!.every((b) => b === 9));
    await c.request(Cmd.read, (1 << 20) - 512, 1024, 101n);
    assert.equal((await c.reply())!.error, Errno.EINVAL, "read past the end");
    await c.request(Cmd.write, (1 << 20) - 512, 1024, 102n, 0, new Uint8Array(1024));
    assert.equal((await c.reply())!.error, Errno.ENOSPC, "write past the end");
    await c.request(Cmd.read, 100, 512, 103n);
    assert.equal((await c.reply())!.error, Errno.EINVAL, "unaligned");
    await c.request(42, 0, 0, 104n);
    assert.equal((await c.reply())!.error, Errno.EINVAL, "unknown command");
    await c.request(Cmd.flush, 0, 0, 105n);
    assert.equal((await c.reply())!.error, 0);
    assert.ok(exports[0].flushes >= 1);
    await c.request(Cmd.trim, 0, 8192, 106n);
    assert.equal((await c.reply())!.error, 0);
    assert.ok(exports[0].data.subarray(0, 8192).every((b) => b === 0));
    await c.request(Cmd.disc, 0, 0, 107n);
    assert.equal(await c.reply(), undefined, "closed after DISC");
  });
});

Deno.test("nbd: bad magic and oversized requests close only that connection; others are served", async () => {
  await withServer(async (socket, _exports, server) => {
    const good = await rawClient(socket, "e9.0");
    const bad = await rawClient(socket, "e9.0");
    await bad.write(new Uint8Array(28).fill(0x41));
    assert.equal(await bad.readN(1), undefined, "bad magic: connection closed");
    const huge = await rawClient(socket, "e9.0");
    await huge.request(Cmd.write, 0, 0xffffffff, 1n);
    assert.equal(await huge.readN(1), undefined, "absurd write length: connection closed");
    await good.request(Cmd.read, 0, 512, 5n);
    assert.equal((await good.reply(512))!.error, 0, "the good client is still served");
    assert.ok(server.counters.dropped >= 2);
    good.conn().close();
  });
});

/** Resolves with `promise`'s value, or `timedOut` after `ms`. */
async function within<T, U>(promise: Promise<T>, ms: number, timedOut: U): Promise<T | U> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<U>((resolve) => timer = setTimeout(() => resolve(timedOut), ms));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("nbd: a silent client is disconnected when the handshake times out", async () => {
  await withServer(async (socket, _exports, server) => {
    const silent = await Deno.connect({ transport: "unix", path: socket });
    try {
      const hello = new Uint8Array(18);
      let got = 0;
      while (got < 18) got += (await silent.read(hello.subarray(got)))!;
      const started = Date.now();
      // Nothing sent: the server must close its end (end of stream) after ~300 ms.
      const end = await within(silent.read(new Uint8Array(1)), 3000, "still open");
      assert.equal(end, null, "the server closed the silent connection");
      assert.ok(Date.now() - started >= 250, "not before the timeout");
      assert.equal(server.counters.dropped, 1);
    } finally {
      silent.close();
    }
  }, { handshakeTimeoutMs: 300 });
});

Deno.test("nbd: flags come from the export's capabilities", () => {
  const trim = exportFlags(new MemoryExport("a", 512, true));
  const noTrim = exportFlags(new MemoryExport("b", 512, false));
  assert.ok(trim & TransmissionFlag.sendTrim);
  assert.equal(noTrim & TransmissionFlag.sendTrim, 0);
  assert.equal(noTrim & TransmissionFlag.readOnly, 0);
  assert.ok(noTrim & TransmissionFlag.hasFlags && noTrim & TransmissionFlag.sendWriteZeroes);
  assert.ok(trim & TransmissionFlag.sendFua && trim & TransmissionFlag.canMultiConn);
  const plain: NbdExport = {
    name: "c",
    size: 512,
    canTrim: false,
    trimReadsZeros: false,
    read: () => Promise.resolve(new Uint8Array(0)),
    write: () => Promise.resolve(),
    flush: () => Promise.resolve(),
    trim: () => Promise.resolve(),
  };
  const flags = exportFlags(plain);
  assert.equal(flags & TransmissionFlag.sendFua, 0, "no FUA unless the export says so");
  assert.equal(flags & TransmissionFlag.canMultiConn, 0, "no MULTI_CONN unless the export says so");
  assert.ok(exportFlags(plain, { readOnly: true }) & TransmissionFlag.readOnly);
});

Deno.test("nbd: WRITE_ZEROES writes zeros when the trim fails, and never trims with NO_HOLE", async () => {
  await withServer(async (socket, exports) => {
    const c = await rawClient(socket, "e9.0");
    const exp = exports[0];
    exp.data.fill(0xbb, 0, 1 << 19);
    exp.trimFails = true;
    await c.request(Cmd.writeZeroes, 0, 65536, 1n);
    assert.equal((await c.reply())!.error, 0, "WRITE_ZEROES succeeds although TRIM fails");
    assert.ok(exp.data.subarray(0, 65536).every((b) => b === 0), "zeros written");
    assert.equal(exp.trims, 1, "the trim was tried first");
    exp.trimFails = false;
    await c.request(Cmd.writeZeroes, 65536, 65536, 2n, CmdFlag.noHole);
    assert.equal((await c.reply())!.error, 0);
    assert.equal(exp.trims, 1, "NO_HOLE: no trim");
    assert.ok(exp.data.subarray(65536, 131072).every((b) => b === 0));
    await c.request(Cmd.writeZeroes, 131072, (1 << 19) - 131072, 3n);
    assert.equal((await c.reply())!.error, 0);
    assert.equal(exp.trims, 2, "holes allowed and the trim works: trimmed");
    assert.ok(exp.data.subarray(131072, 1 << 19).every((b) => b === 0));
    c.conn().close();
  });
});

Deno.test("nbd: a write larger than the maximum block size is refused with EOVERFLOW before it is buffered", async () => {
  await withServer(async (socket, exports, server) => {
    const c = await rawClient(socket, "e9.1");
    const big = 8 << 20; // twice the advertised maximum, within the export
    exports[1].data.fill(0);
    const sending = c.request(Cmd.write, 0, 1 << 20, 1n, 0, new Uint8Array(1 << 20).fill(1));
    await sending;
    assert.equal((await c.reply())!.error, 0);
    // Only the header and the first MiB: the refusal comes before the rest is even sent,
    // so the server cannot have been collecting the payload.
    await c.request(Cmd.write, 0, big, 2n, 0, new Uint8Array(1 << 20).fill(7));
    const refused = await within(c.reply(), 3000, undefined);
    assert.equal(refused?.error, Errno.EOVERFLOW, "refused before the payload arrived");
    assert.equal(server.bytesInFlight, 0);
    await c.write(new Uint8Array(big - (1 << 20)).fill(7)); // the rest, read past
    assert.ok(exports[1].data.subarray(0, 1 << 20).every((b) => b === 1), "nothing written");
    await c.request(Cmd.read, 0, 512, 3n);
    assert.equal((await c.reply(512))!.error, 0, "the connection goes on");
    c.conn().close();
  }, { maxBytes: 4 << 20 });
});

Deno.test("nbd: the Unix socket is root only by default, whatever the umask; a mode can be given", async () => {
  await withServer((socket) => {
    assert.equal(Deno.statSync(socket).mode! & 0o777, 0o600);
    return Promise.resolve();
  });
  const dir = Deno.makeTempDirSync();
  const server = new NbdServer({ names: () => [], get: () => undefined }, { log: () => {} });
  try {
    server.listenUnix({ path: `${dir}/group.sock`, mode: 0o660 });
    assert.equal(Deno.statSync(`${dir}/group.sock`).mode! & 0o777, 0o660);
  } finally {
    server.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
