import { open, type FileHandle } from 'node:fs/promises';
import { crc32Patch } from '../crc/crc32.js';
import { fail } from '../errors.js';
import { trailerBytes } from '../gzip/header.js';
import { editableExtents, readGzipLayout, type GzipLayout, type StoredExtent } from '../gzip/layout.js';
import { findSegment } from '../gzip/map.js';
import { ByteWriter } from '../cursor.js';
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
    const planned = await planEdits(layout, edits);
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
    const planned = await planEdits(layout, edits);
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

/**
 * Maps every edit to stored extents, refusing before anything is written if any byte is not
 * editable: not stored, or (in a gzip seekz did not write) copied by a later back-reference.
 */
async function planEdits(layout: GzipLayout, edits: PatchEdit[]): Promise<PlannedWrite[]> {
  const writes: PlannedWrite[] = [];
  for (const edit of edits) {
    if (edit.data.length === 0) continue;
    if (edit.offset < 0 || edit.offset + edit.data.length > layout.totalLength) {
      throw fail('OUT_OF_RANGE', 'edit', edit.offset, edit.data.length, layout.totalLength);
    }
    for (const extent of await editableExtents(layout, edit.offset, edit.data.length)) {
      const from = extent.uStart - edit.offset;
      writes.push({ ...extent, data: edit.data.subarray(from, from + extent.length) });
    }
  }
  return writes;
}

/** Earlier writes that overlap later ones (an NBD client writing a block twice before a flush). */
function anyOverlap(writes: PlannedWrite[]): boolean {
  const sorted = [...writes].sort((a, b) => a.fileOffset - b.fileOffset);
  return sorted.some((write, index) => index > 0 && write.fileOffset < sorted[index - 1]!.fileOffset + sorted[index - 1]!.length);
}

/**
 * Writes the planned bytes, and in the same journaled transaction the CRC-32s they change: the
 * trailer's and, in a map with CRC-32s, those of the stored segments they touch (4 bytes each in
 * the header). Each CRC is patched from the old and new bytes alone (crc32Patch), so the cost is
 * O(edit + log size): the header fetch, the old bytes, nothing else.
 */
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
  const map = layout.map?.verified ? layout.map : undefined;
  const segmentCrcs = new Map<number, number>(); // segment number -> its new CRC-32
  const overlapping = anyOverlap(writes);
  for (const [index, write] of writes.entries()) {
    const old = await source.read(write.fileOffset, write.length);
    if (old.length !== write.length) throw fail('GZIP_TRUNCATED', 'stored block', write.fileOffset, layout.fileSize);
    // The journal keeps the file's bytes; the CRCs move from what the earlier writes left there.
    journal.push({ fileOffset: write.fileOffset, bytes: old });
    const current = overlapping ? withEarlierWrites(old, write, writes.slice(0, index)) : old;
    crc = crc32Patch(crc, layout.totalLength, write.uStart, current, write.data);
    if (map) {
      // A write lies inside one stored block, and stored segments hold whole blocks.
      const number = findSegment(map.segments, write.uStart);
      const segment = map.segments[number]!;
      const before = segmentCrcs.get(number) ?? segment.crc!;
      segmentCrcs.set(number, crc32Patch(before, segment.uLength, write.uStart - segment.uStart, current, write.data));
    }
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
    const crcWrites = [...segmentCrcs].map(([number, segmentCrc]) => ({
      fileOffset: layout.mapOffset! + map!.segments[number]!.crcOffset!,
      old: new ByteWriter().u32le(map!.segments[number]!.crc!).finish(),
      bytes: new ByteWriter().u32le(segmentCrc).finish(),
    }));
    for (const crcWrite of crcWrites) journal.push({ fileOffset: crcWrite.fileOffset, bytes: crcWrite.old });
    journal.push({ fileOffset: layout.trailerOffset, bytes: oldTrailer });
    await writeJournal(path, layout.fileSize, journal);
    for (const write of writes) await handle.write(write.data, 0, write.length, write.fileOffset);
    for (const crcWrite of crcWrites) await handle.write(crcWrite.bytes, 0, 4, crcWrite.fileOffset);
    const trailer = trailerBytes(crc, layout.totalLength);
    await handle.write(trailer, 0, trailer.length, layout.trailerOffset);
    await handle.sync();
    await removeJournal(path);
  }
  result.bytesRead = source.bytesRead;
  return result;
}

/** `old` as the earlier writes of this patch leave it (later writes win). */
function withEarlierWrites(old: Uint8Array, write: PlannedWrite, earlier: PlannedWrite[]): Uint8Array {
  const current = new Uint8Array(old);
  for (const other of earlier) {
    const from = Math.max(write.fileOffset, other.fileOffset);
    const to = Math.min(write.fileOffset + write.length, other.fileOffset + other.length);
    if (from < to) current.set(other.data.subarray(from - other.fileOffset, to - other.fileOffset), from - write.fileOffset);
  }
  return current;
}

export { journalPath };
