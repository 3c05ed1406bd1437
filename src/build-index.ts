/**
 * `buildIndex`: what `seekz index` does, as a call. One checked pass over any gzip file, written
 * (whole or not at all) where `open` looks for an index, so that open never builds one again.
 */
import { buildGzipIndex } from './gzip/index/build.js';
import { serializeIndex, type IndexFormat } from './gzip/index/formats.js';
import { packWindow } from './gzip/index/seekz-format.js';
import type { GzipEnd } from './gzip/index/types.js';
import { abortableSource, abortReason, throwIfAborted } from './io/abort.js';
import { createAtomicFile } from './io/atomic-file.js';
import { recoverBeforeReading, type OpenOptions } from './open.js';
import { fileSource } from './source/file.js';

export interface BuildIndexOptions {
  /** Uncompressed bytes between access points; default 4 MiB. */
  spacing?: number;
  /** seekz (compact, default), gzidx (indexed_gzip, rapidgzip) or gztool. */
  format?: IndexFormat;
  /** The index file; by default where `open` looks for it: FILE.gz.idx, or FILE.gzi for gztool. */
  output?: string;
  /** Overwrite an index that exists. */
  force?: boolean;
  /** Compressed bytes done so far. */
  onProgress?: (compressedDone: number) => void;
  /** Told when an interrupted edit of the file was rolled back or cleaned up first. */
  onRecovered?: OpenOptions['onRecovered'];
  /** Aborting stops the pass and writes no index; the call rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface BuiltIndex {
  /** Where the index was written. */
  output: string;
  format: IndexFormat;
  points: number;
  compressedSize: number;
  uncompressedSize: number;
  /** Bytes of the index file. */
  bytes: number;
  /** Where the gzip data ends and what follows it ('garbage' is gzip -d's "trailing garbage ignored"). */
  end: GzipEnd | undefined;
}

/** Where `seekz index` and buildIndex write an index by default: where `open` looks for one first. */
export function defaultIndexPath(path: string, format: IndexFormat): string {
  return format === 'gztool' && path.endsWith('.gz') ? `${path.slice(0, -3)}.gzi` : `${path}.idx`;
}

/**
 * Builds an index of access points for any gzip file in one checked pass (every member against
 * its trailer, a CRC-32 per span), and writes it beside the file, where `open` finds it: random
 * reads then start near their offset instead of at the beginning.
 */
export async function buildIndex(path: string, options: BuildIndexOptions = {}): Promise<BuiltIndex> {
  const { signal } = options;
  throwIfAborted(signal);
  const format = options.format ?? 'seekz';
  const output = options.output ?? defaultIndexPath(path, format);
  const recovered = await recoverBeforeReading(path);
  if (recovered !== 'none') options.onRecovered?.(recovered);
  const file = await fileSource(path);
  try {
    // Windows are packed for a seekz index while zlib works (packWindow remembers them).
    const onWindow = format === 'seekz' ? packWindow : undefined;
    const index = await buildGzipIndex(abortableSource(file, signal), { spacing: options.spacing, onProgress: options.onProgress, onWindow });
    const bytes = serializeIndex(index, format);
    const out = await createAtomicFile(output, { force: options.force });
    try {
      throwIfAborted(signal);
      await out.sink.write(bytes);
      await out.commit();
    } catch (error) {
      await out.abort();
      throw error;
    }
    return { output, format, points: index.points.length, compressedSize: file.size, uncompressedSize: index.uncompressedSize, bytes: bytes.length, end: index.end };
  } catch (error) {
    throw abortReason(signal, error);
  } finally {
    await file.close();
  }
}
