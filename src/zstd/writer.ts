/**
 * Writes the zstd seekable format: independent frames of exactly `frameSize` uncompressed bytes
 * (the last may be shorter), each with its content size and Content_Checksum, then the seek table
 * (a skippable frame with one entry per frame, checksums included) that ends the file. Frames are
 * compressed in runs, in process (libzstd on libuv's thread pool) or on worker threads, and
 * written in order, and each frame's bytes depend only on its data and the level, so the output
 * is the same for any thread count. An all-zero frame is compressed once and its bytes reused.
 * The entry a frame gets in the seek table is made from the frame as it is written (sizes
 * counted, checksum copied from its last four bytes), so the table cannot disagree with the file.
 * The input is read a run ahead, one read per run (src/source/chunks.ts), and a run's frames go
 * out in as few writes as lie back to back. `stored` ranges become stored frames
 * (src/zstd/stored.ts) cut by the same grid as seekxz's stored blocks (src/stored-ranges.ts).
 * Pinned by test/zstd.test.ts ("identical for any -T") and test/zstd-edit.test.ts.
 */
import { fail } from '../errors.js';
import type { Sink } from '../io/sink.js';
import type { SequentialInput } from '../source/sequential.js';
import { orderedWindow } from '../workers/ordered.js';
import { createWorkerPool, defaultThreads } from '../workers/pool.js';
import { readChunks } from '../source/chunks.js';
import { normaliseRanges, type ByteRange } from '../stored-ranges.js';
import { isAllZero } from '../zeros.js';
import { compressFrame, frameBound } from './codec.js';
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
  const runBytes = level <= 12 ? Math.max(1, Math.floor(ENCODE_RUN_BYTES / frameSize)) * frameSize : frameSize;
  const zeroFramesByLength = new Map<number, Uint8Array>();
  const zeroFrame = (length: number) => {
    let frame = zeroFramesByLength.get(length);
    // Compressed once per length (here: zeros take a fraction of a millisecond), then reused.
    if (!frame) zeroFramesByLength.set(length, (frame = compressFrame(new Uint8Array(length), level)));
    return frame;
  };
  const repeats = new Map<Uint8Array, Uint8Array>();
  /** Buffers whose frames are written (in process only), for later runs' frames: no fresh pages per run. */
  const spareOutputs: Uint8Array[] = [];
  // threads + 2 batches in flight: each holds a run of several frames, so the pool always has the
  // next; each batch is written as soon as it is done (eager), its output buffer free for the next.
  const window = orderedWindow<{ frames: Uint8Array[]; lengths: number[]; output?: Uint8Array }>(threads + 2, async ({ frames, lengths, output }) => {
    for (const bytes of coalesce(frames, repeats)) await sink.write(bytes);
    for (let index = 0; index < frames.length; index++) {
      const frame = frames[index]!;
      const entry = { compressedSize: frame.length, decompressedSize: lengths[index]!, checksum: frameChecksum(frame) };
      entries.push(entry);
      options.onFrame?.({ ...entry, offset: compressedSize });
      compressedSize += frame.length;
      uncompressedSize += lengths[index]!;
    }
    options.onProgress?.(uncompressedSize);
    if (output) spareOutputs.push(output);
  }, { eager: true });

  // The batch being gathered for the window: every frame of one or more chunks in file order, each
  // either to be encoded (no bytes yet: the run's next) or ready already (a zero frame's reused
  // bytes, a stored frame). Chunks with nothing to encode ride in the batch of the next that has:
  // one each left the window full of finished frames behind a run still encoding, and the pool
  // idle (measured: 0.15 s of 0.8 s with /boot stored).
  let batch: { items: { frame?: Uint8Array; length: number }[]; readyBytes: number } = { items: [], readyBytes: 0 };
  const pushBatch = async (encoded?: Promise<{ frames: Uint8Array[]; output?: Uint8Array }>) => {
    const { items } = batch;
    batch = { items: [], readyBytes: 0 };
    if (items.length === 0) return;
    const lengths = items.map((item) => item.length);
    const inOrder = ({ frames, output }: { frames: Uint8Array[]; output?: Uint8Array }) => {
      let next = 0;
      return { frames: items.map((item) => item.frame ?? frames[next++]!), lengths, output };
    };
    await window.push(encoded ? encoded.then(inOrder) : Promise.resolve(inOrder({ frames: [] })));
  };

  const chunks = readChunks(input, {
    pieceSize: frameSize,
    storedMax: STORED_FRAME_MAX,
    // Stored pieces are read with the rest: a buffer holds the largest.
    bufferBytes: stored.length > 0 ? Math.max(runBytes, STORED_FRAME_MAX) : runBytes,
    capacity: (at) => chunkCapacity(at, input.size, runBytes, frameSize, threads),
    stored,
  });
  try {
    for (;;) {
      const chunk = await chunks.next();
      if (!chunk) break;
      const starts: number[] = [];
      const lengths: number[] = [];
      for (const { start, length, stored: isStored } of chunk.pieces) {
        const bytes = chunk.data.subarray(start, start + length);
        if (isStored) {
          // Built here: a copy and a native XXH64 over at most 1 MiB cost less than a trip to the pool.
          const frame = buildStoredFrame(bytes);
          storedBytes += length;
          batch.items.push({ frame, length });
          batch.readyBytes += frame.length;
        } else if (isAllZero(bytes)) {
          zeroFrames++;
          batch.items.push({ frame: zeroFrame(length), length });
        } else {
          starts.push(start);
          lengths.push(length);
          batch.items.push({ length });
        }
      }
      if (lengths.length === 0) {
        chunks.release(chunk.buffer);
        // Stored bytes count as bytes to encode would, so a batch holds at most a run's worth of
        // input (and its output) as zstdWriterMemoryBound assumes.
        if (batch.readyBytes >= runBytes || batch.items.length >= READY_FRAMES_PER_RUN) await pushBatch();
        continue;
      }
      // Every output buffer has room for a whole run, so that a short run's (at the start, the
      // end, beside a stored range) serves every later one: buffers are reused, never outgrown.
      const output = spareOutputs.pop() ?? new Uint8Array((runBytes / frameSize) * frameBound(frameSize));
      const job = { kind: 'zstd-encode-run' as const, data: chunk.buffer, starts, lengths, level, output };
      const encoded = pool.run(job, [chunk.buffer.buffer as ArrayBuffer]).then((reply) => {
        chunks.release(reply.data);
        return reply;
      });
      await pushBatch(encoded);
    }
    await pushBatch();
    await window.drain();
    const table = buildSeekTable(entries);
    await sink.write(table);
    compressedSize += table.length;
  } finally {
    chunks.stop();
    await pool.close();
  }
  return { entries, uncompressedSize, compressedSize, zeroFrames, storedBytes };
}

