import { availableParallelism } from 'node:os';
import { createInflateRaw, inflateRawSync, type ZlibOptions } from 'node:zlib';
import { walkDeflate } from '../../deflate/walk.js';
import { fail } from '../../errors.js';
import type { Source } from '../../source/source.js';
import { crc32, crc32Combine } from '../../crc/crc32.js';
import { GZIP_MAGIC_1, GZIP_MAGIC_2, readGzipHeader, TRAILER_LENGTH, whatFollowsMember, type GzipHeader } from '../header.js';
import { fastCrc32, nativeZlib, type NativeZlib } from '../../native/zlib.js';
import { GRANULE_SIZE, WINDOW_SIZE, type AccessPoint, type Granule, type GzipIndex } from './types.js';

export const DEFAULT_SPACING = 4 * 2 ** 20;
const READ_PIECE = 1 << 20;

export interface BuildOptions {
  spacing?: number;
  onProgress?: (compressedDone: number) => void;
  /** Told of each point's window as soon as it is captured (the CLI packs them for the index file meanwhile). */
  onWindow?: (window: Uint8Array) => void;
  /** Told of each member once its trailer checks out (seekz info lists them). */
  onMember?: (member: GzipMember) => void;
  /** When the native engine runs a second stream ahead (see inflateNative). */
  speculation?: SpeculationOptions;
}

export interface GzipMember {
  /** 1-based, in file order. */
  number: number;
  /** File offset of the member's header. */
  offset: number;
  compressedLength: number;
  uncompressedLength: number;
  crc: number;
  /** Indexed from its BGZF header (BSIZE checked against where the next member starts), not inflated. */
  bgzf: boolean;
}

/** "member 3 at offset 1234", or "the member at offset 1234" where its number is not known. */
export function memberName(number: number | undefined, offset: number): string {
  return number === undefined ? `the member at offset ${offset}` : `member ${number} at offset ${offset}`;
}

/**
 * Builds access points in one pass over any gzip file (multi-member too). Block boundaries come
 * from zlib itself (Z_BLOCK, through the seekz_zlib addon) or, without the addon, from the
 * JavaScript walker running beside node:zlib; both run on two cores (see inflateNative and
 * inflateWithWalker), and both feed one memberIndexer, so they give the same index.
 *
 * Nothing unchecked goes into an index: every member's CRC-32 and ISIZE are checked against its
 * trailer as zcat does, and every span records the CRC-32 of each of its granules (64 KiB of
 * output), so reads through the index are verified too, and a small read checks only the granules
 * it returns. Members follow each other as gzip -d reads them: zero padding to the end is
 * ignored, other trailing bytes end the data ("trailing garbage", recorded in `end`).
 *
 * BGZF files (bgzip, every member ≤ 64 KiB and sized in its header) need no walk: every member
 * starts with no history, so it is a point without a window. A BSIZE is used only when the next
 * member (or the end of the file) starts exactly where it says; otherwise the member is walked
 * like any other. Either way each member is inflated and checked against its trailer.
 */
