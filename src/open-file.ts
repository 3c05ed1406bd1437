import { readFile } from 'node:fs/promises';
import { fail } from './errors.js';
import { parseIndex } from './gzip/index/formats.js';
import type { GzipIndex } from './gzip/index/types.js';
import { openCompressed, sidecarIndexPaths, type CompressedSource, type OpenOptions } from './open.js';
import { fileSource } from './source/file.js';

/**
 * Opens a local .gz or .xz file for random reads. For a gzip file without a seekz map, a sidecar
 * index is used when one sits beside it (`FILE.gz.idx`, `FILE.gz.gzidx`, gztool's `FILE.gzi`)
 * and matches the file; an index for another file is an error, never wrong data.
 */
export async function openCompressedFile(
  path: string,
  options: OpenOptions & { indexPath?: string; onSidecar?: (path: string) => void } = {},
): Promise<CompressedSource> {
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
