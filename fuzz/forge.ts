/**
 * Forged fields: a change a checksum cannot catch, because the checksum was recomputed after it.
 * Each forgery parses just enough of the format (from the spec, not from src/) to find one field,
 * changes it, and repairs every CRC that covers it. Returns undefined when the file has no such
 * field (a header without FHCRC, a block header without sizes), so the caller picks another.
 *
 * gzip: RFC 1952 §2.3. xz: the .xz file format 1.1.0, §2.1 (stream header and footer), §3.1
 * (block header), §4 (index).
 */
import { crc32 } from 'node:zlib';
import type { Random } from './random.js';
import { varint } from './xz-forge.js';

export type Forgery = (file: Uint8Array, random: Random, members: number[]) => Uint8Array | undefined;

const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;

const u32le = (value: number) => Uint8Array.of(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24);
const readU32 = (bytes: Uint8Array, at: number) => new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

// ---------------------------------------------------------------- gzip

interface GzipHeaderParts {
  start: number;
  end: number;
  flags: number;
  /** bytes 4..9: MTIME, XFL, OS */
  fixed: Uint8Array;
  extra?: Uint8Array;
  name?: Uint8Array;
  comment?: Uint8Array;
}

function parseGzipHeader(file: Uint8Array, start: number): GzipHeaderParts | undefined {
  if (file[start] !== 0x1f || file[start + 1] !== 0x8b || file.length < start + 10) return undefined;
  const flags = file[start + 3]!;
  let at = start + 10;
  const parts: GzipHeaderParts = { start, end: 0, flags, fixed: file.slice(start + 4, start + 10) };
  if (flags & FEXTRA) {
    const length = file[at]! | (file[at + 1]! << 8);
    parts.extra = file.slice(at + 2, at + 2 + length);
    at += 2 + length;
  }
  const zeroString = () => {
    const end = file.indexOf(0, at);
    if (end < 0) return undefined;
    const text = file.slice(at, end);
    at = end + 1;
    return text;
  };
  if (flags & FNAME) parts.name = zeroString();
  if (flags & FCOMMENT) parts.comment = zeroString();
  if (flags & FHCRC) at += 2;
  parts.end = at;
  return at <= file.length ? parts : undefined;
}

/** A header from its parts, with FHCRC's CRC-16 (the low half of the CRC-32) when `headerCrc`. */
function buildGzipHeader(parts: GzipHeaderParts, headerCrc: boolean): Uint8Array {
  let flags = parts.flags & ~(FHCRC | FEXTRA | FNAME | FCOMMENT);
  const pieces: Uint8Array[] = [parts.fixed];
  if (parts.extra) {
    flags |= FEXTRA;
    pieces.push(Uint8Array.of(parts.extra.length & 0xff, parts.extra.length >>> 8), parts.extra);
  }
  if (parts.name) (flags |= FNAME), pieces.push(parts.name, Uint8Array.of(0));
  if (parts.comment) (flags |= FCOMMENT), pieces.push(parts.comment, Uint8Array.of(0));
  if (headerCrc) flags |= FHCRC;
  const header = concat(Uint8Array.of(0x1f, 0x8b, 8, flags), ...pieces);
  if (!headerCrc) return header;
  const crc = crc32(header) & 0xffff;
  return concat(header, Uint8Array.of(crc & 0xff, crc >>> 8));
}

function replaceHeader(file: Uint8Array, random: Random, members: number[], change: (parts: GzipHeaderParts) => boolean | void): Uint8Array | undefined {
  const parts = parseGzipHeader(file, random.pick(members.slice(0, -1).length ? [0, ...members.slice(0, -1)] : [0]));
  if (!parts || change(parts) === false) return undefined;
  return concat(file.subarray(0, parts.start), buildGzipHeader(parts, random.chance(0.5)), file.subarray(parts.end));
}

