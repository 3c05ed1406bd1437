/**
 * The one way in: `open(target)` takes a path (or file: URL), an http(s) URL or any Source, finds the format by
 * its magic bytes (never by its name), and returns a CompressedFile: a Source of the uncompressed
 * bytes with `info()`, streams and `await using`. A local file is opened as every CLI command
 * opens it: an interrupted edit is rolled back first, and a gzip file without a seekz map uses
 * the index beside it (`FILE.gz.idx`, `FILE.gz.gzidx`, gztool's `FILE.gzi`), which must be one
 * built for this file. The CLI, the server and the bench all come through here, so the library
 * costs what the CLI costs: pinned by "open() costs what the CLI costs" in test/library.test.ts.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { journalPath } from './edit/journal.js';
import type { PatchResult } from './edit/patch.js';
import { fail, hexBytes } from './errors.js';
import { GZIP_MAGIC_1, GZIP_MAGIC_2 } from './gzip/header.js';
import type { GzipMember } from './gzip/index/build.js';
import { parseIndex } from './gzip/index/formats.js';
import type { GzipIndex } from './gzip/index/types.js';
import { openGzip, type GzipSource } from './gzip/reader.js';
import { describe, type FileInfo, type InfoOptions } from './info.js';
import { throwIfAborted } from './io/abort.js';
import { fileSource } from './source/file.js';
import type { HttpSourceOptions } from './source/http.js';
import type { Source } from './source/source.js';
import { HEADER_MAGIC } from './xz/format.js';
import type { XzSource } from './xz/reader.js';
import { FRAME_MAGIC_BYTES, SKIPPABLE_MAGIC_BYTES } from './zstd/format.js';
import type { ZstdSource } from './zstd/reader.js';

/** What `open` accepts: a local path, an http(s):// URL (string or URL), a `file:` URL, or any Source. */
export type Target = string | URL | Source;

export interface OpenOptions {
  /**
   * For a gzip file without a seekz map: the index file to use (seekz, indexed_gzip or gztool
   * format). By default one beside a local file is used when it exists; `false` ignores it.
   */
  index?: string | false;
  /** Bytes of decoded data to keep (xz: 128 MiB, gzip: 32 MiB by default). */
  cacheSize?: number;
  /** xz, zstd: the largest block or frame decoded in one piece (default 512 MiB). */
  maxBlock?: number;
  /** xz, zstd: decoder threads (default 2). */
  threads?: number;
  /** gzip without an index: uncompressed bytes between the access points built on open (default 4 MiB). */
  spacing?: number;
  /** URLs: options of the HTTP source (cache, retries, timeouts). */
  http?: HttpSourceOptions;
  /** Told before an index is built in memory (one pass over a gzip file that has none). */
  onBuildIndex?: () => void;
  /** While that index is built: compressed bytes done. */
  onProgress?: (compressedDone: number) => void;
  /** Told when an interrupted edit of the file was rolled back or cleaned up first. */
  onRecovered?: (outcome: Exclude<PatchResult['recovered'], 'none'>) => void;
  /** Told which index file beside the file is used. */
  onSidecar?: (path: string) => void;
}

export type FormatName = 'gzip' | 'xz' | 'zstd';

/** A compressed file opened for random reads of its uncompressed bytes. */
export interface CompressedFile extends Source, AsyncDisposable {
  readonly format: FormatName;
  /** Uncompressed size in bytes. */
  readonly size: number;
  /** Size of the compressed file in bytes. */
  readonly compressedSize: number;
  /** What `seekz info` shows, as data. A gzip file seekz did not write costs one checked pass. */
  info(options?: InfoOptions): Promise<FileInfo>;
  /** Reads `length` bytes at `offset` (fewer only at the end); every byte is checked first. */
  read(offset: number, length: number, options?: { signal?: AbortSignal }): Promise<Buffer>;
  /** A stream of bytes `start` to `end` inclusive, as fs.createReadStream counts them; bounded memory. */
  createReadStream(options?: { start?: number; end?: number; highWaterMark?: number; signal?: AbortSignal }): Readable;
  /** Releases the file, sockets and decoder threads. */
  close(): Promise<void>;
}

/** A format's decoder over the compressed source, tagged with its name. */
export type Decoder = ({ format: 'xz' } & XzSource) | ({ format: 'gzip' } & GzipSource) | ({ format: 'zstd' } & ZstdSource);

interface DecoderOptions extends OpenOptions {
  /** A sidecar index already parsed (for gzip). */
  sidecar?: GzipIndex;
  onMember?: (member: GzipMember) => void;
}

/** zstd's decoder, for both of its rows below (a frame first, or a skippable frame first). */
const openZstdDecoder = async (source: Source, options: DecoderOptions): Promise<Decoder> =>
  Object.assign(await (await import('./zstd/reader.js')).openZstd(source, { cacheSize: options.cacheSize, maxFrame: options.maxBlock, threads: options.threads }), { format: 'zstd' as const });

