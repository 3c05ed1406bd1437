import { ByteReader, ByteWriter, varintLength } from '../cursor.js';
import { fail } from '../errors.js';
import { lastAtOrBefore } from '../search.js';

/**
 * The seekz map: what a partial-deflate gzip says about itself, so that a reader finds every
 * stored (editable) range, every checkpoint and the true length without scanning the deflate
 * stream. It lives in an FEXTRA subfield 'SZ' of the one gzip member; gunzip skips it.
 *
 * The writer reserves the subfield before compressing and fills it in at the end, so the map is
 * written by the same code that wrote the data: they cannot disagree.
 *
 * Payload layout (all varints are unsigned LEB128):
 *   0  u8      version (1)
 *   1  u8      flags: bit 0 = the map was filled in (a file streamed to a pipe has none)
 *   2  varint  chunkSize: every compressed region is cut into independent chunks of this size
 *      varint  totalLength: uncompressed bytes (ISIZE only holds it mod 2^32)
 *      varint  deflateLength: bytes of the deflate stream, from the header's end to the trailer
 *      varint  groupChunks: checkpoints are recorded every groupChunks chunks (1 unless thinned to fit)
 *      varint  regionCount, then per region: u8 kind (0 compressed, 1 stored), varint length
 *      per compressed region, per group of chunks: varint compressed length of the group
 *      zero padding up to the reserved size
 * Stored regions need no compressed lengths: a stored region of L bytes is ceil(L/65535) stored
 * blocks of 5 header bytes each. The stream ends with an empty final block (2 bytes).
 */
export const SEEKZ_SUBFIELD_ID = 'SZ';
export const MAP_VERSION = 1;
const FLAG_FILLED = 0x01;
const KIND_COMPRESSED = 0;
const KIND_STORED = 1;
/** FEXTRA's XLEN is 16 bits and includes the 4-byte subfield header. */
export const MAX_MAP_PAYLOAD = 65535 - 4;
/** RFC 1951 §3.2.4: a stored block holds at most 65535 bytes behind BTYPE, LEN and NLEN. */
export const STORED_BLOCK_MAX = 65535;
export const STORED_BLOCK_HEADER = 5;
/** BFINAL=1, BTYPE=01 (fixed Huffman), then the 7-bit end-of-block code: ends the stream. */
export const FINAL_EMPTY_BLOCK = Uint8Array.of(0x03, 0x00);

export type RegionKind = 'compressed' | 'stored';
export interface Region {
  kind: RegionKind;
  start: number; // uncompressed offset
  length: number;
}

/** A checkpoint and what follows it up to the next one: decodable with no history. */
export interface Segment {
  kind: RegionKind;
  uStart: number;
  uLength: number;
  cStart: number; // offset within the deflate stream
  cLength: number;
}

export interface SeekzMap {
  chunkSize: number;
  totalLength: number;
  deflateLength: number;
  groupChunks: number;
  regions: Region[];
  segments: Segment[];
}

export function storedDeflateLength(length: number): number {
  return length + STORED_BLOCK_HEADER * Math.ceil(length / STORED_BLOCK_MAX);
}

/**
 * Cuts [0, totalLength) into compressed and stored regions. Stored ranges are clipped to the
 * data, sorted and merged; empty ones vanish.
 */
export function planRegions(totalLength: number, stored: { start: number; end: number }[]): Region[] {
  const ranges = stored
    .map((range) => ({ start: Math.min(range.start, totalLength), end: Math.min(range.end, totalLength) }))
    .filter((range) => range.end > range.start)
    .sort((a, b) => a.start - b.start);
  const merged: { start: number; end: number }[] = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last && range.start <= last.end) last.end = Math.max(last.end, range.end);
    else merged.push({ ...range });
  }
  const regions: Region[] = [];
  let at = 0;
  for (const range of merged) {
    if (range.start > at) regions.push({ kind: 'compressed', start: at, length: range.start - at });
    regions.push({ kind: 'stored', start: range.start, length: range.end - range.start });
    at = range.end;
  }
  if (totalLength > at) regions.push({ kind: 'compressed', start: at, length: totalLength - at });
  return regions;
}

export function chunkCount(length: number, chunkSize: number): number {
  return Math.ceil(length / chunkSize);
}

/** The largest raw deflate of `length` input bytes: zlib's stored-block worst case plus a sync flush. */
function deflateBound(length: number): number {
  return length + 5 * Math.ceil(length / 16383 + 1) + 16;
}

/**
 * How many payload bytes to reserve before the data is known. With the input size known this is
 * a bound for group size 1 (capped at the subfield's limit: the encoder then thins checkpoints);
 * for a stream of unknown size, the limit itself.
 */
export function reserveMapSize(chunkSize: number, regions: Region[] | undefined): number {
  if (!regions) return MAX_MAP_PAYLOAD;
  let size = 2 + 4 * 9 + varintLength(regions.length);
  for (const region of regions) {
    size += 1 + varintLength(region.length);
    if (region.kind === 'compressed') {
      size += chunkCount(region.length, chunkSize) * varintLength(deflateBound(chunkSize));
    }
  }
  return Math.min(size, MAX_MAP_PAYLOAD);
}

/**
 * Encodes the map into exactly `reserved` bytes, recording every chunk boundary when it fits and
 * every 2nd, 4th, … when it does not (chunks are independent, so any chunk boundary is a
 * checkpoint; thinning only makes random reads decode more).
 */
