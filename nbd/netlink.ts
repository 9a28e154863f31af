/**
 * Generic netlink messages for the kernel's nbd driver (include/uapi/linux/
 * nbd-netlink.h, genetlink.h; docs/nbd.md §4), built and parsed as pure
 * functions in host byte order (x86_64: little-endian).
 *
 * @module
 */

export const NLMSG_ERROR = 2;
/** nlmsghdr flag: a request. */
export const NLM_F_REQUEST = 1;
/** nlmsghdr flag: acknowledge the request. */
export const NLM_F_ACK = 4;
/** The generic netlink controller's family id. */
export const GENL_ID_CTRL = 0x10;
/** Controller command: look a family up by name. */
export const CTRL_CMD_GETFAMILY = 3;
/** Controller attribute: the family id. */
export const CTRL_ATTR_FAMILY_ID = 1;
/** Controller attribute: the family name. */
export const CTRL_ATTR_FAMILY_NAME = 2;
/** Attribute type flag: the payload holds attributes. */
export const NLA_F_NESTED = 0x8000;

/** NBD generic netlink commands. */
export const NbdCmd = { connect: 1, disconnect: 2, reconfigure: 3, status: 5 } as const;
/** NBD generic netlink attributes. */
export const NbdAttr = {
  index: 1,
  sizeBytes: 2,
  blockSizeBytes: 3,
  timeout: 4,
  serverFlags: 5,
  clientFlags: 6,
  sockets: 7,
  deadConnTimeout: 8,
  backendIdentifier: 10,
} as const;
/** Nested in NBD_ATTR_SOCKETS: one socket item. */
export const NBD_SOCK_ITEM = 1;
/** Nested in a socket item: the file descriptor. */
export const NBD_SOCK_FD = 1;

/** One attribute: u16 length (header included, padding not), u16 type, payload padded to 4. */
export function attribute(type: number, payload: Uint8Array): Uint8Array {
  const length = 4 + payload.length;
  const out = new Uint8Array(Math.ceil(length / 4) * 4);
  const view = new DataView(out.buffer);
  view.setUint16(0, length, true);
  view.setUint16(2, type, true);
  out.set(payload, 4);
  return out;
}

/** An attribute holding a u32. */
export function u32Attribute(type: number, value: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, value, true);
  return attribute(type, payload);
}

/** An attribute holding a u64. */
export function u64Attribute(type: number, value: number | bigint): Uint8Array {
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setBigUint64(0, BigInt(value), true);
  return attribute(type, payload);
}

/** An attribute holding a NUL-terminated string. */
export function stringAttribute(type: number, text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const payload = new Uint8Array(bytes.length + 1); // NUL-terminated
  payload.set(bytes);
  return attribute(type, payload);
}

