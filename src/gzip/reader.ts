import { constants, inflateRawSync } from 'node:zlib';
import { fail } from '../errors.js';
import type { Source } from '../source/source.js';
import { clipRead } from '../source/source.js';
import { readGzipHeader } from './header.js';
import { createBlockCache } from '../source/block-cache.js';
import { mapStoredExtents, seekzMapOf } from './layout.js';
import { findSegment, type SeekzMap, type Segment } from './map.js';
import { buildGzipIndex } from './index/build.js';
import { openIndexedGzip } from './index/indexed-reader.js';
import type { GzipEnd, GzipIndex } from './index/types.js';

/** A gzip file as a Source of its uncompressed bytes. */
export interface GzipSource extends Source {
  /** 'map': the seekz map of a file seekz wrote; 'index': access points from an index. */
  readonly access: 'map' | 'index';
  readonly map: SeekzMap | undefined;
  readonly index: GzipIndex | undefined;
  /**
   * Index reads only: where the gzip data ends and what follows it, as gzip -d sees it ('garbage'
   * is gzip's "trailing garbage ignored"); known from a seekz-built index, else once the last span
   * was read.
   */
  readonly end?: GzipEnd;
  /** Index reads only: 'crc' when every span is checked against a CRC-32, 'structure' when only its length and bounds are. */
  readonly verification?: 'crc' | 'structure';
}

export interface OpenGzipOptions {
  /** An index for this file (a sidecar the caller loaded); checked against the file. */
  index?: GzipIndex;
  /** Told before an index is built in memory (a full pass over the file), so a CLI can say so. */
  onBuildIndex?: () => void;
  spacing?: number;
  cacheSize?: number;
}

/**
 * Opens a gzip file for random reads, the cheapest way it can:
 * 1. a file seekz wrote carries a map: any byte is one segment away (stored bytes are read as
 *    they are; a compressed segment inflates on its own, with no window);
 * 2. else an index the caller found (a sidecar: seekz, GZIDX or gztool);
 * 3. else an index built in memory now, in one pass (and `onBuildIndex` says so).
 */
export async function openGzip(source: Source, options: OpenGzipOptions = {}): Promise<GzipSource> {
  const header = await readGzipHeader((offset, length) => source.read(offset, length), source.size);
  const map = seekzMapOf(header, source.size);
  if (map) return mapReader(source, header.length, map, options.cacheSize ?? DEFAULT_MAP_CACHE);
  let index = options.index;
  if (!index) {
    options.onBuildIndex?.();
    index = await buildGzipIndex(source, { spacing: options.spacing });
  }
  return Object.assign(openIndexedGzip(source, index, { cacheSize: options.cacheSize }), { access: 'index' as const, map: undefined });
}

/** Decoded chunks kept by a map reader: 32 chunks of the default 1 MiB. */
const DEFAULT_MAP_CACHE = 32 * 2 ** 20;

function mapReader(source: Source, headerLength: number, map: SeekzMap, cacheSize: number): GzipSource {
  const cache = createBlockCache(cacheSize);
  const decode = (number: number) => cache.get(number, () => inflateSegment(map.segments[number]!));
  const inflateSegment = async (segment: Segment): Promise<Uint8Array> => {
    const compressed = await source.read(headerLength + segment.cStart, segment.cLength);
    if (compressed.length !== segment.cLength) throw fail('GZIP_TRUNCATED', 'compressed segment', headerLength + segment.cStart, source.size);
    let bytes: Uint8Array;
    try {
      // Segments end with a sync flush, not a final block: finish on Z_SYNC_FLUSH.
      bytes = inflateRawSync(compressed, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: segment.uLength + 1 });
    } catch (error) {
      throw fail('DEFLATE_BAD_DATA', (error as Error).message, (headerLength + segment.cStart) * 8);
    }
    if (bytes.length !== segment.uLength) {
      throw fail('GZIP_BAD_MAP', `segment at uncompressed ${segment.uStart} inflates to ${bytes.length} bytes, the map says ${segment.uLength}`);
    }
    return bytes;
  };
  return {
    size: map.totalLength,
    access: 'map',
    map,
    index: undefined,
    async read(offset, length) {
      const count = clipRead(map.totalLength, offset, length);
      const out = new Uint8Array(count);
      let done = 0;
      while (done < count) {
        const at = offset + done;
        const number = findSegment(map.segments, at);
        const segment = map.segments[number]!;
        const within = at - segment.uStart;
        const take = Math.min(count - done, segment.uLength - within);
        if (segment.kind === 'stored') {
          for (const extent of mapStoredExtents(map, headerLength, at, at + take)!) {
            const bytes = await source.read(extent.fileOffset, extent.length);
            if (bytes.length !== extent.length) throw fail('GZIP_TRUNCATED', 'stored block', extent.fileOffset, source.size);
            out.set(bytes, done + extent.uStart - at);
          }
        } else {
          out.set((await decode(number)).subarray(within, within + take), done);
        }
        done += take;
      }
      return out;
    },
    close: source.close?.bind(source),
  };
}
