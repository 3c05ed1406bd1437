/**
 * Loads the seekz_zstd addon (native/zstd/zstd.c over Debian's libzstd, built by node-gyp from
 * scripts/ensure-deps.mjs) when it was built; undefined otherwise, and then src/zstd/codec.ts
 * decodes with fzstd instead. SEEKZ_NATIVE=0 hides it (and the other addons), so tests run both paths.
 */
import { loadAddon } from './load-addon.js';

export interface NativeZstd {
  compress(data: Uint8Array, level: number): ArrayBuffer;
  decompress(frame: Uint8Array, expectedSize: number): [Uint8Array, number];
  /** Decodes into `out` (its whole length is room); returns the size. */
  decompressInto(frame: Uint8Array, out: Uint8Array): number;
  streamCreate(): unknown;
  streamPush(handle: unknown, input: Uint8Array): [Uint8Array[], number];
  versionNumber(): number;
  /** zstd's checksum: the low 32 bits of XXH64 (native/zstd/xxh64.c). */
  xxh64Low32(data: Uint8Array): number;
  /** The most one frame of `size` bytes can take. */
  compressBound(size: number): number;
  /**
   * On libuv's thread pool: frames ([start, length] each, in `data`) compressed as compress()
   * does, packed one after another into `output` (room: the sum of their bounds), frame i's size
   * in sizes[i]. False when `stop` was set first (then output and sizes are partial).
   */
  compressRunAsync(data: Uint8Array, frames: Float64Array, level: number, output: Uint8Array, sizes: Float64Array, stop: Int32Array): Promise<boolean>;
  /**
   * On libuv's thread pool: frames ([start, compressedSize, expectedSize] each, in `bytes`) decoded
   * into `out` one after another (each with room for expectedSize + 1 bytes), checksums verified,
   * up to the first that fails. `done` frames gave their size; frame `done`, if any, failed with
   * libzstd's `error` or gave `size` bytes, unless `stopped`.
   *
   * With `checks` (one per frame: -1 nothing more to check, -2 the seek table's checksum is known
   * wrong, else the table's checksum of a frame without its own, held against XXH64 of its data)
   * each frame decodes at the start of `out` (room: the largest expectedSize + 1), is checked, and
   * goes to `fd` (unless -1) at `position` + the sizes before it, whole zero 4 KiB blocks left as
   * holes. `done` then counts the frames checked and written; frame `done` failed a check, with its
   * `size` bytes left at the start of `out`, or its write failed with `writeErrno`.
   */
  decompressBatchAsync(
    bytes: Uint8Array,
    out: Uint8Array,
    frames: Float64Array,
    stop: Int32Array,
    ...write: [checks: Float64Array, fd: number, position: number] | []
  ): Promise<[done: number, size: number | undefined, error: string | undefined, stopped: boolean, writeErrno?: number]>;
}

let loaded: NativeZstd | undefined | null = null;

export function nativeZstd(): NativeZstd | undefined {
  if (loaded === null) loaded = loadAddon<NativeZstd>('seekz_zstd');
  return loaded;
}