export const gzipForgeries: Record<string, Forgery> = {
  /** A header field gzip ignores (MTIME, OS, XFL), with a correct header CRC: gzip still accepts. */
  'gz-header-fields': (file, random, members) =>
    replaceHeader(file, random, members, (parts) => {
      parts.fixed[random.int(6)] ^= 1 + random.int(255);
    }),
  /** A file name and a comment: valid, and they move the deflate stream. */
  'gz-header-name': (file, random, members) =>
    replaceHeader(file, random, members, (parts) => {
      parts.name = new TextEncoder().encode(`disk-${random.int(1000)}.img`);
      if (random.chance(0.5)) parts.comment = new TextEncoder().encode('x'.repeat(random.int(300)));
    }),
  /** An FEXTRA 'BC' subfield (BGZF's) whose BSIZE is wrong, on a file that is not BGZF. */
  'gz-extra-bc': (file, random, members) =>
    replaceHeader(file, random, members, (parts) => {
      const bsize = random.chance(0.5) ? 0xffff : random.int(0x10000);
      const bc = Uint8Array.of(0x42, 0x43, 2, 0, bsize & 0xff, bsize >>> 8);
      parts.extra = random.chance(0.3) && parts.extra ? concat(parts.extra, bc) : bc;
    }),
  /** A damaged FEXTRA subfield: XLEN right, the subfield length inside it wrong (our map lives here). */
  'gz-extra-sublength': (file, random, members) =>
    replaceHeader(file, random, members, (parts) => {
      if (!parts.extra || parts.extra.length < 4) return false;
      parts.extra[2 + random.int(2)] ^= 1 << random.int(8);
    }),
  /** Drops FEXTRA: a partial-deflate file loses its map and must be read as plain gzip. */
  'gz-drop-extra': (file, random, members) =>
    replaceHeader(file, random, members, (parts) => {
      if (!parts.extra) return false;
      parts.extra = undefined;
    }),
  /** A reserved FLG bit: gzip refuses the member. */
  'gz-reserved-flag': (file, random, members) =>
    replaceHeader(file, random, members, (parts) => {
      parts.flags |= 0x20 << random.int(3);
    }),
  /** FHCRC set, with a CRC-16 that does not match. */
  'gz-bad-header-crc': (file, random) => {
    const parts = parseGzipHeader(file, 0);
    if (!parts) return undefined;
    const header = buildGzipHeader(parts, true);
    header[header.length - 1 - random.int(2)] ^= 1 << random.int(8);
    return concat(header, file.subarray(parts.end));
  },
  /** A member's trailer CRC-32 (gzip refuses: "crc error"). */
  'gz-trailer-crc': (file, random, members) => {
    const end = random.pick(members);
    const forged = file.slice();
    forged[end - 8 + random.int(4)] ^= 1 << random.int(8);
    return forged;
  },
  /** A member's ISIZE (gzip refuses: "length error"). */
  'gz-trailer-isize': (file, random, members) => {
    const end = random.pick(members);
    const forged = file.slice();
    const isize = readU32(forged, end - 4);
    forged.set(u32le((isize + random.pick([1, -1, 4096, -4096, 65536, 2 ** 31])) >>> 0), end - 4);
    return forged;
  },
};

// ---------------------------------------------------------------- xz

const XZ_HEADER = 12;
const XZ_FOOTER = 12;

function readVarint(bytes: Uint8Array, at: number): [value: number, next: number] {
  let value = 0;
  for (let shift = 0; shift < 63; shift += 7) {
    const byte = bytes[at++];
    if (byte === undefined) throw new Error('varint past the end');
    value += (byte & 0x7f) * 2 ** shift;
    if (!(byte & 0x80)) return [value, at];
  }
  throw new Error('varint too long');
}


interface XzLayout {
  /** Offset of the last stream's footer; stream padding after it is left alone. */
  footer: number;
  indexStart: number;
  records: { unpadded: number; uncompressed: number }[];
  /** Start of each block of the last stream. */
  blockStarts: number[];
  streamStart: number;
}

/** The last stream of an xz file, read from its end (§2.1.2, §4). */
function xzLayout(file: Uint8Array): XzLayout | undefined {
  try {
    let footer = file.length - XZ_FOOTER;
    while (footer > 0 && readU32(file, footer + 8) === 0) footer -= 4; // stream padding
    if (file[footer + 10] !== 0x59 || file[footer + 11] !== 0x5a) return undefined;
    const backward = (readU32(file, footer + 4) + 1) * 4;
    const indexStart = footer - backward;
    if (indexStart < XZ_HEADER || file[indexStart] !== 0) return undefined;
    let [count, at] = readVarint(file, indexStart + 1);
    const records: XzLayout['records'] = [];
    for (let number = 0; number < count; number++) {
      const [unpadded, next] = readVarint(file, at);
      const [uncompressed, after] = readVarint(file, next);
      records.push({ unpadded, uncompressed });
      at = after;
    }
    const blocksSize = records.reduce((sum, record) => sum + Math.ceil(record.unpadded / 4) * 4, 0);
    const streamStart = indexStart - blocksSize - XZ_HEADER;
    if (streamStart < 0) return undefined;
    const blockStarts: number[] = [];
    let block = streamStart + XZ_HEADER;
    for (const record of records) {
      blockStarts.push(block);
      block += Math.ceil(record.unpadded / 4) * 4;
    }
    return { footer, indexStart, records, blockStarts, streamStart };
  } catch {
    return undefined;
  }
}

