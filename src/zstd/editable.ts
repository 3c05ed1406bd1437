/**
 * The editable layout of a .zst file (see src/edit/editable.ts): its stored frames, found from
 * the seek table (or the frame headers) by their sizes (see couldBeStored) and then each
 * candidate's frame header and block headers. A file seekzstd wrote with --store has no other
 * candidates than its stored frames (and frames of incompressible data, which libzstd itself
 * writes as raw blocks); a foreign file costs a walk of the block headers of every candidate
 * frame, but only for `editableRanges()`: an edit reads just the frames it touches.
 *
 * An edit rewrites the checksums of each touched frame: its Content_Checksum (when it has one)
 * and its seek table entry's checksum (when the table has them), both the low 32 bits of XXH64
 * over the frame's bytes. XXH64 has no combine math, so the frame is read whole (at most 1 MiB
 * for the frames seekzstd writes, 32 MiB for a foreign one), its old checksums verified over its
 * old bytes (a damaged frame is refused, never given a fresh checksum), and the new one computed
 * over the new bytes. Pinned by test/zstd-edit.test.ts.
 */
import { chunkExtents, describeRanges, storedUnits, type CheckWrite, type EditableLayout, type PlannedWrite, type StoredExtent } from '../edit/editable.js';
import { fail } from '../errors.js';
import { lastAtOrBefore } from '../search.js';
import type { Source } from '../source/source.js';
import { seekTableSize, type ReadAt } from './format.js';
import { openZstd, readZstdLayout, type ZstdFrame } from './reader.js';
import { couldBeStored, findStoredFrame } from './stored.js';
import { xxh64Low32 } from './xxh64.js';

const le32 = (value: number) => {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  return bytes;
};

export async function readZstdEditable(source: Source): Promise<EditableLayout & { frames: ZstdFrame[] }> {
  const found = await readZstdLayout(source);
  // A file whose frames state no sizes is read as a stream: nothing in it can be placed.
  const frames = found.layout === 'stream' ? [] : found.frames;
  // Its size is unknown without a pass over it, and no edit can land in it: every offset gets as
  // far as extents(), which refuses it naming why, rather than "outside the data of 0 bytes".
  const totalLength = found.layout === 'stream' ? Number.MAX_SAFE_INTEGER : frames.length > 0 ? frames[frames.length - 1]!.uStart + frames[frames.length - 1]!.uSize : 0;
  // Seek table entries (12 bytes with checksums): Compressed_Size 4, Decompressed_Size 4, Checksum 4.
  const tableChecksums = found.layout === 'seekable' && found.checksums;
  const tableAt = tableChecksums ? source.size - seekTableSize(frames.length, true) : 0;
  const entryChecksumOffset = (index: number) => tableAt + 8 + 12 * index + 8;
  const read: ReadAt = async (offset, length) => {
    const bytes = await source.read(offset, length);
    if (bytes.length !== length) throw fail('ZSTD_TRUNCATED', 'frame', offset);
    return bytes;
  };
  const { storedAt, editableRanges } = storedUnits(frames, couldBeStored, (frame) => findStoredFrame(read, frame));
  const refuse = async (offset: number, length: number) => {
    if (found.layout === 'stream') return fail('ZSTD_NOT_EDITABLE', offset, length, 'none (its frames do not state their sizes, so no byte can be placed)');
    return fail('ZSTD_NOT_EDITABLE', offset, length, describeRanges(await editableRanges()));
  };
  const locate = (offset: number) => lastAtOrBefore(frames, (frame) => frame.uStart, offset);

  return {
    format: 'zstd',
    frames,
    fileSize: source.size,
    totalLength,
    walked: false,
    editableRanges,
    reader: () => openZstd(source, { threads: 1 }),
    async extents(offset, length) {
      const extents: StoredExtent[] = [];
      const end = offset + length;
      if (frames.length === 0) throw await refuse(offset, length);
      for (let index = locate(offset); index < frames.length && frames[index]!.uStart < end; index++) {
        const frame = frames[index]!;
        if (frame.uSize === 0) continue;
        const storedFrame = await storedAt(index);
        if (!storedFrame) throw await refuse(offset, length);
        extents.push(...chunkExtents(frame.uStart, frame.uSize, storedFrame.chunks, offset, end));
      }
      return extents;
    },
    async checkWrites(writes) {
      const byFrame = new Map<number, PlannedWrite[]>();
      for (const write of writes) {
        const index = locate(write.uStart);
        byFrame.set(index, [...(byFrame.get(index) ?? []), write]);
      }
      const checkWrites: CheckWrite[] = [];
      let fixed = 0;
      for (const [index, frameWrites] of byFrame) {
        const frame = frames[index]!;
        const bytes = await read(frame.offset, frame.compressedSize);
        // Walked again in the bytes just read: what is checked is what is rewritten.
        const inMemory: ReadAt = async (offset, length) => bytes.subarray(offset - frame.offset, offset - frame.offset + length);
        const storedFrame = await findStoredFrame(inMemory, frame);
        if (!storedFrame) throw await refuse(frame.uStart, frame.uSize);
        const contents = new Uint8Array(frame.uSize);
        for (const chunk of storedFrame.chunks) contents.set(bytes.subarray(chunk.fileOffset - frame.offset, chunk.fileOffset - frame.offset + chunk.length), chunk.within);
        const verified = xxh64Low32(contents);
        const own = storedFrame.checksumOffset === undefined ? undefined : new DataView(bytes.buffer, bytes.byteOffset).getUint32(storedFrame.checksumOffset - frame.offset, true);
        for (const expected of [own, tableChecksums ? frame.tableChecksum : undefined]) {
          if (expected !== undefined && expected !== verified) throw fail('ZSTD_CHECKSUM', frame.number, frame.offset, expected, verified);
        }
        for (const write of frameWrites) contents.set(write.data, write.uStart - frame.uStart); // later writes win
        const checksum = le32(xxh64Low32(contents));
        if (own !== undefined) checkWrites.push({ fileOffset: storedFrame.checksumOffset!, old: le32(own), bytes: checksum });
        if (tableChecksums) checkWrites.push({ fileOffset: entryChecksumOffset(index), old: le32(frame.tableChecksum!), bytes: checksum });
        if (own !== undefined || tableChecksums) fixed++;
      }
      const fields = checkWrites.length;
      const text = fixed === 0 ? 'no frame checksums to fix (the frames have none)' : `${fixed} frame checksum${fixed === 1 ? '' : 's'} (XXH64) recomputed, ${fields} field${fields === 1 ? '' : 's'} written`;
      return { writes: checkWrites, summary: { frameChecks: fixed, text } };
    },
  };
}

/**
 * After an edit the seek table holds new checksums for the frames it touched: a reader opened
 * before it (seekz serve's) takes them from the table again, so its checked reads expect the new
 * bytes. The table's sizes must be the ones the reader has: an edit never changes a size.
 */
export async function reloadTableChecksums(source: Source, frames: ZstdFrame[]): Promise<void> {
  const found = await readZstdLayout(source);
  if (found.layout !== 'seekable') return;
  if (found.frames.length !== frames.length) throw fail('ZSTD_BAD_SEEK_TABLE', source.size, `it now lists ${found.frames.length} frames, ${frames.length} when the file was opened`);
  for (const [index, frame] of found.frames.entries()) {
    const known = frames[index]!;
    if (frame.compressedSize !== known.compressedSize || frame.uSize !== known.uSize) throw fail('ZSTD_BAD_SEEK_TABLE', source.size, `entry ${index + 1} changed its sizes since the file was opened`);
    known.tableChecksum = frame.tableChecksum;
  }
}
