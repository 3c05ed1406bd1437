import { promisify } from 'node:util';
import { constants, deflateRaw, deflateRawSync, type ZlibOptions } from 'node:zlib';

export interface ChunkOptions {
  level: number;
  memLevel?: number;
}

/**
 * Compresses one chunk as a run of non-final deflate blocks that ends on a byte boundary (a sync
 * flush). Each chunk starts with an empty history, so any chunk boundary is a checkpoint: a
 * reader can inflate from there with no window, and editing a stored range before it can never
 * change what it decodes to. Concatenated chunks form one valid deflate stream.
 *
 * node:zlib is used rather than pako: on this machine it deflates 2–5× faster (it is Chromium's
 * SIMD zlib). It compresses about 1–2 % larger than GNU gzip at the same level; see the README.
 */
export function deflateChunk(data: Uint8Array, options: ChunkOptions): Uint8Array {
  return deflateRawSync(data, zlibOptions(data, options));
}

const deflateRawAsync = promisify(deflateRaw);

/** deflateChunk on libuv's thread pool: the same zlib call with the same options, so the same bytes. */
export function deflateChunkAsync(data: Uint8Array, options: ChunkOptions): Promise<Uint8Array> {
  return deflateRawAsync(data, zlibOptions(data, options));
}

function zlibOptions(data: Uint8Array, options: ChunkOptions): ZlibOptions {
  return {
    level: options.level,
    memLevel: options.memLevel ?? 8,
    finishFlush: constants.Z_SYNC_FLUSH,
    chunkSize: Math.max(64 * 1024, Math.min(data.length + 1024, 4 * 1024 * 1024)),
  };
}
