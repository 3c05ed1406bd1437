/**
 * Writes the zstd seekable format: independent frames of exactly `frameSize` uncompressed bytes
 * (the last may be shorter), each with its content size and Content_Checksum, then the seek table
 * (a skippable frame with one entry per frame, checksums included) that ends the file. Frames are
 * compressed on worker threads and written in order, and each frame's bytes depend only on its
 * data and the level, so the output is the same for any thread count. An all-zero frame is
 * compressed once and its bytes reused. The entry a frame gets in the seek table is made from the
 * frame as it is written (sizes counted, checksum copied from its last four bytes), so the table
 * cannot disagree with the file. `stored` ranges become stored frames (src/zstd/stored.ts) cut by
 * the same grid as seekxz's stored blocks (src/stored-ranges.ts). Pinned by test/zstd.test.ts
 * ("identical for any -T") and test/zstd-edit.test.ts.
 */
import { fail } from '../errors.js';
import type { Sink } from '../io/sink.js';
import type { SequentialInput } from '../source/sequential.js';
import { orderedWindow } from '../workers/ordered.js';
import { createWorkerPool, defaultThreads } from '../workers/pool.js';
import { nextPiece, normaliseRanges, type ByteRange } from '../stored-ranges.js';
import { isAllZero } from '../zeros.js';
import { buildSeekTable, frameChecksum, SEEKABLE_MAX_FRAME_SIZE, type SeekEntry } from './format.js';
import { buildStoredFrame, STORED_FRAME_MAX } from './stored.js';

/**
 * 1 MiB: on the bench image (npm run bench -- --only zstd) it costs 0.15 % in size against plain
 * zstd -3 and keeps a cold 4 KiB read to one small decode; 2 MiB saved 0.13 % more but doubled
 * the decode behind every read (see the README's sweep).
 */
export const DEFAULT_FRAME_SIZE = 2 ** 20;
export const DEFAULT_LEVEL = 3;
export const MAX_LEVEL = 22;

export interface ZstdWriterOptions {
  frameSize?: number;
  /** 1 to 22 (zstd's --ultra levels above 19 included); default 3 as in zstd. */
  level?: number;
  threads?: number;
  /**
   * Uncompressed ranges [start, end) written as stored frames (raw blocks only, at most 1 MiB,
   * aligned to the range's edges; see stored.ts), so seekz patch can overwrite them in place.
   */
  stored?: ByteRange[];
  /** Called as each frame is written: its seek table entry and file offset. */
  onFrame?: (frame: SeekEntry & { offset: number }) => void;
  onProgress?: (done: number) => void;
  /** Stops the worker threads at once when aborted; the write then fails. */
  signal?: AbortSignal;
}

export interface ZstdWriterResult {
  entries: SeekEntry[];
  uncompressedSize: number;
  compressedSize: number;
  zeroFrames: number;
  /** Uncompressed bytes written as stored frames. */
  storedBytes: number;
}

/**
 * libzstd's compressor memory per thread (ZSTD_estimateCCtxSize for a frame of at least the
 * window: level 1-2 ≈ 1-2 MiB, 3 ≈ 4 MiB, up to ≈ 200 MiB at 19 and 600 MiB+ at 22; a frame
 * smaller than the window shrinks it), plus 2 × threads + 1 frames in flight, each with its
 * input and its output (measured: 116-120 MiB peak RSS at -3 -T2 with 1 MiB frames).
 */
export function zstdWriterMemoryBound(threads: number, frameSize: number, level: number): number {
  const encoder = level <= 2 ? 2 : level <= 5 ? 8 : level <= 12 ? 40 : level <= 19 ? 200 : 700;
  return 100 * 2 ** 20 + threads * (encoder * 2 ** 20 + 5 * frameSize) + 2 * frameSize;
}

export async function writeZstd(input: SequentialInput, sink: Sink, options: ZstdWriterOptions = {}): Promise<ZstdWriterResult> {
  const frameSize = options.frameSize ?? DEFAULT_FRAME_SIZE;
  const level = options.level ?? DEFAULT_LEVEL;
  if (!Number.isSafeInteger(frameSize) || frameSize < 4096 || frameSize > SEEKABLE_MAX_FRAME_SIZE / 2) {
    throw fail('BAD_ARGUMENT', `frame size ${frameSize} must be 4 KiB to 1 GiB`);
  }
  if (!Number.isInteger(level) || level < 1 || level > MAX_LEVEL) throw fail('BAD_ARGUMENT', `level ${level} must be 1 to ${MAX_LEVEL}`);

  const pool = createWorkerPool(options.threads ?? defaultThreads(), options.signal);
  const entries: SeekEntry[] = [];
  let compressedSize = 0;
  let uncompressedSize = 0;
  let zeroFrames = 0;
  let storedBytes = 0;
  const stored = normaliseRanges(options.stored ?? []);

  const spare: Uint8Array[] = [];
  const zeroFramesByLength = new Map<number, Promise<{ frame: Uint8Array; length: number }>>();
  // 2 × threads + 1 frames in flight: with threads + 1 the workers waited between hand-offs.
  const window = orderedWindow<{ frame: Uint8Array; length: number }>(2 * pool.threads + 1, async ({ frame, length }) => {
    const offset = compressedSize;
    await sink.write(frame);
    compressedSize += frame.length;
    uncompressedSize += length;
    const entry = { compressedSize: frame.length, decompressedSize: length, checksum: frameChecksum(frame) };
    entries.push(entry);
    options.onFrame?.({ ...entry, offset });
    options.onProgress?.(uncompressedSize);
  });
  const encode = (data: Uint8Array) => pool.run({ kind: 'zstd-encode', data, level }, [data.buffer as ArrayBuffer]);

  try {
    for (let at = 0; ; ) {
      const next = nextPiece(at, frameSize, STORED_FRAME_MAX, stored);
      if (next.stored) {
        // Built here: a copy and a native XXH64 over at most 1 MiB cost less than a trip to a worker.
        const data = await input.read(new Uint8Array(next.length));
        if (data.length === 0) break;
        storedBytes += data.length;
        at += data.length;
        await window.push(Promise.resolve({ frame: buildStoredFrame(data), length: data.length }));
        if (data.length < next.length) break;
        continue;
      }
      const buffer = spare.pop() ?? new Uint8Array(frameSize);
      const data = await input.read(buffer.subarray(0, next.length));
      const length = data.length;
      if (length === 0) break;
      at += length;
      if (isAllZero(data)) {
        zeroFrames++;
        spare.push(buffer);
        let frame = zeroFramesByLength.get(length);
        if (!frame) {
          frame = encode(new Uint8Array(length)).then((encoded) => ({ frame: encoded.compressed, length }));
          zeroFramesByLength.set(length, frame);
        }
        await window.push(frame);
      } else {
        await window.push(
          encode(data).then((encoded) => {
            spare.push(new Uint8Array(encoded.data.buffer));
            return { frame: encoded.compressed, length };
          }),
        );
      }
      if (length < next.length) break;
    }
    await window.drain();
    const table = buildSeekTable(entries);
    await sink.write(table);
    compressedSize += table.length;
  } finally {
    await pool.close();
  }
  return { entries, uncompressedSize, compressedSize, zeroFrames, storedBytes };
}
