import { fail } from '../errors.js';
import type { PositionalOutput, Sink } from '../io/sink.js';
import { runsInProcess } from '../workers/in-process.js';
import { orderedWindow } from '../workers/ordered.js';
import { streamDecoder } from './codec.js';
import type { DecodeRunBuffers, ZstdFrame, ZstdSource } from './reader.js';

/** Uncompressed bytes decoded per worker message in a whole pass (or one frame, when larger). */
export const DECODE_RUN_BYTES = 4 << 20;
/**
 * The same with the addon (runs in process, no message to a worker to pay for): smaller runs hold
 * less memory, start the pass sooner and end it with less left for one thread. Measured on the
 * bench image against 4 MiB, the same CPU or less: into a file page faults 9,900 → 7,100 and peak
 * RSS 72 → 61 MiB; to /dev/null 15,300 → 7,200 and 87 → 61 MiB.
 */
const IN_PROCESS_RUN_BYTES = 1 << 20;
/** The largest run decoded on the main thread: about 50 ms of libzstd (larger ones, huge frames, stay off it: its event loop answers signals). */
const HERE_MAX_BYTES = 64 << 20;

/**
 * The decoder pool's size for a whole pass on `threads` cores: with the addon, runs decode in
 * process (libzstd on libuv's thread pool) `threads` at a time, and this thread only reads and
 * writes; on worker threads (fzstd) this thread decodes too, beside threads - 1 workers.
 */
export async function decodePoolThreads(threads: number): Promise<number> {
  return (await runsInProcess('zstd-decode-batch')) ? threads : Math.max(1, threads - 1);
}

/**
 * Decodes a whole .zst to `sink` (or only checks it, without one): runs of frames (about
 * DECODE_RUN_BYTES each, IN_PROCESS_RUN_BYTES with the addon) decode in the pool (see decodePoolThreads) and, on worker threads, on
 * this one too, and are written; their buffers serve later runs, so no frame faults in fresh pages (measured: a fresh 1 MiB buffer per frame
 * cost a quarter of the decode in system time). Frames proven zero are not decoded (isZeroFrame:
 * the same bytes as a zero frame decoded and checked in this pass); frames read as a stream (too
 * large, or without sizes) go through libzstd on this thread. Memory: about (threads + 3) ×
 * max(frame size, DECODE_RUN_BYTES) × 1.5 (each run with its compressed bytes; measured with
 * 2 × threads + 2 runs: more page faults, no gain).
 *
 * A regular file (positional sink), or no output (-t), takes runs in any order: each is written
 * at its offset as it is done and proven zero frames are not written at all (holes; the file gets
 * its size at the end), so a run waiting for a worker that is still starting holds nothing up:
 * this thread decodes whenever the workers have a run each. A pipe takes them in order. With the
 * addon, a run for a file (or -t) is written by the thread that decodes it, frame by frame, each
 * once it checked out (decodeRun's `to`): a frame's bytes reach the page cache while still in that
 * core's cache, and a run holds one frame of output, not all of them (measured on the bench's
 * 256 MiB image, 1 MiB frames: page faults 18,300 → 10,100, CPU 0.30 → 0.21 s; before, the page
 * cache copy of data gone cold was a third of the profile).
 */
export async function decompressZstd(zstd: ZstdSource, sink: Sink | undefined, options: { threads: number; onProgress?: (done: number) => void }): Promise<void> {
  const file = sink?.positional ? await sink.positional() : undefined;
  const inProcess = await runsInProcess('zstd-decode-batch');
  const here = options.threads >= 2 && !inProcess;
  if (file || !sink) return decodeAnyOrder(zstd, file, { ...options, here, direct: inProcess });
  let done = 0;
  const emit = async (data: Uint8Array) => {
    await sink.write(data);
    done += data.length;
    options.onProgress?.(done);
  };
  const spare: DecodeRunBuffers[] = [];
  const zeros = new Map<number, Uint8Array>();
  // Proven zero frames ride on the window entry before them, written after its data: as entries
  // of their own they filled the window, and a run of zero frames behind a run still decoding
  // kept the next runs from starting (measured: -dc to /dev/null slower than to a file).
  type Entry = { zeroFrames: number[]; taken: boolean };
  let last: Entry | undefined;
  const window = orderedWindow<{ data?: Uint8Array; buffers?: DecodeRunBuffers; entry: Entry }>(options.threads + 2, async ({ data, buffers, entry }) => {
    entry.taken = true; // zero frames from now on need an entry of their own
    if (data) await emit(data);
    // Written (sinks are done with a buffer once write resolves): the run's buffers serve the next.
    if (buffers) spare.push(buffers);
    for (const size of entry.zeroFrames) {
      let zero = zeros.get(size);
      if (!zero) zeros.set(size, (zero = new Uint8Array(size)));
      await emit(zero);
    }
  });
  let runs = 0;
  await eachRun(
    zstd,
    inProcess ? IN_PROCESS_RUN_BYTES : DECODE_RUN_BYTES,
    async (first, count, bytes) => {
      // On worker threads, one run in `threads` decodes here: this thread is one of the cores (the
      // pool has threads - 1 workers), and its own share of the work, reading and writing, is small.
      const decodeHere = here && bytes <= HERE_MAX_BYTES && runs++ % options.threads === options.threads - 1;
      const entry: Entry = (last = { zeroFrames: [], taken: false });
      await window.push(zstd.decodeRun(first, count, spare.pop(), decodeHere).then(({ data, bytes, out }) => ({ data, buffers: { bytes, out }, entry })));
    },
    async (frame) => {
      if (last && !last.taken) last.zeroFrames.push(frame.uSize);
      else await window.push(Promise.resolve({ entry: (last = { zeroFrames: [frame.uSize], taken: false }) }));
    },
    async (frame) => {
      await window.drain();
      await streamFrame(zstd, frame, emit);
    },
  );
  await window.drain();
}