export async function buildGzipIndex(source: Source, options: BuildOptions = {}): Promise<GzipIndex> {
  const spacing = options.spacing ?? DEFAULT_SPACING;
  if (!Number.isSafeInteger(spacing) || spacing < 1) throw fail('BAD_ARGUMENT', `spacing ${spacing} must be a positive whole number`);
  if (source.size === 0) throw fail('GZIP_EMPTY');
  const read = (offset: number, length: number) => source.read(offset, length);
  const points: AccessPoint[] = [];
  let memberStart = 0;
  let uBase = 0;
  for (let number = 1; ; number++) {
    const header = await readGzipHeader(read, source.size, memberStart);
    const bgzf = await checkedBgzfMember(source, memberStart, header);
    let member: { uLength: number; end: number; crc: number };
    if (bgzf) {
      const deflateStart = memberStart + header.length;
      checkBgzfData(await source.read(deflateStart, bgzf.end - TRAILER_LENGTH - deflateStart), deflateStart, bgzf, memberName(number, memberStart));
      // Every member is a point: it has no history, so the point costs no window.
      if (bgzf.isize > 0) {
        const granule = { uEnd: uBase + bgzf.isize, cEnd: bgzf.end - TRAILER_LENGTH, crc: bgzf.crc };
        points.push({ uOffset: uBase, cOffset: memberStart + header.length, bits: 0, window: new Uint8Array(0), crc: bgzf.crc, granules: [granule] });
      }
      member = { uLength: bgzf.isize, end: bgzf.end, crc: bgzf.crc };
    } else {
      const inflated = await indexMember(source, memberStart + header.length, uBase, spacing, points, options);
      const where = memberName(number, memberStart);
      const trailer = await source.read(inflated.deflateEnd, TRAILER_LENGTH);
      if (trailer.length < TRAILER_LENGTH) throw fail('GZIP_TRUNCATED', `the trailer of ${where}`, inflated.deflateEnd, source.size);
      const view = new DataView(trailer.buffer, trailer.byteOffset, TRAILER_LENGTH);
      const [crc, isize] = [view.getUint32(0, true), view.getUint32(4, true)];
      if (crc !== inflated.crc) throw fail('GZIP_MEMBER_CRC', where, crc, inflated.crc);
      if (isize !== inflated.uLength % 2 ** 32) throw fail('GZIP_MEMBER_LENGTH', where, isize, inflated.uLength);
      member = { uLength: inflated.uLength, end: inflated.deflateEnd + TRAILER_LENGTH, crc };
    }
    options.onMember?.({
      number,
      offset: memberStart,
      compressedLength: member.end - memberStart,
      uncompressedLength: member.uLength,
      crc: member.crc,
      bgzf: bgzf !== undefined,
    });
    uBase += member.uLength;
    options.onProgress?.(member.end);
    const after = await whatFollowsMember(read, source.size, member.end);
    if (after !== 'member') return { compressedSize: source.size, uncompressedSize: uBase, spacing, points, end: { offset: member.end, after } };
    memberStart = member.end;
  }
}

/**
 * A BGZF member needs no walk (it is its own point), but it is inflated like any other member, so
 * that its deflate data must end exactly at its trailer and match its CRC-32 and ISIZE.
 */
function checkBgzfData(deflate: Uint8Array, deflateStart: number, trailer: { crc: number; isize: number }, where: string): void {
  let result: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    result = inflateRawSync(deflate, { maxOutputLength: BGZF_MAX_ISIZE + 1, info: true } as ZlibOptions) as unknown as typeof result;
  } catch (error) {
    throw fail('DEFLATE_BAD_DATA', `${where}: ${(error as Error).message}`, deflateStart * 8);
  }
  if (result.engine.bytesWritten !== deflate.length) {
    throw fail('GZIP_BAD_HEADER', `${where}: its deflate data ends ${deflate.length - result.engine.bytesWritten} bytes before the trailer its BGZF BSIZE gives`);
  }
  if (result.buffer.length !== trailer.isize) throw fail('GZIP_MEMBER_LENGTH', where, trailer.isize, result.buffer.length);
  const crc = crc32(result.buffer);
  if (crc !== trailer.crc) throw fail('GZIP_MEMBER_CRC', where, trailer.crc, crc);
}

/** BSIZE from a BGZF header's 'BC' subfield (SAM/BAM spec §4.1), or undefined for other gzip. */
function bgzfBlockSize(header: GzipHeader): number | undefined {
  const subfield = header.extra.find((extra) => extra.id === 'BC' && extra.data.length === 2);
  return subfield ? subfield.data[0]! + subfield.data[1]! * 256 + 1 : undefined;
}

/** BGZF holds at most 64 KiB of data per member (SAM/BAM spec §4.1). */
const BGZF_MAX_ISIZE = 65536;

/**
 * A BGZF member's end and trailer, when its BSIZE checks out: room for the header, deflate data
 * and trailer, an ISIZE BGZF allows, and a next member (1f 8b) or the end of the file right
 * where BSIZE says. Anything else (a BC field in a file that is not BGZF) gives undefined, and
 * the member is inflated. What is left unchecked here (a damaged deflate body that still fits)
 * fails the trailer's CRC-32 when the member is read.
 */
