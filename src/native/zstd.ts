/**
 * Loads the seekz_zstd addon (native/zstd/zstd.c over Debian's libzstd, built by node-gyp from
 * scripts/ensure-deps.mjs) when it was built; undefined otherwise, and then src/zstd/codec.ts
 * decodes with fzstd instead. SEEKZ_NATIVE=0 hides it (and the other addons), so tests run both paths.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

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
  if (loaded !== null) return loaded;
  loaded = undefined;
  if (process.env.SEEKZ_NATIVE === '0') return loaded;
  const require = createRequire(import.meta.url);
  // From src/native (tests under tsx) or dist/src/native (the build): the repository root's build/.
  for (const up of ['../../build/Release/seekz_zstd.node', '../../../build/Release/seekz_zstd.node']) {
    const path = new URL(up, import.meta.url);
    if (!existsSync(path)) continue;
    try {
      loaded = require(path.pathname) as NativeZstd;
      break;
    } catch {
      // built for another Node version: fall back as if absent
    }
  }
  return loaded;
}
