/**
 * Loads the seekz_io addon (native/io/seekz_io.c: lseek and fcntl, which Node lacks) when it was
 * built; undefined otherwise, and then a decompressed stdout is written in full instead of with
 * holes (src/io/sparse-stdout.ts). SEEKZ_NATIVE=0 hides it, as it hides the other addons.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

export interface NativeIo {
  /** lseek(2): the new offset, or minus errno. */
  seek(fd: number, offset: number, whence: number): number;
  /** fcntl(F_GETFL) & O_APPEND: 1 or 0, or minus errno. */
  appendMode(fd: number): number;
}

export const SEEK_SET = 0;
export const SEEK_CUR = 1;

let loaded: NativeIo | undefined | null = null;

export function nativeIo(): NativeIo | undefined {
  if (loaded !== null) return loaded;
  loaded = undefined;
  if (process.env.SEEKZ_NATIVE === '0') return loaded;
  const require = createRequire(import.meta.url);
  // From src/native (tests) or dist/src/native (the build): the repository root's build/.
  for (const up of ['../../build/Release/seekz_io.node', '../../../build/Release/seekz_io.node']) {
    const path = new URL(up, import.meta.url);
    if (!existsSync(path)) continue;
    try {
      loaded = require(path.pathname) as NativeIo;
      break;
    } catch {
      // built for another Node version: fall back as if absent
    }
  }
  return loaded;
}