/** Every format seekz reads: its magic bytes at offset 0 and its decoder. One row per format. */
const FORMATS: { name: FormatName; magic: Uint8Array; mask?: Uint8Array; shown?: string; open(source: Source, options: DecoderOptions): Promise<Decoder> }[] = [
  {
    name: 'gzip',
    magic: Uint8Array.of(GZIP_MAGIC_1, GZIP_MAGIC_2),
    open: async (source, options) =>
      Object.assign(
        await openGzip(source, { index: options.sidecar, cacheSize: options.cacheSize, spacing: options.spacing, onBuildIndex: options.onBuildIndex, onMember: options.onMember, onProgress: options.onProgress }),
        { format: 'gzip' as const },
      ),
  },
  {
    name: 'xz',
    magic: HEADER_MAGIC,
    open: async (source, options) => Object.assign(await (await import('./xz/reader.js')).openXz(source, { cacheSize: options.cacheSize, maxBlock: options.maxBlock, threads: options.threads }), { format: 'xz' as const }),
  },
  {
    name: 'zstd',
    magic: FRAME_MAGIC_BYTES,
    open: openZstdDecoder,
  },
  {
    // A .zst may open with a skippable frame (any of the 16 magics 0x184D2A50-5F): pzstd's, or
    // the seek table alone of an empty seekable file.
    name: 'zstd',
    magic: SKIPPABLE_MAGIC_BYTES,
    mask: Uint8Array.of(0xf0, 0xff, 0xff, 0xff),
    shown: '5x 2a 4d 18 (zstd skippable frame)',
    open: openZstdDecoder,
  },
];
const MAGIC_LENGTH = Math.max(...FORMATS.map((format) => format.magic.length));

