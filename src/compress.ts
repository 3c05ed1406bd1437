/**
 * The writers as one call each, file to file or stream to stream: `compressGzip` (what
 * partial-deflate does), `compressXz` (what seekxz does) and `compressZstd` (what seekzstd does). An output file appears only when it
 * is complete; an error or an aborted `signal` leaves none, and the worker threads stop at once.
 */
import type { Readable, Writable } from 'node:stream';
import { findPartition } from './disk/partitions.js';
import { fail } from './errors.js';
import { partialDeflate, type PartialDeflateResult } from './gzip/partial-deflate.js';
import type { Sink } from './io/sink.js';
import { abortableInput, abortableSink, abortReason, throwIfAborted } from './io/abort.js';
import { createAtomicFile, streamSink } from './io/atomic-file.js';
import { fileSource } from './source/file.js';
import { sequentialFromSource, sequentialFromStream, type SequentialInput } from './source/sequential.js';
import type { Source } from './source/source.js';
import type { CheckName } from './xz/format.js';
import { writeXz, type XzWriterResult } from './xz/writer.js';
import { writeZstd, type ZstdWriterResult } from './zstd/writer.js';

/** Where a writer reads from: a file path, or a stream of bytes (a Readable, stdin, any async iterable). */
export type CompressInput = string | Readable | AsyncIterable<Uint8Array>;
/** Where a writer writes to: a file path (written whole or not at all), or a Writable stream. */
export type CompressOutput = string | Writable;

export interface CommonCompressOptions {
  /** Uncompressed ranges [start, end) written as stored blocks, so `patch` can overwrite them in place. */
  store?: { start: number; end: number }[];
  /** Partitions of the input disk image (MBR or GPT, numbered from 1) to store; needs a file input. */
  storePartitions?: number[];
  /** Worker threads (default: one per core). */
  threads?: number;
  /** Overwrite an output file that exists. */
  force?: boolean;
  /** Uncompressed bytes done so far. */
  onProgress?: (done: number) => void;
  /** Aborting stops the work and removes the output file; the call rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface CompressGzipOptions extends CommonCompressOptions {
  /** 1 (fast) to 9 (best); default 6. */
  level?: number;
  /** Uncompressed bytes per independently compressed chunk (a checkpoint each); default 1 MiB. */
  chunkSize?: number;
}

export interface CompressXzOptions extends CommonCompressOptions {
  /** Uncompressed bytes per block; default 16 MiB. */
  blockSize?: number;
  /** Preset 0 to 9; default 6. */
  level?: number;
  extreme?: boolean;
  check?: CheckName;
}

/**
 * Compresses to a gzip file in which the `store` ranges and partitions are stored blocks and the
 * rest is compressed in parallel: one standard gzip member, with a seekz map when the output is a
 * file (a stream cannot be revisited to fill the map in).
 */
export async function compressGzip(input: CompressInput, output: CompressOutput, options: CompressGzipOptions = {}): Promise<PartialDeflateResult> {
  return withWriter(input, output, options, async (source, sequential, sink) => {
    const stored = await storedRanges(source, options);
    return partialDeflate(sequential, sink, { level: options.level, threads: options.threads, chunkSize: options.chunkSize, stored, onProgress: options.onProgress, signal: options.signal });
  });
}

/** The `store` ranges and the `storePartitions` (looked up in the input's partition table). */
async function storedRanges(source: Source | undefined, options: CommonCompressOptions): Promise<{ start: number; end: number }[]> {
  const stored = (options.store ?? []).map((range) => checkedRange(range, 'store'));
  for (const number of options.storePartitions ?? []) {
    if (!source) throw fail('BAD_ARGUMENT', 'storePartitions needs a file input, not a stream');
    const partition = await findPartition(source, number);
    stored.push({ start: partition.start, end: partition.start + partition.size });
  }
  return stored;
}

/**
 * Compresses to one .xz stream cut into blocks of `blockSize`, so any byte can be read without the
 * rest; the `store` ranges and partitions become stored blocks (LZMA2 uncompressed chunks) that
 * `patch` can overwrite in place.
 */
export async function compressXz(input: CompressInput, output: CompressOutput, options: CompressXzOptions = {}): Promise<XzWriterResult> {
  return withWriter(input, output, options, async (source, sequential, sink) =>
    writeXz(sequential, sink, {
      stored: await storedRanges(source, options),
      blockSize: options.blockSize,
      preset: options.level,
      extreme: options.extreme,
      check: options.check,
      threads: options.threads,
      onProgress: options.onProgress,
      signal: options.signal,
    }),
  );
}

export interface CompressZstdOptions extends CommonCompressOptions {
  /** Uncompressed bytes per frame; default 1 MiB. */
  frameSize?: number;
  /** 1 to 22; default 3, as zstd. */
  level?: number;
}

/**
 * Compresses to the zstd seekable format (frames of `frameSize`, a seek table at the end); the
 * `store` ranges and partitions become stored frames (raw blocks) that `patch` can overwrite in
 * place. Needs the seekz_zstd addon.
 */
export async function compressZstd(input: CompressInput, output: CompressOutput, options: CompressZstdOptions = {}): Promise<ZstdWriterResult> {
  return withWriter(input, output, options, async (source, sequential, sink) =>
    writeZstd(sequential, sink, {
      stored: await storedRanges(source, options),
      frameSize: options.frameSize,
      level: options.level,
      threads: options.threads,
      onProgress: options.onProgress,
      signal: options.signal,
    }),
  );
}

function checkedRange(range: { start: number; end: number }, what: string): { start: number; end: number } {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw fail('BAD_ARGUMENT', `${what} range [${start}, ${end}): expected whole numbers with 0 <= start <= end`);
  }
  return { start, end };
}

/** Opens the input and the output, runs `write`, and commits the output, or removes it on any failure. */
async function withWriter<T>(
  input: CompressInput,
  output: CompressOutput,
  options: CommonCompressOptions,
  write: (source: Source | undefined, sequential: SequentialInput, sink: Sink) => Promise<T>,
): Promise<T> {
  const { signal } = options;
  throwIfAborted(signal);
  const source = typeof input === 'string' ? await fileSource(input) : undefined;
  const out = typeof output === 'string' ? await createAtomicFile(output, { force: options.force }).catch(async (error: unknown) => {
    await source?.close();
    throw error;
  }) : undefined;
  try {
    const sequential = source ? sequentialFromSource(source) : sequentialFromStream(input as AsyncIterable<Uint8Array>);
    const sink: Sink = out ? out.sink : streamSink(output as Writable);
    const result = await write(source, abortableInput(sequential, signal), abortableSink(sink, signal));
    throwIfAborted(signal);
    await out?.commit();
    return result;
  } catch (error) {
    await out?.abort();
    throw abortReason(signal, error);
  } finally {
    await source?.close();
  }
}
