/**
 * libc bindings through `Deno.dlopen`: packet sockets with batched I/O, poll,
 * positional file I/O and errno. Nothing but bindings and thin wrappers lives here.
 *
 * @module
 */

const symbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  writev: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  poll_async: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  fsync: { parameters: ["i32"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  /** fcntl(fd, cmd, struct flock *): the lock commands only. */
  fcntl_lock: { name: "fcntl", parameters: ["i32", "i32", "buffer"], result: "i32" },
  fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  umask: { parameters: ["u32"], result: "u32" },
  getgrnam: { parameters: ["buffer"], result: "pointer" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  if_nameindex: { parameters: [], result: "pointer" },
  if_freenameindex: { parameters: ["pointer"], result: "void" },
  aligned_alloc: { parameters: ["usize", "usize"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  getrusage: { parameters: ["i32", "buffer"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let library: Deno.DynamicLibrary<typeof symbols> | undefined;
let errnoView: Deno.UnsafePointerView | undefined;

/** The libc symbols, opened on first use. */
export function libc(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  library ??= Deno.dlopen("libc.so.6", symbols);
  return library.symbols;
}

/** errno of the last failed synchronous libc call on this thread. */
export function errno(): number {
  errnoView ??= new Deno.UnsafePointerView(libc().__errno_location()!);
  return errnoView.getInt32();
}

/** Text for an errno value, like strerror(3). */
export function strerror(code: number): string {
  const p = libc().strerror(code);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${code}`;
}

/** An error carrying the errno of a failed libc call. */
export class SystemError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** @param call what failed, e.g. "bind eth0" */
  constructor(call: string, code: number = errno()) {
    super(`${call}: ${strerror(code)}`);
    this.name = "SystemError";
    this.errno = code;
  }
}

/** Throws a SystemError when a libc call returned a negative value. */
export function check(result: number | bigint, call: string): number {
  const n = Number(result);
  if (n < 0) throw new SystemError(call);
  return n;
}

/** A NUL-terminated C string in a new buffer. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * The file offset and length alignment O_DIRECT needs on an open file
 * (statx STATX_DIOALIGN, Linux 6.1): the logical sector of the device under
 * its filesystem. Undefined when the kernel or filesystem does not say.
 */
export function directIoAlignment(fd: number): number | undefined {
  const buffer = new Uint8Array(256); // struct statx
  const view = new DataView(buffer.buffer);
  const result = libc().statx(fd, cString(""), AT_EMPTY_PATH, STATX_DIOALIGN, buffer);
  if (result !== 0 || (view.getUint32(0, true) & STATX_DIOALIGN) === 0) return undefined;
  const offsetAlign = view.getUint32(0x9c, true); // stx_dio_offset_align
  return offsetAlign > 0 ? offsetAlign : undefined;
}

const AT_EMPTY_PATH = 0x1000;
const STATX_DIOALIGN = 0x2000;

/** Memory aligned for O_DIRECT, owned for the life of the process, as a byte view. */
export function alignedBuffer(size: number, alignment = 4096): Uint8Array<ArrayBuffer> {
  const rounded = Math.ceil(size / alignment) * alignment;
  const p = libc().aligned_alloc(BigInt(alignment), BigInt(rounded));
  if (!p) throw new Error(`aligned_alloc of ${rounded} bytes failed`);
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, rounded));
}

/** A resource limit of getrlimit(2): the soft limit enforced, and the hard limit it may be raised to. */
export interface ResourceLimit {
  /** rlim_cur. */
  soft: bigint;
  /** rlim_max. */
  hard: bigint;
}

/** getrlimit(2) of `resource` (e.g. {@link linux}.RLIMIT_NOFILE); throws a SystemError. */
export function getResourceLimit(resource: number): ResourceLimit {
  const limit = new BigUint64Array(2);
  check(libc().getrlimit(resource, new Uint8Array(limit.buffer)), "getrlimit");
  return { soft: limit[0], hard: limit[1] };
}

/** setrlimit(2) of `resource`; throws a SystemError. */
export function setResourceLimit(resource: number, limit: ResourceLimit): void {
  const values = new BigUint64Array([limit.soft, limit.hard]);
  check(libc().setrlimit(resource, new Uint8Array(values.buffer)), "setrlimit");
}

/** Constants of Linux x86_64 used by the bindings' callers. */
export const linux = {
  AF_UNIX: 1,
  AF_PACKET: 17,
  AF_NETLINK: 16,
  SOCK_STREAM: 1,
  SOCK_RAW: 3,
  SOCK_CLOEXEC: 0o2000000,
  SOCK_NONBLOCK: 0o4000,
  SOL_SOCKET: 1,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_SNDBUFFORCE: 32,
  SO_RCVBUFFORCE: 33,
  SOL_PACKET: 263,
  PACKET_IGNORE_OUTGOING: 23,
  PACKET_QDISC_BYPASS: 20,
  PACKET_VERSION: 10,
  PACKET_RX_RING: 5,
  PACKET_STATISTICS: 6,
  PACKET_TX_RING: 13,
  TPACKET_V2: 1,
  PROT_READ: 1,
  PROT_WRITE: 2,
  MAP_SHARED: 1,
  MSG_DONTWAIT: 0x40,
  MSG_WAITFORONE: 0x10000,
  SO_RCVTIMEO: 20,
  SO_ERROR: 4,
  SO_PEERCRED: 17,
  ENODEV: 19,
  MSG_NOSIGNAL: 0x4000,
  POLLIN: 1,
  POLLOUT: 4,
  POLLERR: 8,
  POLLHUP: 0x10,
  POLLNVAL: 0x20,
  EAGAIN: 11,
  EINTR: 4,
  ENOBUFS: 105,
  O_RDONLY: 0,
  O_RDWR: 2,
  O_SYNC: 0o4010000,
  O_DIRECT: 0o40000,
  O_CLOEXEC: 0o2000000,
  O_WRONLY: 1,
  F_OFD_SETLKW: 38,
  F_WRLCK: 1,
  F_UNLCK: 2,
  O_CREAT: 0o100,
  O_EXCL: 0o200,
  O_NOFOLLOW: 0o400000,
  O_NONBLOCK: 0o4000,
  FALLOC_FL_KEEP_SIZE: 1,
  FALLOC_FL_PUNCH_HOLE: 2,
  BLKGETSIZE64: 0x80081272n,
  /** The logical sector size of a block device, an int (_IO(0x12, 104)). */
  BLKSSZGET: 0x1268n,
  AF_INET: 2,
  SOCK_DGRAM: 2,
  SIOCGIFINDEX: 0x8933n,
  SIOCGIFHWADDR: 0x8927n,
  SIOCGIFMTU: 0x8921n,
  CLONE_NEWNET: 0x40000000,
  NETLINK_GENERIC: 16,
  RUSAGE_THREAD: 1,
  RLIMIT_NOFILE: 7,
} as const;

/** poll(2) events that mean a descriptor is broken: POLLERR, POLLHUP, POLLNVAL. */
export const POLL_BROKEN: number = linux.POLLERR | linux.POLLHUP | linux.POLLNVAL;
