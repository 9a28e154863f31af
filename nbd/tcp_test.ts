/**
 * What `--nbd-tcp` exposes and to whom: loopback by default, an allow-list of
 * client addresses, read-only exports, and TLS through NBD_OPT_STARTTLS with
 * certificates made by openssl here, checked with our raw client (Deno's TLS)
 * and with libnbd's nbdinfo.
 */
import assert from "node:assert/strict";
import { Cmd, Errno, Option, Reply, TransmissionFlag } from "./protocol.ts";
import { NbdServer, type TcpListenOptions } from "./server.ts";
import { readTlsDirectory } from "./tls.ts";
import { MemoryExport, rawClient } from "./testdata/client.ts";

async function withTcpServer(
  listen: Omit<TcpListenOptions, "port">,
  fn: (port: number, exp: MemoryExport, server: NbdServer) => Promise<void>,
) {
  const exp = new MemoryExport("e9.0", 1 << 20);
  const log: string[] = [];
  const server = new NbdServer({
    names: () => ["e9.0"],
    get: (n) => n === "e9.0" ? exp : undefined,
  }, {
    log: (line) => log.push(line),
  });
  const addr = server.listenTcp({ port: 0, ...listen });
  try {
    await fn(addr.port, exp, server);
  } finally {
    server.close();
  }
}

const connect = (port: number) => Deno.connect({ hostname: "127.0.0.1", port });

