import { link, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fail } from '../errors.js';
import { tempSuffix } from '../io/atomic-file.js';

/** Locks this process holds, by path: a second edit of the same file in this process waits its turn. */
const heldHere = new Map<string, Promise<void>>();

/**
 * An exclusive lock beside the file (`FILE.seekz-lock`, holding the owner's pid), so two
 * patchers never interleave their writes. Within one process, edits of the same file queue.
 *
 * Invariant: at most one live process holds the lock, and a dead one never keeps it. The lock
 * file appears already holding the pid (written to a temp file, then hard-linked into place,
 * which fails if a lock exists), so a kill can never leave an empty lock. A lock whose owner no
 * longer runs is stale; it is claimed by renaming it away, which only one contender can do, and
 * put back if it turns out to be live after all. The one who takes the lock also removes the
 * temp and set-aside files that killed contenders left (`FILE.seekz-lock.PID-…`).
 * Pinned by "the lock" and "the lock under contention" in test/patch-crash.test.ts and
 * "Interrupted edit" in test/trust-serve-io.test.ts.
 */
export async function acquireLock(path: string): Promise<() => Promise<void>> {
  const lockPath = `${path}.seekz-lock`;
  // Queue behind an edit of the same file in this process.
  while (heldHere.has(lockPath)) await heldHere.get(lockPath);
  let releaseHere!: () => void;
  heldHere.set(lockPath, new Promise<void>((resolve) => (releaseHere = resolve)));
  try {
    await takeFileLock(lockPath);
  } catch (error) {
    heldHere.delete(lockPath);
    releaseHere();
    throw error;
  }
  return async () => {
    // Remove the lock only while it is still ours.
    if ((await readOwner(lockPath)) === process.pid) await unlink(lockPath).catch(() => {});
    heldHere.delete(lockPath);
    releaseHere();
  };
}

async function takeFileLock(lockPath: string): Promise<void> {
  const mine = `${lockPath}.${tempSuffix()}`;
  await writeFile(mine, `${process.pid}\n`, { mode: 0o644, flag: 'wx' });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(mine, lockPath);
        await sweepLeftovers(lockPath, mine);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const owner = await readOwner(lockPath);
      if (owner !== undefined && owner !== process.pid && isRunning(owner)) throw fail('PATCH_LOCKED', lockPath, owner);
      if (owner === undefined && !(await olderThan(lockPath, 10_000))) {
        // An unreadable lock from an older version, or one that vanished just now: look again soon.
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      await claimStale(lockPath, owner);
    }
    const owner = await readOwner(lockPath);
    throw fail('PATCH_LOCKED', lockPath, owner ?? 0);
  } finally {
    await unlink(mine).catch(() => {});
  }
}

/** Renames a stale lock away (one contender wins); restores it if it was replaced by a live one meanwhile. */
async function claimStale(lockPath: string, staleOwner: number | undefined): Promise<void> {
  const aside = `${lockPath}.stale-${tempSuffix()}`;
  try {
    await rename(lockPath, aside);
  } catch {
    return; // someone else claimed it first; try again from the top
  }
  const owner = await readOwner(aside);
  if (owner !== staleOwner && owner !== undefined && isRunning(owner)) {
    await link(aside, lockPath).catch(() => {}); // it was a fresh, live lock: put it back
  }
  await unlink(aside).catch(() => {});
}

/**
 * Removes `LOCK.PID-SUFFIX` and `LOCK.stale-PID-SUFFIX` files (tempSuffix; older versions wrote hex)
 * whose PID no longer runs: a contender killed mid-take.
 */
async function sweepLeftovers(lockPath: string, mine: string): Promise<void> {
  const prefix = `${basename(lockPath)}.`;
  const names = await readdir(dirname(lockPath)).catch(() => [] as string[]);
  for (const name of names) {
    const match = name.startsWith(prefix) ? /^(?:stale-)?(\d+)-[0-9a-z]+$/.exec(name.slice(prefix.length)) : null;
    const path = join(dirname(lockPath), name);
    if (match && path !== mine && !isRunning(Number(match[1]))) await unlink(path).catch(() => {});
  }
}

async function readOwner(lockPath: string): Promise<number | undefined> {
  const text = await readFile(lockPath, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

async function olderThan(path: string, milliseconds: number): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  return info === undefined || Date.now() - info.mtimeMs > milliseconds;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
