/**
 * Loop devices for tests: a block device over a temporary file, with the
 * logical sector size asked for, removed by the returned function.
 *
 * @module
 */

/** A loop device and how to remove it. */
export interface LoopDevice {
  /** "/dev/loopN". */
  device: string;
  /** Detaches the device and removes its file. */
  remove: () => Promise<void>;
}

/**
 * Sets up a loop device of `bytes` with `sectorSize`-byte logical sectors, or
 * returns why it cannot (no /dev/loop-control, losetup failing): the caller
 * skips its test with that message.
 */
export async function loopDevice(
  options: { sectorSize?: number; bytes?: number } = {},
): Promise<LoopDevice | string> {
  try {
    Deno.statSync("/dev/loop-control");
  } catch {
    return "no /dev/loop-control";
  }
  const file = Deno.makeTempFileSync({ prefix: "aoe-loop-" });
  Deno.truncateSync(file, options.bytes ?? 4 << 20);
  const out = await new Deno.Command("losetup", {
    args: ["--find", "--show", "--sector-size", String(options.sectorSize ?? 512), file],
    stdout: "piped",
    stderr: "piped",
  }).output().catch((error) => ({
    success: false,
    stdout: new Uint8Array(),
    stderr: new TextEncoder().encode(String(error)),
  }));
  if (!out.success) {
    Deno.removeSync(file);
    return `losetup failed: ${new TextDecoder().decode(out.stderr).trim()}`;
  }
  const device = new TextDecoder().decode(out.stdout).trim();
  return {
    device,
    remove: async () => {
      await new Deno.Command("losetup", { args: ["-d", device] }).output();
      Deno.removeSync(file);
    },
  };
}
