import { constants, inflateRawSync } from 'node:zlib';
import { crc32, crc32Zeros } from '../crc/crc32.js';
import { fail, hexBytes } from '../errors.js';
import type { Source } from '../source/source.js';
import { clipRead } from '../source/source.js';
import { readGzipHeader } from './header.js';
import { createBlockCache } from '../source/block-cache.js';
import { mapStoredExtents, readSeekzMap } from './layout.js';
import { isAllZero } from '../zeros.js';
import { findSegment, STORED_BLOCK_HEADER, STORED_BLOCK_MAX, type SeekzMap, type Segment } from './map.js';
import { buildGzipIndex, type BuildOptions } from './index/build.js';
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
  /** Map access: segments inflated (or read whole and checked) so far, for tests and the bench; a read of a known zero chunk adds none. */
  readonly segmentLoads?: number;
  /** Map access: reads the map again after an in-place edit changed its CRC-32s, and drops decoded segments. */
  reload?(): Promise<void>;
}

export interface OpenGzipOptions {
  /** An index for this file (a sidecar the caller loaded); checked against the file. */
  index?: GzipIndex;
  /** Told before an index is built in memory (a full pass over the file), so a CLI can say so. */
  onBuildIndex?: () => void;
  /** While an index is built in memory: told of each member once its trailer checks out. */
  onMember?: BuildOptions['onMember'];
  /** While an index is built in memory: compressed bytes done so far. */
  onProgress?: BuildOptions['onProgress'];
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
  const mapped = await readSeekzMap(source, header);
  if (mapped) return mapReader(source, header.length, mapped.map, mapped.trailer.crc, options.cacheSize ?? DEFAULT_MAP_CACHE);
  // An index that does not know the uncompressed size (a gztool index still being written, or a
  // damaged one) cannot bound the last span: it is passed over, as if there were none.
  let index = options.index?.uncompressedSize === 0 ? undefined : options.index;
  if (!index) {
    options.onBuildIndex?.();
    index = await buildGzipIndex(source, { spacing: options.spacing, onMember: options.onMember, onProgress: options.onProgress });
  }
  return Object.assign(openIndexedGzip(source, index, { cacheSize: options.cacheSize }), { access: 'index' as const, map: undefined });
}

/** Decoded chunks kept by a map reader: 32 chunks of the default 1 MiB. */
const DEFAULT_MAP_CACHE = 32 * 2 ** 20;

/**
 * Random reads through the seekz map. With a version 2 map every segment is checked against its
 * CRC-32 before any of its bytes leave: a compressed segment when it is inflated, a stored one
 * (at most STORED_UNIT × groupChunks bytes, about 1 MiB) read whole with its block headers. Both
 * kinds are cached once checked. A version 1 map has no CRCs: its stored bytes are read as they
 * are, and only the inflated length of a compressed segment is checked; reads that go through the
 * whole member in order (cat, extract) are summed and checked against the trailer's CRC-32, as
 * zcat checks it, so the read that reaches the end fails if any byte before it was wrong.
 */
