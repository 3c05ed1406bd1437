import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { journalPath, recoverIfInterrupted, type PatchResult } from './edit/patch.js';
import { fail } from './errors.js';
import { parseIndex } from './gzip/index/formats.js';
import type { GzipIndex } from './gzip/index/types.js';
import { openCompressed, sidecarIndexPaths, type CompressedSource, type OpenOptions } from './open.js';
import { fileSource } from './source/file.js';

/**
 * Makes a file safe to read after an edit that was interrupted: a complete journal is rolled back
 * (the file is all-old again), a torn temp journal and a dead owner's lock are removed, all under
 * the lock. A live lock refuses (PATCH_LOCKED): an edit is under way. Where the file or its folder
 * cannot be written, a file with a journal is refused (RECOVERY_NEEDS_WRITE), never read half
 * written; with only a temp journal or a lock the file was never touched, and is read.
 * Every command that reads a local file calls this first; pinned by "Interrupted edit" in
 * test/trust-serve-io.test.ts.
 */
export async function recoverBeforeReading(path: string): Promise<PatchResult['recovered']> {
  const journal = journalPath(path);
  if (![journal, `${journal}.tmp`, `${path}.seekz-lock`].some((leftover) => existsSync(leftover))) return 'none';
  try {
    return await recoverIfInterrupted(path);
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
    if (existsSync(journal)) throw fail('RECOVERY_NEEDS_WRITE', path, journal, message);
    return 'none';
  }
}

/**
 * Opens a local .gz or .xz file for random reads, after `recoverBeforeReading`. For a gzip file without a seekz map, a sidecar
 * index is used when one sits beside it (`FILE.gz.idx`, `FILE.gz.gzidx`, gztool's `FILE.gzi`)
 * and matches the file; an index for another file is an error, never wrong data.
 */
export async function openCompressedFile(
  path: string,
  options: OpenOptions & { indexPath?: string; onSidecar?: (path: string) => void; onRecovered?: (outcome: PatchResult['recovered']) => void } = {},
): Promise<CompressedSource> {
  const recovered = await recoverBeforeReading(path);
  if (recovered !== 'none') options.onRecovered?.(recovered);
  const source = await fileSource(path);
  try {
    let index: GzipIndex | undefined = options.index;
    const candidates = options.indexPath ? [options.indexPath] : sidecarIndexPaths(path);
    for (const candidate of index ? [] : candidates) {
      const bytes = await readFile(candidate).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT' && !options.indexPath) return undefined;
        throw error;
      });
      if (!bytes) continue;
      index = parseIndex(bytes);
      if (index.compressedSize !== 0 && index.compressedSize !== source.size) {
        throw fail('INDEX_MISMATCH', `${candidate} was built for a file of ${index.compressedSize} bytes, ${path} has ${source.size}`);
      }
      options.onSidecar?.(candidate);
      break;
    }
    return await openCompressed(source, { ...options, index });
  } catch (error) {
    await source.close();
    throw error;
  }
}
