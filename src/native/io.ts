/**
 * Loads the seekz_io addon (native/io/seekz_io.c: lseek and fcntl, which Node lacks) when it was
 * built; undefined otherwise, and then a decompressed stdout is written in full instead of with
 * holes (sparseStdout in src/io/atomic-file.ts), and a pipe keeps its buffer size (streamSink).
 * SEEKZ_NATIVE=0 hides it, as it hides the other addons.
 */
import { loadAddon } from './load-addon.js';

export interface NativeIo {
  /** lseek(2): the new offset, or minus errno. */
  seek(fd: number, offset: number, whence: number): number;
  /** fcntl(F_GETFL) & O_APPEND: 1 or 0, or minus errno. */
  appendMode(fd: number): number;
  /** A pipe's buffer size (size 0: F_GETPIPE_SZ), or asks for `size` bytes (F_SETPIPE_SZ) and returns what it got; minus errno. */
  pipeSize(fd: number, size: number): number;
}

export const SEEK_SET = 0;
export const SEEK_CUR = 1;

let loaded: NativeIo | undefined | null = null;

export function nativeIo(): NativeIo | undefined {
  if (loaded === null) loaded = loadAddon<NativeIo>('seekz_io');
  return loaded;
}
