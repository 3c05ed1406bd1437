import { fail, hexBytes } from '../../errors.js';
import { GZIDX_MAGIC, parseGzidx, serializeGzidx } from './gzidx.js';
import { GZTOOL_MAGIC_V0, GZTOOL_MAGIC_V1, parseGztoolIndex, serializeGztoolIndex } from './gztool.js';
import { isSeekzIndex, parseSeekzIndex, serializeSeekzIndex } from './seekz-format.js';
import type { GzipIndex } from './types.js';

export type IndexFormat = 'seekz' | 'gzidx' | 'gztool';

const startsWith = (bytes: Uint8Array, prefix: Uint8Array) => prefix.every((byte, index) => bytes[index] === byte);
const ascii = (text: string) => new TextEncoder().encode(text);

/** Which index format these bytes are, by magic; undefined when none. */
export function detectIndexFormat(bytes: Uint8Array): IndexFormat | undefined {
  if (isSeekzIndex(bytes)) return 'seekz';
  if (startsWith(bytes, GZIDX_MAGIC)) return 'gzidx';
  // gztool's files start with 8 zero bytes, then its magic.
  const tail = bytes.subarray(8);
  if (startsWith(tail, ascii(GZTOOL_MAGIC_V0)) || startsWith(tail, ascii(GZTOOL_MAGIC_V1))) return 'gztool';
  return undefined;
}

/** Reads an index file of any supported format. */
export function parseIndex(bytes: Uint8Array): GzipIndex {
  const format = detectIndexFormat(bytes);
  if (format === 'seekz') return parseSeekzIndex(bytes);
  if (format === 'gzidx') return parseGzidx(bytes);
  if (format === 'gztool') return parseGztoolIndex(bytes);
  throw fail('INDEX_BAD_MAGIC', `it starts with ${hexBytes(bytes.subarray(0, 16))}; expected a seekz (SZIDX), indexed_gzip (GZIDX) or gztool index`);
}

export function serializeIndex(index: GzipIndex, format: IndexFormat): Uint8Array {
  if (format === 'seekz') return serializeSeekzIndex(index);
  if (format === 'gzidx') return serializeGzidx(index);
  return serializeGztoolIndex(index);
}
