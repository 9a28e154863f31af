/**
 * Facts about a network interface: index, MAC, MTU, asked of the kernel with
 * ioctls on a socket, so they are right for the calling thread's network
 * namespace (sysfs shows the namespace it was mounted in).
 *
 * @module
 */

import { cString, libc, linux } from "../ffi/libc.ts";
import { readMac } from "../wire/mac.ts";

/** What the links need to know of an interface. */
export interface InterfaceInfo {
  /** Interface name, e.g. "eth0". */
  name: string;
  /** Interface index (ifindex). */
  index: number;
  /** MAC as a 48-bit number. */
  mac: number;
  /** MTU in bytes. */
  mtu: number;
}

const IFREQ_SIZE = 40;

function interfaceRequest(name: string, request: bigint): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[^/\s]{1,15}$/.test(name)) return undefined;
  const ifreq = new Uint8Array(IFREQ_SIZE);
  ifreq.set(cString(name));
  const c = libc();
  const fd = c.socket(linux.AF_INET, linux.SOCK_DGRAM | linux.SOCK_CLOEXEC, 0);
  if (fd < 0) return undefined;
  try {
    return c.ioctl(fd, request, ifreq) === 0 ? ifreq : undefined;
  } finally {
    c.close(fd);
  }
}

/** Whether an interface of that name exists in this network namespace. */
export function interfaceExists(name: string): boolean {
  return interfaceRequest(name, linux.SIOCGIFINDEX) !== undefined;
}

/** Reads index, MAC and MTU; throws a one-line error when the interface is missing. */
export function interfaceInfo(name: string): InterfaceInfo {
  const index = interfaceRequest(name, linux.SIOCGIFINDEX);
  const hardware = interfaceRequest(name, linux.SIOCGIFHWADDR);
  const mtu = interfaceRequest(name, linux.SIOCGIFMTU);
  if (!index || !hardware || !mtu) throw new Error(`no such network interface: ${name}`);
  return {
    name,
    index: new DataView(index.buffer).getInt32(16, true),
    mac: readMac(hardware, 18), // ifr_hwaddr.sa_data
    mtu: new DataView(mtu.buffer).getInt32(16, true),
  };
}

/** The current MTU of an interface. */
export function interfaceMtu(name: string): number {
  return interfaceInfo(name).mtu;
}

/** Every interface in this network namespace except loopback, sorted. */
export function listInterfaces(): string[] {
  const c = libc();
  const list = c.if_nameindex();
  if (!list) return [];
  const names: string[] = [];
  try {
    const view = new Deno.UnsafePointerView(list);
    for (let at = 0;; at += 16) {
      if (view.getUint32(at) === 0) break;
      const namePointer = view.getPointer(at + 8);
      if (!namePointer) break;
      const name = Deno.UnsafePointerView.getCString(namePointer);
      if (name !== "lo") names.push(name);
    }
  } finally {
    c.if_freenameindex(list);
  }
  return names.sort();
}

/**
 * Runs `fn` with the calling thread in the network namespace `name` (from
 * `ip netns add`), then returns to the original one. Sockets opened inside stay
 * in that namespace. Synchronous FFI calls run on this thread, so links opened
 * here work for the life of the process.
 */
export function inNetns<T>(name: string, fn: () => T): T {
  const c = libc();
  const original = c.open(cString("/proc/thread-self/ns/net"), linux.O_RDONLY | linux.O_CLOEXEC, 0);
  const target = c.open(cString(`/run/netns/${name}`), linux.O_RDONLY | linux.O_CLOEXEC, 0);
  try {
    if (original < 0 || target < 0) throw new Error(`no network namespace ${name}`);
    if (c.setns(target, linux.CLONE_NEWNET) !== 0) throw new Error(`setns into ${name} failed`);
    try {
      return fn();
    } finally {
      c.setns(original, linux.CLONE_NEWNET);
    }
  } finally {
    if (target >= 0) c.close(target);
    if (original >= 0) c.close(original);
  }
}
