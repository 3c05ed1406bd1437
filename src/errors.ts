/**
 * One error type with stable codes. Every message lives in this table, so the wording of an
 * error is decided in one place and tests can match on `code` instead of on prose.
 * Messages are lowercase, start with the format, say what was expected and what was found,
 * and give the fix where there is one. They do not name the command or the file being worked on:
 * the CLI puts both in front (`seekz: disk.img.gz: gzip: …`, see cli/common.ts runCli), and a
 * library caller knows which file it opened.
 */
const messages = {
  // caller mistakes (thrown)
  BAD_ARGUMENT: (what: string) => what,
  BAD_SIZE: (text: string) =>
    `cannot parse size '${text}'; expected a number with an optional K, M, G, T (or KiB, MiB, GiB, TiB) suffix, or 0x…`,
  OUT_OF_RANGE: (what: string, offset: number, length: number, size: number) =>
    `${what} [${offset}, ${offset + length}) is outside the data of ${size} bytes`,
  OUTPUT_EXISTS: (path: string) => `${path} already exists; use -f to overwrite it`,
  INTERRUPTED: (signal: string) => `interrupted by ${signal}; no output was left behind`,

  // gzip / deflate data (rejected)
  GZIP_BAD_MAGIC: (offset: number, found: string) =>
    `gzip: not a gzip file: expected magic 1f 8b at offset ${offset}, found ${found}`,
  GZIP_BAD_METHOD: (method: number) => `gzip: compression method ${method} is not deflate (8)`,
  GZIP_TRUNCATED: (what: string, offset: number, size: number) =>
    `gzip: file truncated: ${what} at offset ${offset} runs past the end of the file (${size} bytes)`,
  GZIP_BAD_HEADER: (what: string) => `gzip: bad header: ${what}`,
  GZIP_BAD_MAP: (what: string) =>
    `gzip: the seekz map in the FEXTRA field is inconsistent: ${what}; the file was damaged or edited by another tool`,
  GZIP_NOT_EDITABLE: (offset: number, length: number, ranges: string) =>
    `gzip: bytes [${offset}, ${offset + length}) are not all inside stored (editable) ranges; editable ranges: ${ranges}. Recompress with partial-deflate --store START:END to make them editable`,
  GZIP_CRC_MISMATCH: (expected: number, found: number) =>
    `gzip: crc-32 mismatch: trailer says ${hex32(expected)}, data gives ${hex32(found)}`,
  GZIP_SIZE_MISMATCH: (expected: number, found: number) =>
    `gzip: length mismatch: trailer ISIZE says ${expected} (mod 2^32), data gives ${found}`,
  DEFLATE_BAD_DATA: (what: string, bitOffset: number) =>
    `deflate: invalid data at compressed bit ${bitOffset} (byte ${Math.floor(bitOffset / 8)}): ${what}`,
  DEFLATE_TRUNCATED: (bitOffset: number) =>
    `deflate: stream ends early at compressed bit ${bitOffset} (byte ${Math.floor(bitOffset / 8)}); the file is truncated`,

  // gzip reads: member checks, trailing data, verified spans (issue 8, trust-gzipread)
  GZIP_EMPTY: () => `gzip: the file is empty (0 bytes): expected a gzip member starting 1f 8b (gzip -d: unexpected end of file)`,
  GZIP_MEMBER_CRC: (member: string, expected: number, found: number) =>
    `gzip: ${member}: crc-32 mismatch: the trailer says ${hex32(expected)}, the data gives ${hex32(found)}; the file is damaged (gzip -t: crc error)`,
  GZIP_MEMBER_LENGTH: (member: string, expected: number, found: number) =>
    `gzip: ${member}: length mismatch: the trailer ISIZE says ${expected} (mod 2^32), the data gives ${found}; the file is damaged (gzip -t: length error)`,
  GZIP_TRAILING_GARBAGE: (offset: number, length: number) =>
    `decompression OK, trailing garbage ignored (${length} bytes after the last member, at offset ${offset}, as gzip -d does; exit status 2)`,

  // verified map reads and safe patching (issue 8: seekz map CRCs, foreign gzip back-references)
  GZIP_SEGMENT_CRC: (uStart: number, uEnd: number, fileOffset: number, expected: number, found: number) =>
    `gzip: bytes [${uStart}, ${uEnd}) (the segment at file offset ${fileOffset}) fail their crc-32: the seekz map says ${hex32(expected)}, the data gives ${hex32(found)}; the file is damaged (gzip -t agrees), restore it from a copy`,
  GZIP_STORED_BLOCK_BAD: (fileOffset: number, expected: number, found: string) =>
    `gzip: stored block header at file offset ${fileOffset}: expected LEN ${expected} with its complement, found ${found}; the file is damaged`,
  GZIP_REFERENCED: (offset: number, length: number, at: number, from: number, to: number, ranges: string) =>
    `gzip: bytes [${offset}, ${offset + length}) cannot be edited in place: a later back-reference at output offset ${at} copies from [${from}, ${to}), so the edit would change bytes there too; editable (stored, copied by nothing): ${ranges}. Recompress with partial-deflate --store START:END to make them editable`,

  // disk images
  DISK_NO_TABLE: (what: string) => `disk: ${what}`,
  DISK_BAD_PARTITION: (what: string) => `disk: ${what}`,
  DISK_TOO_SMALL: (size: number) =>
    `disk: the image is ${size} bytes; a partition table needs at least 512 (the MBR sector)`,
  DISK_NO_SIGNATURE: (found: string) =>
    `disk: no partition table: expected the boot signature 55 aa at offset 510, found ${found}; the image is unpartitioned or not a disk image`,
  DISK_MBR_NOT_A_TABLE: (entry: number, offset: number, flag: number) =>
    `disk: no partition table: MBR entry ${entry} has boot flag 0x${flag.toString(16).padStart(2, '0')} at offset ${offset}, expected 0x00 or 0x80; the 55 aa signature belongs to a boot sector without partitions (a bare FAT file system?)`,
  DISK_EBR_BAD: (offset: number, what: string) => `disk: extended boot record at offset ${offset}: ${what}`,
  DISK_EBR_LOOP: (from: number, to: number) =>
    `disk: the chain of extended boot records loops: the record at offset ${from} links back to offset ${to}, which was already read`,
  DISK_EBR_TOO_MANY: (limit: number) =>
    `disk: the chain of extended boot records is longer than ${limit} (the limit for logical partitions); the chain is corrupt`,
  DISK_GPT_NO_HEADER: (attempts: string) =>
    `disk: the protective MBR announces a GPT, but no GPT header is valid: ${attempts}; if the image was written with another sector size (512 or 4096), pass it as sectorSize`,
  DISK_GPT_BAD_ENTRY: (number: number, what: string) => `disk: GPT partition ${number}: ${what}`,
  DISK_PARTITION_PAST_END: (number: number, start: number, end: number, size: number) =>
    `disk: partition ${number} [${start}, ${end}) runs past the end of the image (${size} bytes); the image is truncated (it needs at least ${end} bytes) or its partition table is damaged`,
  DISK_NO_SUCH_PARTITION: (number: number, scheme: string, list: string) =>
    `disk: no partition ${number}; the ${scheme} has ${list}`,

  // xz
  XZ_BAD_MAGIC: (offset: number) =>
    `xz: not an xz file: expected the stream header magic fd 37 7a 58 5a 00 at offset ${offset}`,
  XZ_BAD_FOOTER: (offset: number) =>
    `xz: no stream footer ('YZ') at offset ${offset}; the file is truncated or has trailing garbage`,
  XZ_TRUNCATED: (what: string, offset: number) => `xz: file truncated: ${what} at offset ${offset} runs past the end`,
  XZ_BAD_CRC: (what: string, offset: number) => `xz: ${what} at offset ${offset} fails its CRC32; the file is damaged`,
  XZ_BAD_INDEX: (what: string, offset: number) => `xz: bad index at offset ${offset}: ${what}`,
  XZ_BAD_DATA: (what: string, offset: number) => `xz: bad data at offset ${offset}: ${what}`,
  XZ_UNSUPPORTED: (what: string) => `xz: unsupported: ${what}`,
  XZ_BLOCK_TOO_LARGE: (block: number, size: number, max: number) =>
    `xz: block ${block} holds ${size} bytes, more than the ${max}-byte limit for one decode; recompress with seekxz --block-size=16M (or xz --block-size=16777216), or raise --max-block`,
  XZ_DECODE_FAILED: (block: number, offset: number, why: string) =>
    `xz: block ${block} at offset ${offset} does not decode: ${why}`,
  XZ_SIZE_MISMATCH: (block: number, expected: number, found: number) =>
    `xz: block ${block} decodes to ${found} bytes, the index says ${expected}`,
  XZ_NOT_EDITABLE: (offset: number, length: number, ranges: string) =>
    `xz: bytes [${offset}, ${offset + length}) are not all inside stored blocks (blocks made only of LZMA2 uncompressed chunks); editable ranges: ${ranges}. Recompress with seekxz --store START:END to make them editable`,
  XZ_BLOCK_CHECK: (block: number, offset: number, expected: string, found: string) =>
    `xz: block ${block} at offset ${offset} fails its integrity check: the file says ${expected}, the data gives ${found}; the file is damaged (xz -t agrees), restore it from a copy`,

  // zstd
  ZSTD_BAD_MAGIC: (offset: number, found: number) =>
    `zstd: not a zstd frame: expected the magic 28 b5 2f fd at offset ${offset}, found ${hex32(found)} (little-endian)`,
  ZSTD_TRUNCATED: (what: string, offset: number) => `zstd: file truncated: ${what} at offset ${offset} runs past the end`,
  ZSTD_BAD_FRAME: (offset: number, what: string) => `zstd: bad frame at offset ${offset}: ${what}`,
  ZSTD_BAD_SEEK_TABLE: (offset: number, what: string) =>
    `zstd: bad seek table at offset ${offset}: ${what}; the file is damaged (recompress it with seekzstd)`,
  ZSTD_DECODE_FAILED: (frame: number, offset: number, why: string) => `zstd: frame ${frame} at offset ${offset} does not decode: ${why}`,
  ZSTD_SIZE_MISMATCH: (frame: number, offset: number, expected: number, found: number) =>
    `zstd: frame ${frame} at offset ${offset} decodes to ${found} bytes, the index says ${expected}; the file is damaged`,
  ZSTD_SIZE_CLAIMS: (frame: number, offset: number, table: number, header: number) =>
    `zstd: frame ${frame} at offset ${offset}: the seek table says ${table} bytes, its frame header ${header}; the file is damaged (recompress it with seekzstd)`,
  ZSTD_CHECKSUM: (frame: number, offset: number, expected: number, found: number) =>
    `zstd: frame ${frame} at offset ${offset} fails its checksum: expected ${hex32(expected)}, the data gives ${hex32(found)}; the file is damaged (zstd -t agrees)`,
  ZSTD_NOT_EDITABLE: (offset: number, length: number, ranges: string) =>
    `zstd: bytes [${offset}, ${offset + length}) are not all inside stored frames (frames made only of raw blocks); editable ranges: ${ranges}. Recompress with seekzstd --store START:END to make them editable`,
  ZSTD_NOT_SEEKABLE: (why: string) =>
    `zstd: this file cannot be read at random: ${why}; recompress it with seekzstd (seekz cat still streams it)`,
  ZSTD_FRAME_TOO_LARGE: (frame: number, size: number, max: number) =>
    `zstd: frame ${frame} holds ${size} bytes, more than the ${max}-byte limit for one decode; recompress with seekzstd --frame-size=1M, or raise --max-block`,
  ZSTD_UNSUPPORTED: (what: string) => `zstd: unsupported: ${what}`,

  // gzip index files (seekz, indexed_gzip's GZIDX, gztool)
  INDEX_BAD_MAGIC: (what: string) => `index: not an index file this seekz reads: ${what}`,
  INDEX_BAD_DATA: (what: string) => `index: ${what}`,
  INDEX_MISMATCH: (what: string) => `index: the index belongs to another file: ${what}; rebuild it with seekz index`,
  INDEX_TRUNCATED: (format: string, what: string, offset: number, size: number, fix: string) =>
    `index: ${format} index truncated: ${what} at offset ${offset} runs past the end of the index (${size} bytes); ${fix}`,
  INDEX_UNSUPPORTED: (format: string, what: string, fix: string) => `index: unsupported ${format} index: ${what}; ${fix}`,

  // in-place edits
  PATCH_LOCKED: (lockPath: string, pid: number) =>
    `patch: another seekz process (pid ${pid}) is editing this file (lock ${lockPath}); wait for it, or remove the lock if that process is gone`,
  PATCH_JOURNAL_BAD: (path: string, what: string) => `patch: journal ${path} is unusable: ${what}`,
  PATCH_JOURNAL_MISMATCH: (path: string, what: string) =>
    `patch: journal ${path} does not belong to this file (${what}); move it aside if the file was replaced on purpose`,

  TERMINAL: (direction: string) =>
    `compressed data cannot be ${direction} a terminal (xz and gzip refuse too); use -f to force it`,

  // output and recovery (serve, io)
  OUTPUT_FAILED: (where: string, at: number, why: string) =>
    `writing ${where} failed after ${at} bytes: ${why}; the output is incomplete. free space or write elsewhere, then run the command again`,
  RECOVERY_NEEDS_WRITE: (path: string, journal: string, why: string) =>
    `patch: ${path} has an interrupted edit (journal ${journal}) that cannot be rolled back here: ${why}; its bytes may be half-written, so it is not read. run any seekz command on it as a user who can write the file and its folder (or copy both to a writable folder)`,

  // http
  HTTP_BAD_URL: (url: string, why: string) => `http: cannot open '${url}': expected an http:// or https:// url, ${why}`,
  HTTP_NOT_FOUND: (url: string, status: number) =>
    `http: ${url} answered ${status} (not found): expected the file; check the url, or whether the file was removed`,
  HTTP_STATUS: (url: string, range: string, status: string) =>
    `http: ${url} (${range}) answered ${status}, expected 206 partial content; check the url and that the server lets you read the file`,
  HTTP_NO_RANGE: (url: string, range: string, length: string) =>
    `http: ${url} ignores range requests: asked for ${range}, it answered 200 with the whole file (${length}); ` +
    'the request was dropped unread. download the file and open it locally, or serve it from a server that supports ranges (nginx, apache, s3)',
  HTTP_CHANGED: (url: string, what: string) =>
    `http: ${url} changed while it was being read (${what}); no data of the new version was used. open it again to read the new version`,
  HTTP_FAILED: (url: string, range: string, last: string, attempts: number) =>
    `http: ${url} (${range}) failed after ${attempts} attempts (retried with backoff); last: ${last}; the server is down or overloaded, try again later`,
  HTTP_BAD_RESPONSE: (url: string, range: string, what: string) => `http: ${url} (${range}): bad response: ${what}`,
  HTTP_TOO_MANY_REDIRECTS: (url: string, max: number) =>
    `http: ${url} redirected more than ${max} times; expected the file within ${max} redirects; open the final url directly`,
  HTTP_CLOSED: (url: string) => `http: read of ${url} after close(); open it again`,

  // xz verification (issue 8): index records held against block headers
  XZ_INDEX_MISMATCH: (block: number, unpaddedSize: number, uncompressedSize: number, offset: number, what: string) =>
    `xz: index record ${block} (unpadded size ${unpaddedSize}, uncompressed size ${uncompressedSize}) does not match block ${block} at offset ${offset}: ${what}; the index or the block header is damaged or forged (xz -t rejects such a file)`,

  // NBD launch (issue 9): the place to serve on, and the pidfile that says it is ready
  SERVE_LISTEN_FAILED: (place: string, why: string) => `seekz: serve: cannot listen on ${place}: ${why}`,
  SERVE_PIDFILE_FAILED: (path: string, why: string) => `seekz: serve: cannot write the pidfile ${path}: ${why}`,
} as const;

export type ErrorCode = keyof typeof messages;

export class SeekzError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'SeekzError';
    this.code = code;
  }
}

/** Builds the error for `code` from its message template: `fail('GZIP_BAD_METHOD', 7)`. */
export function fail<C extends ErrorCode>(code: C, ...args: Parameters<(typeof messages)[C]>): SeekzError {
  const template = messages[code] as (...a: unknown[]) => string;
  return new SeekzError(code, template(...args));
}

export function hex32(n: number): string {
  return '0x' + (n >>> 0).toString(16).padStart(8, '0');
}

export function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}