/** An attribute holding other attributes. */
export function nestedAttribute(type: number, children: Uint8Array[]): Uint8Array {
  return attribute(type | NLA_F_NESTED, concat(children));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** nlmsghdr + genlmsghdr + attributes. */
export function genlMessage(
  family: number,
  command: number,
  seq: number,
  attributes: Uint8Array[],
): Uint8Array {
  const body = concat(attributes);
  const out = new Uint8Array(20 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, out.length, true);
  view.setUint16(4, family, true);
  view.setUint16(6, NLM_F_REQUEST | NLM_F_ACK, true);
  view.setUint32(8, seq, true);
  view.setUint32(12, 0, true); // pid: the kernel
  out[16] = command;
  out[17] = 1; // genl version
  out.set(body, 20);
  return out;
}

/** CTRL_CMD_GETFAMILY for "nbd". */
export function getFamilyMessage(seq: number): Uint8Array {
  return genlMessage(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, seq, [
    stringAttribute(CTRL_ATTR_FAMILY_NAME, "nbd"),
  ]);
}

/** What NBD_CMD_CONNECT carries. */
export interface ConnectRequest {
  /** Device size in bytes. */
  sizeBytes: number;
  /** Logical block size in bytes. */
  blockSize: number;
  /** The export's NBD transmission flags. */
  serverFlags: number;
  /** The connected socket the kernel takes. */
  socketFd: number;
  /** Backend identifier, shown in /sys/block/nbdN/backend. */
  backend: string;
  /** A device index to use; the kernel picks a free one if absent. */
  index?: number;
  /** Request timeout in seconds. */
  timeoutSeconds?: number;
  /** NBD client flags. */
  clientFlags?: number;
}

/** NBD_CMD_CONNECT. Without an index the kernel picks a free device. */
export function connectMessage(family: number, seq: number, request: ConnectRequest): Uint8Array {
  const attributes = [
    u64Attribute(NbdAttr.sizeBytes, request.sizeBytes),
    u64Attribute(NbdAttr.blockSizeBytes, request.blockSize),
    u64Attribute(NbdAttr.serverFlags, request.serverFlags),
  ];
  if (request.index !== undefined) attributes.unshift(u32Attribute(NbdAttr.index, request.index));
  if (request.timeoutSeconds !== undefined) {
    attributes.push(u64Attribute(NbdAttr.timeout, request.timeoutSeconds));
  }
  if (request.clientFlags !== undefined) {
    attributes.push(u64Attribute(NbdAttr.clientFlags, request.clientFlags));
  }
  attributes.push(
    nestedAttribute(NbdAttr.sockets, [
      nestedAttribute(NBD_SOCK_ITEM, [u32Attribute(NBD_SOCK_FD, request.socketFd)]),
    ]),
  );
  attributes.push(stringAttribute(NbdAttr.backendIdentifier, request.backend));
  return genlMessage(family, NbdCmd.connect, seq, attributes);
}

/** NBD_CMD_DISCONNECT for a device index. */
export function disconnectMessage(family: number, seq: number, index: number): Uint8Array {
  return genlMessage(family, NbdCmd.disconnect, seq, [u32Attribute(NbdAttr.index, index)]);
}

/**
 * NBD_CMD_RECONFIGURE with a new size: a connected /dev/nbdN takes the new
 * capacity (nbd_genl_reconfigure calls nbd_genl_size_set, Linux 5.3 and later).
 */
export function resizeMessage(
  family: number,
  seq: number,
  request: { index: number; sizeBytes: number },
): Uint8Array {
  return genlMessage(family, NbdCmd.reconfigure, seq, [
    u32Attribute(NbdAttr.index, request.index),
    u64Attribute(NbdAttr.sizeBytes, request.sizeBytes),
  ]);
}

/** One parsed netlink message: its type, and either an errno (NLMSG_ERROR) or its attributes. */
export interface ParsedMessage {
  /** nlmsg_type. */
  type: number;
  /** The sequence number it answers. */
  seq: number;
  /** For NLMSG_ERROR: 0 is an acknowledgement, otherwise a positive errno. */
  errno?: number;
  /** Top-level attributes by type. */
  attributes: Map<number, Uint8Array>;
}

/** Splits a receive buffer into messages and their top-level attributes; malformed tails are ignored. */
export function parseMessages(buffer: Uint8Array): ParsedMessage[] {
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const messages: ParsedMessage[] = [];
  for (let at = 0; at + 16 <= buffer.length;) {
    const length = view.getUint32(at, true);
    if (length < 16 || at + length > buffer.length) break;
    const type = view.getUint16(at + 4, true);
    const message: ParsedMessage = {
      type,
      seq: view.getUint32(at + 8, true),
      attributes: new Map(),
    };
    if (type === NLMSG_ERROR && length >= 20) {
      message.errno = -view.getInt32(at + 16, true);
    } else {
      for (let a = at + 20; a + 4 <= at + length;) {
        const alen = view.getUint16(a, true);
        if (alen < 4 || a + alen > at + length) break;
        message.attributes.set(
          view.getUint16(a + 2, true) & ~NLA_F_NESTED,
          buffer.slice(a + 4, a + alen),
        );
        a += Math.ceil(alen / 4) * 4;
      }
    }
    messages.push(message);
    at += Math.ceil(length / 4) * 4;
  }
  return messages;
}