async function checkedBgzfMember(source: Source, memberStart: number, header: GzipHeader): Promise<{ end: number; crc: number; isize: number } | undefined> {
  const blockSize = bgzfBlockSize(header);
  if (blockSize === undefined) return undefined;
  const end = memberStart + blockSize;
  if (end > source.size || end < memberStart + header.length + 2 + TRAILER_LENGTH) return undefined;
  const bytes = await source.read(end - TRAILER_LENGTH, TRAILER_LENGTH + 2);
  const view = new DataView(bytes.buffer, bytes.byteOffset, TRAILER_LENGTH);
  const [crc, isize] = [view.getUint32(0, true), view.getUint32(4, true)];
  if (isize > BGZF_MAX_ISIZE) return undefined;
  const nextIsMember = bytes.length === TRAILER_LENGTH + 2 && bytes[8] === GZIP_MAGIC_1 && bytes[9] === GZIP_MAGIC_2;
  if (end < source.size && !nextIsMember) return undefined;
  return { end, crc, isize };
}

/**
 * What one member's pass produces, whichever engine finds the block boundaries: points (with
 * their windows) and granules (with their CRC-32s), and the member's CRC-32.
 *
 * The engine calls `boundary` for every block boundary inside the member, in order, before it
 * hands over (through `output`) the bytes at or past that boundary; `finish` closes the last
 * granule at the member's end. Points are made at the member's start and then at the first
 * boundary `spacing` bytes past the previous point. Granules are every GRANULE_SIZE bytes of a
 * span, each with the end of the block that holds its last byte. The same boundaries give the
 * same index from either engine (test/gzip-index-engines.test.ts).
 */
interface MemberIndexer {
  boundary(bit: number, uRelative: number): void;
  output(chunk: Uint8Array): void;
  /** Bytes of output handed over so far. */
  readonly produced: number;
  finish(endBit: number): number;
}

