import { fail } from '../errors.js';
import type { Sink } from '../io/sink.js';
import { orderedWindow } from '../workers/ordered.js';
import { streamDecoder } from './codec.js';
import type { ZstdSource } from './reader.js';

/**
 * Decodes a whole .zst to `sink` (or only checks it, without one): frames decode on worker
 * threads, 2 × threads + 2 at a time (measured: threads + 1 left the workers idle between
 * hand-offs), and are written in order; frames read as a stream (too large, or without sizes) go
 * through libzstd on this thread. Memory: about 2 × threads + 3 frames.
 */
export async function decompressZstd(zstd: ZstdSource, sink: Sink | undefined, options: { threads: number; onProgress?: (done: number) => void }): Promise<void> {
  let done = 0;
  const window = orderedWindow<Uint8Array>(2 * options.threads + 2, async (data) => {
    await sink?.write(data);
    done += data.length;
    options.onProgress?.(done);
  });
  const zeros = new Map<number, Uint8Array>();
  for (let index = 0; index < zstd.frames.length; index++) {
    const frame = zstd.frames[index]!;
    if (await zstd.isZeroFrame(index)) {
      // Proven zero without decoding (the same bytes as a zero frame decoded and checked before).
      let zero = zeros.get(frame.uSize);
      if (!zero) zeros.set(frame.uSize, (zero = new Uint8Array(frame.uSize)));
      await window.push(Promise.resolve(zero));
      continue;
    }
    if (!zstd.isStreamed(index)) {
      await window.push(zstd.decodeFrame(index));
      continue;
    }
    await window.drain();
    const piece = 4 << 20;
    for (let at = 0; at < frame.uSize; at += piece) {
      const data = await zstd.read(frame.uStart + at, Math.min(piece, frame.uSize - at));
      await sink?.write(data);
      done += data.length;
      options.onProgress?.(done);
    }
  }
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
