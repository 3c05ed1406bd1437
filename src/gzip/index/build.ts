import { createInflateRaw, inflateRawSync, type ZlibOptions } from 'node:zlib';
import { walkDeflate } from '../../deflate/walk.js';
import { fail } from '../../errors.js';
import type { Source } from '../../source/source.js';
import { crc32, crc32Combine } from '../../crc/crc32.js';
import { GZIP_MAGIC_1, GZIP_MAGIC_2, readGzipHeader, TRAILER_LENGTH, whatFollowsMember, type GzipHeader } from '../header.js';
import { WINDOW_SIZE, type AccessPoint, type GzipIndex } from './types.js';

export const DEFAULT_SPACING = 4 * 2 ** 20;
const READ_PIECE = 1 << 20;

export interface BuildOptions {
  spacing?: number;
  onProgress?: (compressedDone: number) => void;
  /** Told of each member once its trailer checks out (seekz info lists them). */
  onMember?: (member: GzipMember) => void;
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
 * Builds access points in one pass over any gzip file (multi-member too). Two things run side by
 * side: the deflate block walker (JavaScript, on this thread) finds block boundaries and picks
 * the points, while node:zlib inflates the same bytes on libuv's thread pool to capture the
 * 32 KiB window before each point. The consumer of inflated output waits for the walker, so no
 * window is passed by before its point is known.
 *
 * Nothing unchecked goes into an index: every member's CRC-32 and ISIZE are checked against its
 * trailer as zcat does, and every point records the CRC-32 of its span's output, so reads through
 * the index are verified too. Members follow each other as gzip -d reads them: zero padding to
 * the end is ignored, other trailing bytes end the data ("trailing garbage", recorded in `end`).
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
      if (bgzf.isize > 0) points.push({ uOffset: uBase, cOffset: memberStart + header.length, bits: 0, window: new Uint8Array(0), crc: bgzf.crc });
      member = { uLength: bgzf.isize, end: bgzf.end, crc: bgzf.crc };
    } else {
      const inflated = await indexMember(source, memberStart + header.length, uBase, spacing, points, options.onProgress);
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

async function indexMember(
  source: Source,
  deflateStart: number,
  uBase: number,
  spacing: number,
  points: AccessPoint[],
  onProgress: ((done: number) => void) | undefined,
): Promise<{ uLength: number; deflateEnd: number; crc: number }> {
  // Points chosen by the walker and waiting for their windows, in order.
  const waiting: AccessPoint[] = [];
  // All of this member's points, for their span CRCs.
  const memberPoints: AccessPoint[] = [];
  let lastPoint = uBase;
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
      const uOffset = uBase + block.outStart;
      // A point at every member's start (no history, so it costs no window; reads then never
      // cross a member boundary), and inside a member every `spacing` bytes.
      const atMemberStart = block.headerBit === deflateStart * 8;
      if (atMemberStart || uOffset - lastPoint >= spacing) {
        const cOffset = Math.ceil(block.headerBit / 8);
        const point = { uOffset, cOffset, bits: cOffset * 8 - block.headerBit, window: new Uint8Array(0) };
        points.push(point);
        memberPoints.push(point);
        if (!atMemberStart) waiting.push(point);
        lastPoint = uOffset;
      }
      walked = block.outStart + block.outLength;
      endBit = block.endBit;
      notify();
    }
    walkDone = true;
    notify();
    return Math.ceil(endBit / 8);
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
    (end) => void (deflateEndByte = end),
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

  // Output consumer: keeps the last 32 KiB, hands windows to points as output reaches them, and
  // takes the CRC-32 of each span (point to next point) and of the whole member.
  let tail = new Uint8Array(0);
  let produced = 0;
  let span = 0; // memberPoints index of the span being summed
  let spanCrc = 0;
  let spanLength = 0;
  let memberCrc = 0;
  const closeSpan = () => {
    memberPoints[span]!.crc = spanCrc;
    memberCrc = crc32Combine(memberCrc, spanCrc, spanLength);
    span++;
    spanCrc = 0;
    spanLength = 0;
  };
  const sum = (bytes: Uint8Array) => {
    spanCrc = crc32(bytes, spanCrc);
    spanLength += bytes.length;
  };
  try {
    for await (const chunk of inflater as AsyncIterable<Buffer>) {
      const end = produced + chunk.length;
      while (!walkDone && walked < end) {
        if (walkError) throw walkError;
        await new Promise<void>((resolve) => (wake = resolve));
        if (walkError) throw walkError;
      }
      while (waiting.length > 0 && waiting[0]!.uOffset - uBase <= end) {
        const point = waiting.shift()!;
        const cut = point.uOffset - uBase - produced; // bytes of this chunk before the point
        const history = concat(tail, chunk.subarray(0, cut));
        point.window = history.slice(Math.max(0, history.length - WINDOW_SIZE));
      }
      let from = 0;
      while (span + 1 < memberPoints.length && memberPoints[span + 1]!.uOffset - uBase < end) {
        const cut = memberPoints[span + 1]!.uOffset - uBase - produced;
        sum(chunk.subarray(from, cut));
        from = cut;
        closeSpan();
      }
      sum(chunk.subarray(from));
      const recent = concat(tail, chunk);
      tail = recent.slice(Math.max(0, recent.length - WINDOW_SIZE));
      produced = end;
    }
  } catch (error) {
    inflater.destroy();
    await walking.catch(() => {});
    await feeding.catch(() => {});
    throw (error as { code?: string }).code?.startsWith('Z_') ? fail('DEFLATE_BAD_DATA', (error as Error).message, deflateStart * 8) : error;
  }
  const deflateEnd = await walking;
  await feeding.catch(() => {});
  if (produced !== walked) throw fail('DEFLATE_BAD_DATA', `walker counted ${walked} bytes, zlib produced ${produced}`, deflateStart * 8);
  // The last span ends with the member; points at its very end have empty spans.
  while (span < memberPoints.length) closeSpan();
  return { uLength: produced, deflateEnd, crc: memberCrc };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
