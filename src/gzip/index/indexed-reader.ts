import { constants as zlibConstants, inflateRawSync, type ZlibOptions } from 'node:zlib';
import { crc32Combine } from '../../crc/crc32.js';
import { fail, hex32 } from '../../errors.js';
import { createBlockCache } from '../../source/block-cache.js';
import { clipRead, type Source } from '../../source/source.js';
import { lastAtOrBefore } from '../../search.js';
import { parseGzipHeader, readGzipHeader, TRAILER_LENGTH, whatFollowsMember } from '../header.js';
import { fastCrc32, nativeZlib } from '../../native/zlib.js';
import { memberName } from './build.js';
import { endWithEmptyFinalBlock, primeCompressed } from './prime.js';
import { pointBit, type GzipEnd, type GzipIndex } from './types.js';

/** Decoded spans kept: 8 spans of the default 4 MiB spacing. */
const DEFAULT_CACHE_SIZE = 32 * 2 ** 20;
/** The most one span may decode to: a larger one needs an index with more points. */
const MAX_SPAN = 2 ** 30;
/** Reads up to this long inflate only the granules they need (index version 3); longer ones, whole spans. */
const PREFIX_READ = 256 * 1024;
/** node:zlib inflates to the end of the block that holds a granule's end: zlib's deflate makes no block longer than this. */
const PREFIX_SLACK = 32 * 2 ** 20;
/** Where prefix decodes put the history they do not return (one per process: decodes are synchronous). */
const scratch = new Uint8Array(256 * 1024);
/** Deflate expands at most 1032:1 (a 258-byte match per 2 bits); with room for headers and windows. */
const MAX_RATIO = 1100;

export interface IndexedGzipSource extends Source {
  readonly index: GzipIndex;
  /** Inflations started, for tests: a warm read starts none. */
  readonly decodes: number;
  /** 'crc': every span has a CRC-32 (seekz's index), so every read is verified; 'structure': see below. */
  readonly verification: 'crc' | 'structure';
  /** Where the gzip data ends and what follows (gzip's trailing garbage): from the index, or found when the last span was read. */
  readonly end: GzipEnd | undefined;
}

/** What one span decode went through, in order, for the member check across spans. */
type SpanEvent =
  | { kind: 'data'; uOffset: number; length: number; crc: number }
  | { kind: 'member-end'; uOffset: number; crc: number; isize: number }
  | { kind: 'member-start'; uOffset: number; offset: number };

/**
 * Random reads from any gzip file through an index: find the last access point at or before the
 * offset, inflate the whole span from there (with its window) to the next point, with node:zlib's
 * native inflate. A point inside a byte gets a preface of empty blocks (prime.ts). With granules
 * (seekz index v3), a small read inflates only to the end of the granule it needs (decodePrefix).
 *
 * Invariant: no byte leaves this reader unchecked beyond what the index can prove.
 * - Every span inflates to exactly its expected length and ends exactly at the next point's bit:
 *   the input is cut there and an empty final block put in its place, so zlib must reach the end
 *   of the stream with all input used (if the point were not a block boundary, the inserted bits
 *   would decode as data). A span may cross members (gztool puts no point at a member's start):
 *   each member's deflate data must end at its trailer, followed by the next member's header.
 * - With a span CRC-32 (seekz's own index), the output must also match it. A prefix of a span
 *   (decodePrefix) is whole granules, each matching its CRC-32; nothing past them is returned.
 * - Members: whenever the spans of a whole member are decoded in order from its start (cat,
 *   extract, a read reaching a member's end), its CRC-32 and ISIZE are checked against its
 *   trailer, so a damaged window in a GZIDX or gztool index cannot pass a sequential read.
 * - The last span must end where gzip -d stops: at the end of the file, zero padding, or
 *   trailing garbage (then `end` says so); an index reaching past that point is refused.
 * Pinned by test/trust-gzip-read.test.ts and test/gzip-random-access.test.ts.
 */
