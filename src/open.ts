import { fail, hexBytes } from './errors.js';
import { GZIP_MAGIC_1, GZIP_MAGIC_2 } from './gzip/header.js';
import { openGzip, type GzipSource, type OpenGzipOptions } from './gzip/reader.js';
import type { Source } from './source/source.js';
import { HEADER_MAGIC } from './xz/format.js';
import { openXz, type XzReaderOptions, type XzSource } from './xz/reader.js';

export type CompressedSource = ({ format: 'xz' } & XzSource) | ({ format: 'gzip' } & GzipSource);
export type OpenOptions = XzReaderOptions & OpenGzipOptions;

/** Opens a compressed file by its magic bytes, not its name, as a Source of the uncompressed data. */
export async function openCompressed(source: Source, options: OpenOptions = {}): Promise<CompressedSource> {
  const magic = await source.read(0, HEADER_MAGIC.length);
  if (source.size === 0) throw fail('GZIP_EMPTY'); // gzip -d: unexpected end of file, exit 1
  if (magic.length >= 2 && magic[0] === GZIP_MAGIC_1 && magic[1] === GZIP_MAGIC_2) {
    return Object.assign(await openGzip(source, options), { format: 'gzip' as const });
  }
  if (magic.length === HEADER_MAGIC.length && magic.every((byte, index) => byte === HEADER_MAGIC[index])) {
    return Object.assign(await openXz(source, options), { format: 'xz' as const });
  }
  throw fail('BAD_ARGUMENT', `not a gzip or xz file: it starts with ${hexBytes(magic) || 'nothing'}; expected 1f 8b (gzip) or fd 37 7a 58 5a 00 (xz)`);
}

/** Where an index for `path` may sit: ours (`seekz index`), then gztool's default name. */
export function sidecarIndexPaths(path: string): string[] {
  const paths = [`${path}.idx`, `${path}.gzidx`];
  if (path.endsWith('.gz')) paths.push(`${path.slice(0, -3)}.gzi`);
  return paths;
}
