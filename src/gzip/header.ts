import { ByteReader, ByteWriter } from '../cursor.js';
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
  if (flags & FLAG_FHCRC) reader.u16le('header CRC16');
  header.length = reader.offset;
  return header;
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
