/**
 * Where the attribute tree's bytes live. The kernel's sysfs is memory; a
 * tree of thousands of small files on a disk filesystem costs a journal
 * transaction per directory and per rename (bench/tree_fs_bench.ts: 46x
 * tmpfs on ext4), which at 4,000 devices is whole seconds of discovery. So
 * when the run directory is not on a memory filesystem (a container whose
 * `/run` is the root disk; Debian's own `/run` is tmpfs), the tree is made in
 * a fresh private directory on `/dev/shm` and `{runDir}/sys` is a symlink to
 * it: readers (`aoe status`, `status.sh`, aoe-stat) go through the same path
 * and see the same files, in every mount namespace (a tmpfs mounted by the
 * daemon inside `ip netns exec` would be seen by nobody else).
 *
 * The directory is made by mkdtemp (a random name, created exclusively, mode
 * 0700 until the tree sets its own mode), so no local user can plant it;
 * a stale one from a daemon that died is removed only when it is ours (a
 * directory named {@link MEMORY_TREE_PREFIX} on the memory filesystem, owned
 * by this user). A memory parent that is missing, or that others may write to
 * without the sticky bit, is not used (the tree is then written in place).
 *
 * @module
 */

/** Memory filesystems the tree may live on as it is. */
const MEMORY_FS_TYPES = new Set(["tmpfs", "ramfs"]);
/** Where a memory copy of the tree is made when the run directory is on disk. */
export const MEMORY_TREE_PARENT = "/dev/shm";
/** Name prefix of the memory copy's directory. */
export const MEMORY_TREE_PREFIX = "aoe-sys-";

/** The mount points and filesystem types of this process's mount namespace. */
function mounts(): { point: string; type: string }[] {
  const out: { point: string; type: string }[] = [];
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/mountinfo");
  } catch {
    return out;
  }
  for (const line of text.split("\n")) {
    // proc(5): "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw"; the
    // optional fields end at " - ", and spaces in paths are written \040.
    const [left, right] = line.split(" - ");
    if (!right) continue;
    const point = left.split(" ")[4]?.replace(
      /\\([0-7]{3})/g,
      (_, o) => String.fromCharCode(parseInt(o, 8)),
    );
    if (point) out.push({ point, type: right.split(" ")[0] });
  }
  return out;
}

/** The filesystem type `path` (or its nearest existing ancestor) is on; undefined if unknown. */
export function filesystemType(path: string): string | undefined {
  let existing = path;
  for (;;) {
    try {
      existing = Deno.realPathSync(existing);
      break;
    } catch {
      const up = existing.slice(0, existing.lastIndexOf("/")) || "/";
      if (up === existing) return undefined;
      existing = up;
    }
  }
  let best: { point: string; type: string } | undefined;
  for (const mount of mounts()) {
    const inside = mount.point === "/" || existing === mount.point ||
      existing.startsWith(`${mount.point}/`);
    // The last of equal mount points is the one on top.
    if (inside && (!best || mount.point.length >= best.point.length)) best = mount;
  }
  return best?.type;
}

/**
 * Whether `dir` may hold our private directory: an existing directory (not an
 * ancestor of a missing one) owned by root or us, which others may not write
 * to, or only with the sticky bit, as /dev/shm (mode 1777). In a directory
 * others may write to without it, anybody could rename our directory away and
 * put one of theirs in its place, and the daemon would write through it.
 */
function safeParent(dir: string): boolean {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dir);
  } catch {
    return false;
  }
  if (!info.isDirectory || (info.uid !== 0 && info.uid !== Deno.uid())) return false;
  const mode = info.mode ?? 0;
  return (mode & 0o022) === 0 || (mode & 0o1000) !== 0;
}

/** Whether `path` is a memory copy of ours: a directory under the memory parent, named ours, owned by us. */
function isOurs(path: string, parent: string): boolean {
  if (!path.startsWith(`${parent}/${MEMORY_TREE_PREFIX}`)) return false;
  if (path.slice(parent.length + 1).includes("/")) return false;
  try {
    const info = Deno.lstatSync(path);
    return info.isDirectory && info.uid === Deno.uid();
  } catch {
    return false;
  }
}

/**
 * Whether readers may believe the tree at `sysDir`: it is no symlink, or a
 * symlink to a directory (itself no symlink) owned by the symlink's owner. A
 * memory copy's name is in a directory everybody may write to; where the
 * directory is gone (a /dev/shm emptied under a run directory on disk, or
 * another /dev/shm in the reader's mount namespace) anybody could make one of
 * that name, and the readers would show their devices.
 */
export function trustedTree(sysDir: string): boolean {
  let link: Deno.FileInfo;
  try {
    link = Deno.lstatSync(sysDir);
  } catch {
    return true; // nothing there, nothing read
  }
  if (!link.isSymlink) return true;
  try {
    let target = Deno.readLinkSync(sysDir);
    if (!target.startsWith("/")) {
      target = `${sysDir.slice(0, sysDir.lastIndexOf("/")) || "."}/${target}`;
    }
    const info = Deno.lstatSync(target);
    return info.isDirectory && info.uid === link.uid;
  } catch {
    return false;
  }
}

/**
 * Removes the tree at `sysDir`: the symlink and the memory copy it points
 * to when that is ours, or the directory itself. `memoryParent`: where
 * memory copies are made (default {@link MEMORY_TREE_PARENT}).
 */
export function removeTree(sysDir: string, options: { memoryParent?: string } = {}): void {
  const parent = options.memoryParent ?? MEMORY_TREE_PARENT;
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(sysDir);
  } catch {
    return;
  }
  if (info.isSymlink) {
    let target: string | undefined;
    try {
      target = Deno.readLinkSync(sysDir);
    } catch { /* gone meanwhile */ }
    if (target && isOurs(target, parent)) Deno.removeSync(target, { recursive: true });
    Deno.removeSync(sysDir);
    return;
  }
  Deno.removeSync(sysDir, { recursive: true });
}

/**
 * Makes `sysDir` ready for a new tree: whatever an earlier daemon left is
 * removed, and when its parent is not on a memory filesystem and
 * {@link MEMORY_TREE_PARENT} is, `sysDir` becomes a symlink to a new private
 * directory there. Returns that directory, or undefined when the tree is
 * written in place (already in memory, no memory filesystem, or `inPlace`).
 * `memoryParent`: where the memory copy is made (default {@link MEMORY_TREE_PARENT}).
 */
export function prepareTree(
  sysDir: string,
  options: { inPlace?: boolean; memoryParent?: string } = {},
): string | undefined {
  const memoryParent = options.memoryParent ?? MEMORY_TREE_PARENT;
  removeTree(sysDir, { memoryParent });
  const parent = sysDir.slice(0, sysDir.lastIndexOf("/")) || "/";
  const here = filesystemType(parent);
  if (options.inPlace || (here && MEMORY_FS_TYPES.has(here))) return undefined;
  if (!safeParent(memoryParent)) return undefined;
  if (!MEMORY_FS_TYPES.has(filesystemType(memoryParent) ?? "")) return undefined;
  const memory = Deno.makeTempDirSync({ dir: memoryParent, prefix: MEMORY_TREE_PREFIX });
  try {
    Deno.mkdirSync(parent, { recursive: true });
    Deno.symlinkSync(memory, sysDir);
  } catch (error) {
    Deno.removeSync(memory, { recursive: true });
    throw error;
  }
  return memory;
}
