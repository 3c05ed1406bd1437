import { crc32 } from '../crc/crc32.js';
import { ByteReader, ByteWriter } from '../cursor.js';
import { isAllZero } from '../zeros.js';
import { fail, hexBytes } from '../errors.js';

// RFC 1952 §2.3: member header.
export const GZIP_MAGIC_1 = 0x1f;
export const GZIP_MAGIC_2 = 0x8b;
export const METHOD_DEFLATE = 8;
const FLAG_FTEXT = 0x01;
const FLAG_FHCRC = 0x02;
const FLAG_FEXTRA = 0x04;
const FLAG_FNAME = 0x08;
const FLAG_FCOMMENT = 0x10;
const FLAG_RESERVED = 0xe0;
const OS_UNIX = 3;
/** The fixed part: ID1 ID2 CM FLG MTIME(4) XFL OS. */
export const FIXED_HEADER_LENGTH = 10;
/** A header with every optional field can in principle be unbounded (FNAME, FCOMMENT); we stop looking here. */
const MAX_HEADER_LENGTH = 1 << 20;
/** The trailer: CRC32 then ISIZE, both little-endian (RFC 1952 §2.3.1). */
export const TRAILER_LENGTH = 8;

export interface ExtraSubfield {
  id: string; // two characters, SI1 SI2
  data: Uint8Array;
  /** Byte offset of the subfield's data within the header. */
  dataOffset: number;
}

export interface GzipHeader {
  length: number; // bytes up to the first deflate byte
  flags: number;
  mtime: number;
  os: number;
  extra: ExtraSubfield[];
  name?: string;
  comment?: string;
}

/** Reads how many header bytes we may need: the fixed part plus the optional fields. */
export async function readGzipHeader(
  read: (offset: number, length: number) => Promise<Uint8Array>,
  fileSize: number,
  at = 0,
): Promise<GzipHeader> {
  // One bounded fetch covers every header we write (≤ 64 KiB of FEXTRA); a second, larger one
  // only when FNAME/FCOMMENT run further.
  let bytes = await read(at, Math.min(fileSize - at, 65536 + 1024));
  try {
    return parseGzipHeader(bytes, fileSize - at, at);
  } catch (error) {
    if ((error as { code?: string }).code !== 'GZIP_TRUNCATED' || bytes.length >= fileSize - at) throw error;
    bytes = await read(at, Math.min(fileSize - at, MAX_HEADER_LENGTH));
    return parseGzipHeader(bytes, fileSize - at, at);
  }
}

export function parseGzipHeader(bytes: Uint8Array, available: number, at = 0): GzipHeader {
  const reader = new ByteReader(bytes, (what, offset) => fail('GZIP_TRUNCATED', what, at + offset, at + available));
  if (bytes.length < 2 || bytes[0] !== GZIP_MAGIC_1 || bytes[1] !== GZIP_MAGIC_2) {
    throw fail('GZIP_BAD_MAGIC', at, hexBytes(bytes.subarray(0, 2)) || 'end of file');
  }
  reader.offset = 2;
  const method = reader.u8('compression method'); // offset 2: CM
  if (method !== METHOD_DEFLATE) throw fail('GZIP_BAD_METHOD', method);
  const flags = reader.u8('flags'); // offset 3: FLG
  if (flags & FLAG_RESERVED) throw fail('GZIP_BAD_HEADER', `reserved flag bits set (0x${flags.toString(16)}) at offset ${at + 3}`);
  const mtime = reader.u32le('modification time'); // offset 4: MTIME
  reader.u8('extra flags'); // offset 8: XFL
  const os = reader.u8('operating system'); // offset 9: OS
  const header: GzipHeader = { length: 0, flags, mtime, os, extra: [] };
  if (flags & FLAG_FEXTRA) {
    const extraLength = reader.u16le('FEXTRA length'); // XLEN
    const extraStart = reader.offset;
    reader.bytesOf(extraLength, 'FEXTRA field');
    // Subfields: SI1 SI2 LEN(2) data (RFC 1952 §2.3.1.1). A malformed list is kept as opaque bytes,
    // as gzip itself does: only our own subfield has to parse.
    const sub = new ByteReader(bytes.subarray(extraStart, extraStart + extraLength), () => new Error('short'));
    try {
      while (sub.remaining >= 4) {
        const id = String.fromCharCode(sub.u8('SI1'), sub.u8('SI2'));
        const length = sub.u16le('LEN');
        const dataOffset = extraStart + sub.offset;
        header.extra.push({ id, data: sub.bytesOf(length, 'subfield'), dataOffset });
      }
    } catch {
      // opaque extra field; nothing of ours in it
    }
  }
  if (flags & FLAG_FNAME) header.name = readZeroTerminated(reader, 'FNAME');
  if (flags & FLAG_FCOMMENT) header.comment = readZeroTerminated(reader, 'FCOMMENT');
  if (flags & FLAG_FHCRC) {
    // RFC 1952 §2.3.1: the low 16 bits of the CRC-32 of the header bytes before it; gzip 1.12 checks it.
    const computed = crc32(bytes.subarray(0, reader.offset)) & 0xffff;
    const stored = reader.u16le('header CRC16');
    if (stored !== computed) {
      throw fail('GZIP_BAD_HEADER', `the header CRC-16 at offset ${at + reader.offset - 2} is 0x${stored.toString(16).padStart(4, '0')}, the header gives 0x${computed.toString(16).padStart(4, '0')}; the header is damaged`);
    }
  }
  header.length = reader.offset;
  return header;
}

