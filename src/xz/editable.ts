/**
 * The editable layout of an .xz file (see src/edit/editable.ts): its stored blocks, found from
 * the index (which blocks are big enough to be stored, see couldBeStored) and then each
 * candidate's block header and LZMA2 chunk headers. A file seekz wrote with --store has no other
 * candidates than its stored blocks (and blocks of incompressible data, which liblzma itself
 * writes as uncompressed chunks); a foreign file costs a walk of the chunk headers of every
 * candidate block, but only for `editableRanges()`: an edit reads just the blocks it touches.
 *
 * An edit rewrites one check per touched block. The block is read whole (at most 1 MiB for the
 * blocks seekxz writes), its old check verified over its old bytes (so a damaged block is refused,
 * never given a fresh check), and the new check computed over the new bytes: simplest to keep
 * right, and the only way for SHA-256. A larger block (a foreign file's, up to the whole file) with
 * a CRC32 or CRC64 check is not read whole: its check moves by combine math over the changed
 * pieces (crc32Patch, crc64Patch), which keeps any error the old check had.
 */
import type { CheckWrite, EditableLayout, PlannedWrite, StoredExtent } from '../edit/editable.js';
import { fail } from '../errors.js';
import { chunkExtents, describeRanges, storedUnits } from '../edit/editable.js';
import { lastAtOrBefore } from '../search.js';
import type { Source } from '../source/source.js';
import { createCheck } from './check.js';
import { crc32Patch } from '../crc/crc32.js';
import { crc64Patch } from '../crc/crc64.js';
import { CHECK_CRC32, CHECK_CRC64, checkName, checkSize, parseBlockHeader } from './format.js';
import { openXz, readXzLayout, type XzBlock } from './reader.js';
import { bytesReader, couldBeStored, findStoredBlock, STORED_BLOCK_MAX, storedContents } from './stored.js';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
/** Block headers held against their index records at once before an edit. */
const CONFIRM_WINDOW = 16;
/** Bytes read of a block header to confirm it: enough for one filter and both sizes. */
const HEADER_PEEK = 32;

