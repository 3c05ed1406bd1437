/**
 * Writes the zstd seekable format: independent frames of exactly `frameSize` uncompressed bytes
 * (the last may be shorter), each with its content size and Content_Checksum, then the seek table
 * (a skippable frame with one entry per frame, checksums included) that ends the file. Frames are
 * compressed in runs, in process (libzstd on libuv's thread pool) or on worker threads, and written in order, and each frame's bytes depend only on its
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
import { compressFrame } from './codec.js';
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
/** Uncompressed bytes per job (whole frames; at least one). */
export const ENCODE_RUN_BYTES = 4 << 20;
/** Frames that need no encoding (zero frames) that one run may carry besides its frames to encode. */
const READY_FRAMES_PER_RUN = 256;

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
  /** Stops the encoding within a slice when aborted; the write then fails. */
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
 * smaller than the window shrinks it), plus threads + 3 runs in flight (ENCODE_RUN_BYTES or one
 * frame, each with its input and its output).
 */
export function zstdWriterMemoryBound(threads: number, frameSize: number, level: number): number {
  const encoder = level <= 2 ? 2 : level <= 5 ? 8 : level <= 12 ? 40 : level <= 19 ? 200 : 700;
  const run = level <= 12 ? Math.max(1, Math.floor(ENCODE_RUN_BYTES / frameSize)) * frameSize : frameSize;
  return 100 * 2 ** 20 + threads * encoder * 2 ** 20 + (threads + 3) * 2 * run;
}