function memberIndexer(deflateStart: number, uBase: number, spacing: number, points: AccessPoint[], onWindow?: (window: Uint8Array) => void): MemberIndexer {
  const first: AccessPoint = { uOffset: uBase, cOffset: deflateStart, bits: 0, window: new Uint8Array(0) };
  points.push(first);
  // This member's points (member-relative starts, for the granules); points waiting for windows.
  const memberPoints: AccessPoint[] = [first];
  const starts: number[] = [0];
  const waiting: AccessPoint[] = [];
  let lastPoint = 0;
  // Granules summed so far, and those whose block end is not known yet.
  const granules: Granule[] = [];
  const open: Granule[] = [];
  // Boundaries the engine reported ahead of the output summed so far (the walker runs ahead).
  let ahead: { bit: number; u: number }[] = [];
  let aheadAt = 0;
  let span = 0; // memberPoints index of the span being summed
  let granuleStart = 0;
  let granuleCrc = 0;

  let tail = new Uint8Array(0);
  let produced = 0;
  const crc32 = fastCrc32();
  /** Where the granule being summed ends: GRANULE_SIZE on, or the next point if that comes first. */
  const granuleEnd = () => Math.min(granuleStart + GRANULE_SIZE, starts[span + 1] ?? Infinity);
  const closeGranule = (at: number) => {
    const granule = { uEnd: uBase + at, cEnd: Number.NaN, crc: granuleCrc };
    granules.push(granule);
    // Its last byte is in the block that ends at the first boundary at or past its end.
    while (aheadAt < ahead.length && ahead[aheadAt]!.u < at) aheadAt++;
    if (aheadAt < ahead.length) granule.cEnd = Math.ceil(ahead[aheadAt]!.bit / 8);
    else open.push(granule);
    if (aheadAt > 1024) {
      ahead = ahead.slice(aheadAt);
      aheadAt = 0;
    }
    if (starts[span + 1] === at) span++;
    granuleStart = at;
    granuleCrc = 0;
  };
  return {
    get produced() {
      return produced;
    },
    boundary(bit, uRelative) {
      if (uRelative === 0) return; // the member's start: its first point already, and no granule ends there
      // Granules that end at or before this boundary end in the block that ends here.
      while (open.length > 0 && open[0]!.uEnd - uBase <= uRelative) open.shift()!.cEnd = Math.ceil(bit / 8);
      ahead.push({ bit, u: uRelative });
      if (uRelative - lastPoint < spacing) return;
      const cOffset = Math.ceil(bit / 8);
      const point = { uOffset: uBase + uRelative, cOffset, bits: cOffset * 8 - bit, window: new Uint8Array(0) };
      points.push(point);
      memberPoints.push(point);
      starts.push(uRelative);
      waiting.push(point);
      lastPoint = uRelative;
    },
    output(chunk) {
      const end = produced + chunk.length;
      while (waiting.length > 0 && waiting[0]!.uOffset - uBase <= end) {
        const point = waiting.shift()!;
        const cut = point.uOffset - uBase - produced; // bytes of this chunk before the point
        const history = concat(tail, chunk.subarray(Math.max(0, cut - WINDOW_SIZE), cut));
        point.window = history.slice(Math.max(0, history.length - WINDOW_SIZE));
        onWindow?.(point.window);
      }
      let from = 0;
      for (let at = granuleEnd(); at < end; at = granuleEnd()) {
        granuleCrc = crc32(chunk.subarray(from, at - produced), granuleCrc);
        from = at - produced;
        closeGranule(at);
      }
      granuleCrc = crc32(chunk.subarray(from), granuleCrc);
      // A copy: the native engine fills the same output buffers again.
      if (chunk.length >= WINDOW_SIZE) tail = chunk.slice(chunk.length - WINDOW_SIZE);
      else {
        const recent = concat(tail, chunk);
        tail = recent.slice(Math.max(0, recent.length - WINDOW_SIZE));
      }
      produced = end;
    },
    finish(endBit) {
      // The last granule ends with the output; a point right there (before an empty last block)
      // ends it too, and its empty span gets one empty granule.
      if (starts[span + 1] === produced) closeGranule(produced);
      closeGranule(produced);
      for (const granule of open) granule.cEnd = Math.ceil(endBit / 8);
      let memberCrc = 0;
      let next = 0;
      for (const [number, point] of memberPoints.entries()) {
        const spanEnd = uBase + (starts[number + 1] ?? produced);
        const own: Granule[] = [];
        let spanCrc = 0;
        let at = point.uOffset;
        // Each span's granules run to its end; an empty span has one empty granule.
        do {
          const granule = granules[next++]!;
          own.push(granule);
          spanCrc = crc32Combine(spanCrc, granule.crc, granule.uEnd - at);
          at = granule.uEnd;
        } while (at < spanEnd);
        point.crc = spanCrc;
        point.granules = own;
        memberCrc = crc32Combine(memberCrc, spanCrc, spanEnd - point.uOffset);
      }
      return memberCrc;
    },
  };
}

async function indexMember(
  source: Source,
  deflateStart: number,
  uBase: number,
  spacing: number,
  points: AccessPoint[],
  { onProgress, onWindow, speculation }: BuildOptions,
): Promise<{ uLength: number; deflateEnd: number; crc: number }> {
  const indexer = memberIndexer(deflateStart, uBase, spacing, points, onWindow);
  const native = nativeZlib();
  const { deflateEnd, endBit } = native
    ? await inflateNative(native, source, deflateStart, indexer, onProgress, speculation)
    : await inflateWithWalker(source, deflateStart, indexer, onProgress);
  const crc = indexer.finish(endBit);
  return { uLength: indexer.produced, deflateEnd, crc };
}

/** Output per inflateBlocks call of the native engine. */
const NATIVE_OUTPUT = 1 << 20;
/** Compressed bytes scanned for a place where a speculative stream may start. */
const SCAN_BYTES = 256 * 1024;
/** The least distance (compressed bytes) between the live stream and a speculative one. */
const MIN_AHEAD = 64 * 1024;
/** Output a speculative stream may give before its two dictionaries agree on a whole window, or it gives up. */
const DUAL_LIMIT = 16 * 2 ** 20;
const ZERO_WINDOW = new Uint8Array(WINDOW_SIZE);
const ONES_WINDOW = new Uint8Array(WINDOW_SIZE).fill(0xff);

