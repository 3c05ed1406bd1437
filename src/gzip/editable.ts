/**
 * The editable layout of a single-member gzip file (see src/edit/editable.ts): stored deflate
 * blocks, and the CRC-32s an edit changes: the trailer's and, in a map with CRC-32s, those of the
 * stored segments it touches (4 bytes each in the header). Each CRC is patched from the old and
 * new bytes alone (crc32Patch), so the cost is O(edit + log size): nothing else is read.
 */
import { crc32Patch } from '../crc/crc32.js';
import { ByteWriter } from '../cursor.js';
import type { CheckWrite, EditableLayout } from '../edit/editable.js';
import { hex32 } from '../errors.js';
import type { Source } from '../source/source.js';
import { trailerBytes } from './header.js';
import { editableExtents, type GzipLayout } from './layout.js';
import { findSegment } from './map.js';
import { openGzip } from './reader.js';

export function gzipEditable(layout: GzipLayout, source: Source): EditableLayout & { gzip: GzipLayout } {
  return {
    format: 'gzip',
    gzip: layout,
    fileSize: layout.fileSize,
    totalLength: layout.totalLength,
    walked: layout.walked,
    editableRanges: async () => layout.editableRanges(),
    knownRanges: () => layout.editableRanges(),
    extents: (offset, length) => editableExtents(layout, offset, length),
    reader: () => openGzip(source),
    async checkWrites(writes, current) {
      let crc = layout.crc;
      const map = layout.map?.verified ? layout.map : undefined;
      const segmentCrcs = new Map<number, number>(); // segment number -> its new CRC-32
      for (const [index, write] of writes.entries()) {
        crc = crc32Patch(crc, layout.totalLength, write.uStart, current[index]!, write.data);
        if (map) {
          // A write lies inside one stored block, and stored segments hold whole blocks.
          const number = findSegment(map.segments, write.uStart);
          const segment = map.segments[number]!;
          const before = segmentCrcs.get(number) ?? segment.crc!;
          segmentCrcs.set(number, crc32Patch(before, segment.uLength, write.uStart - segment.uStart, current[index]!, write.data));
        }
      }
      const u32 = (value: number) => new ByteWriter().u32le(value).finish();
      const checkWrites: CheckWrite[] = [...segmentCrcs].map(([number, segmentCrc]) => ({
        fileOffset: layout.mapOffset! + map!.segments[number]!.crcOffset!,
        old: u32(map!.segments[number]!.crc!),
        bytes: u32(segmentCrc),
      }));
      // The layout checked both trailer fields, so the old trailer is known without reading it again.
      checkWrites.push({ fileOffset: layout.trailerOffset, old: trailerBytes(layout.crc, layout.totalLength), bytes: trailerBytes(crc, layout.totalLength) });
      return { writes: checkWrites, summary: { oldCrc: layout.crc, newCrc: crc, text: `crc32 ${hex32(layout.crc)} -> ${hex32(crc)}` } };
    },
  };
}
