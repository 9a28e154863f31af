/**
 * systemd's readiness protocol (sd_notify(3)): one datagram of "KEY=VALUE"
 * lines to the AF_UNIX socket named by $NOTIFY_SOCKET, sent with sendto(2).
 * Without $NOTIFY_SOCKET (not started by systemd) nothing is sent.
 *
 * @module
 */

import { libc, linux } from "../ffi/libc.ts";

/** sockaddr_un for a path, or for an abstract name written "@name" (unix(7)). */
function unixAddress(path: string): { address: Uint8Array<ArrayBuffer>; length: number } {
  const bytes = new TextEncoder().encode(path);
  const address = new Uint8Array(110);
  new DataView(address.buffer).setUint16(0, linux.AF_UNIX, true);
  if (bytes.length > 107) throw new Error(`socket path too long: ${path}`);
  address.set(bytes, 2);
  if (path.startsWith("@")) {
    address[2] = 0;
    return { address, length: 2 + bytes.length };
  }
  return { address, length: 2 + bytes.length + 1 };
}

/**
 * Sends `state` (e.g. "READY=1\nSTATUS=serving 3 exports") to systemd.
 * Returns true if it was sent, false without $NOTIFY_SOCKET or on failure.
 */
export function sdNotify(state: string, socketPath = Deno.env.get("NOTIFY_SOCKET")): boolean {
  if (!socketPath) return false;
  const fd = libc().socket(linux.AF_UNIX, linux.SOCK_DGRAM | linux.SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    const { address, length } = unixAddress(socketPath);
    const message = new TextEncoder().encode(state);
    const sent = libc().sendto(
      fd,
      message,
      BigInt(message.length),
      linux.MSG_NOSIGNAL,
      address,
      length,
    );
    return Number(sent) === message.length;
  } catch {
    return false;
  } finally {
    libc().close(fd);
  }
}
