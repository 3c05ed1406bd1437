import { fail } from '../errors.js';
import type { Sink } from '../io/sink.js';
import { orderedWindow } from '../workers/ordered.js';
import { streamDecoder } from './codec.js';
import type { DecodeRunBuffers, ZstdSource } from './reader.js';

/** Uncompressed bytes decoded per worker message in a whole pass (or one frame, when larger). */
export const DECODE_RUN_BYTES = 4 << 20;
/** The largest run decoded on the main thread: about 50 ms of libzstd. */
const HERE_MAX_BYTES = 64 << 20;

/**
 * Decodes a whole .zst to `sink` (or only checks it, without one): runs of frames (about
 * DECODE_RUN_BYTES each) decode on worker threads and on this one (see flush), threads + 2 runs
 * at a time, and are written in order; their buffers serve later runs, so no frame faults in fresh pages
 * (measured: a fresh 1 MiB buffer per frame cost a quarter of the decode in system time). Frames
 * proven zero are not decoded; frames read as a stream (too large, or without sizes) go through
 * libzstd on this thread. Memory: about (threads + 3) × max(frame size, DECODE_RUN_BYTES) × 1.5
 * (each run with its compressed bytes; measured with 2 × threads + 2 runs: more page faults, no gain).
 */
export async function decompressZstd(zstd: ZstdSource, sink: Sink | undefined, options: { threads: number; onProgress?: (done: number) => void }): Promise<void> {
  let done = 0;
  const emit = async (data: Uint8Array) => {
    await sink?.write(data);
    done += data.length;
    options.onProgress?.(done);
  };
  const spare: DecodeRunBuffers[] = [];
  const window = orderedWindow<{ data: Uint8Array; buffers?: DecodeRunBuffers }>(options.threads + 2, async ({ data, buffers }) => {
    await emit(data);
    // Written (sinks are done with a buffer once write resolves): the run's buffers serve the next.
    if (buffers) spare.push(buffers);
  });
  const zeros = new Map<number, Uint8Array>();
  let run: { first: number; count: number; bytes: number } | undefined;
  let runs = 0;
  const flush = async () => {
    if (!run) return;
    const { first, count } = run;
    // With threads ≥ 2, one run in `threads` decodes here: this thread is one of the cores (the
    // pool has threads - 1 workers), and its own share of the work, reading and writing, is small.
    // Runs above HERE_MAX_BYTES (huge frames) stay off this thread: its event loop answers signals.
    const here = options.threads >= 2 && run.bytes <= HERE_MAX_BYTES && runs++ % options.threads === options.threads - 1;
    run = undefined;
    await window.push(zstd.decodeRun(first, count, spare.pop(), here).then(({ data, bytes, out }) => ({ data, buffers: { bytes, out } })));
  };
  for (let index = 0; index < zstd.frames.length; index++) {
    const frame = zstd.frames[index]!;
    if (await zstd.isZeroFrame(index)) {
      // Proven zero without decoding (the same bytes as a zero frame decoded and checked before).
      await flush();
      let zero = zeros.get(frame.uSize);
      if (!zero) zeros.set(frame.uSize, (zero = new Uint8Array(frame.uSize)));
      await window.push(Promise.resolve({ data: zero }));
      continue;
    }
    if (!zstd.isStreamed(index)) {
      run ??= { first: index, count: 0, bytes: 0 };
      run.count++;
      run.bytes += frame.uSize;
      if (run.bytes >= DECODE_RUN_BYTES) await flush();
      continue;
    }
    await flush();
    await window.drain();
    const piece = 4 << 20;
    for (let at = 0; at < frame.uSize; at += piece) await emit(await zstd.read(frame.uStart + at, Math.min(piece, frame.uSize - at)));
  }
  await flush();
  await window.drain();
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