/** The format of `source`, from its first bytes. */
async function detectFormat(source: Source): Promise<(typeof FORMATS)[number]> {
  const magic = await source.read(0, MAGIC_LENGTH);
  if (source.size === 0) throw fail('GZIP_EMPTY'); // gzip -d: unexpected end of file, exit 1
  const format = FORMATS.find((candidate) => candidate.magic.every((byte, index) => (magic[index]! & (candidate.mask?.[index] ?? 0xff)) === byte));
  if (format) return format;
  const expected = FORMATS.map((candidate) => candidate.shown ?? `${hexBytes(candidate.magic)} (${candidate.name})`).join(' or ');
  const names = [...new Set(FORMATS.map((candidate) => candidate.name))];
  const listed = `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
  throw fail('BAD_ARGUMENT', `not a ${listed} file: it starts with ${hexBytes(magic) || 'nothing'}; expected ${expected}`);
}

const isUrl = (target: string) => /^https?:\/\//i.test(target);

/** Opens a compressed file for random reads: `await using disk = await open('disk.img.xz')`. */
export async function open(given: Target, options: OpenOptions = {}): Promise<CompressedFile> {
  // A file: URL (`new URL('disk.img.xz', import.meta.url)`) is a local path, with its recovery and sidecar index.
  const target = given instanceof URL && given.protocol === 'file:' ? fileURLToPath(given) : given;
  const local = typeof target === 'string' && !isUrl(target) ? target : undefined;
  if (local !== undefined) {
    const recovered = await recoverBeforeReading(local);
    if (recovered !== 'none') options.onRecovered?.(recovered);
  }
  const source = typeof target === 'string' || target instanceof URL ? await openTarget(target, options.http) : target;
  const owned = source !== target; // a Source the caller gave stays theirs until close()
  try {
    const format = await detectFormat(source);
    let sidecar: { path: string; index: GzipIndex } | undefined;
    if (format.name === 'gzip' && options.index !== false && (local !== undefined || options.index !== undefined)) {
      sidecar = await findSidecar(local, source.size, options.index);
      if (sidecar) options.onSidecar?.(sidecar.path);
    }
    const members: GzipMember[] = [];
    const decoder = await format.open(source, { ...options, sidecar: sidecar?.index, onMember: (member) => members.push(member) });
    return compressedFile(decoder, source, { sidecar: sidecar?.path, members });
  } catch (error) {
    if (owned) await source.close?.();
    throw error;
  }
}

async function openTarget(target: string | URL, options: HttpSourceOptions | undefined): Promise<Source> {
  // The HTTP client loads only for a URL: start-up is part of every `seekz read` of a local file.
  if (target instanceof URL || isUrl(target)) return (await import('./source/http.js')).httpSource(target instanceof URL ? target.href : target, options);
  return fileSource(target);
}

/** The decoder under a CompressedFile that `open` returned: the CLI and the NBD server need its blocks (xz) or its map (gzip). */
export function decoderOf(file: CompressedFile): Decoder {
  const decoder = (file as Partial<OpenedFile>)[DECODER];
  if (!decoder) throw fail('BAD_ARGUMENT', 'decoderOf() takes a file that open() returned');
  return decoder;
}

const DECODER = Symbol('decoder');
interface OpenedFile extends CompressedFile {
  readonly [DECODER]: Decoder;
}

/** Pieces of a long read or a stream: the CLI's 4 MiB, so the library reads as it does. */
const PIECE = 4 << 20;

function compressedFile(decoder: Decoder, source: Source, context: { sidecar?: string; members: GzipMember[] }): OpenedFile {
  let closing: Promise<void> | undefined;
  let infoCache: Promise<FileInfo> | undefined;
  const close = () => (closing ??= decoder.close ? decoder.close() : Promise.resolve(source.close?.()));
  const toBuffer = (bytes: Uint8Array) => (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  const read = async (offset: number, length: number, options: { signal?: AbortSignal } = {}): Promise<Buffer> => {
    const signal = options.signal;
    throwIfAborted(signal);
    if (!signal || length <= PIECE) return toBuffer(await decoder.read(offset, length));
    // A long read with a signal goes in pieces, so an abort stops it between two of them.
    const count = Math.max(0, Math.min(length, decoder.size - offset));
    const out = Buffer.allocUnsafe(count);
    for (let done = 0; done < count; done += PIECE) {
      throwIfAborted(signal);
      out.set(await decoder.read(offset + done, Math.min(PIECE, count - done)), done);
    }
    return out;
  };
  return {
    [DECODER]: decoder,
    format: decoder.format,
    size: decoder.size,
    compressedSize: source.size,
    read,
    ...(decoder.zeroRanges ? { zeroRanges: decoder.zeroRanges.bind(decoder) } : {}),
    info: (options) => (infoCache ??= describe(decoder, source, { ...context, ...options })),
    createReadStream(options = {}) {
      const start = options.start ?? 0;
      const last = options.end ?? decoder.size - 1;
      if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(last) || last < start - 1) {
        throw fail('BAD_ARGUMENT', `createReadStream({ start: ${options.start}, end: ${options.end} }): expected whole numbers with 0 <= start <= end + 1`);
      }
      const end = Math.min(last + 1, decoder.size); // exclusive from here on
      const piece = options.highWaterMark ?? PIECE;
      let at = start;
      return new Readable({
        highWaterMark: piece,
        signal: options.signal,
        read() {
          if (at >= end) return void this.push(null);
          const length = Math.min(piece, end - at);
          read(at, length).then(
            (bytes) => {
              if (this.destroyed) return;
              at += bytes.length;
              this.push(bytes);
            },
            (error: Error) => this.destroy(error),
          );
        },
      });
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Where an index for `path` may sit: ours (`seekz index`), then gztool's default name. */
export function sidecarIndexPaths(path: string): string[] {
  const paths = [`${path}.idx`, `${path}.gzidx`];
  if (path.endsWith('.gz')) paths.push(`${path.slice(0, -3)}.gzi`);
  return paths;
}

/** The index given, or the first one beside `path`; an index built for another file is an error, never wrong data. */
async function findSidecar(path: string | undefined, size: number, given: string | undefined): Promise<{ path: string; index: GzipIndex } | undefined> {
  for (const candidate of given !== undefined ? [given] : sidecarIndexPaths(path!)) {
    const bytes = await readFile(candidate).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' && given === undefined) return undefined;
      throw error;
    });
    if (!bytes) continue;
    const index = parseIndex(bytes);
    if (index.compressedSize !== 0 && index.compressedSize !== size) {
      throw fail('INDEX_MISMATCH', `${candidate} was built for a file of ${index.compressedSize} bytes, ${path ?? 'this one'} has ${size}`);
    }
    return { path: candidate, index };
  }
  return undefined;
}

/**
 * Makes a file safe to read after an edit that was interrupted: a complete journal is rolled back
 * (the file is all-old again), a torn temp journal and a dead owner's lock are removed, all under
 * the lock. A live lock refuses (PATCH_LOCKED): an edit is under way. Where the file or its folder
 * cannot be written, a file with a journal is refused (RECOVERY_NEEDS_WRITE), never read half
 * written; with only a temp journal or a lock the file was never touched, and is read.
 * Every command that reads a local file calls this first; pinned by "Interrupted edit" in
 * test/trust-serve-io.test.ts.
 */
export async function recoverBeforeReading(path: string): Promise<PatchResult['recovered']> {
  const journal = journalPath(path);
  if (![journal, `${journal}.tmp`, `${path}.seekz-lock`].some((leftover) => existsSync(leftover))) return 'none';
  try {
    return await (await import('./edit/patch.js')).recoverIfInterrupted(path);
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
    if (existsSync(journal)) throw fail('RECOVERY_NEEDS_WRITE', path, journal, message);
    return 'none';
  }
}
