import assert from "node:assert/strict";
import { bridgeOptions } from "./nbd_options.ts";

Deno.test("nbd options: TCP exposure and limits from the command line, bad values refused with a reason", () => {
  const options = bridgeOptions({
    "nbd-tcp": "10809",
    "nbd-allow": "10.0.0.0/8, 192.0.2.1",
    "nbd-read-only": true,
    "nbd-max-connections": "8",
    "nbd-max-buffer": "64",
  }, "/run/aoe/nbd.sock");
  assert.deepEqual(options.tcp, {
    port: 10809,
    hostname: undefined,
    allow: ["10.0.0.0/8", "192.0.2.1"],
    readOnly: true,
    tls: undefined,
  });
  assert.equal(options.limits?.maxConnections, 8);
  assert.equal(options.limits?.maxBytes, 64 << 20);
  assert.equal(bridgeOptions({}, "s").tcp, undefined, "no TCP unless asked");
  for (
    const [values, message] of [
      [{ "nbd-tcp": "abc" }, /--nbd-tcp must be a port/],
      [{ "nbd-tcp": "99999" }, /--nbd-tcp must be a port/],
      [{ "nbd-allow": "10.0.0.1" }, /--nbd-allow needs --nbd-tcp/],
      [{ "nbd-tcp": "1", "nbd-allow": "10.0.0.300" }, /not an IP address/],
      [{ "nbd-tcp": "1", "nbd-tls": "/nonexistent" }, /cannot read \/nonexistent\/server-cert.pem/],
      [{ "nbd-tcp": "1", "nbd-tls-verify": true }, /--nbd-tls-verify needs --nbd-tls/],
      [{ "nbd-max-connections": "0" }, /--nbd-max-connections must be a number/],
      [{ "nbd-attach": "maybe" }, /--nbd-attach must be auto, yes or no/],
    ] as const
  ) {
    assert.throws(() => bridgeOptions(values, "s"), message);
  }
});
