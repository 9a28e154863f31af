/** The attribute tree in memory when the run directory is on disk (driver/memory_tree.ts). */
import assert from "node:assert/strict";
import {
  filesystemType,
  MEMORY_TREE_PARENT,
  MEMORY_TREE_PREFIX,
  prepareTree,
  removeTree,
} from "./memory_tree.ts";
import { SysfsTree } from "./sysfs.ts";
import { resolveParams } from "./params.ts";

const onDisk = filesystemType("/var/tmp") !== "tmpfs" &&
  filesystemType(MEMORY_TREE_PARENT) === "tmpfs";

Deno.test({
  name:
    "memory tree: a run directory on disk gets its tree on /dev/shm behind a symlink, mode 0755, removed with the daemon",
  ignore: !onDisk,
  fn() {
    const runDir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "aoe-mt-" });
    try {
      const tree = new SysfsTree(`${runDir}/sys`);
      tree.init(resolveParams([]));
      const link = Deno.lstatSync(`${runDir}/sys`);
      assert.ok(link.isSymlink, "sys is a symlink");
      const memory = Deno.readLinkSync(`${runDir}/sys`);
      assert.ok(memory.startsWith(`${MEMORY_TREE_PARENT}/${MEMORY_TREE_PREFIX}`), memory);
      assert.equal(filesystemType(memory), "tmpfs");
      assert.equal(
        Deno.statSync(memory).mode! & 0o777,
        0o755,
        "the tree's directory mode, not mkdtemp's 0700",
      );
      assert.equal(Deno.readTextFileSync(`${runDir}/sys/module/aoe/version`), "85\n");
      assert.equal(Deno.readTextFileSync(`${memory}/module/aoe/version`), "85\n");
      tree.remove();
      assert.throws(() => Deno.lstatSync(`${runDir}/sys`), Deno.errors.NotFound);
      assert.throws(
        () => Deno.lstatSync(memory),
        Deno.errors.NotFound,
        "the memory copy is gone too",
      );
    } finally {
      Deno.removeSync(runDir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "memory tree: a stale tree is replaced; a symlink to what is not ours is removed, its target left alone",
  ignore: !onDisk,
  fn() {
    const runDir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "aoe-mt-" });
    const foreign = Deno.makeTempDirSync({ dir: MEMORY_TREE_PARENT, prefix: "not-aoe-" });
    try {
      // A stale directory tree from a daemon that wrote in place.
      Deno.mkdirSync(`${runDir}/sys/block/etherd!e1.1`, { recursive: true });
      const first = prepareTree(`${runDir}/sys`)!;
      assert.ok(first && Deno.lstatSync(`${runDir}/sys`).isSymlink);
      // A daemon that died: its memory copy is removed with the symlink by the next start.
      const second = prepareTree(`${runDir}/sys`)!;
      assert.notEqual(second, first);
      assert.throws(() => Deno.lstatSync(first), Deno.errors.NotFound);
      // A symlink to somebody else's directory: only the link goes.
      removeTree(`${runDir}/sys`);
      Deno.writeTextFileSync(`${foreign}/keep`, "x");
      Deno.symlinkSync(foreign, `${runDir}/sys`);
      removeTree(`${runDir}/sys`);
      assert.equal(Deno.readTextFileSync(`${foreign}/keep`), "x");
      assert.throws(() => Deno.lstatSync(`${runDir}/sys`), Deno.errors.NotFound);
      assert.equal(
        prepareTree(`${runDir}/sys`, { inPlace: true }),
        undefined,
        "in place when asked",
      );
      assert.throws(() => Deno.lstatSync(`${runDir}/sys`), Deno.errors.NotFound);
    } finally {
      Deno.removeSync(runDir, { recursive: true });
      Deno.removeSync(foreign, { recursive: true });
    }
  },
});

Deno.test("memory tree: a run directory already in memory keeps its tree in place", () => {
  const runDir = Deno.makeTempDirSync({ dir: MEMORY_TREE_PARENT, prefix: "aoe-mt-" });
  try {
    assert.equal(prepareTree(`${runDir}/sys`), undefined);
    assert.throws(() => Deno.lstatSync(`${runDir}/sys`), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(runDir, { recursive: true });
  }
});

Deno.test({
  name:
    "memory tree: a memory parent that is missing (its ancestor on tmpfs) or that others may write to without the sticky bit is not used",
  ignore: !onDisk,
  fn() {
    const runDir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "aoe-mt-" });
    const shm = Deno.makeTempDirSync({ dir: MEMORY_TREE_PARENT, prefix: "rv-mt-" });
    try {
      // No such directory, but /dev/shm above it is tmpfs: mkdtemp there would fail the start.
      assert.equal(prepareTree(`${runDir}/sys`, { memoryParent: `${shm}/missing` }), undefined);
      assert.throws(() => Deno.lstatSync(`${runDir}/sys`), Deno.errors.NotFound);
      // Writable by all without the sticky bit: anybody could rename our directory away
      // and put theirs in its place, and the daemon would write through it.
      Deno.chmodSync(shm, 0o777);
      assert.equal(prepareTree(`${runDir}/sys`, { memoryParent: shm }), undefined);
      assert.throws(() => Deno.lstatSync(`${runDir}/sys`), Deno.errors.NotFound);
      assert.deepEqual([...Deno.readDirSync(shm)], [], "nothing made there");
      // Sticky (as /dev/shm is): used.
      Deno.chmodSync(shm, 0o1777);
      const memory = prepareTree(`${runDir}/sys`, { memoryParent: shm })!;
      assert.ok(memory?.startsWith(`${shm}/${MEMORY_TREE_PREFIX}`), memory);
      removeTree(`${runDir}/sys`, { memoryParent: shm });
      assert.throws(() => Deno.lstatSync(memory), Deno.errors.NotFound, "removed as ours");
    } finally {
      Deno.removeSync(runDir, { recursive: true });
      Deno.removeSync(shm, { recursive: true });
    }
  },
});
