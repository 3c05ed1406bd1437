/**
 * Forges .xz files the way an attacker would: change a field, then recompute every CRC32 that
 * covers it, so that only the cross-checks between fields can catch the lie. Written from the
 * xz file format spec (1.2.0), not from src/xz, so that a bug there cannot hide here.
 * Handles one-stream files (what seekxz, xz, xz -T2 and pixz write).
 */
import { crc32 } from 'node:zlib';

const FOOTER = 12;
const HEADER = 12;

export interface ForgeRecord {
  unpaddedSize: number;
  uncompressedSize: number;
}

export interface ParsedXz {
  checkId: number;
  indexStart: number;
  records: ForgeRecord[];
}

function readVarint(bytes: Uint8Array, at: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const byte = bytes[at++]!;
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return [value, at];
    scale *= 128;
  }
}

/** An xz multibyte integer (§1.2), 7 bits a byte, least significant first. */
export function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

function u32le(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}

function setCrc(bytes: Uint8Array, from: number, to: number, at: number): void {
  bytes.set(u32le(crc32(bytes.subarray(from, to))), at);
}

/** The index records and check ID of a one-stream file, read from its footer. */
export function parseXz(file: Uint8Array): ParsedXz {
  const footer = file.length - FOOTER;
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const indexSize = (view.getUint32(footer + 4, true) + 1) * 4;
  const indexStart = footer - indexSize;
  let [count, at] = readVarint(file, indexStart + 1);
  const records: ForgeRecord[] = [];
  while (count-- > 0) {
    const [unpaddedSize, next] = readVarint(file, at);
    const [uncompressedSize, after] = readVarint(file, next);
    records.push({ unpaddedSize, uncompressedSize });
    at = after;
  }
  return { checkId: file[7]! & 0x0f, indexStart, records };
}

/** A new index (indicator, count, records, padding, CRC32) and a footer whose backward size fits it. */
function withIndex(file: Uint8Array, records: ForgeRecord[]): Uint8Array {
  const { indexStart } = parseXz(file);
  const body = [0, ...varint(records.length), ...records.flatMap((record) => [...varint(record.unpaddedSize), ...varint(record.uncompressedSize)])];
  while (body.length % 4 !== 0) body.push(0);
  const index = new Uint8Array(body.length + 4);
  index.set(body);
  setCrc(index, 0, body.length, body.length);
  const footer = file.slice(file.length - FOOTER);
  footer.set(u32le(index.length / 4 - 1), 4);
  setCrc(footer, 4, 10, 0);
  const out = new Uint8Array(indexStart + index.length + FOOTER);
  out.set(file.subarray(0, indexStart));
  out.set(index, indexStart);
  out.set(footer, indexStart + index.length);
  return out;
}

/** Changes one index record's sizes and recomputes the index CRC32 (and the footer's, if its size changed). */
export function forgeIndexRecord(file: Uint8Array, record: number, change: Partial<ForgeRecord>): Uint8Array {
  const records = parseXz(file).records.map((entry, index) => (index === record ? { ...entry, ...change } : entry));
  return withIndex(file, records);
}

/**
 * Sets both copies of the stream flags (header bytes 6–7, footer bytes 8–9) and recomputes their
 * CRC32s. `flags` is the 16-bit field: the low nibble of the second byte is the check ID, the rest
 * reserved.
 */
export function forgeStreamFlags(file: Uint8Array, first: number, second: number): Uint8Array {
  const out = file.slice();
  out[6] = first;
  out[7] = second;
  setCrc(out, 6, 8, 8);
  const footer = out.length - FOOTER;
  out[footer + 8] = first;
  out[footer + 9] = second;
  setCrc(out, footer + 4, footer + 10, footer);
  return out;
}

/** Sets the check ID in both stream flags. Keep the check size the same (4→5,6; 10→11,12) or blocks no longer line up. */
export function forgeCheckId(file: Uint8Array, checkId: number): Uint8Array {
  return forgeStreamFlags(file, 0, checkId);
}

/** Block header offsets, by walking the index from the stream header. */
export function blockOffsets(file: Uint8Array): number[] {
  const offsets: number[] = [];
  let at = HEADER;
  for (const record of parseXz(file).records) {
    offsets.push(at);
    at += record.unpaddedSize + ((4 - (record.unpaddedSize % 4)) % 4);
  }
  return offsets;
}

/**
 * Rewrites the uncompressed size inside one block header (which must record it, as seekxz's do)
 * to `value` of the same varint length, recomputing the header CRC32. Returns undefined when the
 * header has no uncompressed size or the new value does not fit in place.
 */
export function forgeHeaderUncompressedSize(file: Uint8Array, block: number, value: number): Uint8Array | undefined {
  const at = blockOffsets(file)[block]!;
  const size = (file[at]! + 1) * 4;
  const flags = file[at + 1]!;
  if (!(flags & 0x80)) return undefined;
  let field = at + 2;
  if (flags & 0x40) field = readVarint(file, field)[1];
  const [, end] = readVarint(file, field);
  const encoded = varint(value);
  if (encoded.length !== end - field) return undefined;
  const out = file.slice();
  out.set(encoded, field);
  setCrc(out, at, at + size - 4, at + size - 4);
  return out;
}
