import { open, type FileHandle } from 'node:fs/promises';
import { crc32Patch } from '../crc/crc32.js';
import { fail } from '../errors.js';
import { trailerBytes } from '../gzip/header.js';
import { describeRanges, readGzipLayout, type GzipLayout, type StoredExtent } from '../gzip/layout.js';
import { openGzip } from '../gzip/reader.js';
import { clipRead, type Source } from '../source/source.js';
import { journalPath, recoverJournal, removeJournal, writeJournal, type JournalEntry } from './journal.js';
import { acquireLock } from './lock.js';

export interface PatchEdit {
  offset: number; // uncompressed
  data: Uint8Array;
}

export interface PatchResult {
  /** Uncompressed bytes written (after dropping unchanged ones with --from). */
  bytesWritten: number;
  /** Bytes of the gzip file read to do it: header and map, trailer, old bytes. */
  bytesRead: number;
  oldCrc: number;
  newCrc: number;
  /** The stored blocks were found by walking the deflate stream (a gzip seekz did not write). */
  walked: boolean;
  /** What an earlier, interrupted edit's journal needed. */
  recovered: 'none' | 'discarded-incomplete' | 'rolled-back';
  editableRanges: { start: number; end: number }[];
}

export interface PatchOptions {
  /** Told when the file has no seekz map and its deflate stream must be walked (slower). */
  onWalk?: () => void;
}

