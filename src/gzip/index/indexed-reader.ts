import { constants, inflateRawSync } from 'node:zlib';
import { fail } from '../../errors.js';
import { createBlockCache } from '../../source/block-cache.js';
import { clipRead, type Source } from '../../source/source.js';
import { primeCompressed } from './prime.js';
import type { GzipIndex } from './types.js';
import { lastAtOrBefore } from '../../search.js';

/** Decoded spans kept: 8 spans of the default 4 MiB spacing. */
const DEFAULT_CACHE_SIZE = 32 * 2 ** 20;

export interface IndexedGzipSource extends Source {
  readonly index: GzipIndex;
  /** Inflations started, for tests: a warm read starts none. */
  readonly decodes: number;
}

/**
 * Random reads from any gzip file through an index: find the last access point at or before the
 * offset, inflate from there with its window, up to the next point, with node:zlib's native
 * inflate. A point inside a byte gets a preface of empty blocks (prime.ts).
 */
export function openIndexedGzip(source: Source, index: GzipIndex, options: { cacheSize?: number } = {}): IndexedGzipSource {
  // gztool does not record the file size (0 = unknown); every other index is checked against it.
  if (index.compressedSize !== 0 && index.compressedSize !== source.size) {
    throw fail('INDEX_MISMATCH', `it was built for a file of ${index.compressedSize} bytes, this one has ${source.size}`);
  }
  const points = index.points;
  const size = index.uncompressedSize;
  const cache = createBlockCache(options.cacheSize ?? DEFAULT_CACHE_SIZE);

  const locate = (offset: number) => lastAtOrBefore(points, (point) => point.uOffset, offset);

  /**
   * What point `number` decodes to, at least its first `need` bytes: a cold random read inflates
   * only about as far as it needs (zran stops there too), a read that needs more of the span later
   * decodes further. Compressed input is taken in proportion to the span's ratio, with slack.
   */
  const span = (number: number, need: number): Promise<Uint8Array> => {
    const point = points[number]!;
    const next = points[number + 1];
    const uLength = (next ? next.uOffset : size) - point.uOffset;
    const wanted = Math.min(uLength, need);
    return cache.get(number, () => inflateSpan(number, wanted, uLength), (data) => data.length >= wanted);
  };

  const inflateSpan = async (number: number, wanted: number, uLength: number): Promise<Uint8Array> => {
    const point = points[number]!;
    const next = points[number + 1];
    // From the byte holding the block's first bit to the byte holding the next point's first bit.
    const first = point.bits > 0 ? point.cOffset - 1 : point.cOffset;
    const last = next ? next.cOffset : source.size;
    // Compressed bytes in proportion to the output wanted, with slack for uneven compression; if
    // that falls short, the whole span.
    const partial = wanted < uLength ? Math.ceil((((last - first) * wanted) / Math.max(1, uLength)) * 1.2) + 32768 : Infinity;
    for (const take of partial < last - first ? [partial, last - first] : [last - first]) {
      let compressed = await source.read(first, take);
      if (point.bits > 0) compressed = primeCompressed(compressed, point.bits);
      let out: Uint8Array;
      try {
        out = inflateRawSync(compressed, {
          finishFlush: constants.Z_SYNC_FLUSH,
          dictionary: point.window.length > 0 ? point.window : undefined,
          maxOutputLength: Math.max(1, uLength) + 65536,
        });
      } catch (error) {
        // A prefix may end inside a block; only the whole span's failure means a bad index.
        if (take < last - first) continue;
        throw fail('INDEX_BAD_DATA', `inflating from access point ${number} (uncompressed ${point.uOffset}, file offset ${point.cOffset}) failed: ${(error as Error).message}; the index does not match this file`);
      }
      if (out.length >= wanted) return out.subarray(0, Math.min(out.length, uLength));
      if (take === last - first) {
        throw fail('INDEX_BAD_DATA', `access point ${number} gives ${out.length} bytes before the next point, the index expects ${uLength}; the index does not match this file`);
      }
    }
    throw fail('INDEX_BAD_DATA', `access point ${number} could not be inflated`);
  };

  return {
    size,
    index,
    get decodes() {
      return cache.loads;
    },
    async read(offset, length) {
      const count = clipRead(size, offset, length);
      const out = new Uint8Array(count);
      let done = 0;
      let number = count > 0 ? locate(offset) : 0;
      while (done < count) {
        const point = points[number]!;
        const within = offset + done - point.uOffset;
        const bytes = await span(number, within + (count - done));
        const take = Math.min(count - done, bytes.length - within);
        if (take > 0) {
          out.set(bytes.subarray(within, within + take), done);
          done += take;
        }
        number++;
        if (number >= points.length && done < count) throw fail('INDEX_BAD_DATA', `the index ends before uncompressed offset ${offset + done}`);
      }
      return out;
    },
    close: source.close?.bind(source),
  };
}