export function openIndexedGzip(source: Source, index: GzipIndex, options: { cacheSize?: number } = {}): IndexedGzipSource {
  checkIndexAgainst(index, source.size);
  const points = index.points;
  const size = index.uncompressedSize;
  const cache = createBlockCache(options.cacheSize ?? DEFAULT_CACHE_SIZE);
  const verification = points.every((point) => point.crc !== undefined) ? 'crc' : 'structure';
  let end: GzipEnd | undefined = index.end;
  // indexed_gzip ends its index with a point at the end of the file; its span is empty.
  const last = points[points.length - 1]!;
  const closingPoint = points.length > 1 && last.cOffset === source.size && last.bits === 0;
  /** The span that reaches the end of the gzip data: decoding it proves where the data ends. */
  const endSpan = closingPoint ? points.length - 2 : points.length - 1;

  /** Points known to sit at a member's deflate start: point → its member (number when known). */
  const memberStarts = new Map<number, { offset: number; number: number | undefined }>();
  /** A member being summed across spans decoded in order. */
  let chain: { uOffset: number; crc: number; length: number; offset: number; number: number | undefined } | undefined;

  const spanLength = (number: number) => (points[number + 1]?.uOffset ?? size) - points[number]!.uOffset;
  const describePoint = (number: number) => {
    const point = points[number]!;
    return `access point ${number} (uncompressed ${point.uOffset}, file offset ${point.cOffset}, bit ${pointBit(point) % 8})`;
  };
  const mismatch = (number: number, what: string) => fail('INDEX_BAD_DATA', `${describePoint(number)}: ${what}; the index does not match this file, or the file is damaged (check with gzip -t; rebuild the index with seekz index)`);

  /** Point 0 must be the first member's deflate start: then a member check can start there. */
  const checkFirstPoint = async () => {
    const header = await readGzipHeader((offset, length) => source.read(offset, length), source.size, 0);
    if (points[0]!.cOffset !== header.length || points[0]!.bits !== 0) throw mismatch(0, `the first member's deflate data starts at file offset ${header.length}`);
    memberStarts.set(0, { offset: 0, number: 1 });
  };

  /**
   * Where decoded bytes start in their span, when not at its point: a prefix decode keeps only
   * the granules it checked (those a read returns bytes from), not the history before them.
   */
  const startsAt = new WeakMap<Uint8Array, number>();

  /**
   * The start of span `number` up to the end of granule `to` (not its last): inflated from the
   * point with its window, with the compressed data cut where the index says that granule's block
   * ends, and granules `from` to `to` (those a read returns bytes from) checked against their
   * CRC-32s. Only those granules are returned (startsAt says where they start); the history before
   * them goes through a scratch buffer with the addon, and is dropped unread with node:zlib. The
   * addon stops zlib exactly at the granule's end; node:zlib inflates to the end of its block.
   */
  const decodePrefix = async (number: number, from: number, to: number): Promise<Uint8Array | undefined> => {
    const point = points[number]!;
    const granules = point.granules!;
    if (number === 0) await checkFirstPoint();
    const uLength = granules[to]!.uEnd - point.uOffset;
    const first = Math.floor(pointBit(point) / 8);
    const last = granules[to]!.cEnd;
    // The granule's block ends at or before the next point's block starts.
    const limit = points[number + 1]?.cOffset ?? source.size;
    if (last <= first || last > limit) throw mismatch(number, `granule ${to} ends at file offset ${last}, outside its span's compressed data [${first}, ${limit}]`);
    const bytes = await source.read(first, last - first);
    if (bytes.length !== last - first) throw fail('GZIP_TRUNCATED', `the compressed data of ${describePoint(number)}`, first, source.size);
    const checkedFrom = from > 0 ? granules[from - 1]!.uEnd - point.uOffset : 0;
    let out: Uint8Array;
    const native = nativeZlib();
    try {
      if (native) {
        // zlib keeps its own window, so the history can go through a small scratch buffer.
        out = new Uint8Array(uLength - checkedFrom);
        const inflater = native.createInflater(point.window.length > 0 ? point.window : undefined);
        let input = bytes;
        let produced = 0;
        let primeBits = point.bits;
        const step = (output: Uint8Array) => {
          const result = native.inflateBlocksSync(inflater, input, output, primeBits);
          primeBits = 0;
          input = input.subarray(result.inUsed);
          produced += result.outUsed;
          return result.outUsed === output.length;
        };
        while (produced < checkedFrom && step(scratch.subarray(0, Math.min(scratch.length, checkedFrom - produced))));
        if (produced === checkedFrom) step(out);
        if (produced !== uLength) throw mismatch(number, `its data up to file offset ${last} inflates to ${produced} bytes, the index's granules need ${uLength}`);
      } else {
        const input = point.bits > 0 ? primeCompressed(bytes, point.bits) : bytes;
        const options = { dictionary: point.window.length > 0 ? point.window : undefined, finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: uLength + PREFIX_SLACK, chunkSize: inflateChunk(uLength) };
        out = inflateRawSync(input, options);
        if (out.length < uLength) throw mismatch(number, `its data up to file offset ${last} inflates to ${out.length} bytes, the index's granules need ${uLength}`);
        out = out.subarray(checkedFrom, uLength);
      }
    } catch (error) {
      // A block longer than node:zlib is allowed to overrun (not from zlib's deflate): decode the span.
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
      if (error instanceof Error && !(error as { code?: string }).code?.startsWith('INDEX_')) {
        throw mismatch(number, `inflating from uncompressed ${point.uOffset} fails (${error.message})`);
      }
      throw error;
    }
    const crc32 = fastCrc32();
    for (let at = from, offset = checkedFrom; at <= to; at++) {
      const granule = granules[at]!;
      const length = granule.uEnd - point.uOffset - offset;
      const found = crc32(out.subarray(offset - checkedFrom, offset - checkedFrom + length));
      if (found !== granule.crc) {
        throw mismatch(number, `granule ${at} (uncompressed ${point.uOffset + offset} to ${granule.uEnd}) has crc-32 ${hex32(found)}, the index recorded ${hex32(granule.crc)}`);
      }
      offset += length;
    }
    if (checkedFrom > 0) startsAt.set(out, checkedFrom);
    return out;
  };

  const decodeSpan = async (number: number, readAll = false): Promise<Uint8Array> => {
    const point = points[number]!;
    const next = points[number + 1];
    const uLength = (next ? next.uOffset : size) - point.uOffset;
    if (number === points.length - 1 && closingPoint) {
      if (uLength !== 0) throw mismatch(number, `a point at the end of the file must end the data, but ${uLength} bytes follow it`);
      return new Uint8Array(0);
    }
    if (number === 0) await checkFirstPoint();
    const startBit = pointBit(point);
    const stopBit = next ? pointBit(next) : undefined;
    const first = Math.floor(startBit / 8);
    const last = stopBit !== undefined ? Math.ceil(stopBit / 8) : source.size;
    // Where the last span's data ends is unknown (trailing bytes may follow): read what its output
    // can come from (stored blocks add 5 bytes per 64 KiB; with room for member headers), and the
    // whole rest only when that falls short.
    const readTo = stopBit !== undefined || readAll ? last : Math.min(last, first + uLength + Math.ceil(uLength / 8192) + 65536);
    if (readTo - first > 2 * MAX_SPAN) {
      throw fail('INDEX_UNSUPPORTED', 'gzip', `${describePoint(number)} spans ${readTo - first} compressed bytes, more than one read decodes`, 'rebuild the index with more points (seekz index --spacing 4M)');
    }
    const bytes = await source.read(first, readTo - first);
    if (bytes.length !== readTo - first) throw fail('GZIP_TRUNCATED', `the compressed span of ${describePoint(number)}`, first, source.size);
    try {
      return await decodeFrom(number, bytes, first, last);
    } catch (error) {
      // Only what the short read can explain is retried with the whole rest; a bad CRC is final.
      const code = (error as { code?: string }).code;
      if (readTo < last && (code === 'INDEX_BAD_DATA' || code === 'GZIP_TRUNCATED')) return decodeSpan(number, true);
      throw error;
    }
  };

  /** decodeSpan's work on the compressed bytes from `first` (to `last`, or fewer for the last span). */
  const decodeFrom = async (number: number, bytes: Uint8Array, first: number, last: number): Promise<Uint8Array> => {
    const point = points[number]!;
    const next = points[number + 1];
    const uLength = (next ? next.uOffset : size) - point.uOffset;
    const startBit = pointBit(point);
    const stopBit = next ? pointBit(next) : undefined;

    const out = new Uint8Array(uLength);
    const events: SpanEvent[] = [];
    let produced = 0;
    let bit = startBit;
    let dictionary: Uint8Array | undefined = point.window.length > 0 ? point.window : undefined;
    let spanEnd: GzipEnd | undefined;
    for (;;) {
      if (stopBit !== undefined && bit === stopBit) break;
      const from = Math.floor(bit / 8);
      let input: Uint8Array = bytes.subarray(from - first);
      if (stopBit !== undefined) input = endWithEmptyFinalBlock(input, stopBit - from * 8);
      const before = input.length;
      if (bit % 8 !== 0) input = primeCompressed(input, 8 - (bit % 8));
      const preface = input.length - before;
      let piece: Uint8Array;
      let used: number;
      try {
        const result = inflateRawSync(input, { dictionary, maxOutputLength: uLength - produced + 1, chunkSize: inflateChunk(uLength - produced), info: true } as ZlibOptions) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
        piece = result.buffer;
        used = result.engine.bytesWritten - preface;
      } catch (error) {
        if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw mismatch(number, `the span inflates to more than the ${uLength} bytes the index gives it`);
        throw mismatch(number, `inflating from uncompressed ${point.uOffset + produced} fails (${(error as Error).message})`);
      }
      if (produced + piece.length > uLength) throw mismatch(number, `the span inflates to more than the ${uLength} bytes the index gives it`);
      out.set(piece, produced);
      events.push({ kind: 'data', uOffset: point.uOffset + produced, length: piece.length, crc: fastCrc32()(piece) });
      produced += piece.length;
      // All input used: the stream ended in the inserted final block, exactly at the next point.
      if (stopBit !== undefined && used === input.length - preface) {
        // A point at the end of the file is no block boundary: the member's trailer must come first.
        if (closingPoint && number === endSpan) throw mismatch(number, 'the deflate data runs to the end of the file, with no trailer');
        break;
      }

      // Otherwise this member's deflate data ended (its final block): the trailer follows.
      const memberEnd = from + used;
      const trailerAt = memberEnd - first;
      if (trailerAt + TRAILER_LENGTH > bytes.length) throw mismatch(number, `a member's deflate data ends at file offset ${memberEnd}, with no room for its trailer before the next point`);
      const trailer = new DataView(bytes.buffer, bytes.byteOffset + trailerAt, TRAILER_LENGTH);
      events.push({ kind: 'member-end', uOffset: point.uOffset + produced, crc: trailer.getUint32(0, true), isize: trailer.getUint32(4, true) });
      const after = memberEnd + TRAILER_LENGTH;
      if (stopBit === after * 8 && after === source.size) break; // indexed_gzip's closing point
      const read = async (offset: number, length: number) =>
        offset + length <= first + bytes.length ? bytes.subarray(offset - first, offset - first + length) : source.read(offset, length);
      // The span before indexed_gzip's closing point runs to the end of the file, like the last.
      const toEnd = stopBit === undefined || (closingPoint && number === endSpan);
      const follows = !toEnd && after + 2 > last ? 'nothing' : await whatFollowsMember(read, last, after);
      if (follows !== 'member') {
        if (!toEnd) {
          const why = { garbage: 'trailing garbage', zeros: 'zero padding', nothing: 'no member header' }[follows];
          throw mismatch(number + 1, `gzip -d stops at file offset ${after} (${why} after a member), but the index goes on past it`);
        }
        spanEnd = { offset: after, after: follows };
        break;
      }
      let header;
      try {
        header = parseGzipHeader(bytes.subarray(after - first), source.size - after, after);
      } catch (error) {
        if ((error as { code?: string }).code === 'GZIP_TRUNCATED' && stopBit !== undefined) throw mismatch(number + 1, `the member header at file offset ${after} runs past the next point`);
        throw error;
      }
      events.push({ kind: 'member-start', uOffset: point.uOffset + produced, offset: after });
      bit = (after + header.length) * 8;
      if (stopBit !== undefined && bit > stopBit) throw mismatch(number + 1, `it lies inside the member header at file offset ${after}`);
      if (bit === stopBit) memberStarts.set(number + 1, { offset: after, number: undefined });
      dictionary = undefined;
    }
    if (produced !== uLength) throw mismatch(number, `the span inflates to ${produced} bytes, the index expects ${uLength}`);
    if (point.crc !== undefined) {
      const spanCrc = events.reduce((crc, event) => (event.kind === 'data' ? crc32Combine(crc, event.crc, event.length) : crc), 0);
      if (spanCrc !== point.crc) throw mismatch(number, `the span's crc-32 is ${hex32(spanCrc)}, the index recorded ${hex32(point.crc)}`);
    }
    if (stopBit === undefined || (closingPoint && number === endSpan)) {
      const found = spanEnd ?? { offset: source.size, after: 'nothing' as const };
      if (index.end && (index.end.offset !== found.offset || index.end.after !== found.after)) {
        throw fail('INDEX_MISMATCH', `it says the gzip data ends at offset ${index.end.offset} (${index.end.after} after it), the file's ends at ${found.offset} (${found.after} after it)`);
      }
      end = found;
    }
    followMembers(number, events);
    return out;
  };

  /** The member check across spans: see the invariant above. Runs synchronously per decoded span. */
  const followMembers = (number: number, events: SpanEvent[]) => {
    const start = memberStarts.get(number);
    const point = points[number]!;
    if (start) chain = { uOffset: point.uOffset, crc: 0, length: 0, offset: start.offset, number: start.number };
    else if (chain?.uOffset !== point.uOffset) chain = undefined;
    let lastNumber = chain?.number;
    for (const event of events) {
      if (event.kind === 'data') {
        if (chain && chain.uOffset === event.uOffset) {
          chain.crc = crc32Combine(chain.crc, event.crc, event.length);
          chain.length += event.length;
          chain.uOffset += event.length;
        } else chain = undefined;
      } else if (event.kind === 'member-end') {
        if (chain && chain.uOffset === event.uOffset) {
          const where = memberName(chain.number, chain.offset);
          if (chain.crc !== event.crc) throw fail('GZIP_MEMBER_CRC', where, event.crc, chain.crc);
          if (chain.length % 2 ** 32 !== event.isize) throw fail('GZIP_MEMBER_LENGTH', where, event.isize, chain.length);
        }
        lastNumber = chain?.number;
        chain = undefined;
      } else {
        const memberNumber = lastNumber !== undefined ? lastNumber + 1 : undefined;
        chain = { uOffset: event.uOffset, crc: 0, length: 0, offset: event.offset, number: memberNumber };
        const proven = memberStarts.get(number + 1);
        if (proven && points[number + 1]!.uOffset === event.uOffset && proven.offset === event.offset) proven.number = memberNumber;
      }
    }
  };

  /**
   * At least the first `need` bytes of span `number`. A small read in a span with granules gets
   * just the granules up to its end; a larger one, or a second read that needs more of the span
   * than is decoded (reads that come back to a span tend to go on), gets the whole span.
   */
  const span = (number: number, within: number, need: number, readLength: number) => {
    const point = points[number]!;
    const granules = point.granules ?? [];
    const to = granules.findIndex((granule) => granule.uEnd - point.uOffset >= need);
    const from = granules.findIndex((granule) => granule.uEnd - point.uOffset > within);
    let again = false;
    const isEnough = (data: Uint8Array) => {
      const start = startsAt.get(data) ?? 0;
      return (start <= within && start + data.length >= need) || !(again = true);
    };
    const load = async () => {
      if (!again && readLength <= PREFIX_READ && to >= 0 && to < granules.length - 1) {
        const prefix = await decodePrefix(number, from, to);
        if (prefix) return prefix;
      }
      return decodeSpan(number);
    };
    return cache.get(number, load, isEnough);
  };

  return {
    size,
    index,
    verification,
    get end() {
      return end;
    },
    get decodes() {
      return cache.loads;
    },
    async read(offset, length) {
      const count = clipRead(size, offset, length);
      const out = new Uint8Array(count);
      let done = 0;
      let number = count > 0 ? lastAtOrBefore(points, (point) => point.uOffset, offset) : 0;
      while (done < count) {
        const point = points[number]!;
        const within = offset + done - point.uOffset;
        const bytes = await span(number, within, Math.min(within + count - done, spanLength(number)), count);
        const start = startsAt.get(bytes) ?? 0;
        const take = Math.min(count - done, start + bytes.length - within);
        if (take > 0) {
          out.set(bytes.subarray(within - start, within - start + take), done);
          done += take;
        }
        number++;
        if (number >= points.length && done < count) throw fail('INDEX_BAD_DATA', `the index ends before uncompressed offset ${offset + done}`);
      }
      // A read that reaches the end proves the end: the data stops where gzip -d stops.
      if (offset + count >= size) await span(endSpan, 0, spanLength(endSpan), count);
      return out;
    },
    close: source.close?.bind(source),
  };
}

