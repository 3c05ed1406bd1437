import { open, type FileHandle } from 'node:fs/promises';
import { fail } from '../errors.js';
import { gzipEditable } from '../gzip/editable.js';
import { readGzipLayout } from '../gzip/layout.js';
import { HEADER_MAGIC } from '../xz/format.js';
import { FRAME_MAGIC_BYTES, SKIPPABLE_MAGIC_BYTES } from '../zstd/format.js';
import type { EditableLayout, PlannedWrite } from './editable.js';
import { clipRead, type Source } from '../source/source.js';
import { journalPath, recoverJournal, removeJournal, writeJournal, type JournalEntry } from './journal.js';
import { acquireLock } from './lock.js';

export interface PatchEdit {
  offset: number; // uncompressed
  data: Uint8Array;
}

export interface PatchResult {
  format: EditableLayout['format'];
  /** Uncompressed bytes written (after dropping unchanged ones with --from). */
  bytesWritten: number;
  /** Bytes of the compressed file read to do it: headers, map or index, old bytes, (xz) the touched blocks. */
  bytesRead: number;
  /** gzip: the trailer's CRC-32 before and after. */
  oldCrc?: number;
  newCrc?: number;
  /** The checks the edit fixed, in words (for --verbose). */
  checks: string;
  /** The stored blocks were found by walking the deflate stream (a gzip seekz did not write). */
  walked: boolean;
  /** What an earlier, interrupted edit's journal needed. */
  recovered: 'none' | 'discarded-incomplete' | 'rolled-back';
  /**
   * The editable ranges, where the layout knows them without reading more of the file (gzip);
   * undefined for xz, where finding them reads every candidate block (`info()` lists them).
   */
  editableRanges?: { start: number; end: number }[];
}

export interface PatchOptions {
  /** Told when the file has no seekz map and its deflate stream must be walked (slower). */
  onWalk?: () => void;
}

