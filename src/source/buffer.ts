import { clipRead, type Source } from './source.js';

/** A Source over bytes already in memory. */
export function bufferSource(bytes: Uint8Array): Source {
  return {
    size: bytes.length,
    async read(offset, length) {
      const n = clipRead(bytes.length, offset, length);
      return bytes.subarray(offset, offset + n);
    },
  };
}
