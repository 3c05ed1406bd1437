/**
 * The edit loop of a compressed disk image as two calls: `extract` copies a region (a byte range
 * or a partition) out to a file, ordinary tools edit it, and `patch` writes it back in place into
 * the stored blocks (or frames) of a .gz, .xz or .zst, journaled, changing only the bytes that differ.
 */
import type { Writable } from 'node:stream';
import { findPartition } from './disk/partitions.js';
import { patchFile, patchFromRegion, type PatchEdit, type PatchOptions, type PatchResult } from './edit/patch.js';
import { fail } from './errors.js';
import { abortReason, throwIfAborted } from './io/abort.js';
import { createAtomicFile, streamSink } from './io/atomic-file.js';
import { open, type OpenOptions, type Target } from './open.js';
import { fileSource } from './source/file.js';
import type { Source } from './source/source.js';

/** Uncompressed bytes [start, end), END exclusive, or partition N (from 1) of the MBR or GPT inside. */
export type Region = { start: number; end: number } | { partition: number };

export interface ExtractOptions extends OpenOptions {
  /** Overwrite an output file that exists. */
  force?: boolean;
  /** Bytes copied so far. */
  onCopied?: (done: number, total: number) => void;
  /** Aborting stops the copy and removes the output file; the call rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Where [start, end) of `data` lies, for a Region: a partition is looked up in the table inside. */
export async function regionBounds(data: Source, region: Region): Promise<{ start: number; end: number }> {
  if ('partition' in region) {
    const partition = await findPartition(data, region.partition);
    return { start: partition.start, end: partition.start + partition.size };
  }
  const { start, end } = region;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw fail('BAD_ARGUMENT', `range [${start}, ${end}): expected whole numbers with 0 <= start <= end`);
  }
  if (end > data.size) throw fail('OUT_OF_RANGE', 'range', start, end - start, data.size);
  return { start, end };
}

/** The CLI's piece: one read of a copy, and what is in memory at once. */
const PIECE = 4 << 20;

/**
 * Copies a region of the uncompressed data to a file (written whole or not at all, with holes for
 * all-zero 4 KiB blocks) or a Writable (not ended). Reads go in 4 MiB pieces, each checked before it is written.
 */
export async function extract(target: Target, region: Region, output: string | Writable, options: ExtractOptions = {}): Promise<{ start: number; end: number }> {
  const { signal } = options;
  throwIfAborted(signal);
  await using data = await open(target, options);
  const bounds = await regionBounds(data, region);
  // All-zero 4 KiB blocks become holes, as `seekz extract` and `xz -d` leave them.
  const out = typeof output === 'string' ? await createAtomicFile(output, { force: options.force, sparse: true }) : undefined;
  const sink = out ? out.sink : streamSink(output as Writable);
  try {
    for (let at = bounds.start; at < bounds.end; at += PIECE) {
      const bytes = await data.read(at, Math.min(PIECE, bounds.end - at), { signal });
      throwIfAborted(signal);
      await sink.write(bytes);
      options.onCopied?.(at + bytes.length - bounds.start, bounds.end - bounds.start);
    }
    await out?.commit();
  } catch (error) {
    await out?.abort();
    throw abortReason(signal, error);
  }
  return bounds;
}

/** New bytes at an offset, or a region file (path or Source) written back at an offset or over partition N. */
export type PatchInput = PatchEdit[] | { from: string | Source; at: number } | { from: string | Source; partition: number };

/**
 * Overwrites uncompressed bytes of a gzip, xz or zstd file in place, without recompressing. Every byte
 * must lie in a stored block (see the `store` option of compressGzip, compressXz and compressZstd), or nothing
 * is written. With `from`, only the
 * bytes that differ from the file's are written. An undo journal makes the edit all or nothing,
 * even if the process is killed; the next open or patch rolls an interrupted one back.
 */
export async function patch(path: string, edits: PatchInput, options: PatchOptions = {}): Promise<PatchResult> {
  if (Array.isArray(edits)) return patchFile(path, edits, options);
  let at: number;
  if ('partition' in edits) {
    await using data = await open(path);
    at = (await regionBounds(data, { partition: edits.partition })).start;
  } else at = edits.at;
  const region = typeof edits.from === 'string' ? await fileSource(edits.from) : edits.from;
  try {
    return await patchFromRegion(path, region, at, options);
  } finally {
    if (typeof edits.from === 'string') await region.close?.();
  }
}