/** A Source over an open handle that counts what it reads: the cost of an edit is part of its result. */
function countingSource(handle: FileHandle, size: number): Source & { bytesRead: number } {
  const source = {
    size,
    bytesRead: 0,
    async read(offset: number, length: number) {
      const count = clipRead(size, offset, length);
      const out = Buffer.allocUnsafe(count);
      let done = 0;
      while (done < count) {
        const { bytesRead } = await handle.read(out, done, count - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      source.bytesRead += done;
      return done === count ? out : out.subarray(0, done);
    },
  };
  return source;
}

/**
 * Runs `work` on the file with the lock held and any interrupted edit rolled back first.
 * Every opener that may write goes through here.
 */
export async function withEditSession<T>(
  path: string,
  work: (session: { handle: FileHandle; source: Source & { bytesRead: number }; recovered: PatchResult['recovered'] }) => Promise<T>,
): Promise<T> {
  const release = await acquireLock(path);
  try {
    const recovered = await recoverJournal(path);
    const handle = await open(path, 'r+');
    try {
      const { size } = await handle.stat();
      return await work({ handle, source: countingSource(handle, size), recovered });
    } finally {
      await handle.close();
    }
  } finally {
    await release();
  }
}

/** Rolls back an interrupted edit, if there is one, under the lock. For readers that find a journal. */
export async function recoverIfInterrupted(path: string): Promise<PatchResult['recovered']> {
  const release = await acquireLock(path);
  try {
    return await recoverJournal(path);
  } finally {
    await release();
  }
}

/**
 * Overwrites uncompressed bytes of a gzip file in place. Every target byte must lie in a stored
 * block, or nothing is written. The trailer's CRC-32 is fixed with CRC-32 patch math from the old
 * and new bytes alone, so the cost is O(edit + log size) and the rest of the file is not read.
 * Crash-safe through an undo journal; see journal.ts.
 */
export async function patchGzip(path: string, edits: PatchEdit[], options: PatchOptions = {}): Promise<PatchResult> {
  return withEditSession(path, async ({ handle, source, recovered }) => {
    const layout = await readGzipLayout(source, { onWalk: options.onWalk });
    const planned = planEdits(layout, edits);
    return applyEdits(path, handle, source, layout, planned, recovered);
  });
}

/**
 * Writes REGION back at uncompressed offset `at`, but only the bytes that differ from what the
 * file holds now: the usual loop is extract, edit with ordinary tools, patch back.
 */
export async function patchGzipFromRegion(path: string, region: Source, at: number, options: PatchOptions = {}): Promise<PatchResult> {
  return withEditSession(path, async ({ handle, source, recovered }) => {
    const layout = await readGzipLayout(source, { onWalk: options.onWalk });
    if (at + region.size > layout.totalLength) throw fail('OUT_OF_RANGE', 'region', at, region.size, layout.totalLength);
    const current = await openGzip(source);
    const edits: PatchEdit[] = [];
    const piece = 1 << 20;
    for (let offset = 0; offset < region.size; offset += piece) {
      const wanted = await region.read(offset, piece);
      const existing = await current.read(at + offset, wanted.length);
      edits.push(...differingRuns(existing, wanted, at + offset));
    }
    const planned = planEdits(layout, edits);
    return applyEdits(path, handle, source, layout, planned, recovered);
  });
}

/** Runs of bytes that differ, with gaps under 64 bytes folded in to keep the journal short. */
export function differingRuns(existing: Uint8Array, wanted: Uint8Array, base: number): PatchEdit[] {
  const runs: PatchEdit[] = [];
  const fold = 64;
  let index = 0;
  while (index < wanted.length) {
    if (existing[index] === wanted[index]) {
      index++;
      continue;
    }
    const start = index;
    let end = index + 1;
    for (let probe = end; probe < wanted.length && probe < end + fold; probe++) {
      if (existing[probe] !== wanted[probe]) end = probe + 1;
    }
    runs.push({ offset: base + start, data: wanted.subarray(start, end) });
    index = end;
  }
  return runs;
}

interface PlannedWrite extends StoredExtent {
  data: Uint8Array;
}

/** Maps every edit to stored extents, refusing before anything is written if any byte is not editable. */
function planEdits(layout: GzipLayout, edits: PatchEdit[]): PlannedWrite[] {
  const writes: PlannedWrite[] = [];
  for (const edit of edits) {
    if (edit.data.length === 0) continue;
    if (edit.offset < 0 || edit.offset + edit.data.length > layout.totalLength) {
      throw fail('OUT_OF_RANGE', 'edit', edit.offset, edit.data.length, layout.totalLength);
    }
    const extents = layout.storedExtents(edit.offset, edit.offset + edit.data.length);
    if (!extents) throw fail('GZIP_NOT_EDITABLE', edit.offset, edit.data.length, describeRanges(layout.editableRanges()));
    for (const extent of extents) {
      const from = extent.uStart - edit.offset;
      writes.push({ ...extent, data: edit.data.subarray(from, from + extent.length) });
    }
  }
  return writes;
}

async function applyEdits(
  path: string,
  handle: FileHandle,
  source: Source & { bytesRead: number },
  layout: GzipLayout,
  writes: PlannedWrite[],
  recovered: PatchResult['recovered'],
): Promise<PatchResult> {
  const journal: JournalEntry[] = [];
  let crc = layout.crc;
  for (const write of writes) {
    const old = await source.read(write.fileOffset, write.length);
    if (old.length !== write.length) throw fail('GZIP_TRUNCATED', 'stored block', write.fileOffset, layout.fileSize);
    journal.push({ fileOffset: write.fileOffset, bytes: old });
    crc = crc32Patch(crc, layout.totalLength, write.uStart, old, write.data);
  }
  // The layout checked both trailer fields, so the old trailer is known without reading it again.
  const oldTrailer = trailerBytes(layout.crc, layout.totalLength);
  const result: PatchResult = {
    bytesWritten: writes.reduce((sum, write) => sum + write.length, 0),
    bytesRead: 0,
    oldCrc: layout.crc,
    newCrc: crc,
    walked: layout.walked,
    recovered,
    editableRanges: layout.editableRanges(),
  };
  if (writes.length > 0) {
    journal.push({ fileOffset: layout.trailerOffset, bytes: oldTrailer });
    await writeJournal(path, layout.fileSize, journal);
    for (const write of writes) await handle.write(write.data, 0, write.length, write.fileOffset);
    const trailer = trailerBytes(crc, layout.totalLength);
    await handle.write(trailer, 0, trailer.length, layout.trailerOffset);
    await handle.sync();
    await removeJournal(path);
  }
  result.bytesRead = source.bytesRead;
  return result;
}


export { journalPath };
