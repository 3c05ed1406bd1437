import { createInflateRaw } from 'node:zlib';
import { walkDeflate } from '../../deflate/walk.js';
import { fail } from '../../errors.js';
import type { Source } from '../../source/source.js';
import { GZIP_MAGIC_1, GZIP_MAGIC_2, readGzipHeader, TRAILER_LENGTH, type GzipHeader } from '../header.js';
import { WINDOW_SIZE, type AccessPoint, type GzipIndex } from './types.js';

export const DEFAULT_SPACING = 4 * 2 ** 20;
const READ_PIECE = 1 << 20;

export interface BuildOptions {
  spacing?: number;
  onProgress?: (compressedDone: number) => void;
}

/**
 * Builds access points in one pass over any gzip file (multi-member too). Two things run side by
 * side: the deflate block walker (JavaScript, on this thread) finds block boundaries and picks
 * the points, while node:zlib inflates the same bytes on libuv's thread pool to capture the
 * 32 KiB window before each point. The consumer of inflated output waits for the walker, so no
 * window is passed by before its point is known.
 *
 * BGZF files (bgzip, every member ≤ 64 KiB and sized in its header) are indexed from the member
 * headers alone: every member starts with no history, so points need no windows.
 */
export async function buildGzipIndex(source: Source, options: BuildOptions = {}): Promise<GzipIndex> {
  const spacing = options.spacing ?? DEFAULT_SPACING;
  if (!Number.isSafeInteger(spacing) || spacing < 1) throw fail('BAD_ARGUMENT', `spacing ${spacing} must be a positive whole number`);
  const points: AccessPoint[] = [];
  let memberStart = 0;
  let uBase = 0;
  while (memberStart < source.size) {
    const magic = await source.read(memberStart, 2);
    // Zero padding or other bytes after the last member end the data, as they do for gzip -d.
    if (magic.length < 2 || magic[0] !== GZIP_MAGIC_1 || magic[1] !== GZIP_MAGIC_2) {
      if (memberStart === 0) throw fail('GZIP_BAD_MAGIC', 0, Array.from(magic, (byte) => byte.toString(16).padStart(2, '0')).join(' '));
      break;
    }
    const header = await readGzipHeader((offset, length) => source.read(offset, length), source.size, memberStart);
    const bgzfSize = bgzfBlockSize(header);
    if (bgzfSize !== undefined) {
      // BGZF: the member's size and its ISIZE say everything; no inflation needed.
      const end = memberStart + bgzfSize;
      if (end > source.size) throw fail('GZIP_TRUNCATED', 'BGZF block', memberStart, source.size);
      const trailer = await source.read(end - 4, 4);
      const isize = new DataView(trailer.buffer, trailer.byteOffset, 4).getUint32(0, true);
      // Every member is a point: it has no history, so the point costs no window.
      if (isize > 0) points.push({ uOffset: uBase, cOffset: memberStart + header.length, bits: 0, window: new Uint8Array(0) });
      uBase += isize;
      memberStart = end;
      options.onProgress?.(memberStart);
      continue;
    }
    const member = await indexMember(source, memberStart + header.length, uBase, spacing, points, options.onProgress);
    uBase += member.uLength;
    memberStart = member.deflateEnd + TRAILER_LENGTH;
    if (memberStart > source.size) throw fail('GZIP_TRUNCATED', 'trailer', member.deflateEnd, source.size);
  }
  return { compressedSize: source.size, uncompressedSize: uBase, spacing, points };
}

/** BSIZE from a BGZF header's 'BC' subfield (SAM/BAM spec §4.1), or undefined for other gzip. */
function bgzfBlockSize(header: GzipHeader): number | undefined {
  const subfield = header.extra.find((extra) => extra.id === 'BC' && extra.data.length === 2);
  return subfield ? subfield.data[0]! + subfield.data[1]! * 256 + 1 : undefined;
}

async function indexMember(
  source: Source,
  deflateStart: number,
  uBase: number,
  spacing: number,
  points: AccessPoint[],
  onProgress: ((done: number) => void) | undefined,
): Promise<{ uLength: number; deflateEnd: number }> {
  // Points chosen by the walker and waiting for their windows, in order.
  const waiting: AccessPoint[] = [];
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

  // Output consumer: keeps the last 32 KiB, hands windows to points as output reaches them.
  let tail = new Uint8Array(0);
  let produced = 0;
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
  return { uLength: produced, deflateEnd };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
