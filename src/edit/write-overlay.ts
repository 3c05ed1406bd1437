import { fail } from '../errors.js';
import type { Source } from '../source/source.js';
import { describeRanges, insideRanges, type EditableLayout, type Range } from './editable.js';
import { patchFile, type PatchEdit } from './patch.js';

/** Unflushed writes kept before they are applied on their own. */
const DEFAULT_PENDING_LIMIT = 64 * 2 ** 20;

/**
 * Writes into the stored ranges of a partial-deflate gzip or a seekxz --store xz, for a
 * block-device server: writes are checked at once against the editable ranges found on open
 * (outside them: GZIP_NOT_EDITABLE, XZ_NOT_EDITABLE or ZSTD_NOT_EDITABLE, which a server turns into EPERM), kept in memory and visible to reads, and applied by `flush` through the journaled
 * patch, which fixes the checks (gzip: the trailer's and the map's CRC-32s; xz: the touched
 * blocks' checks) once for all of them.
 *
 * Invariant (pinned by the write tests of test/nbd.test.ts and test/trust-map-patch.test.ts): a
 * read returns the file's bytes with every accepted write laid over them in write order, whether
 * the write is pending, being patched in, or already in the file; and no read of the file runs
 * while a patch is writing it, so a verified read never sees half an edit.
 */
/** The refusal of a write outside the editable ranges, per format. */
const NOT_EDITABLE = { gzip: 'GZIP_NOT_EDITABLE', xz: 'XZ_NOT_EDITABLE', zstd: 'ZSTD_NOT_EDITABLE' } as const;

export function writableFile(
  path: string,
  data: Source & { reload?(): Promise<void> },
  layout: Pick<EditableLayout, 'format' | 'walked'> & { ranges: Range[] },
  options: { pendingLimit?: number } = {},
) {
  if (layout.walked) throw fail('BAD_ARGUMENT', 'writes through a server need a file with a seekz map (written by partial-deflate)');
  const { ranges } = layout;
  const pendingLimit = options.pendingLimit ?? DEFAULT_PENDING_LIMIT;
  let pending: PatchEdit[] = [];
  let pendingBytes = 0;
  // Edits being patched into the file stay visible to reads until the patch is done: a read that
  // started before the patch must still see them.
  let inPatch: PatchEdit[] = [];
  let flushing: Promise<void> = Promise.resolve();
  // Reads of the file and patches of it never overlap: a verified read of a stored segment that
  // met half-written bytes, or CRC-32s from before the patch, would fail its check. A patch waits
  // for the reads in flight; reads that arrive meanwhile wait for the patch (and the reload of
  // the map's CRC-32s after it).
  let patching: Promise<void> | undefined;
  let readsInFlight = 0;
  let readsDrained: (() => void) | undefined;

  const flush = () => {
    flushing = flushing.then(async () => {
      if (pending.length === 0) return;
      let release!: () => void;
      patching = new Promise((resolve) => (release = resolve));
      try {
        if (readsInFlight > 0) await new Promise<void>((resolve) => (readsDrained = resolve));
        inPatch = pending;
        pending = [];
        pendingBytes = 0;
        try {
          await patchFile(path, inPatch);
        } catch (error) {
          pending = [...inPatch, ...pending]; // nothing was lost: a failed patch rolls back
          pendingBytes = pending.reduce((sum, edit) => sum + edit.data.length, 0);
          throw error;
        } finally {
          inPatch = [];
          await data.reload?.();
        }
      } finally {
        patching = undefined;
        release();
      }
    });
    return flushing;
  };

  const readFile = async (offset: number, length: number) => {
    while (patching) await patching;
    readsInFlight++;
    try {
      return await data.read(offset, length);
    } finally {
      if (--readsInFlight === 0 && readsDrained) {
        readsDrained();
        readsDrained = undefined;
      }
    }
  };

  const source: Source = {
    size: data.size,
    async read(offset, length) {
      const before = [...inPatch, ...pending];
      const bytes = await readFile(offset, length);
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
      // Synchronous, so that writes join `pending` in the order they came. A map layout (the only
      // gzip kind served writable) has no back-references into stored bytes; patch checks again anyway.
      if (!insideRanges(ranges, offset, bytes.length)) {
        throw fail(NOT_EDITABLE[layout.format], offset, bytes.length, describeRanges(ranges));
      }
      pending.push({ offset, data: new Uint8Array(bytes) });
      pendingBytes += bytes.length;
      if (pendingBytes > pendingLimit) await flush();
    },
    flush,
  };
}
