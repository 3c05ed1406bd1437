/**
 * Forges .zst files the way an attacker would, to make seekz serve wrong bytes: sizes that
 * disagree between the seek table and the frame headers, content sizes that lie, a frame without
 * its checksum, a frame copied over another, a look-alike of the all-zero frame, a fake seek table
 * in the middle or at the end, a cut seek table. zstd has no checksum over headers or the seek
 * table, so nothing needs repairing: every lie here is one a checksum cannot catch.
 *
 * Written from the zstd format spec (RFC 8878 §3.1.1) and the seekable format spec
 * (contrib/seekable_format), not from src/zstd, so that a bug there cannot hide here.
 */
import type { Forgery } from './forge.js';
import type { Random } from './random.js';

const FRAME_MAGIC = 0xfd2fb528;
const SEEK_TABLE_MAGIC = 0x184d2a5e;
const SEEKABLE_MAGIC = 0x8f92eab1;
const FOOTER = 9;

const u32 = (bytes: Uint8Array, at: number) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at, true);
const setU32 = (bytes: Uint8Array, at: number, value: number) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(at, value >>> 0, true);
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

interface Frame {
  offset: number;
  size: number;
  skippable: boolean;
  /** Frame_Content_Size field: where, how many bytes, its value (zstd frames that have one). */
  fcsAt?: number;
  fcsBytes?: number;
  contentSize?: number;
  checksumFlag?: boolean;
}

interface Table {
  /** Offset of the skippable frame holding the table. */
  at: number;
  count: number;
  entrySize: number;
  entries: number;
}

/** The seek table, when the file ends in the seekable magic. */
function seekTable(file: Uint8Array): Table | undefined {
  if (file.length < FOOTER + 8 || u32(file, file.length - 4) !== SEEKABLE_MAGIC) return undefined;
  const count = u32(file, file.length - FOOTER);
  const entrySize = file[file.length - 5]! & 0x80 ? 12 : 8;
  const at = file.length - FOOTER - count * entrySize - 8;
  if (at < 0 || u32(file, at) !== SEEK_TABLE_MAGIC) return undefined;
  return { at, count, entrySize, entries: at + 8 };
}

/** Every frame, walked by its headers (§3.1.1.1, §3.1.1.2), up to the seek table or the end. */
function walk(file: Uint8Array): Frame[] | undefined {
  const end = seekTable(file)?.at ?? file.length;
  const frames: Frame[] = [];
  for (let at = 0; at < end; ) {
    if (at + 8 > file.length) return undefined;
    const magic = u32(file, at);
    if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
      const size = 8 + u32(file, at + 4);
      frames.push({ offset: at, size, skippable: true });
      at += size;
      continue;
    }
    if (magic !== FRAME_MAGIC) return undefined;
    const descriptor = file[at + 4]!;
    const single = (descriptor & 0x20) !== 0;
    const fcsBytes = [single ? 1 : 0, 2, 4, 8][descriptor >> 6]!;
    const fcsAt = at + 5 + (single ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!;
    let contentSize: number | undefined;
    if (fcsBytes > 0) {
      contentSize = 0;
      for (let index = fcsBytes - 1; index >= 0; index--) contentSize = contentSize * 256 + file[fcsAt + index]!;
      if (fcsBytes === 2) contentSize += 256;
    }
    let block = fcsAt + fcsBytes;
    for (;;) {
      if (block + 3 > file.length) return undefined;
      const header = file[block]! | (file[block + 1]! << 8) | (file[block + 2]! << 16);
      const type = (header >> 1) & 3;
      block += 3 + (type === 1 ? 1 : header >>> 3);
      if (header & 1) break;
    }
    const checksumFlag = (descriptor & 0x04) !== 0;
    const size = block + (checksumFlag ? 4 : 0) - at;
    frames.push({ offset: at, size, skippable: false, fcsAt, fcsBytes, contentSize, checksumFlag });
    at += size;
  }
  return frames;
}