/** When the native engine starts a second, speculative stream (BuildOptions.speculation). */
export interface SpeculationOptions {
  /** Compressed bytes from a member's start to the end of the file for speculative streams to run; default 16 MiB, Infinity (never) with one CPU. */
  minimum?: number;
  /** Output a speculative stream may hold until the stream behind it reaches it; default 32 MiB. */
  buffer?: number;
  /** Told each time a speculative stream's output is taken, with the bit where it joined (tests count them). */
  onJoin?: (bit: number) => void;
}

// With one CPU a second stream only costs (it needs a core of its own to pay).
const DEFAULT_SPECULATION = { minimum: availableParallelism() > 1 ? 16 * 2 ** 20 : Infinity, buffer: 32 * 2 ** 20 };

/** One inflateBlocks call's worth of a stream, in order. */
interface Piece {
  /** Pairs: absolute bit where a block starts, stream-relative output offset there. */
  boundaries: number[];
  output: Uint8Array;
  /** The call stopped at the stream's stopBit: the last boundary is that one. */
  stopped: boolean;
  ended: boolean;
  /** File offset just past the compressed bytes inflated so far. */
  inputEnd: number;
}

/**
 * A zlib stream over one member from a block boundary on, run on libuv's thread pool ahead of
 * the consumer, which takes its pieces in order. A speculative stream starts where no history is
 * known yet (see inflateNative) and keeps nothing until its output is known to be true: from then
 * on (`join`) it queues its pieces.
 */
interface InflateStream {
  readonly startBit: number;
  /** Where this stream's pieces begin: a block boundary (absolute bit) and the stream-relative output there. */
  join: { bit: number; u: number } | undefined;
  /** Settles once `join` is known, or the stream gave up. */
  readonly joined: Promise<void>;
  /** Absolute bit of a block boundary to stop at (read when each call starts). */
  stopBit: number | undefined;
  /** Where the next read starts: nothing at or past it has been inflated. */
  readonly readAt: number;
  /** File offset just past the compressed bytes inflated so far. */
  readonly inputEnd: number;
  /** Why a speculative stream gave up (it is then dropped), or the error a live one meets. */
  readonly failure: unknown;
  take(): Promise<Piece>;
  /** Gives a taken piece's output buffer back to the shared pool (fresh 1 MiB buffers per call cost page faults). */
  release(piece: Piece): void;
  /** After a stopped piece: go on past the stop. */
  resume(): void;
  cancel(): void;
  /** Settles when no call is left running (it never rejects). */
  readonly finished: Promise<void>;
}

