import assert from "node:assert/strict";
import { FileStore } from "./backing.ts";
import { loopDevice } from "../testing/loop.ts";

/** mulberry32, so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("item 9: -d on a device with 4096-byte logical sectors serves 512-byte sectors (read-modify-write), any -o", async () => {
  const loop = await loopDevice({ sectorSize: 4096, bytes: 4 << 20 });
  if (typeof loop === "string") {
    console.log(`skipped: ${loop}`);
    return;
  }
  try {
    for (const offset of [0, 3]) {
      const store: FileStore = new FileStore(loop.device, {
        direct: true,
        offsetSectors: offset,
        sync: true,
      });
      const plain: FileStore = new FileStore(loop.device, {
        readOnly: true,
        offsetSectors: offset,
      });
      try {
        assert.equal(store.sectors, 8192 - offset);
        const model = new Uint8Array(200 * 512);
        assert.equal(store.read(model, 0, 200 - 56), 144);
        assert.equal(store.read(model.subarray(144 * 512), 144, 56), 56);
        const next = random(4096 + offset);
        for (let i = 0; i < 300; i++) {
          const count = 1 + Math.floor(next() * 20);
          const lba = Math.floor(next() * (200 - count));
          const data = new Uint8Array(count * 512).map(() => Math.floor(next() * 256));
          assert.equal(store.write(data, lba, count), count, `write ${count} at ${lba}`);
          model.set(data, lba * 512);
          const rl = Math.floor(next() * 190);
          const rc = 1 + Math.floor(next() * 10);
          const back = new Uint8Array(rc * 512);
          assert.equal(store.read(back, rl, rc), rc);
          assert.deepEqual(back, model.subarray(rl * 512, (rl + rc) * 512), `read ${rc} at ${rl}`);
        }
        const all = new Uint8Array(200 * 512);
        assert.equal(plain.read(all, 0, 200), 200);
        assert.deepEqual(all, model, "the device holds what was written, seen without O_DIRECT");
        const last = new Uint8Array(512);
        assert.equal(store.read(last, store.sectors - 1, 1), 1, "the last sector");
        assert.equal(store.write(last, store.sectors - 1, 1), 1);
      } finally {
        store.close();
        plain.close();
      }
    }
  } finally {
    await loop.remove();
  }
});

Deno.test("-d on a regular file still opens with O_DIRECT and serves 512-byte sectors", () => {
  const file = Deno.makeTempFileSync({ dir: Deno.cwd(), prefix: ".aoe-direct-" });
  try {
    Deno.truncateSync(file, 64 * 512);
    const store = new FileStore(file, { direct: true });
    try {
      const data = new Uint8Array(512).fill(3);
      assert.equal(store.write(data, 7, 1), 1);
      const back = new Uint8Array(512);
      assert.equal(store.read(back, 7, 1), 1);
      assert.deepEqual(back, data);
    } finally {
      store.close();
    }
  } finally {
    Deno.removeSync(file);
  }
});

async function run(command: string, args: string[]): Promise<boolean> {
  const out = await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output()
    .catch(() => ({ success: false }));
  return out.success;
}

Deno.test("-d on a regular file of a filesystem over a 4096-byte-sector device serves 512-byte sectors", async () => {
  const loop = await loopDevice({ sectorSize: 4096, bytes: 64 << 20 });
  if (typeof loop === "string") {
    console.log(`skipped: ${loop}`);
    return;
  }
  const mountPoint = Deno.makeTempDirSync({ prefix: "aoe-mnt-" });
  try {
    if (
      !await run("mkfs.ext4", ["-q", loop.device]) || !await run("mount", [loop.device, mountPoint])
    ) {
      console.log("skipped: cannot make or mount an ext4 filesystem");
      return;
    }
    try {
      const image = `${mountPoint}/disk.img`;
      Deno.writeFileSync(image, new Uint8Array(0));
      Deno.truncateSync(image, 1 << 20);
      const store = new FileStore(image, { direct: true, offsetSectors: 1 });
      try {
        const data = new Uint8Array(3 * 512).map((_, i) => i * 7);
        assert.equal(store.write(data, 2, 3), 3, "a write across two 4096-byte blocks");
        const back = new Uint8Array(3 * 512);
        assert.equal(store.read(back, 2, 3), 3);
        assert.deepEqual(back, data);
      } finally {
        store.close();
      }
      const bytes = Deno.readFileSync(image).subarray(3 * 512, 6 * 512);
      assert.deepEqual(bytes, new Uint8Array(3 * 512).map((_, i) => i * 7), "in the file");

      // A file that ends inside a 4096-byte block: its last sectors are written, it does not grow.
      const odd = `${mountPoint}/odd.img`;
      Deno.writeFileSync(odd, new Uint8Array(0));
      Deno.truncateSync(odd, (1 << 20) + 3 * 512);
      const tailStore = new FileStore(odd, { direct: true });
      try {
        const sectors = tailStore.sectors;
        assert.equal(sectors, 2051);
        const data = new Uint8Array(2 * 512).fill(0x6b);
        assert.equal(tailStore.write(data, sectors - 2, 2), 2, "the last two sectors");
        assert.equal(tailStore.flush(), true);
        const back = new Uint8Array(2 * 512);
        assert.equal(tailStore.read(back, sectors - 2, 2), 2);
        assert.deepEqual(back, data);
        assert.equal(tailStore.write(data, 2046, 2), 2, "an aligned write before the tail");
      } finally {
        tailStore.close();
      }
      assert.equal(Deno.statSync(odd).size, (1 << 20) + 3 * 512, "the file did not grow");
      assert.deepEqual(
        Deno.readFileSync(odd).subarray(2049 * 512),
        new Uint8Array(2 * 512).fill(0x6b),
      );
    } finally {
      await run("umount", [mountPoint]);
    }
  } finally {
    Deno.removeSync(mountPoint, { recursive: true });
    await loop.remove();
  }
});

Deno.test("-d: a read or write of more sectors than the bounce buffer holds (a shadow merge moves 2048) is done in pieces", async () => {
  for (const sectorSize of [512, 4096]) {
    const loop = await loopDevice({ sectorSize, bytes: 4 << 20 });
    if (typeof loop === "string") {
      console.log(`skipped: ${loop}`);
      return;
    }
    try {
      const store = new FileStore(loop.device, { direct: true, offsetSectors: 3 });
      try {
        const data = new Uint8Array(2048 * 512).map((_, i) => (i * 7 + (i >> 9)) & 0xff);
        assert.equal(store.write(data, 5, 2048), 2048);
        const back = new Uint8Array(2048 * 512);
        assert.equal(store.read(back, 5, 2048), 2048);
        assert.deepEqual(back, data);
        const around = new Uint8Array(512);
        assert.equal(store.read(around, 4, 1), 1);
        assert.deepEqual(around, new Uint8Array(512), "the sector before is untouched");
        assert.equal(store.read(around, 5 + 2048, 1), 1);
        assert.deepEqual(around, new Uint8Array(512), "the sector after is untouched");
      } finally {
        store.close();
      }
    } finally {
      await loop.remove();
    }
  }
});

Deno.test("-d on 4096-byte sectors: two writers of the same device (two targets) never lose each other's halves", async () => {
  const loop = await loopDevice({ sectorSize: 4096, bytes: 32 << 20 });
  if (typeof loop === "string") {
    console.log(`skipped: ${loop}`);
    return;
  }
  const sectors = 8192;
  const url = new URL("../testing/rmw_worker.ts", import.meta.url).href;
  const run = (half: number, fill: number) =>
    new Promise<number>((resolve, reject) => {
      const worker = new Worker(url, { type: "module" });
      worker.onmessage = (event) => {
        resolve(event.data.failed);
        worker.terminate();
      };
      worker.onerror = (event) => reject(new Error(event.message));
      worker.postMessage({ device: loop.device, half, sectors, fill });
    });
  try {
    let lost = 0;
    for (let round = 1; round <= 3; round++) {
      const failed = await Promise.all([run(0, 2 * round), run(1, 2 * round + 1)]);
      assert.deepEqual(failed, [0, 0]);
      const reader: FileStore = new FileStore(loop.device, { readOnly: true, direct: true });
      const all = new Uint8Array(sectors * 4096);
      assert.equal(reader.read(all, 0, sectors * 8), sectors * 8);
      reader.close();
      for (let k = 0; k < sectors; k++) {
        for (const half of [0, 1]) {
          const fill = 2 * round + half;
          const at = k * 4096 + half * 2048;
          if (!all.subarray(at, at + 2048).every((b) => b === fill)) {
            lost++;
            console.log(`round ${round} sector ${k} half ${half}: ${all[at]}..${all[at + 2047]}`);
          }
        }
      }
    }
    assert.equal(lost, 0, `${lost} acknowledged halves lost of ${3 * 2 * sectors}`);
  } finally {
    await loop.remove();
  }
});
