/**
 * Attaching exports to the kernel's nbd driver over generic netlink: each
 * export is handed to the kernel as one end of a connected Unix stream socket
 * whose other end this process serves in the transmission phase (the kernel
 * never negotiates), with the device name as the backend identifier, so that
 * /sys/block/nbdN/backend says `e9.0` and the udev rules can name it.
 *
 * @module
 */

import { libc, linux, SystemError } from "../ffi/libc.ts";
import {
  connectMessage,
  CTRL_ATTR_FAMILY_ID,
  disconnectMessage,
  getFamilyMessage,
  NbdAttr,
  parseMessages,
  resizeMessage,
} from "./netlink.ts";
import { exportFlags, type NbdExport } from "./export.ts";
import type { NbdServer } from "./server.ts";
import { socketPair } from "../reactor/mod.ts";
import { errorMessage } from "../util/errors.ts";

/** A synchronous generic netlink conversation. */
class Netlink {
  #fd: number;
  #seq = 1;
  #buffer = new Uint8Array(65536);

  constructor() {
    this.#fd = libc().socket(
      linux.AF_NETLINK,
      linux.SOCK_RAW | linux.SOCK_CLOEXEC,
      linux.NETLINK_GENERIC,
    );
    if (this.#fd < 0) throw new SystemError("socket(AF_NETLINK)");
    const address = new Uint8Array(12); // sockaddr_nl: family, pad, pid 0, groups 0
    new DataView(address.buffer).setUint16(0, linux.AF_NETLINK, true);
    if (libc().bind(this.#fd, address, address.length) < 0) {
      const error = new SystemError("bind(AF_NETLINK)");
      this.close();
      throw error;
    }
  }

  /** Sends a message built for the next sequence number; returns the reply's messages or throws on an error. */
  request(build: (seq: number) => Uint8Array, what: string) {
    const seq = this.#seq++;
    const message = build(seq);
    if (Number(libc().send(this.#fd, message, BigInt(message.length), 0)) < 0) {
      throw new SystemError(`netlink ${what}`);
    }
    const replies = [];
    for (;;) {
      const n = Number(libc().recv(this.#fd, this.#buffer, BigInt(this.#buffer.length), 0));
      if (n < 0) throw new SystemError(`netlink ${what}`);
      const messages = parseMessages(this.#buffer.subarray(0, n)).filter((m) => m.seq === seq);
      for (const m of messages) {
        if (m.errno !== undefined) {
          if (m.errno !== 0) throw new SystemError(what, m.errno);
          return replies; // the acknowledgement ends the conversation
        }
        replies.push(m);
      }
    }
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
}

/** Resolves the "nbd" generic netlink family; throws a clear Error where the kernel lacks nbd. */
export function nbdFamily(): number {
  const netlink = new Netlink();
  try {
    const replies = netlink.request(getFamilyMessage, "CTRL_CMD_GETFAMILY nbd");
    const id = replies.map((m) => m.attributes.get(CTRL_ATTR_FAMILY_ID)).find(Boolean);
    if (!id) throw new Error("the nbd netlink family answered without an id");
    return new DataView(id.buffer, id.byteOffset).getUint16(0, true);
  } catch (error) {
    if (error instanceof SystemError && error.errno === 2) {
      throw new Error("this kernel has no nbd driver (load it with: modprobe nbd)");
    }
    throw error;
  } finally {
    netlink.close();
  }
}

/** Attaches and detaches exports as /dev/nbdN. */
export class KernelNbd {
  #attached = new Map<string, number>();
  /** The size each attached /dev/nbdN was last given, in bytes. */
  #sizes = new Map<string, number>();
  #attaching = new Map<string, Promise<number>>();

  /**
   * Attaches exports whose sockets `server` serves.
   *
   * @param server serves our end of each socket
   * @param log kernel-log style messages
   */
  constructor(readonly server: NbdServer, readonly log: (line: string) => void) {}

  /** Whether the running kernel has the nbd netlink family. */
  static available(): boolean {
    try {
      nbdFamily();
      return true;
    } catch {
      return false;
    }
  }

  /** The nbd index of an attached export. */
  indexOf(name: string): number | undefined {
    return this.#attached.get(name);
  }

  /** Connects an export to a free /dev/nbdN (once, however often it is asked); resolves with the index. */
  attach(exp: NbdExport): Promise<number> {
    const existing = this.#attached.get(exp.name);
    if (existing !== undefined) return Promise.resolve(existing);
    let pending = this.#attaching.get(exp.name);
    if (!pending) {
      // The netlink exchange is synchronous; a failure becomes the promise's rejection.
      pending = new Promise<number>((resolve) => resolve(this.#attach(exp)))
        .finally(() => this.#attaching.delete(exp.name));
      this.#attaching.set(exp.name, pending);
    }
    return pending;
  }

  #attach(exp: NbdExport): number {
    const family = nbdFamily();
    // Our end is served in the transmission phase; the kernel takes the other.
    const [ours, fd] = socketPair(this.server.reactor);
    try {
      this.server.serve(ours, { transmissionOnly: exp });
      const netlink = new Netlink();
      try {
        const replies = netlink.request(
          (seq) =>
            connectMessage(family, seq, {
              sizeBytes: exp.size,
              blockSize: 512,
              serverFlags: exportFlags(exp),
              socketFd: fd,
              backend: exp.name,
            }),
          "NBD_CMD_CONNECT",
        );
        const indexBytes = replies.map((m) => m.attributes.get(NbdAttr.index)).find(Boolean);
        const index = indexBytes
          ? new DataView(indexBytes.buffer, indexBytes.byteOffset).getUint32(0, true)
          : -1;
        this.#attached.set(exp.name, index);
        this.#sizes.set(exp.name, exp.size);
        this.log(`aoe: ${exp.name} attached as nbd${index}`);
        return index;
      } finally {
        netlink.close();
      }
    } catch (error) {
      ours.close();
      throw error;
    } finally {
      libc().close(fd); // the kernel holds its own reference
    }
  }

  /**
   * Gives an attached export's /dev/nbdN its current size if that changed
   * (after `aoe revalidate` picked up a grown target); true if it was resized.
   */
  resize(exp: NbdExport): boolean {
    const index = this.#attached.get(exp.name);
    if (index === undefined || this.#sizes.get(exp.name) === exp.size) return false;
    const family = nbdFamily();
    const netlink = new Netlink();
    try {
      netlink.request(
        (seq) => resizeMessage(family, seq, { index, sizeBytes: exp.size }),
        "NBD_CMD_RECONFIGURE",
      );
    } finally {
      netlink.close();
    }
    this.#sizes.set(exp.name, exp.size);
    this.log(`aoe: ${exp.name}: nbd${index} resized to ${exp.size} bytes`);
    return true;
  }

  /** Disconnects an export's /dev/nbdN, if attached. */
  detach(name: string): void {
    const index = this.#attached.get(name);
    if (index === undefined) return;
    this.#attached.delete(name);
    this.#sizes.delete(name);
    try {
      const family = nbdFamily();
      const netlink = new Netlink();
      try {
        netlink.request((seq) => disconnectMessage(family, seq, index), "NBD_CMD_DISCONNECT");
      } finally {
        netlink.close();
      }
      this.log(`aoe: ${name} detached from nbd${index}`);
    } catch (error) {
      this.log(
        `aoe: detach ${name} from nbd${index}: ${errorMessage(error)}`,
      );
    }
  }

  /** Detaches every attached export. */
  detachAll(): void {
    for (const name of [...this.#attached.keys()]) this.detach(name);
  }
}
