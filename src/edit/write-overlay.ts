import { fail } from '../errors.js';
import { describeRanges, type GzipLayout } from '../gzip/layout.js';
import type { Source } from '../source/source.js';
import { patchGzip, type PatchEdit } from './patch.js';

/** Unflushed writes kept before they are applied on their own. */
const DEFAULT_PENDING_LIMIT = 64 * 2 ** 20;

/**
 * Writes into the stored ranges of a partial-deflate gzip, for a block-device server: writes are
 * checked at once (outside the stored ranges: GZIP_NOT_EDITABLE, which a server turns into
 * EPERM), kept in memory and visible to reads, and applied by `flush` through the journaled
 * patch, which fixes the CRC-32 once for all of them.
 */
export function writableGzip(path: string, data: Source, layout: GzipLayout, options: { pendingLimit?: number } = {}) {
  const pendingLimit = options.pendingLimit ?? DEFAULT_PENDING_LIMIT;
  let pending: PatchEdit[] = [];
  let pendingBytes = 0;
  // Edits being patched into the file stay visible to reads until the patch is done: a read that
  // started before the patch must still see them.
  let inPatch: PatchEdit[] = [];
  let flushing: Promise<void> = Promise.resolve();

  const flush = () => {
    flushing = flushing.then(async () => {
      if (pending.length === 0) return;
      inPatch = pending;
      pending = [];
      pendingBytes = 0;
      try {
        await patchGzip(path, inPatch);
      } catch (error) {
        pending = [...inPatch, ...pending]; // nothing was lost: a failed patch rolls back
        pendingBytes = pending.reduce((sum, edit) => sum + edit.data.length, 0);
        throw error;
      } finally {
        inPatch = [];
      }
    });
    return flushing;
  };

  const source: Source = {
    size: data.size,
    async read(offset, length) {
      const before = [...inPatch, ...pending];
      const bytes = await data.read(offset, length);
      // Edits seen before or after the file read, in write order (later writes win). Applying one
      // that the file already holds is harmless: it writes the same bytes.
      const edits = [...new Set([...before, ...inPatch, ...pending])];
      if (edits.length === 0) return bytes;
      const out = new Uint8Array(bytes);
      for (const edit of edits) {
        const from = Math.max(offset, edit.offset);
        const to = Math.min(offset + out.length, edit.offset + edit.data.length);
        if (from < to) out.set(edit.data.subarray(from - edit.offset, to - edit.offset), from - offset);
      }
      return out;
    },
  };

  return {
    source,
    async write(offset: number, bytes: Uint8Array) {
      if (!layout.storedExtents(offset, offset + bytes.length)) {
        throw fail('GZIP_NOT_EDITABLE', offset, bytes.length, describeRanges(layout.editableRanges()));
      }
      pending.push({ offset, data: new Uint8Array(bytes) });
      pendingBytes += bytes.length;
      if (pendingBytes > pendingLimit) await flush();
    },
    flush,
  };
}
