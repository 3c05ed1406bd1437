/**
 * A block's integrity check (§3.4), computed over its uncompressed data in pieces: the stored
 * blocks seekxz writes and the blocks `patch` edits compute it here, on the main thread (a stored
 * block is at most 1 MiB). The value is stored little-endian, as the spec puts it in the file.
 */
import { crc32 } from '../crc/crc32.js';
import { crc64 } from '../crc/crc64.js';
import { fail } from '../errors.js';
import { nodeCrypto } from '../lazy-builtins.js';
import { ByteWriter } from '../cursor.js';
import { CHECK_CRC32, CHECK_CRC64, CHECK_NONE, CHECK_SHA256, checkName } from './format.js';

export interface CheckState {
  update(bytes: Uint8Array): void;
  /** The check field as it is in the file (0, 4, 8 or 32 bytes). */
  digest(): Uint8Array;
}

export function createCheck(checkId: number): CheckState {
  if (checkId === CHECK_NONE) return { update() {}, digest: () => new Uint8Array(0) };
  if (checkId === CHECK_CRC32) {
    let value = 0;
    return { update: (bytes) => void (value = crc32(bytes, value)), digest: () => new ByteWriter().u32le(value).finish() };
  }
  if (checkId === CHECK_CRC64) {
    let value = 0n;
    return {
      update: (bytes) => void (value = crc64(bytes, value)),
      digest: () => {
        const out = new Uint8Array(8);
        new DataView(out.buffer).setBigUint64(0, value, true);
        return out;
      },
    };
  }
  if (checkId === CHECK_SHA256) {
    const hash = nodeCrypto().createHash('sha256');
    return { update: (bytes) => void hash.update(bytes), digest: () => new Uint8Array(hash.digest()) };
  }
  throw fail('XZ_UNSUPPORTED', `integrity check ${checkName(checkId)} cannot be computed; only None, CRC32, CRC64 and SHA-256`);
}
