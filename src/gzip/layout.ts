import { firstBackReference, walkDeflate, type BackReference, type DeflateBlock } from '../deflate/walk.js';
import { ByteReader } from '../cursor.js';
import { fail, hex32 } from '../errors.js';
import type { Source } from '../source/source.js';
import { readGzipHeader, TRAILER_LENGTH, type GzipHeader } from './header.js';
import { combinedCrc, decodeMap, findSegment, SEEKZ_SUBFIELD_ID, STORED_BLOCK_HEADER, STORED_BLOCK_MAX, type SeekzMap } from './map.js';
import { lastAtOrBefore } from '../search.js';
import { describeRanges, mergeRanges, type StoredExtent } from '../edit/editable.js';

/**
 * Where things are in a single-member gzip file: header, deflate stream, trailer, and which
 * uncompressed bytes are stored verbatim (editable in place).
 */
export interface GzipLayout {
  header: GzipHeader;
  fileSize: number;
  totalLength: number;
  trailerOffset: number;
  crc: number;
  /** The seekz map, when the file carries a filled one. */
  map: SeekzMap | undefined;
  /** File offset of the map's payload (where its CRC-32s are patched), with a map. */
  mapOffset: number | undefined;
  /** True when the stored blocks were found by walking the deflate stream (a file seekz did not write). */
  walked: boolean;
  /** Merged half-open ranges of editable uncompressed bytes: stored, and (walked) copied by nothing. */
  editableRanges(): { start: number; end: number }[];
  /** The stored extents covering [start, end), or undefined when any byte there is not stored. */
  storedExtents(start: number, end: number): StoredExtent[] | undefined;
  /**
   * A later back-reference that copies from stored bytes in [start, end): `at` is the output
   * offset of the match, [from, to) the bytes of the range it reads. Always undefined in a file
   * seekz wrote (its chunks start with no history).
   */
  backReference(start: number, end: number): Promise<BackReference | undefined>;
}

/**
 * The stored extents of an edit of [offset, offset + length), or the reason it is refused:
 * bytes that are not stored (GZIP_NOT_EDITABLE), or stored bytes a later match copies from
 * (GZIP_REFERENCED: changing them would change bytes elsewhere). Every patch passes here; a
 * server taking writes checks storedExtents at once (it serves only files with a map, where no
 * stored byte is ever copied) and the patch that applies them checks again.
 */
export async function editableExtents(layout: GzipLayout, offset: number, length: number): Promise<StoredExtent[]> {
  const extents = layout.storedExtents(offset, offset + length);
  if (!extents) throw fail('GZIP_NOT_EDITABLE', offset, length, describeRanges(layout.editableRanges()));
  const reference = await layout.backReference(offset, offset + length);
  if (reference) throw fail('GZIP_REFERENCED', offset, length, reference.at, reference.from, reference.to, describeRanges(layout.editableRanges()));
  return extents;
}

export interface LayoutOptions {
  /** Allow walking the deflate stream of a file without a seekz map. Default true. */
  walk?: boolean;
  /** Told before a walk starts, so a CLI can say that this is the slow path. */
  onWalk?: () => void;
}

/**
 * The seekz map of a gzip file, or undefined when it has none (or an unfilled one), with every
 * claim checked against the others before any byte is read through it: segment sizes against
 * the file size (decodeMap), the total length against ISIZE, and for a map with CRC-32s their
 * combination against the trailer's CRC-32. A damaged header (a flipped FLG bit, a changed
 * length) then fails here instead of giving short or wrong output.
 */
export async function readSeekzMap(
  source: Source,
  header: GzipHeader,
): Promise<{ map: SeekzMap; mapOffset: number; trailer: { crc: number; isize: number; offset: number } } | undefined> {
  const subfield = header.extra.find((extra) => extra.id === SEEKZ_SUBFIELD_ID);
  if (!subfield) return undefined;
  const map = decodeMap(subfield.data, source.size - header.length - TRAILER_LENGTH);
  if (!map) return undefined;
  const trailer = await readTrailer(source, header.length);
  if (map.totalLength % 2 ** 32 !== trailer.isize) throw fail('GZIP_SIZE_MISMATCH', trailer.isize, map.totalLength);
  if (map.verified) {
    const crc = combinedCrc(map);
    if (crc !== trailer.crc) {
      throw fail('GZIP_BAD_MAP', `its segment crc-32s combine to ${hex32(crc)} but the trailer says ${hex32(trailer.crc)}`);
    }
  }
  return { map, mapOffset: subfield.dataOffset, trailer };
}

export async function readTrailer(source: Source, headerLength: number): Promise<{ crc: number; isize: number; offset: number }> {
  const offset = source.size - TRAILER_LENGTH;
  if (offset < headerLength) throw fail('GZIP_TRUNCATED', 'trailer', Math.max(offset, 0), source.size);
  const reader = new ByteReader(await source.read(offset, TRAILER_LENGTH), (what, at) => fail('GZIP_TRUNCATED', what, offset + at, source.size));
  return { crc: reader.u32le('trailer CRC32'), isize: reader.u32le('trailer ISIZE'), offset };
}

