import assert from "node:assert/strict";
import { FileStore } from "./backing.ts";
import { ShadowStore } from "./shadow.ts";

const SECTORS = 16384; // 8 MiB: the merge takes several steps

function sector(lba: number, generation: number): Uint8Array {
  const out = new Uint8Array(512);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 512; i += 8) {
    view.setUint32(i, lba, true);
    view.setUint32(i + 4, generation, true);
  }
  return out;
}

/** A client that writes a known pattern and remembers the last generation of each sector. */
class PatternClient {
  readonly model = new Uint32Array(SECTORS);
  #x = 12345;
  #generation = 0;

  constructor(public store: ShadowStore) {}

  #random(n: number): number {
    this.#x ^= this.#x << 13;
    this.#x ^= this.#x >>> 17;
    this.#x ^= this.#x << 5;
    return (this.#x >>> 0) % n;
  }

  writeSome(count: number): void {
    for (let i = 0; i < count; i++) {
      const lba = this.#random(SECTORS - 8);
      const n = 1 + this.#random(8);
      const generation = ++this.#generation;
      const data = new Uint8Array(n * 512);
      for (let s = 0; s < n; s++) data.set(sector(lba + s, generation), s * 512);
      assert.equal(this.store.write(data, lba, n), n);
      for (let s = 0; s < n; s++) this.model[lba + s] = generation;
    }
  }

  verify(store: { read(into: Uint8Array, lba: number, count: number): number }, what: string) {
    const all = new Uint8Array(SECTORS * 512);
    assert.equal(store.read(all, 0, SECTORS), SECTORS);
    const view = new DataView(all.buffer);
    for (let lba = 0; lba < SECTORS; lba++) {
      const generation = view.getUint32(lba * 512 + 4, true);
      if (generation !== this.model[lba]) {
        assert.fail(
          `${what}: sector ${lba} holds generation ${generation}, wrote ${this.model[lba]}`,
        );
      }
    }
  }
}