/** The file with its last stream's Index rebuilt from `records`: Index CRC32, Backward Size and footer CRC32 repaired. */
function withIndex(file: Uint8Array, layout: XzLayout, records: XzLayout['records']): Uint8Array {
  const body = [0, ...varint(records.length)];
  for (const record of records) body.push(...varint(record.unpadded), ...varint(record.uncompressed));
  while (body.length % 4) body.push(0);
  const index = concat(Uint8Array.from(body), u32le(crc32(Uint8Array.from(body))));
  const footer = file.slice(layout.footer, layout.footer + XZ_FOOTER);
  footer.set(u32le(index.length / 4 - 1), 4);
  footer.set(u32le(crc32(footer.subarray(4, 10))), 0);
  return concat(file.subarray(0, layout.indexStart), index, footer, file.subarray(layout.footer + XZ_FOOTER));
}

/** Changes a block header in place (§3.1) and repairs its CRC32; `change` returns false to give up. */
function forgeBlockHeader(file: Uint8Array, random: Random, change: (header: Uint8Array) => boolean): Uint8Array | undefined {
  const layout = xzLayout(file);
  if (!layout || layout.blockStarts.length === 0) return undefined;
  const start = random.pick(layout.blockStarts);
  const size = (file[start]! + 1) * 4;
  const forged = file.slice();
  const header = forged.subarray(start, start + size);
  if (!change(header)) return undefined;
  header.set(u32le(crc32(header.subarray(0, size - 4))), size - 4);
  return forged;
}

/** Where the size fields and the first filter's properties sit in a block header. */
function blockHeaderFields(header: Uint8Array) {
  const flags = header[1]!;
  let at = 2;
  const fields: { compressed?: [number, number]; uncompressed?: [number, number]; filterProps?: number } = {};
  if (flags & 0x40) {
    const [value, next] = readVarint(header, at);
    fields.compressed = [at, value];
    at = next;
  }
  if (flags & 0x80) {
    const [value, next] = readVarint(header, at);
    fields.uncompressed = [at, value];
    at = next;
  }
  const [, afterId] = readVarint(header, at);
  const [propsSize, afterSize] = readVarint(header, afterId);
  if (propsSize > 0) fields.filterProps = afterSize;
  return fields;
}

/** Rewrites a varint at `at` with a new value of the same encoded length (so nothing moves). */
function setVarintSameLength(bytes: Uint8Array, at: number, old: number, random: Random): boolean {
  const length = varint(old).length;
  for (let attempt = 0; attempt < 8; attempt++) {
    const value = Math.max(0, old + random.pick([1, -1, 4, -4, 16, -16, 4096, -4096, old]));
    const encoded = varint(value);
    if (value !== old && encoded.length === length) return bytes.set(encoded, at), true;
  }
  return false;
}

/** Stream flags (§2.1.1.2): the check ID in the header, the footer, or both, with CRC32s repaired. */
function forgeStreamFlags(file: Uint8Array, random: Random, checkId: number, where: 'header' | 'footer' | 'both'): Uint8Array | undefined {
  const layout = xzLayout(file);
  if (!layout) return undefined;
  const forged = file.slice();
  if (where !== 'footer') {
    const at = layout.streamStart;
    forged[at + 7] = checkId;
    forged.set(u32le(crc32(forged.subarray(at + 6, at + 8))), at + 8);
  }
  if (where !== 'header') {
    const at = layout.footer;
    forged[at + 9] = checkId;
    forged.set(u32le(crc32(forged.subarray(at + 4, at + 10))), at);
  }
  return forged;
}