export async function readXzEditable(source: Source): Promise<EditableLayout & { blocks: XzBlock[] }> {
  const { blocks } = await readXzLayout(source);
  const totalLength = blocks.length > 0 ? blocks[blocks.length - 1]!.uStart + blocks[blocks.length - 1]!.uSize : 0;
  const read = async (offset: number, length: number) => {
    const bytes = await source.read(offset, length);
    if (bytes.length !== length) throw fail('XZ_TRUNCATED', 'block', offset);
    return bytes;
  };
  const { storedAt, editableRanges } = storedUnits(blocks, couldBeStored, (block) => findStoredBlock(read, block));
  const locate = (offset: number) => lastAtOrBefore(blocks, (block) => block.uStart, offset);

  // An edit lands where the index records put it, so every record before the touched block is
  // held against its block header first, as the reader does before a random read (see openXz): a
  // pair of records forged to cancel out (their CRC32 recomputed) would otherwise move the edit.
  // Reads 32 bytes a block (a header with both sizes is 12 to 24), more only for a longer one.
  let confirmed = 0;
  const confirmBefore = async (index: number) => {
    while (confirmed < index) {
      const batch = blocks.slice(confirmed, Math.min(index, confirmed + CONFIRM_WINDOW));
      await Promise.all(batch.map(confirmHeader));
      confirmed += batch.length;
    }
  };
  const confirmHeader = async (block: XzBlock) => {
    let bytes = await read(block.offset, Math.min(HEADER_PEEK, block.totalSize));
    const size = (bytes[0]! + 1) * 4;
    if (bytes[0] !== 0 && size > bytes.length) bytes = await read(block.offset, Math.min(size, block.totalSize));
    const header = parseBlockHeader(bytes, block.offset);
    const mismatch = (what: string) => fail('XZ_INDEX_MISMATCH', block.number, block.unpaddedSize, block.uSize, block.offset, what);
    const check = checkSize(block.checkId);
    if (header.compressedSize !== undefined && header.size + header.compressedSize + check !== block.unpaddedSize) {
      throw mismatch(`the block header says header ${header.size} + compressed ${header.compressedSize} + check ${check} bytes`);
    }
    if (header.uncompressedSize !== undefined && header.uncompressedSize !== block.uSize) throw mismatch(`the block header says ${header.uncompressedSize} bytes uncompressed`);
  };

  return {
    format: 'xz',
    blocks,
    fileSize: source.size,
    totalLength,
    walked: false,
    editableRanges,
    reader: () => openXz(source, { threads: 1 }),
    async extents(offset, length) {
      const extents: StoredExtent[] = [];
      const end = offset + length;
      await confirmBefore(locate(offset));
      for (let index = locate(offset); index < blocks.length && blocks[index]!.uStart < end; index++) {
        const block = blocks[index]!;
        if (block.uSize === 0) continue;
        const stored = await storedAt(index);
        if (!stored) throw fail('XZ_NOT_EDITABLE', offset, length, describeRanges(await editableRanges()));
        extents.push(...chunkExtents(block.uStart, block.uSize, stored.chunks, offset, end));
      }
      return extents;
    },
    async checkWrites(writes, current) {
      const byBlock = new Map<number, { write: PlannedWrite; old: Uint8Array }[]>();
      for (const [at, write] of writes.entries()) {
        const index = locate(write.uStart);
        byBlock.set(index, [...(byBlock.get(index) ?? []), { write, old: current[at]! }]);
      }
      const checkWrites: CheckWrite[] = [];
      let combined = 0;
      for (const [index, edits] of byBlock) {
        const block = blocks[index]!;
        const blockWrites = edits.map(({ write }) => write);
        if (block.uSize > STORED_BLOCK_MAX && (block.checkId === CHECK_CRC32 || block.checkId === CHECK_CRC64)) {
          // A large foreign block: its CRC moves by combine math over the changed pieces only,
          // instead of a read of the whole block. Linear, so a block damaged elsewhere keeps its
          // error (xz -t still fails it): it is never given a fresh check.
          const stored = await storedAt(index);
          if (!stored) throw fail('XZ_NOT_EDITABLE', block.uStart, block.uSize, describeRanges(await editableRanges()));
          const oldCheck = await read(stored.checkOffset, checkSize(block.checkId));
          const view = new DataView(oldCheck.buffer, oldCheck.byteOffset, oldCheck.length);
          const out = new Uint8Array(oldCheck.length);
          const outView = new DataView(out.buffer);
          if (block.checkId === CHECK_CRC64) {
            let crc = view.getBigUint64(0, true);
            for (const { write, old } of edits) crc = crc64Patch(crc, block.uSize, write.uStart - block.uStart, old, write.data);
            outView.setBigUint64(0, crc, true);
          } else {
            let crc = view.getUint32(0, true);
            for (const { write, old } of edits) crc = crc32Patch(crc, block.uSize, write.uStart - block.uStart, old, write.data);
            outView.setUint32(0, crc, true);
          }
          checkWrites.push({ fileOffset: stored.checkOffset, old: oldCheck, bytes: out });
          combined++;
          continue;
        }
        const bytes = await read(block.offset, block.totalSize);
        // Walked again in the bytes just read: what is checked is what is rewritten.
        const stored = await findStoredBlock(bytesReader(bytes, block.offset), block);
        if (!stored) throw fail('XZ_NOT_EDITABLE', block.uStart, block.uSize, describeRanges(await editableRanges()));
        const contents = storedContents(stored, bytes);
        const oldCheck = bytes.slice(stored.checkOffset - block.offset);
        const before = createCheck(block.checkId);
        before.update(contents);
        const verified = before.digest();
        if (hex(verified) !== hex(oldCheck)) throw fail('XZ_BLOCK_CHECK', block.number, block.offset, hex(oldCheck), hex(verified));
        if (oldCheck.length === 0) continue; // check None: nothing to fix
        for (const write of blockWrites) contents.set(write.data, write.uStart - block.uStart); // later writes win
        const after = createCheck(block.checkId);
        after.update(contents);
        checkWrites.push({ fileOffset: stored.checkOffset, old: oldCheck, bytes: after.digest() });
      }
      const names = [...new Set([...byBlock.keys()].map((index) => checkName(blocks[index]!.checkId)))].join(', ');
      const count = checkWrites.length;
      const how = combined === 0 ? 'recomputed' : combined === count ? 'patched by combine math' : `recomputed (${combined} patched by combine math)`;
      const text = count === 0 ? `no block checks to fix (${names})` : `${count} block check${count === 1 ? '' : 's'} (${names}) ${how}`;
      return { writes: checkWrites, summary: { blockChecks: count, text } };
    },
  };
}
