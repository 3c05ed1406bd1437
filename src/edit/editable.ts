/**
 * What an in-place edit needs from a format, as one small interface: the journaled patch
 * (patch.ts: lock, recovery, journal, writes, fsync) is the same for every format, and a format
 * plugs in by giving its editable layout. gzip: src/gzip/editable.ts (stored deflate blocks, the
 * trailer's and the map's CRC-32s); xz: src/xz/editable.ts (blocks of LZMA2 uncompressed chunks,
 * each block's check); zstd: src/zstd/editable.ts (frames of raw blocks, each frame's XXH64 in the
 * frame and in the seek table).
 */
import type { Source } from '../source/source.js';

/** A run of uncompressed bytes that sits verbatim in the file: a stored block's (or raw block's) data. */
export interface StoredExtent {
  uStart: number;
  length: number;
  fileOffset: number;
}

export interface Range {
  start: number;
  end: number;
}

/** An edit mapped to the file: `data` goes to `fileOffset`, holding uncompressed [uStart, uStart + length). */
export interface PlannedWrite extends StoredExtent {
  data: Uint8Array;
}

/** A check field an edit changes, with its old bytes (for the journal) and its new ones. */
export interface CheckWrite {
  fileOffset: number;
  old: Uint8Array;
  bytes: Uint8Array;
}

export interface EditableLayout {
  readonly format: 'gzip' | 'xz' | 'zstd';
  readonly fileSize: number;
  /** Uncompressed size. */
  readonly totalLength: number;
  /** The editable bytes were found by walking the compressed data (a file seekz did not write): slower. */
  readonly walked: boolean;
  /** Merged half-open ranges of uncompressed bytes that can be overwritten in place. */
  editableRanges(): Promise<Range[]>;
  /** The same, where they are known without reading the file (gzip's map or walk); xz has to read every candidate block. */
  knownRanges?(): Range[];
  /**
   * The file extents holding uncompressed [offset, offset + length), or a rejection naming the
   * editable ranges (GZIP_NOT_EDITABLE, GZIP_REFERENCED, XZ_NOT_EDITABLE, ZSTD_NOT_EDITABLE) when any byte is not.
   */
  extents(offset: number, length: number): Promise<StoredExtent[]>;
  /**
   * The check fields that must change with `writes`, in the same transaction. `current[i]` holds
   * the file's bytes under writes[i] as the earlier writes of this patch leave them. Verifies
   * what it reads: a damaged block or trailer is refused, never given a fresh check.
   */
  checkWrites(writes: PlannedWrite[], current: Uint8Array[]): Promise<{ writes: CheckWrite[]; summary: CheckSummary }>;
  /** A reader of the uncompressed bytes as the file holds them now (patch --from compares with it). */
  reader(): Promise<Source & { close?(): Promise<void> }>;
}

/** What changed in the checks, for the CLI's --verbose. */
export interface CheckSummary {
  /** gzip: the trailer's CRC-32 before and after. */
  oldCrc?: number;
  newCrc?: number;
  /** xz: block checks recomputed. */
  blockChecks?: number;
  /** zstd: frames whose XXH64 was recomputed (Content_Checksum and seek table entry). */
  frameChecks?: number;
  /** Words for a human: "crc32 1a2b3c4d -> 5e6f7a8b", "2 block checks (CRC64) recomputed". */
  text: string;
}

/** Sorted ranges with touching neighbours joined. */
export function mergeRanges(ranges: Range[]): Range[] {
  const merged: Range[] = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last && last.end === range.start) last.end = range.end;
    else merged.push({ ...range });
  }
  return merged;
}

/** Whether [offset, offset + length) lies inside the sorted `ranges` (for a server's synchronous check). */
export function insideRanges(ranges: Range[], offset: number, length: number): boolean {
  let at = offset;
  const end = offset + length;
  for (const range of ranges) {
    if (range.end <= at) continue;
    if (range.start > at) return false;
    at = range.end;
    if (at >= end) return true;
  }
  return at >= end;
}

/** "[1048576, 2097152) [5242880, 6291456)" or "none": for error messages (the first eight, then how many more). */
export function describeRanges(ranges: { start: number; end: number }[]): string {
  if (ranges.length === 0) return 'none';
  const shown = ranges.slice(0, 8).map((range) => `[${range.start}, ${range.end})`).join(' ');
  return ranges.length > 8 ? `${shown} and ${ranges.length - 8} more` : shown;
}

/** Candidate units (xz blocks, zstd frames) walked at once by editableRanges(). */
const WALK_WINDOW = 8;

/**
 * Which units of a file (xz blocks, zstd frames, in order) are stored, each found once and
 * remembered: `storedAt(index)` walks one unit's headers (or says no from its sizes alone), and
 * `editableRanges()` walks every candidate, a window at a time, into merged ranges.
 */
export function storedUnits<Unit extends { uStart: number; uSize: number }, Stored>(
  units: Unit[],
  couldBeStored: (unit: Unit) => boolean,
  find: (unit: Unit) => Promise<Stored | undefined>,
): { storedAt(index: number): Promise<Stored | undefined>; editableRanges(): Promise<Range[]> } {
  const found = new Map<number, Promise<Stored | undefined>>();
  const storedAt = (index: number) => {
    let stored = found.get(index);
    if (!stored) found.set(index, (stored = find(units[index]!)));
    return stored;
  };
  let ranges: Promise<Range[]> | undefined;
  const editableRanges = () =>
    (ranges ??= (async () => {
      const candidates = units.flatMap((unit, index) => (couldBeStored(unit) ? [index] : []));
      const out: Range[] = [];
      for (let at = 0; at < candidates.length; at += WALK_WINDOW) {
        const window = candidates.slice(at, at + WALK_WINDOW);
        const stored = await Promise.all(window.map(storedAt));
        window.forEach((index, within) => {
          if (stored[within]) out.push({ start: units[index]!.uStart, end: units[index]!.uStart + units[index]!.uSize });
        });
      }
      return mergeRanges(out);
    })());
  return { storedAt, editableRanges };
}

/** A run of a stored unit's bytes in the file: uncompressed offset within the unit, file offset, length. */
export interface StoredChunk {
  within: number;
  fileOffset: number;
  length: number;
}

/** The extents of uncompressed [offset, end) that lie in one stored unit starting at `uStart`, from its chunks. */
export function chunkExtents(uStart: number, uSize: number, chunks: StoredChunk[], offset: number, end: number): StoredExtent[] {
  const from = Math.max(offset, uStart) - uStart;
  const to = Math.min(end, uStart + uSize) - uStart;
  const extents: StoredExtent[] = [];
  for (const chunk of chunks) {
    const lo = Math.max(from, chunk.within);
    const hi = Math.min(to, chunk.within + chunk.length);
    if (lo < hi) extents.push({ uStart: uStart + lo, length: hi - lo, fileOffset: chunk.fileOffset + (lo - chunk.within) });
  }
  return extents;
}