function inflateStream(
  native: NativeZlib,
  source: Source,
  startBit: number,
  capacity: number,
  speculative: boolean,
  spare: Uint8Array[],
): InflateStream {
  const pieces: Piece[] = [];
  let queued = 0;
  let markJoined!: () => void;
  const joined = new Promise<void>((resolve) => (markJoined = resolve));
  let done = false;
  let cancelled = false;
  let paused = false; // after a stopped piece, until resume()
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  const wake = () => {
    wakeConsumer?.();
    wakeConsumer = undefined;
  };
  const startByte = Math.floor(startBit / 8);
  // A block inside a byte: zlib is primed with the byte's top bits and counts bits from the next byte.
  const primeBits = startBit % 8 === 0 ? 0 : 8 - (startBit % 8);
  const baseBit = (startByte + (primeBits > 0 ? 1 : 0)) * 8;
  const stream: InflateStream & { failure: unknown; readAt: number; inputEnd: number } = {
    startBit,
    join: speculative ? undefined : { bit: startBit, u: 0 },
    joined,
    stopBit: undefined,
    readAt: startByte,
    inputEnd: startByte,
    failure: undefined,
    async take() {
      for (;;) {
        const piece = pieces.shift();
        if (piece) {
          queued -= piece.output.length;
          wakeProducer?.();
          wakeProducer = undefined;
          return piece;
        }
        if (stream.failure !== undefined) throw stream.failure;
        if (done) throw new Error('seekz: an inflate stream was read past its end');
        await new Promise<void>((resolve) => (wakeConsumer = resolve));
      }
    },
    release(piece) {
      if (piece.output.buffer.byteLength === NATIVE_OUTPUT) spare.push(new Uint8Array(piece.output.buffer));
    },
    resume() {
      paused = false;
      wakeProducer?.();
      wakeProducer = undefined;
    },
    cancel() {
      cancelled = true;
      stream.resume();
    },
    finished: Promise.resolve(),
  };
  const readPiece = () => {
    const length = Math.min(READ_PIECE, source.size - stream.readAt);
    const reading = length > 0 ? source.read(stream.readAt, length) : Promise.resolve(new Uint8Array(0));
    stream.readAt += length;
    return reading;
  };
  const produce = async () => {
    // Two dictionaries that differ in every byte: output that agrees does not depend on the history.
    const inflaters = speculative ? [native.createInflater(ZERO_WINDOW), native.createInflater(ONES_WINDOW)] : [native.createInflater()];
    let nextInput = readPiece();
    let input: Uint8Array = new Uint8Array(0);
    let first = true;
    let produced = 0; // stream-relative output so far
    let lastDifference = -1; // the last output byte the two dictionaries gave differently
    let clean = !speculative; // every byte from here on is true output
    try {
      for (;;) {
        while ((queued >= capacity || paused) && !cancelled) await new Promise<void>((resolve) => (wakeProducer = resolve));
        if (cancelled) return;
        if (input.length === 0) {
          input = await nextInput;
          if (input.length === 0) throw fail('DEFLATE_TRUNCATED', source.size * 8);
          nextInput = readPiece();
        }
        const stop = stream.stopBit === undefined ? -1 : stream.stopBit - baseBit;
        const outputs = inflaters.map(() => spare.pop() ?? new Uint8Array(NATIVE_OUTPUT));
        const prime = first ? primeBits : 0;
        first = false;
        const results = await Promise.all(inflaters.map((inflater, at) => native.inflateBlocks(inflater, input, outputs[at]!, prime, stop)));
        const result = results[0]!;
        input = input.subarray(result.inUsed);
        const inputEnd = (stream.inputEnd += result.inUsed);
        const boundaries: number[] = [];
        for (let at = 0; at < result.boundaries.length; at += 2) boundaries.push(baseBit + result.boundaries[at]!, result.boundaries[at + 1]!);
        let output = outputs[0]!.subarray(0, result.outUsed);
        const start = produced;
        produced += result.outUsed;
        if (inflaters.length === 2) {
          const other = results[1]!;
          if (other.outUsed !== result.outUsed || other.inUsed !== result.inUsed || other.ended !== result.ended) throw new Error('the dictionaries parsed differently');
          const difference = lastDifferenceOf(output, outputs[1]!.subarray(0, other.outUsed));
          spare.push(outputs[1]!);
          if (difference >= 0) lastDifference = start + difference;
          // A whole window that agrees is true output, and so is everything inflated from it.
          if (produced - (lastDifference + 1) >= WINDOW_SIZE) {
            inflaters.pop();
            clean = true;
          } else if (produced > DUAL_LIMIT) throw new Error('the dictionaries still disagree');
        }
        if (!stream.join && clean) {
          // The first boundary with a true window behind it.
          const from = lastDifference + 1 + WINDOW_SIZE;
          let at = 0;
          while (at < boundaries.length && boundaries[at + 1]! < from) at += 2;
          if (at < boundaries.length) {
            stream.join = { bit: boundaries[at]!, u: boundaries[at + 1]! };
            markJoined();
            boundaries.splice(0, at + 2);
            output = output.subarray(stream.join.u - start);
          }
        }
        if (!stream.join) {
          if (result.ended) throw new Error('the member ended first');
          spare.push(outputs[0]!);
          continue;
        }
        const stopped = stop >= 0 && result.boundaries.at(-2) === stop;
        pieces.push({ boundaries, output, stopped, ended: result.ended, inputEnd });
        queued += output.length;
        paused = stopped;
        wake();
        if (result.ended) return;
      }
    } catch (error) {
      stream.failure = error;
    } finally {
      done = true;
      markJoined();
      wake();
      await nextInput.catch(() => {});
    }
  };
  (stream as { finished: Promise<void> }).finished = produce();
  return stream;
}