/**
 * Bytes for the chunk at `at`: a run, but less at both ends. At the start the chunks grow from one
 * frame (1, 1, 2, 4 MiB), so the first runs start after a short read, not after 4 MiB each; near
 * the known end of the input they shrink, so the last runs are short and the threads finish
 * together rather than one waiting on the other's last run (4 MiB at -3 take ~25 ms).
 */
function chunkCapacity(at: number, size: number | undefined, runBytes: number, frameSize: number, threads: number): number {
  const grown = Math.min(runBytes, Math.floor(at / frameSize) * frameSize);
  const share = size === undefined ? runBytes : Math.floor((size - at) / (2 * threads) / frameSize) * frameSize;
  return Math.max(frameSize, Math.min(grown, share));
}

/** Frames that repeat one zero frame are written from one buffer of it this many times over. */
const REPEAT_MAX = 256;

/**
 * The frames as few writes: frames that lie back to back in one buffer (a run's encoded frames) go
 * as one, and so do repeats of one zero frame (from `repeats`, that frame over and over).
 */
function coalesce(frames: Uint8Array[], repeats: Map<Uint8Array, Uint8Array>): Uint8Array[] {
  const writes: Uint8Array[] = [];
  for (let index = 0; index < frames.length; ) {
    const frame = frames[index]!;
    let end = index + 1;
    if (frames[end] === frame) {
      while (frames[end] === frame && end - index < REPEAT_MAX) end++;
      let repeated = repeats.get(frame);
      if (!repeated) {
        repeated = new Uint8Array(frame.length * REPEAT_MAX);
        for (let at = 0; at < repeated.length; at += frame.length) repeated.set(frame, at);
        repeats.set(frame, repeated);
      }
      writes.push(repeated.subarray(0, (end - index) * frame.length));
    } else {
      let length = frame.length;
      for (; end < frames.length && frames[end]!.buffer === frame.buffer && frames[end]!.byteOffset === frame.byteOffset + length; end++) length += frames[end]!.length;
      writes.push(new Uint8Array(frame.buffer, frame.byteOffset, length));
    }
    index = end;
  }
  return writes;
}