function setup() {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-shadow-" });
  const image = `${dir}/image`;
  const shadow = `${dir}/shadow`;
  const file = new Uint8Array(SECTORS * 512);
  const view = new DataView(file.buffer);
  for (let lba = 0; lba < SECTORS; lba++) view.setUint32(lba * 512, lba, true);
  Deno.writeFileSync(image, file);
  const open = () => new ShadowStore(new FileStore(image), shadow);
  return { dir, image, shadow, open, remove: () => Deno.removeSync(dir, { recursive: true }) };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("shadow: frozen writes go to the shadow, the image stays; unfreeze merges and removes it", async () => {
  const t = setup();
  try {
    const store = t.open();
    const client = new PatternClient(store);
    client.writeSome(200);
    const before = Deno.readFileSync(t.image);
    await store.freeze();
    assert.equal(store.state, "frozen");
    assert.equal(Deno.statSync(t.shadow).mode! & 0o777, 0o600);
    client.writeSome(300);
    client.verify(store, "frozen");
    assert.deepEqual(Deno.readFileSync(t.image), before, "the image is unchanged while frozen");
    assert.ok(store.shadowSectors > 0);
    assert.ok(store.flush());
    const merged = store.unfreeze();
    // Writes keep coming during the merge.
    while ((store.state as string) === "merging") {
      client.writeSome(20);
      await tick();
    }
    await merged;
    assert.throws(() => Deno.statSync(t.shadow), /No such file/);
    assert.throws(() => Deno.statSync(store.mapPath), /No such file/);
    client.verify(store, "after merge");
    store.close();
    client.verify(new FileStore(t.image), "the image alone");
  } finally {
    t.remove();
  }
});

Deno.test("shadow: killed while frozen or mid-merge, a restart loses no answered write", async () => {
  const t = setup();
  try {
    let store = t.open();
    const client = new PatternClient(store);
    client.writeSome(100);
    await store.freeze();
    client.writeSome(2000);
    // Killed while frozen (nothing flushed, no clean close: the fds just go away).
    store.close();
    store = t.open();
    client.store = store;
    assert.equal(store.state, "frozen");
    client.verify(store, "restart while frozen");
    client.writeSome(500);
    const merged = store.unfreeze();
    merged.catch(() => {});
    await tick();
    await tick();
    client.writeSome(50);
    assert.equal(store.state as string, "merging");
    assert.ok(store.merged > 0, "the merge has begun");
    // Killed mid-merge.
    store.close();
    store = t.open();
    client.store = store;
    assert.equal(store.state, "merging", "the restart carries on merging");
    client.verify(store, "restart mid-merge");
    while ((store.state as string) === "merging") {
      client.writeSome(10);
      await tick();
    }
    assert.equal(store.state, "normal");
    client.verify(store, "merged after restart");
    store.close();
    client.verify(new FileStore(t.image), "the image alone");
  } finally {
    t.remove();
  }
});

Deno.test("shadow: trim while frozen reads zeros and leaves the image; flush while frozen syncs", async () => {
  const t = setup();
  try {
    const store = t.open();
    await store.freeze();
    assert.ok(store.trim(10, 4));
    const out = new Uint8Array(4 * 512).fill(1);
    store.read(out, 10, 4);
    assert.ok(out.every((b) => b === 0));
    const image = new Uint8Array(512);
    new FileStore(t.image).read(image, 10, 1);
    assert.equal(new DataView(image.buffer).getUint32(0, true), 10, "the image keeps sector 10");
    assert.ok(store.flush());
    await store.unfreeze();
    store.read(out, 10, 4);
    assert.ok(out.every((b) => b === 0), "the merge carried the trim");
    store.close();
  } finally {
    t.remove();
  }
});

Deno.test("shadow: closing the store during a merge (a reload, a stop) settles the unfreeze; reopened, the merge resumes", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-shadow-" });
  try {
    Deno.writeFileSync(`${dir}/img`, new Uint8Array(64 * 512));
    const store = new ShadowStore(new FileStore(`${dir}/img`), `${dir}/img.shadow`);
    await store.freeze();
    assert.equal(store.write(sector(5, 1), 5, 1), 1);
    const unfrozen = store.unfreeze();
    store.close();
    const outcome = await Promise.race([
      unfrozen.then(() => "resolved", (error: Error) => `rejected: ${error.message}`),
      new Promise((r) => setTimeout(() => r("still pending"), 500)),
    ]);
    assert.match(String(outcome), /^rejected: .*closed/);
    const again = new ShadowStore(new FileStore(`${dir}/img`), `${dir}/img.shadow`);
    try {
      assert.equal(again.state, "merging");
      await again.unfreeze();
      const back = new Uint8Array(512);
      assert.equal(again.read(back, 5, 1), 1);
      assert.deepEqual(back, sector(5, 1));
    } finally {
      again.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("shadow: a symlink planted at the shadow or map path (a directory others can write) is not followed", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aoe-shadow-" });
  try {
    Deno.writeFileSync(`${dir}/img`, new Uint8Array(64 * 512));
    Deno.writeTextFileSync(`${dir}/victim`, "precious\n");
    Deno.chmodSync(`${dir}/victim`, 0o644);
    Deno.writeTextFileSync(`${dir}/victim2`, "precious too\n");
    Deno.chmodSync(`${dir}/victim2`, 0o644);
    Deno.symlinkSync(`${dir}/victim`, `${dir}/img.shadow`);
    const store = new ShadowStore(new FileStore(`${dir}/img`), `${dir}/img.shadow`);
    // (a map there at start is refused: "not the shadow map of this export")
    Deno.symlinkSync(`${dir}/victim2`, `${dir}/img.shadow.map`);
    try {
      await store.freeze();
      assert.equal(store.write(sector(3, 7), 3, 1), 1);
      assert.equal(Deno.readTextFileSync(`${dir}/victim`), "precious\n");
      assert.equal(Deno.readTextFileSync(`${dir}/victim2`), "precious too\n");
      assert.equal(Deno.statSync(`${dir}/victim`).mode! & 0o777, 0o644);
      assert.equal(Deno.statSync(`${dir}/victim2`).mode! & 0o777, 0o644);
      assert.ok(!Deno.lstatSync(`${dir}/img.shadow`).isSymlink);
      assert.ok(!Deno.lstatSync(`${dir}/img.shadow.map`).isSymlink);
      await store.unfreeze();
      const back = new Uint8Array(512);
      assert.equal(store.read(back, 3, 1), 1);
      assert.deepEqual(back, sector(3, 7));
    } finally {
      store.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
