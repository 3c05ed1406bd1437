import { ByteReader, ByteWriter, varintLength } from '../cursor.js';
import { fail } from '../errors.js';
import { lastAtOrBefore } from '../search.js';
import { crc32Combine } from '../crc/crc32.js';

/**
 * The seekz map: what a partial-deflate gzip says about itself, so that a reader finds every
 * stored (editable) range, every checkpoint and the true length without scanning the deflate
 * stream, and checks every byte it hands out. It lives in an FEXTRA subfield 'SZ' of the one gzip
 * member; gunzip skips it.
 *
 * The writer reserves the subfield before compressing and fills it in at the end from the same
 * boundary reports that wrote the data (lengths and CRC-32s), so the map cannot disagree with
 * the file. Invariant a reader relies on, and `seekz patch` keeps: every segment's CRC-32 is the
 * CRC of its uncompressed bytes, and combining them in order gives the trailer's CRC-32
 * (checked at open: test/trust-map-patch.test.ts).
 *
 * Payload layout, version 2 (all varints are unsigned LEB128):
 *   0  u8      version (2)
 *   1  u8      flags: bit 0 = the map was filled in (a file streamed to a pipe has none)
 *   2  varint  chunkSize: every compressed region is cut into independent chunks of this size
 *      varint  totalLength: uncompressed bytes (ISIZE only holds it mod 2^32)
 *      varint  deflateLength: bytes of the deflate stream, from the header's end to the trailer
 *      varint  groupChunks: checkpoints are recorded every groupChunks chunks (1 unless thinned to fit)
 *      varint  regionCount, then per region: u8 kind (0 compressed, 1 stored), varint length
 *      per segment, in stream order:
 *        compressed (a group of groupChunks chunks): varint compressed length, u32le CRC-32
 *        stored (groupChunks × STORED_UNIT bytes of a stored region, the last one shorter): u32le CRC-32
 *      zero padding up to the reserved size
 * CRCs are fixed-width so that a patch rewrites them in place. A stored region is cut into
 * segments of STORED_UNIT bytes (16 stored blocks, about 1 MiB) rather than one CRC per region:
 * a read then verifies a bounded unit, never a whole 512 MiB partition for a 4 KiB read, and a
 * unit costs the map 4 bytes. Thinning doubles the unit with the chunk groups, so a read still
 * verifies at most the bytes between two checkpoints.
 *
 * Version 1 (written before per-segment CRCs) has no CRCs and one segment per stored region; it
 * still opens, with reads that are not verified (`verified` false).
 *
 * Stored regions need no compressed lengths: a stored region of L bytes is ceil(L/65535) stored
 * blocks of 5 header bytes each. The stream ends with an empty final block (2 bytes).
 */
export const SEEKZ_SUBFIELD_ID = 'SZ';
export const MAP_VERSION = 2;
/** The first version, without CRCs: read, never written. */
export const MAP_VERSION_UNVERIFIED = 1;
const FLAG_FILLED = 0x01;
const KIND_COMPRESSED = 0;
const KIND_STORED = 1;
/** FEXTRA's XLEN is 16 bits and includes the 4-byte subfield header. */
export const MAX_MAP_PAYLOAD = 65535 - 4;
/** RFC 1951 §3.2.4: a stored block holds at most 65535 bytes behind BTYPE, LEN and NLEN. */
export const STORED_BLOCK_MAX = 65535;
export const STORED_BLOCK_HEADER = 5;
/** Uncompressed bytes of a stored segment (before thinning): 16 whole stored blocks. */
export const STORED_UNIT = STORED_BLOCK_MAX * 16;
/** BFINAL=1, BTYPE=01 (fixed Huffman), then the 7-bit end-of-block code: ends the stream. */
export const FINAL_EMPTY_BLOCK = Uint8Array.of(0x03, 0x00);
const CRC_BYTES = 4;

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
  /** CRC-32 of the segment's uncompressed bytes (version 2 on). */
  crc?: number;
  /** Where that CRC sits in the map payload, for patching it in place. */
  crcOffset?: number;
}

export interface SeekzMap {
  version: number;
  /** The map records a CRC-32 per segment, and reads check it. */
  verified: boolean;
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
      size += chunkCount(region.length, chunkSize) * (varintLength(deflateBound(chunkSize)) + CRC_BYTES);
    } else {
      size += chunkCount(region.length, STORED_UNIT) * CRC_BYTES;
    }
  }
  return Math.min(size, MAX_MAP_PAYLOAD);
}

/** A run of the stream as the writer reported it: one chunk, or one stored piece of STORED_UNIT bytes. */
export interface MapPiece {
  kind: RegionKind;
  uLength: number;
  cLength: number;
  crc: number;
}

/**
 * Encodes the map into exactly `reserved` bytes, recording every chunk boundary when it fits and
 * every 2nd, 4th, … when it does not (chunks are independent, so any chunk boundary is a
 * checkpoint; thinning only makes random reads decode and verify more). `pieces` are the
 * writer's boundary reports in stream order: chunks of `chunkSize` in compressed regions and
 * pieces of STORED_UNIT in stored ones (each region's last one shorter).
 */