/**
 * Every number in an index is a claim about the file: checked before anything is read, so an
 * index of another file gives INDEX_MISMATCH or INDEX_BAD_DATA, never a wild read.
 */
function checkIndexAgainst(index: GzipIndex, fileSize: number): void {
  // gztool does not record the file size (0 = unknown); every other index is checked against it.
  if (index.compressedSize !== 0 && index.compressedSize !== fileSize) {
    throw fail('INDEX_MISMATCH', `it was built for a file of ${index.compressedSize} bytes, this one has ${fileSize}`);
  }
  const { points, uncompressedSize } = index;
  if (points.length === 0) throw fail('INDEX_BAD_DATA', 'the index has no access points; rebuild it with seekz index');
  if (points[0]!.uOffset !== 0) throw fail('INDEX_BAD_DATA', `the first access point is at uncompressed ${points[0]!.uOffset}, not 0; rebuild the index with seekz index`);
  points.forEach((point, number) => {
    const bit = pointBit(point);
    if (bit > fileSize * 8 || bit < 0) {
      throw fail('INDEX_MISMATCH', `access point ${number} is at file offset ${point.cOffset}, past the end of this ${fileSize}-byte file`);
    }
    if (point.uOffset > uncompressedSize) {
      throw fail('INDEX_BAD_DATA', `access point ${number} is at uncompressed ${point.uOffset}, past the ${uncompressedSize} bytes the index says the data holds (an unfinished index?); rebuild it with seekz index`);
    }
    const previous = points[number - 1];
    if (previous && (point.uOffset < previous.uOffset || bit < pointBit(previous))) {
      throw fail('INDEX_BAD_DATA', `access point ${number} comes before access point ${number - 1}; expected offsets that never decrease`);
    }
    const next = points[number + 1];
    const uLength = (next ? next.uOffset : uncompressedSize) - point.uOffset;
    const cLength = (next ? Math.ceil(pointBit(next) / 8) : fileSize) - Math.floor(bit / 8);
    if (uLength > cLength * MAX_RATIO + 65536) {
      throw fail('INDEX_MISMATCH', `access point ${number} claims ${uLength} bytes from ${cLength} compressed bytes, more than deflate can expand to`);
    }
    if (uLength > MAX_SPAN) {
      throw fail('INDEX_UNSUPPORTED', 'gzip', `access point ${number} spans ${uLength} bytes, more than the ${MAX_SPAN} one read decodes`, 'rebuild the index with more points (seekz index --spacing 4M)');
    }
  });
}

/** node:zlib's output piece size: the whole expected output at once (no joining of 16 KiB pieces), within reason. */
function inflateChunk(expected: number): number {
  return Math.min(Math.max(expected + 1, 64), 64 * 2 ** 20);
}