export const xzForgeries: Record<string, Forgery> = {
  /** One Index record's uncompressed size, Index CRC32 recomputed: xz -t refuses, we must too. */
  'xz-index-usize': (file, random) => {
    const layout = xzLayout(file);
    if (!layout || layout.records.length === 0) return undefined;
    const records = layout.records.map((record) => ({ ...record }));
    const record = random.pick(records);
    record.uncompressed = Math.max(0, record.uncompressed + random.pick([1, -1, 512, -512, 65536, -65536, record.uncompressed]));
    return withIndex(file, layout, records);
  },
  /** One Index record's unpadded size, Index CRC32 recomputed. */
  'xz-index-unpadded': (file, random) => {
    const layout = xzLayout(file);
    if (!layout || layout.records.length === 0) return undefined;
    const records = layout.records.map((record) => ({ ...record }));
    const record = random.pick(records);
    record.unpadded = Math.max(5, record.unpadded + random.pick([1, -1, 4, -4, 8]));
    return withIndex(file, layout, records);
  },
  /** Two Index records swapped, or sizes moved from one block to the next (totals unchanged). */
  'xz-index-shuffle': (file, random) => {
    const layout = xzLayout(file);
    if (!layout || layout.records.length < 2) return undefined;
    const records = layout.records.map((record) => ({ ...record }));
    const first = random.int(records.length - 1);
    const shift = random.between(1, 4096);
    if (random.chance(0.5)) [records[first], records[first + 1]] = [records[first + 1]!, records[first]!];
    else if (records[first]!.uncompressed > shift) (records[first]!.uncompressed -= shift), (records[first + 1]!.uncompressed += shift);
    else return undefined;
    return withIndex(file, layout, records);
  },
  /** A block header's uncompressed or compressed size (where the header has one), CRC32 recomputed. */
  'xz-block-size-field': (file, random) =>
    forgeBlockHeader(file, random, (header) => {
      const fields = blockHeaderFields(header);
      const field = random.chance(0.5) ? (fields.uncompressed ?? fields.compressed) : (fields.compressed ?? fields.uncompressed);
      return field !== undefined && setVarintSameLength(header, field[0], field[1], random);
    }),
  /** A reserved block flag bit, or the filter count, CRC32 recomputed. */
  'xz-block-flags': (file, random) =>
    forgeBlockHeader(file, random, (header) => {
      header[1] ^= random.pick([0x04, 0x08, 0x10, 0x20, 0x01]);
      return true;
    }),
  /** The LZMA2 dictionary-size property (valid up to 40), CRC32 recomputed. */
  'xz-block-dict': (file, random) =>
    forgeBlockHeader(file, random, (header) => {
      const at = blockHeaderFields(header).filterProps;
      if (at === undefined) return false;
      header[at] = random.pick([0, 41, 0xff, random.int(41)]);
      return true;
    }),
  /** A reserved check ID (xz refuses them: 0x02, 0x03, 0x05…0x09, 0x0b…0x0f), header and footer alike. */
  'xz-reserved-check': (file, random) => forgeStreamFlags(file, random, random.pick([2, 3, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15]), 'both'),
  /** Another valid check ID in the header or the footer only: the two disagree. */
  'xz-flags-mismatch': (file, random) => forgeStreamFlags(file, random, random.pick([0, 1, 4, 10]), random.pick(['header', 'footer'] as const)),
  /** Reserved stream-flag bits, CRC32 recomputed. */
  'xz-flags-reserved-bits': (file, random) => {
    const layout = xzLayout(file);
    if (!layout) return undefined;
    return forgeStreamFlags(file, random, file[layout.streamStart + 7]! | (0x10 << random.int(4)), random.pick(['header', 'footer', 'both'] as const));
  },
};

// ---------------------------------------------------------------- seekz index

/** A seekz .idx (magic SZIDX) edited anywhere in its body, with its trailing CRC-32 recomputed. */
export function forgeSeekzIndex(index: Uint8Array, random: Random): Uint8Array | undefined {
  if (index.length < 40 || index[0] !== 0x53 || index[1] !== 0x5a) return undefined;
  const forged = index.slice();
  const body = forged.length - 4;
  // Half the time the fixed header and the first points (sizes, offsets), else anywhere (windows).
  const at = random.chance(0.5) ? 8 + random.int(Math.min(body - 8, 64)) : 8 + random.int(body - 8);
  forged[at] ^= 1 + random.int(255);
  forged.set(u32le(crc32(forged.subarray(0, body))), body);
  return forged;
}
