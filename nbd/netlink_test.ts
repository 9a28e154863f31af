import assert from "node:assert/strict";
import {
  connectMessage,
  disconnectMessage,
  getFamilyMessage,
  NLA_F_NESTED,
  parseMessages,
} from "./netlink.ts";
import { KernelNbd, nbdFamily } from "./attach.ts";

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("netlink: CTRL_CMD_GETFAMILY for nbd, byte for byte", () => {
  const m = getFamilyMessage(7);
  // nlmsghdr: len 28, type GENL_ID_CTRL 0x10, flags REQUEST|ACK 5, seq 7, pid 0;
  // genlmsghdr: cmd 3, version 1; attr: len 8, type CTRL_ATTR_FAMILY_NAME 2, "nbd\0".
  assert.equal(
    hex(m),
    "1c000000" + "1000" + "0500" + "07000000" + "00000000" + "03010000" + "0800" + "0200" +
      "6e626400",
  );
});

Deno.test("netlink: NBD_CMD_CONNECT carries size, block size, flags, the socket nested twice, and the backend", () => {
  const m = connectMessage(0x22, 1, {
    sizeBytes: 64 << 20,
    blockSize: 512,
    serverFlags: 0x56d,
    socketFd: 9,
    backend: "e9.0",
  });
  const view = new DataView(m.buffer);
  assert.equal(view.getUint32(0, true), m.length);
  assert.equal(view.getUint16(4, true), 0x22, "the resolved family id");
  assert.equal(m[16], 1, "NBD_CMD_CONNECT");
  assert.equal(m[17], 1, "genl version 1");
  const attrs = hex(m.subarray(20));
  assert.equal(
    attrs,
    "0c00" + "0200" + "0000000400000000" + // SIZE_BYTES u64 64 MiB
      "0c00" + "0300" + "0002000000000000" + // BLOCK_SIZE_BYTES 512
      "0c00" + "0500" + "6d05000000000000" + // SERVER_FLAGS 0x56d
      "1000" + "0780" + // SOCKETS, nested: 4 + 12
      "0c00" + "0180" + // SOCK_ITEM, nested: 4 + 8
      "0800" + "0100" + "09000000" + // SOCK_FD 9
      "0900" + "0a00" + "65392e3000000000", // BACKEND_IDENTIFIER "e9.0\0", padded to 4
  );
  assert.equal(NLA_F_NESTED, 0x8000);
  const withIndex = connectMessage(0x22, 2, {
    sizeBytes: 512,
    blockSize: 512,
    serverFlags: 1,
    socketFd: 3,
    backend: "e1.2",
    index: 5,
  });
  assert.equal(
    hex(withIndex.subarray(20, 28)),
    "0800" + "0100" + "05000000",
    "INDEX first when given",
  );
});

Deno.test("netlink: NBD_CMD_DISCONNECT, and replies parsed (errors, attributes)", () => {
  assert.equal(
    hex(disconnectMessage(0x22, 3, 4).subarray(16)),
    "02010000" + "0800" + "0100" + "04000000",
  );
  const reply = new Uint8Array(36 + 28);
  const v = new DataView(reply.buffer);
  v.setUint32(0, 36, true); // NLMSG_ERROR with -ENOENT
  v.setUint16(4, 2, true);
  v.setUint32(8, 9, true);
  v.setInt32(16, -2, true);
  v.setUint32(36, 28, true); // a family reply with CTRL_ATTR_FAMILY_ID (u16, padded)
  v.setUint16(40, 0x10, true);
  v.setUint32(44, 10, true);
  v.setUint16(56, 6, true);
  v.setUint16(58, 1, true);
  v.setUint16(60, 0x22, true);
  const parsed = parseMessages(reply);
  assert.equal(parsed.length, 2);
  assert.equal(parsed[0].errno, 2);
  assert.equal(parsed[0].seq, 9);
  assert.equal(parsed[1].seq, 10);
  assert.deepEqual([...parsed[1].attributes.get(1)!], [0x22, 0]);
  assert.deepEqual(parseMessages(new Uint8Array(7)), [], "a runt is ignored");
});

Deno.test("attach: where the kernel has no nbd, a clear message", () => {
  let hasNbd = false;
  try {
    Deno.statSync("/sys/module/nbd");
    hasNbd = true;
  } catch { /* no module */ }
  if (hasNbd) {
    assert.equal(KernelNbd.available(), true);
    return;
  }
  assert.equal(KernelNbd.available(), false);
  assert.throws(() => nbdFamily(), /this kernel has no nbd driver \(load it with: modprobe nbd\)/);
});
