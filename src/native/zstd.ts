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
}

let loaded: NativeZstd | undefined | null = null;

export function nativeZstd(): NativeZstd | undefined {
  if (loaded === null) loaded = loadAddon<NativeZstd>('seekz_zstd');
  return loaded;
}
