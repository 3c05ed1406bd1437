/**
 * An index into any gzip file: access points where inflation can resume (zran.c's idea). Every
 * index format seekz reads or writes (its own, indexed_gzip's GZIDX, gztool's) converts to this.
 *
 * Offsets follow zran.c: a point's deflate block starts `bits` bits before byte `cOffset` of the
 * file (bits 0–7; with 0 the block starts exactly at `cOffset`). `window` is the up-to-32 KiB of
 * uncompressed data before the point, which back-references may reach into; it is empty at the
 * start of a gzip member, and where history was reset (seekz's own chunk boundaries).
 */
import { fail } from '../../errors.js';
import type { AfterMember } from '../header.js';

export const WINDOW_SIZE = 32768;

export interface AccessPoint {
  /** Uncompressed offset of the first byte the block produces. */
  uOffset: number;
  /** File offset of the first full byte of the block (zran's `in`). */
  cOffset: number;
  /** How many bits of the byte before `cOffset` belong to the block (zran's `bits`), 0–7. */
  bits: number;
  /** The history before the point, at most 32 KiB; length 0 when there is none. */
  window: Uint8Array;
  /**
   * CRC-32 of the span's output, from this point to the next (or to the end of the data). seekz's
   * own index records it (the builder inflates everything anyway), so every span read through it
   * is verified; GZIDX and gztool files cannot hold it.
   */
  crc?: number;
  /**
   * The span cut into granules of GRANULE_SIZE bytes of output (the last one shorter), each with
   * the CRC-32 of its output (seekz index version 3). A small read inflates from the point only
   * to the end of the granule it needs and checks every granule it inflated, instead of the whole
   * span. The last granule ends where the span does. Absent (or one granule) for other formats
   * and older seekz indexes: the whole span is decoded.
   */
  granules?: Granule[];
}

/** A stretch of a span's output with its own CRC-32; it has no window, so reads start at the point. */
export interface Granule {
  /** Uncompressed offset just past the granule's last byte. */
  uEnd: number;
  /**
   * File offset up to which the compressed data produces the whole granule: the end of the deflate
   * block holding its last byte (rounded up to a byte). Inflating from the point stops there.
   */
  cEnd: number;
  /** CRC-32 of the granule's output. */
  crc: number;
}

/** Output bytes per granule. */
export const GRANULE_SIZE = 64 * 1024;

/** Where the gzip data ends (just after the last member's trailer) and what follows, as gzip -d sees it. */
export interface GzipEnd {
  offset: number;
  after: AfterMember;
}

export interface GzipIndex {
  /** Size of the gzip file the index was built for: a claim checked when the index is used. */
  compressedSize: number;
  uncompressedSize: number;
  /** Requested distance between points, in uncompressed bytes. */
  spacing: number;
  points: AccessPoint[];
  /** Recorded by seekz's builder (and its index file); unknown for imported indexes until their last span is read. */
  end?: GzipEnd;
}

/** The bit offset in the file where a point's block header starts. */
export function pointBit(point: AccessPoint): number {
  return point.cOffset * 8 - point.bits;
}

/** Checks a point before it is written to an index file; `format` names the file type in the message. */
export function checkPoint(point: AccessPoint, at: number, format: string): void {
  const { uOffset, cOffset, bits, window } = point;
  if (!Number.isSafeInteger(uOffset) || uOffset < 0 || !Number.isSafeInteger(cOffset) || cOffset < 0) {
    throw fail('BAD_ARGUMENT', `${format}: point ${at} has offsets (compressed ${cOffset}, uncompressed ${uOffset}); expected whole numbers of bytes`);
  }
  if (!Number.isInteger(bits) || bits < 0 || bits > 7) throw fail('BAD_ARGUMENT', `${format}: point ${at} has bits ${bits}; expected 0-7`);
  if (window.length > WINDOW_SIZE) {
    throw fail('BAD_ARGUMENT', `${format}: point ${at} has a ${window.length}-byte window; deflate history is at most ${WINDOW_SIZE} bytes`);
  }
}