export async function readGzipLayout(source: Source, options: LayoutOptions = {}): Promise<GzipLayout> {
  const header = await readGzipHeader((offset, length) => source.read(offset, length), source.size);
  const mapped = await readSeekzMap(source, header);
  if (mapped) return mapLayout(header, source.size, mapped.trailer, mapped.map, mapped.mapOffset);
  const trailer = await readTrailer(source, header.length);
  if (options.walk === false) {
    throw fail('GZIP_BAD_MAP', 'the file has no seekz map and walking was not allowed');
  }
  options.onWalk?.();
  return walkedLayout(source, header, trailer);
}

function mapLayout(header: GzipHeader, fileSize: number, trailer: { crc: number; offset: number }, map: SeekzMap, mapOffset: number): GzipLayout {
  const storedSegments = map.segments.filter((segment) => segment.kind === 'stored');
  return {
    header,
    fileSize,
    totalLength: map.totalLength,
    trailerOffset: trailer.offset,
    crc: trailer.crc,
    map,
    mapOffset,
    walked: false,
    editableRanges: () => mergeRanges(storedSegments.map((segment) => ({ start: segment.uStart, end: segment.uStart + segment.uLength }))),
    storedExtents: (start, end) => mapStoredExtents(map, header.length, start, end),
    backReference: async () => undefined,
  };
}

/** Stored extents of [start, end) in a file with a seekz map; undefined if a byte there is compressed. */
export function mapStoredExtents(map: SeekzMap, headerLength: number, start: number, end: number): StoredExtent[] | undefined {
  const extents: StoredExtent[] = [];
  let at = start;
  while (at < end) {
    const segment = map.segments[findSegment(map.segments, at)];
    if (!segment || segment.kind !== 'stored' || at >= segment.uStart + segment.uLength) return undefined;
    // Stored blocks are cut every 65535 bytes from the region's start, each behind 5 header bytes.
    const block = Math.floor((at - segment.uStart) / STORED_BLOCK_MAX);
    const blockEnd = Math.min(segment.uStart + (block + 1) * STORED_BLOCK_MAX, segment.uStart + segment.uLength);
    const length = Math.min(end, blockEnd) - at;
    const fileOffset = headerLength + segment.cStart + STORED_BLOCK_HEADER * (block + 1) + (at - segment.uStart);
    extents.push({ uStart: at, length, fileOffset });
    at += length;
  }
  return extents;
}

async function walkedLayout(source: Source, header: GzipHeader, trailer: { crc: number; isize: number; offset: number }): Promise<GzipLayout> {
  const stored: StoredExtent[] = [];
  // Stored blocks that later matches read; the walk fills in their `references` until it ends.
  const referenced: DeflateBlock[] = [];
  let totalLength = 0;
  let endBit = header.length * 8;
  for await (const block of walkDeflate(source, header.length, { onReferenced: (read) => referenced.push(read) })) {
    if (block.type === 'stored' && block.outLength > 0) {
      stored.push({ uStart: block.outStart, length: block.outLength, fileOffset: block.dataOffset! });
    }
    totalLength = block.outStart + block.outLength;
    endBit = block.endBit;
  }
  const deflateEnd = Math.ceil(endBit / 8);
  if (deflateEnd !== trailer.offset) {
    throw fail(
      'GZIP_BAD_HEADER',
      `the deflate stream ends at byte ${deflateEnd} but the trailer is at ${trailer.offset}: more than one gzip member or trailing data; in-place edits need a single-member file`,
    );
  }
  if (totalLength % 2 ** 32 !== trailer.isize) throw fail('GZIP_SIZE_MISMATCH', trailer.isize, totalLength);
  // Copied ranges, in output order: blocks are first read in about that order, not exactly.
  const copied = referenced
    .sort((a, b) => a.outStart - b.outStart)
    .flatMap((block) => block.references!.ranges);
  return {
    header,
    fileSize: source.size,
    totalLength,
    trailerOffset: trailer.offset,
    crc: trailer.crc,
    map: undefined,
    mapOffset: undefined,
    walked: true,
    editableRanges() {
      // Stored bytes minus those a later match copies from.
      const ranges: { start: number; end: number }[] = [];
      let next = 0;
      for (const extent of stored) {
        let at = extent.uStart;
        const end = extent.uStart + extent.length;
        for (; next < copied.length && copied[next]!.start < end; next++) {
          if (copied[next]!.start > at) ranges.push({ start: at, end: copied[next]!.start });
          at = copied[next]!.end;
        }
        if (end > at) ranges.push({ start: at, end });
      }
      return mergeRanges(ranges);
    },
    async backReference(start, end) {
      for (let index = lastAtOrBefore(copied, (range) => range.start, start); index < copied.length; index++) {
        const range = copied[index]!;
        if (range.start >= end) break;
        if (start < range.end) {
          // Refused. Merged ranges do not say which match reads these very bytes: walk again to name it.
          return (await firstBackReference(source, header.length, start, end)) ?? { at: range.by, from: range.start, to: range.end };
        }
      }
      return undefined;
    },
    storedExtents(start, end) {
      const extents: StoredExtent[] = [];
      let at = start;
      for (let index = lastAtOrBefore(stored, (extent) => extent.uStart, at); at < end; index++) {
        const extent = stored[index];
        if (!extent || extent.uStart > at || at >= extent.uStart + extent.length) return undefined;
        const length = Math.min(end, extent.uStart + extent.length) - at;
        extents.push({ uStart: at, length, fileOffset: extent.fileOffset + (at - extent.uStart) });
        at += length;
      }
      return extents;
    },
  };
}