/** Writes `value` into a frame's Frame_Content_Size field; undefined when it does not fit there. */
function setContentSize(out: Uint8Array, frame: Frame, value: number): boolean {
  const bytes = frame.fcsBytes!;
  let stored = bytes === 2 ? value - 256 : value;
  if (stored < 0 || stored >= 2 ** (8 * bytes)) return false;
  for (let index = 0; index < bytes; index++) {
    out[frame.fcsAt! + index] = stored % 256;
    stored = Math.floor(stored / 256);
  }
  return true;
}

/** A seek table (skippable frame with footer) for these entries, with checksums when given. */
function buildTable(entries: Array<{ c: number; d: number; sum?: number }>, checksums: boolean): Uint8Array {
  const entrySize = checksums ? 12 : 8;
  const out = new Uint8Array(8 + entries.length * entrySize + FOOTER);
  setU32(out, 0, SEEK_TABLE_MAGIC);
  setU32(out, 4, out.length - 8);
  entries.forEach((entry, index) => {
    setU32(out, 8 + index * entrySize, entry.c);
    setU32(out, 12 + index * entrySize, entry.d);
    if (checksums) setU32(out, 16 + index * entrySize, entry.sum ?? 0);
  });
  setU32(out, out.length - FOOTER, entries.length);
  out[out.length - 5] = checksums ? 0x80 : 0;
  setU32(out, out.length - 4, SEEKABLE_MAGIC);
  return out;
}

const entryAt = (table: Table, index: number) => table.entries + index * table.entrySize;
const dataFrames = (file: Uint8Array) => walk(file)?.filter((frame) => !frame.skippable);
const nudge = (random: Random, size: number) => Math.max(0, size + random.pick([1, -1, 7, -7, 4096, -4096, size, -size]));

/** `file` with bytes [from, to) replaced by `bytes`. */
function splice(file: Uint8Array, from: number, to: number, bytes: Uint8Array): Uint8Array {
  return concat(file.subarray(0, from), bytes, file.subarray(to));
}

