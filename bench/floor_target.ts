/**
 * The least a Deno process can do to answer AoE reads, as a floor for the
 * latency benchmark (bench/latency_bench.ts, target "floor"): vblade's loop
 * itself, one blocking `recv` on a packet socket on the main thread (one
 * wake-up, directly by the kernel), a `pread` of the image, the reply
 * written over the request and sent with one `send`. No event loop, no
 * target code, no checks beyond what a read needs; ATA reads only. What
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
  AtaStatus,
  Command,
  isResponse,
  makeResponseHeader,
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
const O_RDONLY = 0;
const imageFd = libc().open(cString(image), O_RDONLY, 0);
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
  makeResponseHeader(frame, target);
  writeAtaRegisters(frame, { status: AtaStatus.ready, error: 0, sectorCount: 0 });
  libc().pread(imageFd, frame.subarray(ATA_HEADER_LENGTH), BigInt(bytes), BigInt(lba * 512));
  libc().send(fd, frame, BigInt(ATA_HEADER_LENGTH + bytes), 0);
}