/** Walks the frames: runs of decodable frames (about `runBytes`), proven zero frames, streamed frames, in order. */
async function eachRun(
  zstd: ZstdSource,
  runBytes: number,
  onRun: (first: number, count: number, bytes: number) => Promise<void>,
  onZero: (frame: ZstdFrame) => Promise<void>,
  onStreamed: (frame: ZstdFrame) => Promise<void>,
): Promise<void> {
  let run: { first: number; count: number; bytes: number } | undefined;
  const flush = async () => {
    if (!run) return;
    const { first, count, bytes } = run;
    run = undefined;
    await onRun(first, count, bytes);
  };
  for (let index = 0; index < zstd.frames.length; index++) {
    const frame = zstd.frames[index]!;
    if (await zstd.isZeroFrame(index)) {
      await flush();
      await onZero(frame);
      continue;
    }
    if (!zstd.isStreamed(index)) {
      run ??= { first: index, count: 0, bytes: 0 };
      run.count++;
      run.bytes += frame.uSize;
      if (run.bytes >= runBytes) await flush();
      continue;
    }
    await flush();
    await onStreamed(frame);
  }
  await flush();
}

async function streamFrame(zstd: ZstdSource, frame: ZstdFrame, emit: (data: Uint8Array, at: number) => Promise<void>): Promise<void> {
  const piece = 4 << 20;
  for (let at = 0; at < frame.uSize; at += piece) await emit(await zstd.read(frame.uStart + at, Math.min(piece, frame.uSize - at)), frame.uStart + at);
}

/**
 * The any-order pass (see decompressZstd): at most threads + 2 runs in flight, `threads` in the
 * pool and the rest read ahead (or, on worker threads, decoding here). The first failure of any run
 * ends the pass (pinned by test/zstd-interop.test.ts, "a damaged frame fails both"); it waits until no run is being written any more, so that the
 * caller's cleanup (removing or truncating the output) is the last word.
 */
async function decodeAnyOrder(zstd: ZstdSource, file: PositionalOutput | undefined, options: { threads: number; here: boolean; direct: boolean; onProgress?: (done: number) => void }): Promise<void> {
  const workers = options.here ? options.threads - 1 : options.threads;
  const spare: DecodeRunBuffers[] = [];
  const running = new Set<Promise<void>>();
  let onWorkers = 0;
  let done = 0;
  const progress = (length: number) => {
    done += length;
    options.onProgress?.(done);
  };
  const emit = async (data: Uint8Array, at: number) => {
    if (file) await file.write(file.at + at, data);
    progress(data.length);
  };
  // The first run to fail: a run settles (and leaves `running`) on its own, maybe while nothing
  // awaits it, and its failure must still end the pass.
  let failure: { error: unknown } | undefined;
  const settleAll = async () => {
    await Promise.allSettled(running);
    if (failure) throw failure.error;
  };
  try {
    await eachRun(
      zstd,
      options.direct ? IN_PROCESS_RUN_BYTES : DECODE_RUN_BYTES,
      async (first, count, length) => {
        const here = options.here && length <= HERE_MAX_BYTES && onWorkers >= workers;
        if (!here) onWorkers++;
        const start = zstd.frames[first]!.uStart;
        const to = options.direct ? { fd: file?.fd ?? -1, position: (file?.at ?? 0) + start, name: file?.name ?? '', outputOffset: start } : undefined;
        const job = zstd.decodeRun(first, count, spare.pop(), here, to).then(async ({ data, bytes, out }) => {
          if (!here) onWorkers--;
          if (to) progress(length);
          else await emit(data, start);
          spare.push({ bytes, out });
        });
        running.add(job);
        job.then(
          () => running.delete(job),
          (error: unknown) => {
            failure ??= { error };
            running.delete(job);
          },
        );
        if (running.size >= options.threads + 2) await Promise.race(running).catch(() => {});
        if (failure) throw failure.error;
      },
      async (frame) => progress(frame.uSize),
      async (frame) => {
        await settleAll();
        await streamFrame(zstd, frame, emit);
      },
    );
    await settleAll();
  } catch (error) {
    await Promise.allSettled(running);
    throw error;
  }
  file?.advance(zstd.size);
}

/** Decodes a stream of .zst bytes (stdin) through libzstd, every frame's checksum checked. */
export async function streamDecompressZstd(input: AsyncIterable<Uint8Array>, write: (bytes: Uint8Array) => Promise<void>): Promise<void> {
  const decoder = streamDecoder();
  let consumed = 0;
  for await (const chunk of input) {
    consumed += chunk.length;
    for (const piece of decoder.push(chunk)) await write(piece);
  }
  if (consumed === 0 || !decoder.ended()) throw fail('ZSTD_TRUNCATED', consumed > 0 ? 'the last frame' : 'an empty input (no frame)', consumed);
}
