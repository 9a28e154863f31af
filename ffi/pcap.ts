/**
 * libpcap (Debian's libpcap0.8) through `Deno.dlopen`.
 *
 * @module
 */

const symbols = {
  pcap_create: { parameters: ["buffer", "buffer"], result: "pointer" },
  pcap_set_snaplen: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_promisc: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_immediate_mode: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_buffer_size: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_timeout: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_activate: { parameters: ["pointer"], result: "i32" },
  pcap_setdirection: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_compile: { parameters: ["pointer", "buffer", "buffer", "i32", "u32"], result: "i32" },
  pcap_setfilter: { parameters: ["pointer", "buffer"], result: "i32" },
  pcap_freecode: { parameters: ["buffer"], result: "void" },
  pcap_setnonblock: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  pcap_get_selectable_fd: { parameters: ["pointer"], result: "i32" },
  pcap_next_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  pcap_inject: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  pcap_stats: { parameters: ["pointer", "buffer"], result: "i32" },
  pcap_geterr: { parameters: ["pointer"], result: "pointer" },
  pcap_close: { parameters: ["pointer"], result: "void" },
  pcap_lib_version: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

let library: Deno.DynamicLibrary<typeof symbols> | undefined;

/** The libpcap symbols, opened on first use. */
export function pcap(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  library ??= Deno.dlopen("libpcap.so.0.8", symbols);
  return library.symbols;
}

/** libpcap's version string. */
export function pcapVersion(): string {
  return Deno.UnsafePointerView.getCString(pcap().pcap_lib_version()!);
}

/** The last error text of a pcap handle. */
export function pcapError(handle: Deno.PointerObject): string {
  const p = pcap().pcap_geterr(handle);
  return p ? Deno.UnsafePointerView.getCString(p) : "unknown pcap error";
}

/** pcap_setdirection: capture only frames the interface received. */
export const PCAP_D_IN = 1;
/** Size of `struct pcap_stat` on Linux: ps_recv, ps_drop, ps_ifdrop (u_int each). */
export const PCAP_STAT_SIZE = 12;
/** Offset of `ps_drop` (frames the kernel dropped for want of buffer room) in `struct pcap_stat`. */
export const PCAP_STAT_DROP_OFFSET = 4;
/** Size of `struct bpf_program` on x86_64 (u_int + pointer). */
export const BPF_PROGRAM_SIZE = 16;
/** Offset of `caplen` in `struct pcap_pkthdr` on x86_64 (after a 16-byte timeval). */
export const PKTHDR_CAPLEN_OFFSET = 16;