function mapReader(source: Source, headerLength: number, initialMap: SeekzMap, trailerCrc: number, cacheSize: number): GzipSource {
  let map = initialMap;
  /** Version 1 maps: the CRC-32 of [0, inOrder.end), while reads come in order from the start. */
  let inOrder: { end: number; crc: number } | undefined = { end: 0, crc: 0 };
  const followInOrder = (offset: number, bytes: Uint8Array) => {
    if (map.verified || !inOrder || bytes.length === 0) return;
    if (offset !== inOrder.end) {
      if (offset > inOrder.end) inOrder = undefined; // a gap: this pass can no longer be checked
      return;
    }
    inOrder = { end: offset + bytes.length, crc: crc32(bytes, inOrder.crc) };
    if (inOrder.end === map.totalLength && inOrder.crc !== trailerCrc) {
      throw fail('GZIP_MEMBER_CRC', `the member at offset 0 (seekz map version ${map.version}, no chunk CRC-32s)`, trailerCrc, inOrder.crc);
    }
  };
  let cache = createBlockCache(cacheSize);
  let loads = 0; // of caches dropped by reload()
  const decode = (number: number) => cache.get(number, () => loadSegment(map.segments[number]!));
  const readCompressed = async (segment: Segment): Promise<Uint8Array> => {
    const fileOffset = headerLength + segment.cStart;
    const compressed = await source.read(fileOffset, segment.cLength);
    if (compressed.length !== segment.cLength) throw fail('GZIP_TRUNCATED', `${segment.kind} segment`, fileOffset, source.size);
    return compressed;
  };
  const loadSegment = async (segment: Segment): Promise<Uint8Array> => {
    const fileOffset = headerLength + segment.cStart;
    const compressed = await readCompressed(segment);
    const bytes = segment.kind === 'stored' ? storedData(compressed, segment.uLength, fileOffset) : inflateSegment(compressed, segment, fileOffset);
    if (segment.crc !== undefined) {
      const found = crc32(bytes);
      if (found !== segment.crc) throw fail('GZIP_SEGMENT_CRC', segment.uStart, segment.uStart + segment.uLength, fileOffset, segment.crc, found);
    }
    return bytes;
  };
  const inflateSegment = (compressed: Uint8Array, segment: Segment, fileOffset: number): Uint8Array => {
    let bytes: Uint8Array;
    try {
      // Segments end with a sync flush, not a final block: finish on Z_SYNC_FLUSH.
      bytes = inflateRawSync(compressed, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: segment.uLength + 1 });
    } catch (error) {
      throw fail('DEFLATE_BAD_DATA', (error as Error).message, fileOffset * 8);
    }
    if (bytes.length !== segment.uLength) {
      throw fail('GZIP_BAD_MAP', `segment at uncompressed ${segment.uStart} inflates to ${bytes.length} bytes, the map says ${segment.uLength}`);
    }
    return bytes;
  };
  let zeros = zeroSegments(() => map, readCompressed, decode);
  return {
    size: map.totalLength,
    access: 'map',
    get map() {
      return map;
    },
    index: undefined,
    get segmentLoads() {
      return loads + cache.loads;
    },
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
        if (await zeros.isZero(number)) {
          // `out` starts zeroed: a zero chunk costs neither a read of its data nor an inflate.
        } else if (segment.kind === 'stored' && !map.verified) {
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
      followInOrder(offset, out);
      return out;
    },
    async zeroRanges(offset, length) {
      const end = offset + clipRead(map.totalLength, offset, length);
      const found: { offset: number; length: number }[] = [];
      for (let number = end > offset ? findSegment(map.segments, offset) : map.segments.length; number < map.segments.length; number++) {
        const segment = map.segments[number]!;
        if (segment.uStart >= end) break;
        if (!(await zeros.isZero(number))) continue;
        const from = Math.max(offset, segment.uStart);
        const to = Math.min(end, segment.uStart + segment.uLength);
        const last = found[found.length - 1];
        if (last && last.offset + last.length === from) last.length += to - from;
        else found.push({ offset: from, length: to - from });
      }
      return found;
    },
    async reload() {
      const header = await readGzipHeader((offset, length) => source.read(offset, length), source.size);
      const mapped = await readSeekzMap(source, header);
      if (!mapped || mapped.map.totalLength !== map.totalLength || header.length !== headerLength) {
        throw fail('GZIP_BAD_MAP', 'the file changed shape while it was open (another tool rewrote it)');
      }
      map = mapped.map;
      trailerCrc = mapped.trailer.crc;
      inOrder = { end: 0, crc: 0 };
      loads += cache.loads;
      cache = createBlockCache(cacheSize);
      zeros = zeroSegments(() => map, readCompressed, decode, zeros.encodings);
    },
    close: source.close?.bind(source),
  };
}

/**
 * Which compressed segments of a map are all zeros, known without inflating them. The writer
 * (partial-deflate) compresses every all-zero chunk once and reuses that encoding, so a disk
 * image's zero chunks are byte-for-byte the same deflate stream.
 *
 * Invariant: a segment is called zero only when (1) the map is verified and its CRC-32 is
 * crc32Zeros(its length), and (2) its compressed bytes are identical to those of a segment of the
 * same length that was inflated here, passed the map's CRC-32 check and was found all zero byte by
 * byte. A read inflates a segment on its own (no history before it, inflateRawSync with the
 * segment's bytes alone), so its output is a function of its compressed bytes and length: the
 * same bytes give the same zeros the checked segment gave, and the read that skips the inflate
 * returns exactly what the inflate would have. (1) keeps the read's own check: a segment whose
 * CRC says it is not zero is inflated and fails its CRC, as before. The CRC alone is not enough
 * (a forged chunk can carry crc32Zeros with other data), which is why (2) compares bytes; and
 * only a chunk found zero by looking teaches an encoding. Pinned by test/gzip-zero-chunks.test.ts
 * ("forged zero CRC").
 */
