import { open, readFile, unlink } from 'node:fs/promises';
import { fail } from '../errors.js';

/**
 * An exclusive lock beside the file (`FILE.seekz-lock`, created with O_EXCL and holding the
 * owner's pid), so two patchers never interleave their writes. A lock whose owner no longer
 * runs is stale and taken over.
 */
export async function acquireLock(path: string): Promise<() => Promise<void>> {
  const lockPath = `${path}.seekz-lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => {
        await unlink(lockPath).catch(() => {});
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isRunning(owner)) {
        throw fail('PATCH_LOCKED', lockPath, owner);
      }
      // Stale (its owner died, perhaps killed mid-edit) or unreadable while being written: retake it.
      if (!Number.isInteger(owner)) await new Promise((resolve) => setTimeout(resolve, 50));
      else await unlink(lockPath).catch(() => {});
    }
  }
  throw fail('PATCH_LOCKED', lockPath, 0);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