/** The offset of the last byte where a and b (of one length) differ, or -1. */
function lastDifferenceOf(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.compare(a, b) === 0) return -1;
  let at = a.length - 1;
  while (at >= 0 && a[at] === b[at]) at--;
  return at;
}

/**
 * The native engine: zlib's own inflate (Z_BLOCK) on libuv's thread pool stops at every block
 * boundary and says at which bit (as zran.c and gztool use it), so no walker runs; this thread
 * sums the CRC-32s and copies windows.
 *
 * Speculative streams put the second core to work. Ahead of the live stream, at a block that
 * findBlock guesses, a second stream starts twice, with two dictionaries that differ in every
 * byte; where both give the same 32 KiB, that output came from the compressed bits alone, and so
 * does everything after it. From the next block boundary on (its join) the stream queues its
 * output. Its work is used only when the live stream, zlib from the member's start, reports a
 * block boundary at exactly its start and stops at exactly its join: the speculative stream then
 * holds zlib's own output and boundaries from there, and the same indexer goes on with them,
 * so the index is the one a single stream gives. Otherwise it is dropped. Pinned by
 * test/gzip-index-engines.test.ts (indexes with and without speculation, byte for byte).
 */
async function inflateNative(
  native: NativeZlib,
  source: Source,
  deflateStart: number,
  indexer: MemberIndexer,
  onProgress: ((done: number) => void) | undefined,
  speculation: SpeculationOptions | undefined,
): Promise<{ deflateEnd: number; endBit: number }> {
  const { minimum, buffer, onJoin } = { ...DEFAULT_SPECULATION, ...speculation };
  const spare: Uint8Array[] = []; // output buffers the streams share, for reuse
  let live = inflateStream(native, source, deflateStart * 8, NATIVE_OUTPUT, false, spare);
  const streams = [live];
  let offset = 0; // member-relative output where the live stream's output starts
  let next: InflateStream | undefined;
  let confirmed = false; // the live stream stopped at a block boundary exactly where `next` starts
  let scanFrom = 0; // no speculation before the live stream reads this far (after a scan found nothing)
  const drop = () => {
    next?.cancel();
    next = undefined;
    confirmed = false;
    live.stopBit = undefined;
  };
  try {
    for (;;) {
      const piece = await live.take();
      const { boundaries } = piece;
      const stop = piece.stopped ? boundaries.at(-2) : undefined;
      const joining = next?.join !== undefined && confirmed && stop === next.join.bit;
      for (let at = 0; at < (joining ? boundaries.length - 2 : boundaries.length); at += 2) {
        const bit = boundaries[at]!;
        // Passed where the speculative stream starts, or joins, without a boundary there.
        if (next && (confirmed ? bit > next.join!.bit : bit > next.startBit)) drop();
        indexer.boundary(bit, offset + boundaries[at + 1]!);
      }
      indexer.output(piece.output);
      live.release(piece);
      onProgress?.(piece.inputEnd);
      if (joining) {
        // zlib from the member's start stopped at the join: from here the speculative stream's output is zlib's.
        const join = next!.join!;
        indexer.boundary(join.bit, indexer.produced);
        onJoin?.(join.bit);
        offset = indexer.produced - join.u;
        live.cancel();
        live = next!;
        next = undefined;
        confirmed = false;
        continue;
      }
      if (piece.ended) return { deflateEnd: piece.inputEnd, endBit: piece.inputEnd * 8 };
      if (next && stop === next.startBit) {
        // A block starts where the speculative stream does: wait for its join (it is far ahead, so rarely).
        confirmed = true;
        await next.joined;
        if (next.join && next.failure === undefined) live.stopBit = next.join.bit;
        else drop();
      }
      if (piece.stopped) live.resume();
      if (next?.failure !== undefined) drop();
      if (!next && indexer.produced > 0 && source.size - deflateStart >= minimum && live.readAt >= scanFrom) {
        // Far enough ahead that the speculative stream fills about its buffer by the time the live
        // one arrives, or halfway through what is left.
        const ratio = indexer.produced / Math.max(1, piece.inputEnd - deflateStart);
        const ahead = Math.min(Math.floor(buffer / Math.max(1, ratio)), Math.floor((source.size - live.readAt) / 2));
        const from = live.readAt + Math.max(MIN_AHEAD, ahead);
        if (from < source.size) {
          const bit = native.findBlock(await source.read(from, Math.min(SCAN_BYTES, source.size - from)), 0);
          // Nothing at or past readAt is inflated yet (checked after the read), so the live stream cannot pass this stop unseen.
          if (bit >= 0 && from * 8 + bit >= live.readAt * 8) {
            streams.push((next = inflateStream(native, source, from * 8 + bit, buffer, true, spare)));
            live.stopBit = next.startBit;
          } else if (bit < 0) scanFrom = from;
        }
      }
    }
  } catch (error) {
    throw (error as { code?: string }).code === 'Z_DATA_ERROR' ? fail('DEFLATE_BAD_DATA', (error as Error).message, live.inputEnd * 8) : error;
  } finally {
    for (const stream of streams) stream.cancel();
    await Promise.all(streams.map((stream) => stream.finished));
  }
}

