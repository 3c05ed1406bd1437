import { constants, createGunzip, inflateRawSync } from 'node:zlib';
import { fail } from '../errors.js';
import type { Source } from '../source/source.js';
import { clipRead } from '../source/source.js';
import { readGzipHeader } from './header.js';
import { mapStoredExtents, seekzMapOf } from './layout.js';
import { findSegment, type SeekzMap, type Segment } from './map.js';

/** A gzip file as a Source of its uncompressed bytes. */
export interface GzipSource extends Source {
  /** 'map': random access through the seekz map; 'stream': inflates from the start (no index yet). */
  readonly access: 'map' | 'stream';
  readonly map: SeekzMap | undefined;
}

/**
 * Opens a gzip file for reading. A file seekz wrote carries a map, and any byte is one segment
 * away: stored bytes are read as they are, a compressed segment is inflated on its own (every
 * segment starts with no history). Any other gzip is inflated front to back, which is fast for
 * sequential reads and slow for random ones.
 */
export async function openGzip(source: Source): Promise<GzipSource> {
  const header = await readGzipHeader((offset, length) => source.read(offset, length), source.size);
  const map = seekzMapOf(header, source.size);
  if (map) return mapReader(source, header.length, map);
  return streamReader(source);
}

function mapReader(source: Source, headerLength: number, map: SeekzMap): GzipSource {
  let cached: { segment: Segment; bytes: Uint8Array } | undefined;
  const decode = async (segment: Segment): Promise<Uint8Array> => {
    if (cached?.segment === segment) return cached.bytes;
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
    cached = { segment, bytes };
    return bytes;
  };
  return {
    size: map.totalLength,
    access: 'map',
    map,
    async read(offset, length) {
      const count = clipRead(map.totalLength, offset, length);
      const out = new Uint8Array(count);
      let done = 0;
      while (done < count) {
        const at = offset + done;
        const segment = map.segments[findSegment(map.segments, at)]!;
        const within = at - segment.uStart;
        const take = Math.min(count - done, segment.uLength - within);
        if (segment.kind === 'stored') {
          for (const extent of mapStoredExtents(map, headerLength, at, at + take)!) {
            const bytes = await source.read(extent.fileOffset, extent.length);
            if (bytes.length !== extent.length) throw fail('GZIP_TRUNCATED', 'stored block', extent.fileOffset, source.size);
            out.set(bytes, done + extent.uStart - at);
          }
        } else {
          out.set((await decode(segment)).subarray(within, within + take), done);
        }
        done += take;
      }
      return out;
    },
    close: source.close?.bind(source),
  };
}

/**
 * Inflates from the start and keeps going for reads that continue where the last one ended;
 * a read further back starts over. The size comes from a walk-free source: we inflate once to
 * count when asked. Multi-member files are handled by zlib's gunzip.
 */
async function streamReader(source: Source): Promise<GzipSource> {
  const size = await countUncompressed(source);
  let stream: AsyncIterator<Buffer> | undefined;
  let position = 0;
  let pending: Uint8Array = new Uint8Array(0);
  const restart = () => {
    stream = gunzipIterator(source);
    position = 0;
    pending = new Uint8Array(0);
  };
  return {
    size,
    access: 'stream',
    map: undefined,
    async read(offset, length) {
      const count = clipRead(size, offset, length);
      if (!stream || offset < position) restart();
      const out = new Uint8Array(count);
      let done = 0;
      while (done < count) {
        if (pending.length === 0) {
          const next = await stream!.next();
          if (next.done) throw fail('GZIP_TRUNCATED', 'deflate data', source.size, source.size);
          pending = next.value;
        }
        const skip = Math.min(pending.length, offset + done - position);
        if (skip > 0) {
          pending = pending.subarray(skip);
          position += skip;
          continue;
        }
        const take = Math.min(pending.length, count - done);
        out.set(pending.subarray(0, take), done);
        pending = pending.subarray(take);
        position += take;
        done += take;
      }
      return out;
    },
    close: source.close?.bind(source),
  };
}

function gunzipIterator(source: Source): AsyncIterator<Buffer> {
  const gunzip = createGunzip();
  (async () => {
    const piece = 1 << 20;
    for (let at = 0; at < source.size; at += piece) {
      const bytes = await source.read(at, piece);
      if (!gunzip.write(bytes)) await new Promise((resolve) => gunzip.once('drain', resolve));
    }
    gunzip.end();
  })().catch((error) => gunzip.destroy(error));
  const iterator = gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return {
    async next() {
      try {
        return await iterator.next();
      } catch (error) {
        if ((error as { code?: string }).code?.startsWith('Z_')) throw fail('DEFLATE_BAD_DATA', (error as Error).message, 0);
        throw error;
      }
    },
  };
}

async function countUncompressed(source: Source): Promise<number> {
  // A single-member file's true size is known from a walk only; ISIZE is mod 2^32. Inflating
  // once is the honest answer until an index exists (issue: random access into any gzip).
  const iterator = gunzipIterator(source);
  let total = 0;
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) total += next.value.length;
  return total;
}