export const zstdForgeries: Record<string, Forgery> = {
  /** One seek table entry's decompressed size changed: every later frame would move. */
  'zst-table-dsize': (file, random) => {
    const table = seekTable(file);
    if (!table || table.count === 0) return undefined;
    const out = file.slice();
    const at = entryAt(table, random.int(table.count)) + 4;
    setU32(out, at, nudge(random, u32(out, at)));
    return out;
  },
  /** Bytes moved from one entry to the next (decompressed or compressed sizes), totals unchanged. */
  'zst-table-shift': (file, random) => {
    const table = seekTable(file);
    if (!table || table.count < 2) return undefined;
    const out = file.slice();
    const first = random.int(table.count - 1);
    const field = random.pick([0, 4]);
    const from = entryAt(table, first) + field;
    const to = entryAt(table, random.between(first + 1, table.count - 1)) + field;
    const shift = Math.min(u32(out, from), random.pick([1, 3, 512, 4096]));
    setU32(out, from, u32(out, from) - shift);
    setU32(out, to, u32(out, to) + shift);
    return out;
  },
  /**
   * A frame header's content size lies; the seek table, if any, keeps the truth. (Not forged: the
   * table telling the same lie. That frame then no longer decodes, which only decoding it shows,
   * so a random read of a later frame serves it where the lie puts it: the README states this
   * limit of random access, which xz's index shares.)
   */
  'zst-content-size-lie': (file, random) => {
    const frames = dataFrames(file)?.filter((frame) => frame.contentSize !== undefined);
    if (!frames || frames.length === 0) return undefined;
    const frame = random.pick(frames);
    const out = file.slice();
    return setContentSize(out, frame, nudge(random, frame.contentSize!)) ? out : undefined;
  },
  /** A frame's checksum flag cleared; its checksum removed (a valid frame) or left as junk after it. */
  'zst-checksum-off': (file, random) => {
    const frames = dataFrames(file)?.filter((frame) => frame.checksumFlag);
    if (!frames || frames.length === 0) return undefined;
    const index = random.int(frames.length);
    const frame = frames[index]!;
    const out = file.slice();
    out[frame.offset + 4]! &= ~0x04;
    if (random.chance(0.3)) return out;
    const table = seekTable(file);
    if (table && table.count === frames.length) setU32(out, entryAt(table, index), frame.size - 4);
    return splice(out, frame.offset + frame.size - 4, frame.offset + frame.size, new Uint8Array(0));
  },
  /** Frame i copied over frame j, with j's table entry made i's (a valid file), or left as it was. */
  'zst-frame-copied': (file, random) => {
    const frames = dataFrames(file);
    const table = seekTable(file);
    if (!frames || frames.length < 2) return undefined;
    const from = random.int(frames.length);
    let onto = random.int(frames.length - 1);
    if (onto >= from) onto++;
    const source = frames[from]!;
    const target = frames[onto]!;
    const out = file.slice();
    if (table && table.count === frames.length && random.chance(0.7)) {
      out.set(file.subarray(entryAt(table, from), entryAt(table, from) + table.entrySize), entryAt(table, onto));
      // Sometimes j keeps its own decompressed size: the entry then lies about the copy.
      if (random.chance(0.3)) out.set(file.subarray(entryAt(table, onto) + 4, entryAt(table, onto) + 8), entryAt(table, onto) + 4);
    }
    return splice(out, target.offset, target.offset + target.size, file.subarray(source.offset, source.offset + source.size));
  },
  /**
   * A look-alike of the most repeated frame (seekzstd's zero frame): the same length and table
   * entry, one byte inside changed, so that a reader proving zeros by its entry alone is fooled.
   */
  'zst-zero-lookalike': (file, random) => {
    const frames = dataFrames(file);
    if (!frames || frames.length < 2) return undefined;
    const counts = new Map<string, Frame[]>();
    for (const frame of frames) {
      const key = Buffer.from(file.subarray(frame.offset, frame.offset + frame.size)).toString('base64');
      counts.set(key, [...(counts.get(key) ?? []), frame]);
    }
    const repeated = [...counts.values()].sort((a, b) => b.length - a.length)[0]!;
    const frame = random.pick(repeated);
    const out = file.slice();
    const at = frame.offset + random.between(frame.fcsAt! + frame.fcsBytes! - frame.offset, frame.size - 1);
    out[at]! ^= 1 << random.int(8);
    return out;
  },
  /** A skippable frame shaped like a seek table (magic, entries, footer) between two frames, or at the end. */
  'zst-fake-seek-table': (file, random) => {
    const frames = dataFrames(file);
    if (!frames || frames.length === 0) return undefined;
    // Its entries name the real frames, with one size off.
    const entries = frames.map((frame) => ({ c: frame.size, d: frame.contentSize ?? 0 }));
    const lie = random.pick(entries);
    lie.d = nudge(random, lie.d);
    const fake = buildTable(entries, false);
    const table = seekTable(file);
    if (!table && random.chance(0.5)) return concat(file, fake); // a plain file that now looks seekable
    const before = random.pick(frames.slice(1).concat([frames[0]!]));
    return splice(file, before.offset, before.offset, fake);
  },
  /** The seek table cut: bytes off its end, or an entry removed with its count and frame size fixed. */
  'zst-table-truncated': (file, random) => {
    const table = seekTable(file);
    if (!table || table.count === 0) return undefined;
    if (random.chance(0.4)) return file.slice(0, file.length - random.between(1, FOOTER + table.entrySize));
    const out = splice(file, entryAt(table, table.count - 1), entryAt(table, table.count), new Uint8Array(0));
    setU32(out, table.at + 4, u32(out, table.at + 4) - table.entrySize);
    setU32(out, out.length - FOOTER, table.count - 1);
    return out;
  },
};