function zeroSegments(
  currentMap: () => SeekzMap,
  readCompressed: (segment: Segment) => Promise<Uint8Array>,
  decode: (number: number) => Promise<Uint8Array>,
  /** Zero encodings learnt so far, by uncompressed length: facts about byte strings, kept across reloads. */
  encodings = new Map<number, Uint8Array[]>(),
) {
  /** Per segment: 0 not looked at, 1 zero, 2 not known to be zero. */
  const state = new Uint8Array(currentMap().segments.length);
  const zeroCrcs = new Map<number, number>();
  const candidate = (segment: Segment) => {
    if (!currentMap().verified || segment.kind !== 'compressed' || segment.crc === undefined) return false;
    let zeroCrc = zeroCrcs.get(segment.uLength);
    if (zeroCrc === undefined) zeroCrcs.set(segment.uLength, (zeroCrc = crc32Zeros(segment.uLength)));
    return segment.crc === zeroCrc;
  };
  const look = async (number: number): Promise<boolean> => {
    const segment = currentMap().segments[number]!;
    if (!candidate(segment)) return false;
    const known = encodings.get(segment.uLength) ?? [];
    const sameLength = known.filter((encoding) => encoding.length === segment.cLength);
    if (sameLength.length > 0) {
      const compressed = await readCompressed(segment);
      if (sameLength.some((encoding) => Buffer.from(encoding.buffer, encoding.byteOffset, encoding.length).equals(compressed))) return true;
    }
    if (known.length >= MAX_ZERO_ENCODINGS) return false;
    // An encoding not seen yet: inflate it once (checked against its CRC-32, and cached for the
    // read that asked), look at every byte, and learn it if it is zeros.
    const data = await decode(number).catch(() => undefined);
    if (!data || !isAllZero(data)) return false;
    const compressed = await readCompressed(segment);
    encodings.set(segment.uLength, [...known, compressed]);
    return true;
  };
  const pending = new Map<number, Promise<boolean>>();
  return {
    encodings,
    /** True when segment `number` is known to be all zero; false when it is not, or not known. */
    async isZero(number: number): Promise<boolean> {
      if (state[number] !== 0) return state[number] === 1;
      let answer = pending.get(number);
      if (!answer) {
        answer = look(number).finally(() => pending.delete(number));
        pending.set(number, answer);
      }
      const zero = await answer;
      state[number] = zero ? 1 : 2;
      return zero;
    },
  };
}

/** Distinct zero encodings learnt per chunk length; more means the file was not written by one writer. */
const MAX_ZERO_ENCODINGS = 4;

/** The data of a stored segment: its stored blocks (cut every 65535 bytes), headers checked. */
function storedData(blocks: Uint8Array, uLength: number, fileOffset: number): Uint8Array {
  const data = new Uint8Array(uLength);
  let at = 0;
  for (let done = 0; done < uLength; ) {
    const length = Math.min(STORED_BLOCK_MAX, uLength - done);
    // RFC 1951 §3.2.4: a byte with BFINAL/BTYPE (BFINAL 0, BTYPE 00 here), then LEN and ~LEN.
    const header = blocks.subarray(at, at + STORED_BLOCK_HEADER);
    const len = header[1]! | (header[2]! << 8);
    const nlen = header[3]! | (header[4]! << 8);
    if ((header[0]! & 0x07) !== 0 || len !== length || nlen !== (~length & 0xffff)) {
      throw fail('GZIP_STORED_BLOCK_BAD', fileOffset + at, length, hexBytes(header));
    }
    data.set(blocks.subarray(at + STORED_BLOCK_HEADER, at + STORED_BLOCK_HEADER + length), done);
    at += STORED_BLOCK_HEADER + length;
    done += length;
  }
  return data;
}