/** The editable layout of a gzip, xz or zstd file, by its magic bytes. */
export async function readEditableLayout(source: Source, options: PatchOptions = {}): Promise<EditableLayout> {
  const magic = await source.read(0, HEADER_MAGIC.length);
  // The layouts read the file's first bytes again: they get the magic from here, so detecting the
  // format costs no byte of I/O (test/patch.test.ts pins a gzip patch's reads to the byte).
  const known: Source = {
    size: source.size,
    async read(offset, length) {
      if (offset >= magic.length || length === 0) return source.read(offset, length);
      const head = magic.subarray(offset, Math.min(magic.length, offset + length));
      if (offset + length <= magic.length) return head;
      const rest = await source.read(magic.length, offset + length - magic.length);
      const out = new Uint8Array(head.length + rest.length);
      out.set(head);
      out.set(rest, head.length);
      return out;
    },
  };
  // The xz layout (and the xz reader behind it) loads only for an .xz: a gzip patch never needs it.
  if (HEADER_MAGIC.every((byte, index) => magic[index] === byte)) return (await import('../xz/editable.js')).readXzEditable(known);
  // zstd (a frame, or a skippable frame first): the zstd layout, loaded likewise only for a .zst.
  const zstd = [FRAME_MAGIC_BYTES, SKIPPABLE_MAGIC_BYTES].some((known) => known.every((byte, index) => (index === 0 && known === SKIPPABLE_MAGIC_BYTES ? magic[0]! & 0xf0 : magic[index]) === byte));
  if (zstd) return (await import('../zstd/editable.js')).readZstdEditable(known);
  return gzipEditable(await readGzipLayout(known, { onWalk: options.onWalk }), known);
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
 * Overwrites uncompressed bytes of a gzip, xz or zstd file in place. Every target byte must lie in a
 * stored block, or nothing is written. The checks the edit changes are fixed in the same
 * journaled transaction (see the format's EditableLayout); the rest of the file is not read.
 * Crash-safe through an undo journal; see journal.ts.
 */
export async function patchFile(path: string, edits: PatchEdit[], options: PatchOptions = {}): Promise<PatchResult> {
  return withEditSession(path, async ({ handle, source, recovered }) => {
    const layout = await readEditableLayout(source, options);
    const planned = await planEdits(layout, edits);
    return applyEdits(path, handle, source, layout, planned, recovered);
  });
}

/**
 * Writes REGION back at uncompressed offset `at`, but only the bytes that differ from what the
 * file holds now: the usual loop is extract, edit with ordinary tools, patch back.
 */
export async function patchFromRegion(path: string, region: Source, at: number, options: PatchOptions = {}): Promise<PatchResult> {
  return withEditSession(path, async ({ handle, source, recovered }) => {
    const layout = await readEditableLayout(source, options);
    if (at + region.size > layout.totalLength) throw fail('OUT_OF_RANGE', 'region', at, region.size, layout.totalLength);
    const current = await layout.reader();
    const edits: PatchEdit[] = [];
    try {
      const piece = 1 << 20;
      for (let offset = 0; offset < region.size; offset += piece) {
        const wanted = await region.read(offset, piece);
        const existing = await current.read(at + offset, wanted.length);
        edits.push(...differingRuns(existing, wanted, at + offset));
      }
    } finally {
      await closeReader(current);
    }
    const planned = await planEdits(layout, edits);
    return applyEdits(path, handle, source, layout, planned, recovered);
  });
}

/** Closes a reader over the session's source without closing the file under it (the session owns it). */
async function closeReader(reader: Source & { close?(): Promise<void> }): Promise<void> {
  if (reader.close) await reader.close();
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

/**
 * Maps every edit to stored extents, refusing before anything is written if any byte is not
 * editable: not stored, or (in a gzip seekz did not write) copied by a later back-reference.
 */
async function planEdits(layout: EditableLayout, edits: PatchEdit[]): Promise<PlannedWrite[]> {
  const writes: PlannedWrite[] = [];
  for (const edit of edits) {
    if (edit.data.length === 0) continue;
    if (edit.offset < 0 || edit.offset + edit.data.length > layout.totalLength) {
      throw fail('OUT_OF_RANGE', 'edit', edit.offset, edit.data.length, layout.totalLength);
    }
    for (const extent of await layout.extents(edit.offset, edit.data.length)) {
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
 * Writes the planned bytes and, in the same journaled transaction, the checks they change (the
 * layout says which). The journal holds the old bytes of both; only then is the file touched.
 */
async function applyEdits(
  path: string,
  handle: FileHandle,
  source: Source & { bytesRead: number },
  layout: EditableLayout,
  writes: PlannedWrite[],
  recovered: PatchResult['recovered'],
): Promise<PatchResult> {
  const journal: JournalEntry[] = [];
  const current: Uint8Array[] = [];
  const overlapping = anyOverlap(writes);
  for (const [index, write] of writes.entries()) {
    const old = await source.read(write.fileOffset, write.length);
    if (old.length !== write.length) throw fail('OUT_OF_RANGE', 'stored bytes', write.fileOffset, write.length, layout.fileSize);
    // The journal keeps the file's bytes; the checks move from what the earlier writes left there.
    journal.push({ fileOffset: write.fileOffset, bytes: old });
    current.push(overlapping ? withEarlierWrites(old, write, writes.slice(0, index)) : old);
  }
  const result: PatchResult = {
    format: layout.format,
    bytesWritten: writes.reduce((sum, write) => sum + write.length, 0),
    bytesRead: 0,
    checks: 'none changed',
    walked: layout.walked,
    recovered,
    editableRanges: layout.knownRanges?.(),
  };
  if (writes.length > 0) {
    const checks = await layout.checkWrites(writes, current);
    for (const check of checks.writes) journal.push({ fileOffset: check.fileOffset, bytes: check.old });
    await writeJournal(path, layout.fileSize, journal);
    for (const write of writes) await writeAll(handle, write.data, write.fileOffset);
    for (const check of checks.writes) await writeAll(handle, check.bytes, check.fileOffset);
    await handle.sync();
    await removeJournal(path);
    Object.assign(result, { oldCrc: checks.summary.oldCrc, newCrc: checks.summary.newCrc, checks: checks.summary.text });
  }
  result.bytesRead = source.bytesRead;
  return result;
}

/** A positional write, retried for the rest when the system writes less (never for bytes that exist). */
async function writeAll(handle: FileHandle, bytes: Uint8Array, fileOffset: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) done += (await handle.write(bytes, done, bytes.length - done, fileOffset + done)).bytesWritten;
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