export async function writeZstd(input: SequentialInput, sink: Sink, options: ZstdWriterOptions = {}): Promise<ZstdWriterResult> {
  const frameSize = options.frameSize ?? DEFAULT_FRAME_SIZE;
  const level = options.level ?? DEFAULT_LEVEL;
  if (!Number.isSafeInteger(frameSize) || frameSize < 4096 || frameSize > SEEKABLE_MAX_FRAME_SIZE / 2) {
    throw fail('BAD_ARGUMENT', `frame size ${frameSize} must be 4 KiB to 1 GiB`);
  }
  if (!Number.isInteger(level) || level < 1 || level > MAX_LEVEL) throw fail('BAD_ARGUMENT', `level ${level} must be 1 to ${MAX_LEVEL}`);

  // Runs encode in process (libzstd on libuv's thread pool, workers/in-process.ts), `threads` at a
  // time, and this thread only reads and writes: no worker thread starts. Without the addon there
  // is no encoder anywhere, and the first frame fails with ZSTD_UNSUPPORTED.
  const threads = Math.max(1, options.threads ?? defaultThreads());
  const pool = createWorkerPool(threads, options.signal);
  const entries: SeekEntry[] = [];
  let compressedSize = 0;
  let uncompressedSize = 0;
  let zeroFrames = 0;
  let storedBytes = 0;
  const stored = normaliseRanges(options.stored ?? []);

  // Above level 12 the encoder runs at a few MB/s and a run is one frame, so that `threads` runs
  // keep the cores busy; a signal stops one within a slice of its frame (native/zstd/zstd.c).
  const framesPerRun = level <= 12 ? Math.max(1, Math.floor(ENCODE_RUN_BYTES / frameSize)) : 1;
  const spare: Uint8Array[] = [];
  /** Buffers whose frames are written (in process only), for later runs' frames: no fresh pages per run. */
  const spareOutputs: Uint8Array[] = [];
  const zeroFramesByLength = new Map<number, Uint8Array>();
  // threads + 2 runs in flight: each run is several frames, so the workers always have the next.
  const window = orderedWindow<{ frames: Uint8Array[]; lengths: number[]; data?: Uint8Array; output?: Uint8Array }>(threads + 2, async ({ frames, lengths, data, output }) => {
    for (let index = 0; index < frames.length; index++) {
      const frame = frames[index]!;
      const offset = compressedSize;
      await sink.write(frame);
      compressedSize += frame.length;
      uncompressedSize += lengths[index]!;
      const entry = { compressedSize: frame.length, decompressedSize: lengths[index]!, checksum: frameChecksum(frame) };
      entries.push(entry);
      options.onFrame?.({ ...entry, offset });
      options.onProgress?.(uncompressedSize);
    }
    if (data) spare.push(data);
    if (output) spareOutputs.push(output);
  });

  // The run being filled: its buffer, the length of each frame read into it to be encoded, and
  // every frame of the run in file order: a frame to encode (no bytes yet) or one ready already (a
  // zero frame's reused bytes, a stored frame). Ready frames ride in the run instead of taking a
  // place of their own in the window: one each left the window full of finished frames behind a
  // run still encoding, and the workers idle (measured: 0.15 s of 0.8 s with /boot stored).
  let run: { data: Uint8Array; lengths: number[]; items: { frame?: Uint8Array; length: number }[]; readyBytes: number } | undefined;
  const flush = async () => {
    if (!run || run.items.length === 0) return;
    const { data, lengths, items } = run;
    run = undefined;
    const itemLengths = items.map((item) => item.length);
    const inOrder = (encoded: Uint8Array[]) => {
      let next = 0;
      return items.map((item) => item.frame ?? encoded[next++]!);
    };
    if (lengths.length === 0) {
      await window.push(Promise.resolve({ frames: inOrder([]), lengths: itemLengths, data }));
      return;
    }
    const output = spareOutputs.pop();
    const encoded = pool.run({ kind: 'zstd-encode-run', data, lengths, frameSize, level, output }, [data.buffer as ArrayBuffer]);
    await window.push(encoded.then(({ frames, data, output }) => ({ frames: inOrder(frames), lengths: itemLengths, data, output })));
  };
  /** Adds a frame that needs no encoding to the run; a run holds at most a run's worth of such bytes. */
  const addReady = async (frame: Uint8Array, length: number, bytes: number) => {
    run ??= { data: spare.pop() ?? new Uint8Array(framesPerRun * frameSize), lengths: [], items: [], readyBytes: 0 };
    run.items.push({ frame, length });
    run.readyBytes += bytes;
    // Stored bytes count with the bytes to encode, so a run still holds at most a run's worth of
    // input (and its output) as zstdWriterMemoryBound assumes.
    const encoding = run.lengths.reduce((sum, length) => sum + length, 0);
    if (run.readyBytes + encoding >= ENCODE_RUN_BYTES || run.items.length >= READY_FRAMES_PER_RUN) await flush();
  };

  try {
    for (let at = 0; ; ) {
      const next = nextPiece(at, frameSize, STORED_FRAME_MAX, stored);
      if (next.stored) {
        // Built here: a copy and a native XXH64 over at most 1 MiB cost less than a trip to a worker.
        const data = await input.read(new Uint8Array(next.length));
        if (data.length === 0) break;
        storedBytes += data.length;
        at += data.length;
        const frame = buildStoredFrame(data);
        await addReady(frame, data.length, frame.length);
        if (data.length < next.length) break;
        continue;
      }
      // A frame to encode has its slot of frameSize bytes in the run; one cut short by a stored
      // range leaves the rest of its slot unused (frame i of a run is read at i × frameSize).
      run ??= { data: spare.pop() ?? new Uint8Array(framesPerRun * frameSize), lengths: [], items: [], readyBytes: 0 };
      const slot = run.lengths.length * frameSize;
      const data = await input.read(run.data.subarray(slot, slot + next.length));
      const length = data.length;
      if (length === 0) break;
      at += length;
      if (isAllZero(data)) {
        // Compressed once per length (here: zeros take a fraction of a millisecond), then reused;
        // its slot is read over by the next frame.
        zeroFrames++;
        let frame = zeroFramesByLength.get(length);
        if (!frame) zeroFramesByLength.set(length, (frame = compressFrame(new Uint8Array(length), level)));
        await addReady(frame, length, 0);
      } else {
        run.lengths.push(length);
        run.items.push({ length });
        if (run.lengths.length === framesPerRun || run.readyBytes + run.lengths.length * frameSize > ENCODE_RUN_BYTES) await flush();
      }
      if (length < next.length) break;
    }
    await flush();
    await window.drain();
    const table = buildSeekTable(entries);
    await sink.write(table);
    compressedSize += table.length;
  } finally {
    await pool.close();
  }
  return { entries, uncompressedSize, compressedSize, zeroFrames, storedBytes };
}