/**
 * The pure JavaScript engine (no addon, or SEEKZ_NATIVE=0). Two things run side by side: the
 * deflate block walker (on this thread) finds block boundaries, while node:zlib inflates the
 * same bytes on libuv's thread pool. The consumer of inflated output waits for the walker, so no
 * window is passed by before its point is known.
 */
async function inflateWithWalker(
  source: Source,
  deflateStart: number,
  indexer: MemberIndexer,
  onProgress: ((done: number) => void) | undefined,
): Promise<{ deflateEnd: number; endBit: number }> {
  let walked = 0; // member-relative output the walker has passed
  let walkDone = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };

  const walking = (async () => {
    let endBit = deflateStart * 8;
    for await (const block of walkDeflate(source, deflateStart)) {
      indexer.boundary(block.headerBit, block.outStart);
      walked = block.outStart + block.outLength;
      endBit = block.endBit;
      notify();
    }
    walkDone = true;
    notify();
    return endBit;
  })();
  let walkError: unknown;
  walking.catch((error: unknown) => {
    walkError = error;
    notify();
  });

  const inflater = createInflateRaw({ chunkSize: 256 * 1024 });
  // Feeds the member's bytes. Where the member ends is known only once the walker is through, and
  // zlib stops taking input at the end of the deflate stream, so waiting for 'drain' also ends
  // when the walker does; then the feed stops at the member's last byte.
  let deflateEndByte = source.size;
  const walkFinished = walking.then(
    (end) => void (deflateEndByte = Math.ceil(end / 8)),
    () => undefined,
  );
  const feeding = (async () => {
    for (let at = deflateStart; at < deflateEndByte; at += READ_PIECE) {
      const bytes = await source.read(at, Math.min(READ_PIECE, deflateEndByte - at));
      if (!inflater.write(bytes)) {
        let onDrain!: () => void;
        await Promise.race([new Promise<void>((resolve) => inflater.once('drain', (onDrain = resolve))), walkFinished]);
        inflater.off('drain', onDrain);
      }
      onProgress?.(at + bytes.length);
    }
    inflater.end();
  })();
  feeding.catch((error) => inflater.destroy(error));

  try {
    for await (const chunk of inflater as AsyncIterable<Buffer>) {
      const end = indexer.produced + chunk.length;
      while (!walkDone && walked < end) {
        if (walkError) throw walkError;
        await new Promise<void>((resolve) => (wake = resolve));
        if (walkError) throw walkError;
      }
      indexer.output(chunk);
    }
  } catch (error) {
    inflater.destroy();
    await walking.catch(() => {});
    await feeding.catch(() => {});
    throw (error as { code?: string }).code?.startsWith('Z_') ? fail('DEFLATE_BAD_DATA', (error as Error).message, deflateStart * 8) : error;
  }
  const endBit = await walking;
  await feeding.catch(() => {});
  if (indexer.produced !== walked) throw fail('DEFLATE_BAD_DATA', `walker counted ${walked} bytes, zlib produced ${indexer.produced}`, deflateStart * 8);
  return { deflateEnd: Math.ceil(endBit / 8), endBit };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