export function encodeMap(
  input: { chunkSize: number; totalLength: number; deflateLength: number; regions: Region[]; chunkLengths: number[] },
  reserved: number,
): Uint8Array {
  for (let groupChunks = 1; groupChunks <= 2 ** 40; groupChunks *= 2) {
    const writer = new ByteWriter();
    writer.u8(MAP_VERSION).u8(FLAG_FILLED);
    writer.varint(input.chunkSize).varint(input.totalLength).varint(input.deflateLength).varint(groupChunks);
    writer.varint(input.regions.length);
    for (const region of input.regions) {
      writer.u8(region.kind === 'stored' ? KIND_STORED : KIND_COMPRESSED).varint(region.length);
    }
    let chunk = 0;
    for (const region of input.regions) {
      if (region.kind !== 'compressed') continue;
      const count = chunkCount(region.length, input.chunkSize);
      for (let first = 0; first < count; first += groupChunks) {
        let groupLength = 0;
        for (let index = first; index < Math.min(first + groupChunks, count); index++) {
          groupLength += input.chunkLengths[chunk + index]!;
        }
        writer.varint(groupLength);
      }
      chunk += count;
    }
    if (writer.length <= reserved) {
      const payload = new Uint8Array(reserved);
      payload.set(writer.finish());
      return payload;
    }
  }
  throw fail('BAD_ARGUMENT', `too many stored ranges (${input.regions.length} regions) to describe in a gzip header`);
}

/** An unfilled map: written when the output cannot be revisited (a pipe). */
export function emptyMap(reserved = 2): Uint8Array {
  const payload = new Uint8Array(reserved);
  payload[0] = MAP_VERSION;
  return payload;
}

/**
 * Decodes and checks a map. `deflateLength` is what the file says (its size minus header and
 * trailer); every number in the map is a claim checked against it. Returns undefined for a map
 * that was never filled in.
 */
export function decodeMap(payload: Uint8Array, deflateLength: number): SeekzMap | undefined {
  const reader = new ByteReader(payload, (what) => fail('GZIP_BAD_MAP', `${what} runs past the end of the map`));
  const version = reader.u8('version');
  if (version !== MAP_VERSION) throw fail('GZIP_BAD_MAP', `version ${version}, expected ${MAP_VERSION}; upgrade seekz`);
  const flags = reader.u8('flags');
  if ((flags & FLAG_FILLED) === 0) return undefined;
  const chunkSize = reader.varint('chunk size');
  const totalLength = reader.varint('total length');
  const claimedDeflate = reader.varint('deflate length');
  const groupChunks = reader.varint('group size');
  if (claimedDeflate !== deflateLength) {
    throw fail('GZIP_BAD_MAP', `deflate stream is ${claimedDeflate} bytes in the map but ${deflateLength} in the file`);
  }
  if (chunkSize < 1 || groupChunks < 1) throw fail('GZIP_BAD_MAP', `chunk size ${chunkSize}, group size ${groupChunks}`);
  const regionCount = reader.varint('region count');
  if (regionCount > reader.remaining / 2) throw fail('GZIP_BAD_MAP', `${regionCount} regions cannot fit in ${payload.length} bytes`);
  const regions: Region[] = [];
  let uAt = 0;
  for (let index = 0; index < regionCount; index++) {
    const kindByte = reader.u8('region kind');
    if (kindByte !== KIND_COMPRESSED && kindByte !== KIND_STORED) throw fail('GZIP_BAD_MAP', `region ${index} has kind ${kindByte}`);
    const length = reader.varint('region length');
    if (length === 0) throw fail('GZIP_BAD_MAP', `region ${index} is empty`);
    regions.push({ kind: kindByte === KIND_STORED ? 'stored' : 'compressed', start: uAt, length });
    uAt += length;
  }
  if (uAt !== totalLength) throw fail('GZIP_BAD_MAP', `regions add up to ${uAt} bytes, total length says ${totalLength}`);
  const segments: Segment[] = [];
  let cAt = 0;
  for (const region of regions) {
    if (region.kind === 'stored') {
      const cLength = storedDeflateLength(region.length);
      segments.push({ kind: 'stored', uStart: region.start, uLength: region.length, cStart: cAt, cLength });
      cAt += cLength;
      continue;
    }
    const groupBytes = chunkSize * groupChunks;
    for (let first = 0; first < region.length; first += groupBytes) {
      const cLength = reader.varint('compressed length');
      if (cLength === 0) throw fail('GZIP_BAD_MAP', `compressed group at ${region.start + first} has length 0`);
      const uLength = Math.min(groupBytes, region.length - first);
      segments.push({ kind: 'compressed', uStart: region.start + first, uLength, cStart: cAt, cLength });
      cAt += cLength;
      if (cAt > deflateLength) throw fail('GZIP_BAD_MAP', `segments run past the deflate stream (${deflateLength} bytes)`);
    }
  }
  if (cAt + FINAL_EMPTY_BLOCK.length !== deflateLength) {
    throw fail('GZIP_BAD_MAP', `segments add up to ${cAt + FINAL_EMPTY_BLOCK.length} bytes, deflate stream is ${deflateLength}`);
  }
  return { chunkSize, totalLength, deflateLength, groupChunks, regions, segments };
}

/** Index of the segment holding uncompressed offset `offset` (binary search). */
export function findSegment(segments: Segment[], offset: number): number {
  return lastAtOrBefore(segments, (segment) => segment.uStart, offset);
}