export function encodeMap(
  input: { chunkSize: number; totalLength: number; deflateLength: number; regions: Region[]; pieces: MapPiece[] },
  reserved: number,
): Uint8Array {
  // The pieces of each region, checked against the plan so that a map can never describe other data.
  const perRegion: MapPiece[][] = [];
  let next = 0;
  for (const region of input.regions) {
    const pieces: MapPiece[] = [];
    let covered = 0;
    while (covered < region.length && next < input.pieces.length) {
      const piece = input.pieces[next++]!;
      const unit = region.kind === 'compressed' ? input.chunkSize : STORED_UNIT;
      if (piece.kind !== region.kind || piece.uLength > unit || (piece.uLength < unit && covered + piece.uLength !== region.length)) {
        throw fail('BAD_ARGUMENT', `internal: a ${piece.kind} piece of ${piece.uLength} bytes does not fit the ${region.kind} region at ${region.start}`);
      }
      pieces.push(piece);
      covered += piece.uLength;
    }
    if (covered !== region.length) throw fail('BAD_ARGUMENT', `internal: pieces cover ${covered} of the ${region.length}-byte region at ${region.start}`);
    perRegion.push(pieces);
  }
  for (let groupChunks = 1; groupChunks <= 2 ** 40; groupChunks *= 2) {
    const writer = new ByteWriter();
    writer.u8(MAP_VERSION).u8(FLAG_FILLED);
    writer.varint(input.chunkSize).varint(input.totalLength).varint(input.deflateLength).varint(groupChunks);
    writer.varint(input.regions.length);
    for (const region of input.regions) {
      writer.u8(region.kind === 'stored' ? KIND_STORED : KIND_COMPRESSED).varint(region.length);
    }
    for (const [index, region] of input.regions.entries()) {
      const pieces = perRegion[index]!;
      for (let first = 0; first < pieces.length && writer.length <= reserved; first += groupChunks) {
        let cLength = 0;
        let crc = 0;
        for (const piece of pieces.slice(first, first + groupChunks)) {
          cLength += piece.cLength;
          crc = crc32Combine(crc, piece.crc, piece.uLength);
        }
        if (region.kind === 'compressed') writer.varint(cLength);
        writer.u32le(crc);
      }
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
 * that was never filled in. Each segment costs the payload at least 4 bytes (version 2) or 1
 * (version 1, compressed), and a stored region of version 1 is one segment, so the loops below
 * end with the payload.
 */
export function decodeMap(payload: Uint8Array, deflateLength: number): SeekzMap | undefined {
  const reader = new ByteReader(payload, (what) => fail('GZIP_BAD_MAP', `${what} runs past the end of the map`));
  const version = reader.u8('version');
  if (version !== MAP_VERSION && version !== MAP_VERSION_UNVERIFIED) {
    throw fail('GZIP_BAD_MAP', `version ${version}, expected ${MAP_VERSION_UNVERIFIED} or ${MAP_VERSION}; upgrade seekz`);
  }
  const verified = version !== MAP_VERSION_UNVERIFIED;
  const flags = reader.u8('flags');
  if ((flags & FLAG_FILLED) === 0) return undefined;
  const chunkSize = reader.varint('chunk size');
  const totalLength = reader.varint('total length');
  const claimedDeflate = reader.varint('deflate length');
  const groupChunks = reader.varint('group size');
  if (claimedDeflate !== deflateLength) {
    throw fail('GZIP_BAD_MAP', `deflate stream is ${claimedDeflate} bytes in the map but ${deflateLength} in the file`);
  }
  if (chunkSize < 1 || groupChunks < 1 || !Number.isSafeInteger(chunkSize * groupChunks) || !Number.isSafeInteger(STORED_UNIT * groupChunks)) {
    throw fail('GZIP_BAD_MAP', `chunk size ${chunkSize}, group size ${groupChunks}`);
  }
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
    if (!Number.isSafeInteger(uAt)) throw fail('GZIP_BAD_MAP', `regions add up to more than 2^53 bytes`);
  }
  if (uAt !== totalLength) throw fail('GZIP_BAD_MAP', `regions add up to ${uAt} bytes, total length says ${totalLength}`);
  const segments: Segment[] = [];
  let cAt = 0;
  const add = (segment: Segment) => {
    if (verified) {
      segment.crcOffset = reader.offset;
      segment.crc = reader.u32le('segment crc-32');
    }
    segments.push(segment);
    cAt += segment.cLength;
    if (cAt > deflateLength) throw fail('GZIP_BAD_MAP', `segments run past the deflate stream (${deflateLength} bytes)`);
  };
  for (const region of regions) {
    const unit = region.kind === 'stored' ? (verified ? STORED_UNIT * groupChunks : region.length) : chunkSize * groupChunks;
    for (let first = 0; first < region.length; first += unit) {
      const uStart = region.start + first;
      const uLength = Math.min(unit, region.length - first);
      if (region.kind === 'stored') {
        // Units hold whole stored blocks, so a unit's blocks are cut as the region's are.
        add({ kind: 'stored', uStart, uLength, cStart: cAt, cLength: storedDeflateLength(uLength) });
        continue;
      }
      const cLength = reader.varint('compressed length');
      if (cLength === 0) throw fail('GZIP_BAD_MAP', `compressed group at ${uStart} has length 0`);
      add({ kind: 'compressed', uStart, uLength, cStart: cAt, cLength });
    }
  }
  if (cAt + FINAL_EMPTY_BLOCK.length !== deflateLength) {
    throw fail('GZIP_BAD_MAP', `segments add up to ${cAt + FINAL_EMPTY_BLOCK.length} bytes, deflate stream is ${deflateLength}`);
  }
  return { version, verified, chunkSize, totalLength, deflateLength, groupChunks, regions, segments };
}

/** The CRC-32 of all the data, from the segments' CRCs: what the trailer must say. */
export function combinedCrc(map: SeekzMap): number {
  let crc = 0;
  for (const segment of map.segments) crc = crc32Combine(crc, segment.crc!, segment.uLength);
  return crc;
}

/** Index of the segment holding uncompressed offset `offset` (binary search). */
export function findSegment(segments: Segment[], offset: number): number {
  return lastAtOrBefore(segments, (segment) => segment.uStart, offset);
}