function openssl(args: string[], cwd: string) {
  const out = new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .outputSync();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, in nbdkit's layout. */
function makeCertificates(dir: string): void {
  openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca-cert.pem",
    "-days",
    "2",
    "-subj",
    "/CN=aoe test CA",
  ], dir);
  for (const [who, cn] of [["server", "localhost"], ["client", "aoe test client"]]) {
    openssl([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${who}-key.pem`,
      "-out",
      `${who}.csr`,
      "-subj",
      `/CN=${cn}`,
    ], dir);
    Deno.writeTextFileSync(
      `${dir}/${who}.ext`,
      who === "server"
        ? "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        : "extendedKeyUsage=clientAuth\n",
    );
    openssl([
      "x509",
      "-req",
      "-in",
      `${who}.csr`,
      "-CA",
      "ca-cert.pem",
      "-CAkey",
      "ca-key.pem",
      "-CAcreateserial",
      "-out",
      `${who}-cert.pem`,
      "-days",
      "2",
      "-extfile",
      `${who}.ext`,
    ], dir);
  }
}

Deno.test("nbd tcp: binds loopback by default; the allow-list closes other clients before the hello", async () => {
  const loopback = new NbdServer({ names: () => [], get: () => undefined });
  assert.equal(loopback.listenTcp({ port: 0 }).hostname, "127.0.0.1", "no address given: loopback");
  loopback.close();
  await withTcpServer({ allow: ["10.0.0.0/8", "192.0.2.7"] }, async (port, _exp, server) => {
    const conn = await connect(port);
    assert.equal(await conn.read(new Uint8Array(18)), null, "127.0.0.1 is not allowed: closed");
    conn.close();
    assert.equal(server.counters.refused, 1);
  });
  await withTcpServer({ allow: ["127.0.0.0/8"] }, async (port) => {
    const c = await rawClient(await connect(port), "e9.0");
    await c.request(Cmd.read, 0, 512, 1n);
    assert.equal((await c.reply(512))!.error, 0, "an allowed client is served");
    c.conn().close();
  });
  assert.throws(
    () =>
      new NbdServer({ names: () => [], get: () => undefined }).listenTcp({
        port: 0,
        allow: ["nonsense"],
      }),
    RangeError,
  );
});

Deno.test("nbd tcp: a read-only listener advertises READ_ONLY and refuses writes, trims and zeroing with EPERM", async () => {
  await withTcpServer({ readOnly: true }, async (port, exp) => {
    exp.data.fill(3, 0, 4096);
    const c = await rawClient(await connect(port));
    const name = new TextEncoder().encode("e9.0");
    const data = new Uint8Array(4 + name.length + 2);
    new DataView(data.buffer).setUint32(0, name.length);
    data.set(name, 4);
    await c.option(Option.go, data);
    const info = await c.optionReply();
    assert.equal(info.type, Reply.info);
    assert.ok(new DataView(info.data.buffer).getUint16(10) & TransmissionFlag.readOnly);
    let r;
    do r = await c.optionReply(); while (r.type === Reply.info);
    assert.equal(r.type, Reply.ack);
    await c.request(Cmd.write, 0, 512, 1n, 0, new Uint8Array(512).fill(9));
    assert.equal((await c.reply())!.error, Errno.EPERM);
    await c.request(Cmd.trim, 0, 512, 2n);
    assert.equal((await c.reply())!.error, Errno.EPERM);
    await c.request(Cmd.writeZeroes, 0, 512, 3n);
    assert.equal((await c.reply())!.error, Errno.EPERM);
    await c.request(Cmd.read, 0, 512, 4n);
    const read = (await c.reply(512))!;
    assert.equal(read.error, 0);
    assert.ok(read.data!.every((b) => b === 3), "reads still work, nothing was written");
    c.conn().close();
  });
});

Deno.test("nbd tcp: with TLS, nothing is offered before STARTTLS; after it the export is served encrypted, to nbdinfo too", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    makeCertificates(dir);
    const ca = Deno.readTextFileSync(`${dir}/ca-cert.pem`);
    await withTcpServer({ tls: readTlsDirectory(dir) }, async (port, exp, server) => {
      const plain = await rawClient(await connect(port));
      await plain.option(Option.list);
      assert.equal((await plain.optionReply()).type, Reply.errTlsReqd, "LIST before TLS");
      await plain.option(Option.exportName, new TextEncoder().encode("e9.0"));
      assert.equal(await plain.readN(1), undefined, "EXPORT_NAME before TLS: closed");
      plain.conn().close();

      const c = await rawClient(await connect(port), "e9.0", {
        hostname: "localhost",
        caCerts: [ca],
      });
      await c.request(Cmd.write, 4096, 4096, 1n, 0, new Uint8Array(4096).fill(0x42));
      assert.equal((await c.reply())!.error, 0);
      assert.ok(exp.data.subarray(4096, 8192).every((b) => b === 0x42), "written over TLS");
      await c.request(Cmd.read, 4096, 65536, 2n);
      const read = (await c.reply(65536))!;
      assert.ok(read.data!.subarray(0, 4096).every((b) => b === 0x42), "read over TLS");
      c.conn().close();

      await assert.rejects(
        rawClient(await connect(port), "e9.0", { hostname: "localhost" }),
        "a client that does not trust the server's CA fails",
      );
      const info = await new Deno.Command("nbdinfo", {
        args: ["--json", `nbds://127.0.0.1:${port}/e9.0?tls-certificates=${dir}`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(info.code, 0, new TextDecoder().decode(info.stderr));
      assert.equal(
        JSON.parse(new TextDecoder().decode(info.stdout)).exports[0]["export-size"],
        1 << 20,
      );
      void server;
    });
    await withTcpServer({ tls: readTlsDirectory(dir, { verifyPeer: true }) }, async (port) => {
      await assert.rejects(
        (async () => {
          const c = await rawClient(await connect(port), "e9.0", {
            hostname: "localhost",
            caCerts: [ca],
          });
          await c.request(Cmd.read, 0, 512, 1n);
          if (!await c.reply(512)) throw new Error("closed");
        })(),
        "verify-peer: a client without a certificate is refused",
      );
      const info = await new Deno.Command("nbdinfo", {
        args: ["--size", `nbds://127.0.0.1:${port}/e9.0?tls-certificates=${dir}`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(info.code, 0, new TextDecoder().decode(info.stderr));
      assert.equal(
        new TextDecoder().decode(info.stdout).trim(),
        String(1 << 20),
        "nbdinfo with its client certificate",
      );
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
