/**
 * The least a Deno process can do to answer AoE reads, as a floor for the
 * latency benchmark (bench/latency_bench.ts, target "floor"): vblade's loop
 * itself, one blocking `recv` on a packet socket on the main thread (one
 * wake-up, directly by the kernel), a `pread` of the image (or a `pwrite`
 * of a write's data), the reply written over the request and sent with one
 * `send`. No event loop, no target code, no checks beyond what a read or a
 * write needs; ATA reads and writes only, so it also serves the throughput
 * benchmark (bench/target_bench.ts, target "floor"). What
 * separates it from vblade is the runtime itself (FFI calls, JavaScript,
 * the working set touched per request); what separates `aoe target` from
 * it is the target's own code.
 *
 *   deno run -A bench/floor_target.ts SHELF SLOT IFNAME IMAGE
 *
 * @module
 */

import { cString, libc } from "../ffi/libc.ts";
import { interfaceInfo } from "../link/netif.ts";
import { aoePacketSocket, bindToInterface } from "../link/packet.ts";
import {
  ATA_HEADER_LENGTH,
  AtaFlag,
  AtaStatus,
  Command,
  isResponse,
  makeResponseHeader,
  readAtaFlags,
  readAtaSectorCount,
  readCommand,
  readLba,
  readShelf,
  readSlot,
  writeAtaRegisters,
} from "../wire/mod.ts";

const [shelfText, slotText, ifname, image] = Deno.args;
const shelf = Number(shelfText);
const slot = Number(slotText);
const info = interfaceInfo(ifname);
const fd = aoePacketSocket();
bindToInterface(fd, info);
const O_RDWR = 2;
const imageFd = libc().open(cString(image), O_RDWR, 0);
if (imageFd < 0) throw new Error(`open ${image}`);
const sectors = Deno.statSync(image).size / 512;
console.error(`floor: e${shelf}.${slot}, ${sectors} sectors`);

const frame = new Uint8Array(9216);
const target = { mac: info.mac, shelf, slot };
for (;;) {
  const n = Number(libc().recv(fd, frame, BigInt(frame.length), 0));
  // A read addressed to us: anything else is not this floor's business.
  if (n < ATA_HEADER_LENGTH || isResponse(frame) || readCommand(frame) !== Command.ata) continue;
  if (readShelf(frame) !== shelf || readSlot(frame) !== slot) continue;
  const bytes = readAtaSectorCount(frame) * 512;
  if (ATA_HEADER_LENGTH + bytes > info.mtu + 14) continue;
  const lba = readLba(frame);
  const write = (readAtaFlags(frame) & AtaFlag.write) !== 0;
  if (write && n < ATA_HEADER_LENGTH + bytes) continue;
  makeResponseHeader(frame, target);
  writeAtaRegisters(frame, { status: AtaStatus.ready, error: 0, sectorCount: 0 });
  const data = frame.subarray(ATA_HEADER_LENGTH);
  if (write) libc().pwrite(imageFd, data, BigInt(bytes), BigInt(lba * 512));
  else libc().pread(imageFd, data, BigInt(bytes), BigInt(lba * 512));
  // A write's reply carries no data (the kernel pads it to the minimum frame).
  libc().send(fd, frame, BigInt(ATA_HEADER_LENGTH + (write ? 0 : bytes)), 0);
}