/** What gzip -d makes of the bytes after a member: see whatFollowsMember. */
export type AfterMember = 'nothing' | 'zeros' | 'garbage' | 'member';

/**
 * What follows a member that ends at `at`, as gzip -d (1.12, gzip.c get_method) sees it, checked
 * with the real gzip by test/trust-gzip-read.test.ts:
 * - 'member': the bytes start 1f 8b, another member (a bad header there is an error, exit 1);
 * - 'nothing' or 'zeros': the end of the file, or only zero bytes up to it: accepted silently
 *   (gzip says "trailing zero bytes ignored" only with -v, and exits 0);
 * - 'garbage': anything else, zero padding followed by more members included: gzip stops there,
 *   warns "decompression OK, trailing garbage ignored" and exits 2;
 * - one non-zero byte before the end is "unexpected end of file" (exit 1): it throws.
 */
export async function whatFollowsMember(read: (offset: number, length: number) => Promise<Uint8Array>, size: number, at: number): Promise<AfterMember> {
  if (at >= size) return 'nothing';
  const head = await read(at, Math.min(2, size - at));
  if (head[0] !== 0) {
    if (head.length < 2) throw fail('GZIP_TRUNCATED', 'gzip member header', at, size);
    // gzip also tries 1f 9e (old gzip), 1f 1e (pack), 1f 9d (compress), 1f a0 (LZH) there; seekz
    // reads deflate members only, so those fail as a bad header (exit 1) like any other member.
    return head[0] === GZIP_MAGIC_1 && [GZIP_MAGIC_2, 0x9e, 0x1e, 0x9d, 0xa0].includes(head[1]!) ? 'member' : 'garbage';
  }
  const piece = 1 << 20;
  for (let offset = at; offset < size; offset += piece) {
    const bytes = await read(offset, Math.min(piece, size - offset));
    if (bytes.length === 0) break;
    if (!isAllZero(bytes)) return 'garbage';
  }
  return 'zeros';
}

function readZeroTerminated(reader: ByteReader, what: string): string {
  let text = '';
  for (;;) {
    const byte = reader.u8(`${what} (no terminating zero byte)`);
    if (byte === 0) return text;
    text += String.fromCharCode(byte); // ISO 8859-1, as the RFC says
  }
}

/** A header with one FEXTRA subfield and nothing else: no name, mtime 0, so output is reproducible. */
export function buildGzipHeader(subfield: { id: string; data: Uint8Array } | undefined, level: number): Uint8Array {
  const writer = new ByteWriter();
  writer.u8(GZIP_MAGIC_1).u8(GZIP_MAGIC_2).u8(METHOD_DEFLATE);
  writer.u8(subfield ? FLAG_FEXTRA : 0);
  writer.u32le(0); // MTIME 0: the same input gives the same bytes
  writer.u8(level >= 9 ? 2 : level <= 1 ? 4 : 0); // XFL: 2 = best, 4 = fastest
  writer.u8(OS_UNIX);
  if (subfield) {
    writer.u16le(subfield.data.length + 4);
    writer.u8(subfield.id.charCodeAt(0)).u8(subfield.id.charCodeAt(1)).u16le(subfield.data.length);
    writer.bytes(subfield.data);
  }
  return writer.finish();
}

/** RFC 1952 §2.3.1 trailer: CRC32, then ISIZE (the length mod 2^32), both little-endian. */
export function trailerBytes(crc: number, totalLength: number): Uint8Array {
  return new ByteWriter().u32le(crc).u32le(totalLength % 2 ** 32).finish();
}

export const FLAGS = { FLAG_FTEXT, FLAG_FHCRC, FLAG_FEXTRA, FLAG_FNAME, FLAG_FCOMMENT };
