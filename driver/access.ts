/**
 * Who may use the initiator daemon's sockets, FIFOs and files: root only by
 * default, and one administrator-chosen group when asked (`--group`, as the
 * udev rules give the block devices' group access). Modes are set explicitly
 * after every creation and the daemon runs under umask 077, so the caller's
 * umask never decides; the control socket also checks each peer's
 * credentials (SO_PEERCRED, unix(7)).
 *
 * @module
 */

import { cString, libc, linux, SystemError } from "../ffi/libc.ts";

/** The access policy of one daemon. */
export interface AccessPolicy {
  /** The group granted access, if any. */
  gid?: number;
  /** Its name, for messages. */
  groupName?: string;
}

/** Modes of what the daemon creates, before group bits are applied. */
export const MODES = {
  /** Directories others may list (the run and device directories, the attribute tree). */
  directory: 0o755,
  /** Attribute files: readable by all, written only by the daemon. */
  attribute: 0o444,
  /** The one writable parameter (aoe_iflist): root writes, all read. */
  writableParameter: 0o644,
  /** The control and NBD sockets: owner, plus the group when one is granted. */
  socket: 0o660,
} as const;

/** Resolves a group name (or number) to its gid; throws with a one-line message. */
export function resolveGroup(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const entry = libc().getgrnam(cString(name));
  if (!entry) throw new Error(`no such group: ${name}`);
  // struct group: char *gr_name, char *gr_passwd, gid_t gr_gid (x86_64 offsets 0, 8, 16).
  return new Deno.UnsafePointerView(entry).getUint32(16);
}

/** Makes the process create everything owner-only; explicit modes then open what is meant. */
export function restrictUmask(): void {
  libc().umask(0o077);
}

/**
 * Sets `mode` on `path`, keeping the group bits only when the policy grants a
 * group (then the path's group becomes it). Owner-only otherwise.
 */
export function applyMode(path: string, mode: number, policy: AccessPolicy = {}): void {
  if (policy.gid !== undefined) {
    Deno.chownSync(path, null, policy.gid);
    Deno.chmodSync(path, mode);
  } else {
    // No group granted: group bits fall back to what others get.
    Deno.chmodSync(path, (mode & ~0o070) | ((mode & 0o007) << 3));
  }
}

/** The credentials of a Unix socket's peer (struct ucred). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** SO_PEERCRED of a connected Unix socket. */
export function peerCredentials(fd: number): PeerCredentials {
  const ucred = new Int32Array(3);
  const length = new Uint32Array([12]);
  if (
    libc().getsockopt(
      fd,
      linux.SOL_SOCKET,
      linux.SO_PEERCRED,
      new Uint8Array(ucred.buffer),
      new Uint8Array(length.buffer),
    ) < 0
  ) throw new SystemError("getsockopt(SO_PEERCRED)");
  return { pid: ucred[0], uid: ucred[1] >>> 0, gid: ucred[2] >>> 0 };
}

function supplementaryGroups(pid: number): number[] {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const line = status.match(/^Groups:(.*)$/m)?.[1] ?? "";
    return line.trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Whether a peer may command the daemon: root, the daemon's own user, or a member of the granted group. */
export function peerAllowed(peer: PeerCredentials, policy: AccessPolicy): boolean {
  if (peer.uid === 0 || peer.uid === Deno.uid()) return true;
  if (policy.gid === undefined) return false;
  return peer.gid === policy.gid || supplementaryGroups(peer.pid).includes(policy.gid);
}
