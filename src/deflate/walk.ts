/**
 * Walks a raw deflate stream (RFC 1951) block by block without producing its output: Huffman
 * symbols are decoded only far enough to know where each block ends and how many bytes it
 * expands to. That is what in-place patching needs to find the stored blocks in gzip files
 * that other tools wrote. There is no window and no output buffer; the history kept is the
 * total output so far (enough to reject distances that reach before the stream start) and the
 * stored blocks of the last 32 KiB of output.
 *
 * Invariants (pinned by test/deflate-walk.test.ts, which compares every walk with zlib, and
 * test/trust-map-patch.test.ts, which patches real gzip -6 files and compares with zcat):
 * - Table entries are packed int32s below 2^31 and the bit accumulator holds at most 31 bits, so
 *   the hot loop stays in int32 arithmetic (see "Decoding tables" and decodeSymbols).
 * - The symbol loop may read up to SYMBOL_MARGIN_BYTES past the data it was given; the buffer
 *   carries PADDING_BYTES zeros so that the overrun is noticed afterwards, never read as data.
 * - Every back-reference whose source bytes [out − distance, out − distance + length) meet a
 *   stored block is recorded in that block's `references`, by output offset, before the walk
 *   moves on. A stored byte that no match reads directly cannot reach any other output byte: a
 *   later match can only copy it from a byte some match produced, and producing it meant reading
 *   the stored byte directly. So a stored byte outside `references` can be edited in place and
 *   nothing else changes. A stored block's `references` are complete once the walk has produced
 *   32 KiB (the largest distance) past its end, and at the latest when the walk ends.
 *
 * Memory: one input buffer of about `chunkSize` bytes plus about 50 KiB of decoding tables per
 * walk. Every loop consumes input bits, so hostile data ends in an error, never in a hang.
 */
import { fail, type SeekzError } from '../errors.js';
import type { Source } from '../source/source.js';
import { lastAtOrBefore } from '../search.js';

export interface DeflateBlock {
  type: 'stored' | 'fixed' | 'dynamic';
  final: boolean;
  /** Absolute bit offset in the source where this block's 3-bit header starts. */
  headerBit: number;
  /** Absolute bit offset just after the block (after the end-of-block code or the stored data). */
  endBit: number;
  /** Uncompressed offset of the block's first output byte. */
  outStart: number;
  /** Uncompressed bytes the block produces. */
  outLength: number;
  /** Stored blocks only: absolute byte offset of the first stored data byte in the source. */
  dataOffset?: number;
  /**
   * Stored blocks only: the bytes later matches copy from, set on this very object as the walk
   * goes on (left undefined while nothing has read the block, so unread blocks cost nothing).
   */
  references?: BackReferences;
}

/**
 * Output ranges of one stored block that later back-references read directly, each with the
 * output offset of the first match that read it: sorted, disjoint, and at most
 * MAX_REFERENCE_RANGES of them. Past that cap they collapse into one range over the whole block
 * (bounded memory: a hostile stream can only make the walk more cautious).
 */
export interface BackReferences {
  ranges: { start: number; end: number; by: number }[];
}

/** Ranges kept per stored block before it counts as referenced as a whole. */
export const MAX_REFERENCE_RANGES = 32;
/** RFC 1951 §3.2.5: the largest distance. */
const MAX_DISTANCE = 32768;

export interface WalkOptions {
  /** Bytes per source read. Default 1 MiB. */
  chunkSize?: number;
  /**
   * Told when a match first reads a stored block (its `references` then exist), so that a caller
   * can keep just those blocks instead of every block the walk yields.
   */
  onReferenced?: (block: DeflateBlock) => void;
}

export const DEFAULT_WALK_CHUNK_SIZE = 1 << 20;

/**
 * Walks the raw deflate stream that starts at byte `startByte` of `source`, block by block, and
 * stops after the final block. Bad data rejects with DEFLATE_BAD_DATA, a short source with
 * DEFLATE_TRUNCATED; bad arguments throw at once.
 */
export function walkDeflate(source: Source, startByte: number, options: WalkOptions = {}): AsyncGenerator<DeflateBlock> {
  return walk(source, startByte, checkedChunkSize(source, startByte, options), undefined, options.onReferenced);
}

/** A back-reference found by firstBackReference: the match at output offset `at` reads [from, to) of a stored block. */
export interface BackReference {
  at: number;
  from: number;
  to: number;
}

/**
 * The first back-reference in the stream that reads stored bytes in output range [start, end),
 * or undefined. The stored blocks' `references` say whether there is one; this walks again to
 * name the very match, for an error message.
 */
export async function firstBackReference(
  source: Source,
  startByte: number,
  start: number,
  end: number,
  options: WalkOptions = {},
): Promise<BackReference | undefined> {
  const watch: Watch = { start, end, hit: undefined };
  for await (const block of walk(source, startByte, checkedChunkSize(source, startByte, options), watch)) {
    if (watch.hit || block.outStart >= end + MAX_DISTANCE) break;
  }
  return watch.hit;
}

function checkedChunkSize(source: Source, startByte: number, options: WalkOptions): number {
  const chunkSize = options.chunkSize ?? DEFAULT_WALK_CHUNK_SIZE;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) {
    throw fail('BAD_ARGUMENT', `deflate walk: chunkSize must be a positive integer, got ${chunkSize}`);
  }
  if (!Number.isSafeInteger(startByte) || startByte < 0) {
    throw fail('BAD_ARGUMENT', `deflate walk: start byte must be a non-negative integer, got ${startByte}`);
  }
  if (startByte > source.size) throw fail('OUT_OF_RANGE', 'deflate stream start', startByte, 0, source.size);
  return chunkSize;
}

/** An output range whose first reader firstBackReference looks for. */
interface Watch {
  start: number;
  end: number;
  hit: BackReference | undefined;
}

async function* walk(
  source: Source,
  startByte: number,
  chunkSize: number,
  watch: Watch | undefined,
  onReferenced?: (block: DeflateBlock) => void,
): AsyncGenerator<DeflateBlock> {
  const reader = newReader(source, startByte, chunkSize);
  reader.watch = watch;
  reader.onReferenced = onReferenced;
  const tables: DynamicTables = {
    literal: new Int32Array(LITERAL_TABLE_SIZE),
    distance: new Int32Array(DISTANCE_TABLE_SIZE),
    codeLength: new Int32Array(1 << CODE_LENGTH_ROOT),
    lengths: new Uint8Array(MAX_LITERAL_CODES + MAX_DISTANCE_CODES),
  };
  for (;;) {
    await ensure(reader, MAX_HEADER_BYTES);
    const headerBit = bitPosition(reader);
    const final = readBits(reader, 1) === 1;
    const blockType = readBits(reader, 2);
    const outStart = reader.out;

    if (blockType === BTYPE_STORED) {
      dropBits(reader, reader.bitCount & 7); // LEN starts at the next byte boundary
      const length = readBits(reader, 16);
      const lengthComplement = readBits(reader, 16);
      checkOverrun(reader);
      if (lengthComplement !== (~length & 0xffff)) {
        throw fail(
          'DEFLATE_BAD_DATA',
          `stored block LEN ${length} does not match NLEN ${lengthComplement} (expected ${~length & 0xffff})`,
          headerBit,
        );
      }
      const dataOffset = bitPosition(reader) / 8;
      const end = dataOffset + length;
      if (end > source.size) throw fail('DEFLATE_TRUNCATED', source.size * 8);
      seekByte(reader, end); // the stored bytes themselves are never read
      reader.out += length;
      const block: DeflateBlock = { type: 'stored', final, headerBit, endBit: end * 8, outStart, outLength: length, dataOffset };
      if (length > 0) {
        reader.storedBlocks.push(block);
        reader.storedEnd = reader.out;
        // Blocks that no distance can reach any more are dropped in batches, so that a stream of
        // many tiny stored blocks costs O(1) each (searching past one that is left is harmless).
        const blocks = reader.storedBlocks;
        while (endOf(blocks[reader.storedReachable]!) <= reader.out - MAX_DISTANCE) reader.storedReachable++;
        if (reader.storedReachable * 2 >= blocks.length) {
          blocks.splice(0, reader.storedReachable);
          reader.storedReachable = 0;
        }
      }
      yield block;
    } else if (blockType === BTYPE_FIXED || blockType === BTYPE_DYNAMIC) {
      const fixed = (fixedTables ??= buildFixedTables());
      let literal = fixed.literal;
      let distance = fixed.distance;
      if (blockType === BTYPE_DYNAMIC) {
        readDynamicHeader(reader, tables, headerBit);
        literal = tables.literal;
        distance = tables.distance;
      }
      checkOverrun(reader);
      while (!decodeSymbols(reader, literal, distance)) await ensure(reader, SYMBOL_MARGIN_BYTES * 2);
      yield {
        type: blockType === BTYPE_FIXED ? 'fixed' : 'dynamic',
        final,
        headerBit,
        endBit: bitPosition(reader),
        outStart,
        outLength: reader.out - outStart,
      };
    } else {
      throw fail('DEFLATE_BAD_DATA', 'reserved block type 3', headerBit);
    }
    if (final) return;
  }
}

// RFC 1951 3.2.3: BTYPE values.
const BTYPE_STORED = 0;
const BTYPE_FIXED = 1;
const BTYPE_DYNAMIC = 2;

/**
 * A dynamic block header is at most 3 + 14 + 19*3 + 316*(7+7) bits (about 563 bytes). Having that
 * much buffered before each block lets headers be parsed without awaiting in the middle.
 */
const MAX_HEADER_BYTES = 600;
/**
 * One literal/length symbol plus its distance uses at most 48 bits, and the bit accumulator runs
 * at most 4 bytes ahead, so an iteration of the symbol loop loads at most 10 bytes.
 */
const SYMBOL_MARGIN_BYTES = 16;
/** Zero bytes after the data so that the symbol loop can overrun at the end of the source and
 * notice afterwards, instead of checking bounds on every byte. */
const PADDING_BYTES = 32;

// ---------------------------------------------------------------------------------------------
// Bit reader. Bits are taken LSB-first (RFC 1951 3.1.1) into a 32-bit accumulator that holds at
// most 31 bits, so every value stays a non-negative int32.

interface Reader {
  source: Source;
  chunkSize: number;
  /** Buffered bytes followed by PADDING_BYTES zeros. */
  buf: Uint8Array;
  /** Absolute source offset of buf[0]. */
  bufStart: number;
  /** Number of real bytes in buf. */
  dataLen: number;
  /** Whether buf reaches the end of the source. */
  eof: boolean;
  /** Next byte of buf to load into the accumulator. */
  pos: number;
  bitBuf: number;
  bitCount: number;
  /** Uncompressed bytes produced since the stream start. */
  out: number;
  /** Non-empty stored blocks in output order: those a distance may still reach, from storedReachable on. */
  storedBlocks: DeflateBlock[];
  storedReachable: number;
  /** Output offset where the last non-empty stored block ends: a match reading before it may read stored bytes. */
  storedEnd: number;
  watch: Watch | undefined;
  onReferenced: ((block: DeflateBlock) => void) | undefined;
}

function newReader(source: Source, startByte: number, chunkSize: number): Reader {
  return {
    source,
    chunkSize,
    buf: new Uint8Array(PADDING_BYTES),
    bufStart: startByte,
    dataLen: 0,
    eof: startByte >= source.size,
    pos: 0,
    bitBuf: 0,
    bitCount: 0,
    out: 0,
    storedBlocks: [],
    storedReachable: 0,
    storedEnd: 0,
    watch: undefined,
    onReferenced: undefined,
  };
}

function bitPosition(r: Reader): number {
  return (r.bufStart + r.pos) * 8 - r.bitCount;
}

/** Makes at least `bytes` unread bytes available, or all that remain in the source. */
async function ensure(r: Reader, bytes: number): Promise<void> {
  const kept = Math.max(0, r.dataLen - r.pos);
  if (r.eof || kept >= bytes) return;
  const chunks: Uint8Array[] = [];
  let total = kept;
  let readAt = r.bufStart + r.dataLen;
  let eof = false;
  while (total < bytes) {
    const want = Math.min(r.chunkSize, r.source.size - readAt);
    if (want <= 0) {
      eof = true;
      break;
    }
    const got = await r.source.read(readAt, want);
    chunks.push(got);
    total += got.length;
    readAt += got.length;
    if (got.length < want) {
      eof = true; // the source ended early (a file shrank); what we have is all there is
      break;
    }
  }
  if (readAt >= r.source.size) eof = true;
  const buf = new Uint8Array(total + PADDING_BYTES);
  buf.set(r.buf.subarray(r.pos, r.pos + kept), 0);
  let at = kept;
  for (const chunk of chunks) {
    buf.set(chunk, at);
    at += chunk.length;
  }
  r.bufStart += r.pos;
  r.pos = 0;
  r.buf = buf;
  r.dataLen = total;
  r.eof = eof;
}

/** Moves to an absolute byte offset, keeping the buffer when the offset lies inside it. */
function seekByte(r: Reader, offset: number): void {
  r.bitBuf = 0;
  r.bitCount = 0;
  const relative = offset - r.bufStart;
  if (relative >= 0 && relative <= r.dataLen) {
    r.pos = relative;
    return;
  }
  r.buf = new Uint8Array(PADDING_BYTES);
  r.bufStart = offset;
  r.dataLen = 0;
  r.pos = 0;
  r.eof = offset >= r.source.size;
}

/** Reads `n` <= 24 bits. Past the buffered data it reads zeros; checkOverrun() notices later. */
function readBits(r: Reader, n: number): number {
  const { buf } = r;
  while (r.bitCount < n) {
    r.bitBuf |= (buf[r.pos++] ?? 0) << r.bitCount;
    r.bitCount += 8;
  }
  const value = r.bitBuf & ((1 << n) - 1);
  r.bitBuf >>>= n;
  r.bitCount -= n;
  return value;
}

function dropBits(r: Reader, n: number): void {
  readBits(r, n);
}

function checkOverrun(r: Reader): void {
  if (r.eof && r.pos * 8 - r.bitCount > r.dataLen * 8) throw fail('DEFLATE_TRUNCATED', (r.bufStart + r.dataLen) * 8);
}

// ---------------------------------------------------------------------------------------------
// Decoding tables. Each entry is an int32:
//   bits 0-3   code length in bits (the whole code, also in second-level entries)
//   bits 4-7   extra bits to read after the code (for links: index bits of the second level)
//   bits 8-10  kind
//   bits 11-   value: how many literals (see packLiteralRuns), length or distance base, symbol
//              number, or second-level offset
// Codes up to ROOT bits are found with one lookup; longer ones through a link to a second-level
// table indexed by the code bits after the first ROOT. Entries stay below 2^31.

const EXTRA_SHIFT = 4;
const KIND_SHIFT = 8;
const VALUE_SHIFT = 11;
const KIND_LITERAL = 0;
const KIND_BASE = 1;
const KIND_END = 2;
const KIND_INVALID = 3;
const KIND_LINK = 4;
/** Symbol value used in entries for bit patterns that no code uses (incomplete codes). */
const NO_SYMBOL = 0xffff;
const UNUSED_ENTRY = (KIND_INVALID << KIND_SHIFT) | (NO_SYMBOL << VALUE_SHIFT) | 1;

const MAX_LITERAL_CODES = 286; // RFC 1951 3.2.7: HLIT + 257 <= 286
const MAX_DISTANCE_CODES = 30; // HDIST + 1 <= 30
const LITERAL_ROOT = 10;
const DISTANCE_ROOT = 10;
const CODE_LENGTH_ROOT = 7;
const MAX_CODE_LENGTH = 15;
/** Root table plus, at most, a full-depth second level for every symbol. */
const LITERAL_TABLE_SIZE = (1 << LITERAL_ROOT) + 288 * (1 << (MAX_CODE_LENGTH - LITERAL_ROOT));
const DISTANCE_TABLE_SIZE = (1 << DISTANCE_ROOT) + 32 * (1 << (MAX_CODE_LENGTH - DISTANCE_ROOT));

// RFC 1951 3.2.5: length codes 257..285 and distance codes 0..29.
const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DISTANCE_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
  8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
// RFC 1951 3.2.7: the order in which code length code lengths are stored.
const CODE_LENGTH_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

function entry(kind: number, extra: number, value: number): number {
  return (kind << KIND_SHIFT) | (extra << EXTRA_SHIFT) | (value << VALUE_SHIFT);
}

/** Per-symbol entries without the code length. Symbols 286, 287 (length) and 30, 31 (distance)
 * have fixed-Huffman codes but are invalid, so they decode to KIND_INVALID. */
const LITERAL_ENTRIES = Int32Array.from({ length: 288 }, (_, s) =>
  s < 256
    ? entry(KIND_LITERAL, 0, 1)
    : s === 256
      ? entry(KIND_END, 0, s)
      : s < 286
        ? entry(KIND_BASE, LENGTH_EXTRA[s - 257], LENGTH_BASE[s - 257])
        : entry(KIND_INVALID, 0, s),
);
const DISTANCE_ENTRIES = Int32Array.from({ length: 32 }, (_, s) =>
  s < 30 ? entry(KIND_BASE, DISTANCE_EXTRA[s], DISTANCE_BASE[s]) : entry(KIND_INVALID, 0, s),
);
const CODE_LENGTH_ENTRIES = Int32Array.from({ length: 19 }, (_, s) => entry(KIND_LITERAL, 0, s));

const lengthCounts = new Uint16Array(MAX_CODE_LENGTH + 1);
const lengthsLeft = new Uint16Array(MAX_CODE_LENGTH + 1);
const lengthOffsets = new Uint16Array(MAX_CODE_LENGTH + 2);
const sortedSymbols = new Uint16Array(288);

/**
 * Fills `table` for the canonical Huffman code given by `lengths[0..count)` (RFC 1951 3.2.2).
 * Returns null, or what is wrong with the lengths. Like zlib, an incomplete code is accepted
 * only when it is a single code of one bit, and a code with no lengths at all only for
 * literal/length and distance codes (a block may have no distances); with `allowIncomplete`
 * false both are errors. Unused bit patterns decode to KIND_INVALID.
 */
function buildTable(
  lengths: Uint8Array,
  first: number,
  count: number,
  symbolEntries: Int32Array,
  table: Int32Array,
  rootBits: number,
  allowIncomplete: boolean,
): string | null {
  lengthCounts.fill(0);
  for (let s = 0; s < count; s++) lengthCounts[lengths[first + s]]++;
  lengthCounts[0] = 0;
  let maxLength = MAX_CODE_LENGTH;
  while (maxLength > 0 && lengthCounts[maxLength] === 0) maxLength--;
  const rootSize = 1 << rootBits;
  table.fill(UNUSED_ENTRY, 0, rootSize);
  if (maxLength === 0) return allowIncomplete ? null : 'no codes';

  let left = 1;
  for (let len = 1; len <= MAX_CODE_LENGTH; len++) {
    left = (left << 1) - lengthCounts[len];
    if (left < 0) return 'over-subscribed';
  }
  if (left > 0 && !(allowIncomplete && maxLength === 1)) return 'incomplete';

  lengthOffsets[1] = 0;
  for (let len = 1; len < MAX_CODE_LENGTH; len++) lengthOffsets[len + 1] = lengthOffsets[len] + lengthCounts[len];
  for (let s = 0; s < count; s++) {
    const len = lengths[first + s];
    if (len !== 0) sortedSymbols[lengthOffsets[len]++] = s;
  }
  lengthsLeft.set(lengthCounts);

  let code = 0; // canonical code, most significant bit first
  let index = 0;
  let nextFree = rootSize;
  let groupPrefix = -1;
  let groupBase = 0;
  let groupBits = 0;
  for (let len = 1; len <= maxLength; len++, code <<= 1) {
    for (let k = lengthCounts[len]; k > 0; k--, code++) {
      const value = symbolEntries[sortedSymbols[index++]] | len;
      const reversed = reverseBits(code, len); // codes are packed starting with their top bit
      if (len <= rootBits) {
        for (let i = reversed; i < rootSize; i += 1 << len) table[i] = value;
      } else {
        const prefix = reversed & (rootSize - 1);
        if (prefix !== groupPrefix) {
          // Codes sharing these first rootBits bits are contiguous in canonical order; size the
          // second level so that the longest of them fits.
          let bits = len - rootBits;
          let room = 1 << bits;
          while (bits + rootBits < maxLength) {
            room -= lengthsLeft[bits + rootBits];
            if (room <= 0) break;
            bits++;
            room <<= 1;
          }
          if (nextFree + (1 << bits) > table.length) return 'too large a table'; // unreachable for complete codes
          groupPrefix = prefix;
          groupBase = nextFree;
          groupBits = bits;
          nextFree += 1 << bits;
          table.fill(UNUSED_ENTRY, groupBase, nextFree);
          table[prefix] = entry(KIND_LINK, bits, groupBase);
        }
        for (let i = reversed >>> rootBits; i < 1 << groupBits; i += 1 << (len - rootBits)) table[groupBase + i] = value;
      }
      lengthsLeft[len]--;
    }
  }
  return null;
}

const singleLiteralEntries = new Int32Array(1 << LITERAL_ROOT);

/**
 * The walk never needs a literal's value, only how many there are. Where the root bits of an
 * index hold several whole literal codes in a row, the entry counts them all and spans all their
 * bits, so runs of short literal codes cost one lookup per 10 bits instead of one per literal.
 */
function packLiteralRuns(table: Int32Array): void {
  const size = 1 << LITERAL_ROOT;
  singleLiteralEntries.set(table.subarray(0, size));
  for (let i = 0; i < size; i++) {
    let used = 0;
    let count = 0;
    for (;;) {
      // The bits past `used` are known only up to LITERAL_ROOT; the code must end within them.
      const next = singleLiteralEntries[i >>> used];
      if (((next >>> KIND_SHIFT) & 7) !== KIND_LITERAL || (next & 15) > LITERAL_ROOT - used) break;
      used += next & 15;
      count++;
    }
    if (count > 1) table[i] = entry(KIND_LITERAL, 0, count) | used;
  }
}

function reverseBits(code: number, length: number): number {
  let reversed = 0;
  for (let i = 0; i < length; i++) {
    reversed = (reversed << 1) | (code & 1);
    code >>>= 1;
  }
  return reversed;
}

/** Built on first use, not at load: every `seekz read` loads this module, and most never walk a block. */
let fixedTables: { literal: Int32Array; distance: Int32Array } | undefined;

function buildFixedTables(): { literal: Int32Array; distance: Int32Array } {
  // RFC 1951 3.2.6
  const literalLengths = Uint8Array.from({ length: 288 }, (_, s) => (s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8));
  const literal = new Int32Array(LITERAL_TABLE_SIZE);
  const distance = new Int32Array(DISTANCE_TABLE_SIZE);
  buildTable(literalLengths, 0, 288, LITERAL_ENTRIES, literal, LITERAL_ROOT, false);
  packLiteralRuns(literal);
  buildTable(new Uint8Array(32).fill(5), 0, 32, DISTANCE_ENTRIES, distance, DISTANCE_ROOT, false);
  return { literal, distance };
}

interface DynamicTables {
  literal: Int32Array;
  distance: Int32Array;
  codeLength: Int32Array;
  lengths: Uint8Array;
}

/** RFC 1951 3.2.7. The caller has buffered MAX_HEADER_BYTES, so nothing here awaits. */
function readDynamicHeader(r: Reader, tables: DynamicTables, headerBit: number): void {
  const literalCount = readBits(r, 5) + 257;
  const distanceCount = readBits(r, 5) + 1;
  const codeLengthCount = readBits(r, 4) + 4;
  if (literalCount > MAX_LITERAL_CODES) {
    throw badHeader(r, `HLIT says ${literalCount} literal/length codes; at most ${MAX_LITERAL_CODES} exist`, headerBit);
  }
  if (distanceCount > MAX_DISTANCE_CODES) {
    throw badHeader(r, `HDIST says ${distanceCount} distance codes; at most ${MAX_DISTANCE_CODES} exist`, headerBit);
  }
  const { lengths, codeLength } = tables;
  lengths.fill(0, 0, 19);
  for (let i = 0; i < codeLengthCount; i++) lengths[CODE_LENGTH_ORDER[i]] = readBits(r, 3);
  const codeLengthProblem = buildTable(lengths, 0, 19, CODE_LENGTH_ENTRIES, codeLength, CODE_LENGTH_ROOT, false);
  if (codeLengthProblem) throw badHeader(r, `code length code is ${codeLengthProblem}`, headerBit);

  const total = literalCount + distanceCount;
  const rootMask = (1 << CODE_LENGTH_ROOT) - 1;
  for (let i = 0; i < total; ) {
    const at = bitPosition(r);
    while (r.bitCount < CODE_LENGTH_ROOT) {
      r.bitBuf |= (r.buf[r.pos++] ?? 0) << r.bitCount;
      r.bitCount += 8;
    }
    const found = codeLength[r.bitBuf & rootMask];
    if (((found >>> KIND_SHIFT) & 7) !== KIND_LITERAL) {
      throw badHeader(r, 'bit pattern with no code in the code length code', at);
    }
    dropBits(r, found & 15);
    const symbol = found >>> VALUE_SHIFT;
    if (symbol < 16) {
      lengths[i++] = symbol;
      continue;
    }
    let repeat: number;
    let value = 0;
    if (symbol === 16) {
      if (i === 0) throw badHeader(r, 'code length 16 (repeat previous) with no previous length', at);
      value = lengths[i - 1];
      repeat = 3 + readBits(r, 2);
    } else if (symbol === 17) {
      repeat = 3 + readBits(r, 3);
    } else {
      repeat = 11 + readBits(r, 7);
    }
    if (i + repeat > total) {
      throw badHeader(r, `code length repeat of ${repeat} runs past the ${total} lengths in the header`, at);
    }
    lengths.fill(value, i, i + repeat);
    i += repeat;
  }
  checkOverrun(r);
  if (lengths[256] === 0) throw badHeader(r, 'literal/length code has no end-of-block code', headerBit);
  const literalProblem = buildTable(lengths, 0, literalCount, LITERAL_ENTRIES, tables.literal, LITERAL_ROOT, true);
  if (literalProblem) throw badHeader(r, `literal/length code lengths are ${literalProblem}`, headerBit);
  packLiteralRuns(tables.literal);
  const distanceProblem = buildTable(lengths, literalCount, distanceCount, DISTANCE_ENTRIES, tables.distance, DISTANCE_ROOT, true);
  if (distanceProblem) throw badHeader(r, `distance code lengths are ${distanceProblem}`, headerBit);
}

/** Bad header data, unless the header ran past the end of the source: then it is truncated. */
function badHeader(r: Reader, what: string, bitOffset: number): SeekzError {
  checkOverrun(r);
  return fail('DEFLATE_BAD_DATA', what, bitOffset);
}

/**
 * The hot loop. Decodes literal/length symbols (and distances) until the end-of-block code,
 * returning true, or until fewer than SYMBOL_MARGIN_BYTES bytes are buffered, returning false so
 * that the caller can refill. At the end of the source it runs into the zero padding instead and
 * reports truncation once the bits used pass the real data.
 *
 * The accumulator never holds more than 31 bits and entries stay below 2^31, so the signed `>>`
 * is exact here; it lets V8 keep everything int32 (`>>>` measured about 15% slower).
 */
function decodeSymbols(r: Reader, literal: Int32Array, distance: Int32Array): boolean {
  const { buf, eof } = r;
  const dataBits = r.dataLen * 8;
  const softLimit = eof ? r.dataLen : r.dataLen - SYMBOL_MARGIN_BYTES;
  const baseBit = r.bufStart * 8;
  let pos = r.pos;
  let bitBuf = r.bitBuf;
  let bitCount = r.bitCount;
  let out = r.out;
  const storedEnd = r.storedEnd; // stored blocks never end inside this loop
  const literalMask = (1 << LITERAL_ROOT) - 1;
  const distanceMask = (1 << DISTANCE_ROOT) - 1;
  let ended = false;

  for (;;) {
    if (pos > softLimit) {
      if (!eof) break;
      if (pos * 8 - bitCount > dataBits) throw fail('DEFLATE_TRUNCATED', baseBit + dataBits);
    }
    while (bitCount < 24) {
      bitBuf |= buf[pos++] << bitCount;
      bitCount += 8;
    }
    let found = literal[bitBuf & literalMask];
    if (((found >> KIND_SHIFT) & 7) === KIND_LINK) {
      found = literal[(found >> VALUE_SHIFT) + ((bitBuf >> LITERAL_ROOT) & ((1 << ((found >> EXTRA_SHIFT) & 15)) - 1))];
    }
    const kind = (found >> KIND_SHIFT) & 7;
    if (kind === KIND_LITERAL) {
      const n = found & 15;
      bitBuf >>= n;
      bitCount -= n;
      out += found >> VALUE_SHIFT;
      continue;
    }
    if (kind === KIND_BASE) {
      let n = found & 15;
      bitBuf >>= n;
      bitCount -= n;
      n = (found >> EXTRA_SHIFT) & 15;
      const length = (found >> VALUE_SHIFT) + (bitBuf & ((1 << n) - 1));
      bitBuf >>= n;
      bitCount -= n;

      while (bitCount < 24) {
        bitBuf |= buf[pos++] << bitCount;
        bitCount += 8;
      }
      found = distance[bitBuf & distanceMask];
      if (((found >> KIND_SHIFT) & 7) === KIND_LINK) {
        found = distance[(found >> VALUE_SHIFT) + ((bitBuf >> DISTANCE_ROOT) & ((1 << ((found >> EXTRA_SHIFT) & 15)) - 1))];
      }
      if (((found >> KIND_SHIFT) & 7) !== KIND_BASE) {
        if (eof && pos * 8 - bitCount + (found & 15) > dataBits) throw fail('DEFLATE_TRUNCATED', baseBit + dataBits);
        throw fail('DEFLATE_BAD_DATA', invalidSymbol('distance', found >> VALUE_SHIFT), baseBit + pos * 8 - bitCount);
      }
      const codeBits = found & 15;
      bitBuf >>= codeBits;
      bitCount -= codeBits;
      n = (found >> EXTRA_SHIFT) & 15;
      if (bitCount < n) {
        bitBuf |= buf[pos++] << bitCount;
        bitCount += 8;
        if (bitCount < n) {
          bitBuf |= buf[pos++] << bitCount;
          bitCount += 8;
        }
      }
      const dist = (found >> VALUE_SHIFT) + (bitBuf & ((1 << n) - 1));
      bitBuf >>= n;
      bitCount -= n;
      if (dist > out) {
        if (eof && pos * 8 - bitCount > dataBits) throw fail('DEFLATE_TRUNCATED', baseBit + dataBits);
        const distanceBit = baseBit + pos * 8 - bitCount - codeBits - n;
        throw fail('DEFLATE_BAD_DATA', `distance ${dist} reaches before the start of the stream (${out} bytes so far)`, distanceBit);
      }
      if (out - dist < storedEnd) noteBackReference(r, out - dist, out - dist + length, out);
      out += length;
      continue;
    }
    if (kind === KIND_END) {
      const n = found & 15;
      bitBuf >>= n;
      bitCount -= n;
      ended = true;
      break;
    }
    // An invalid pattern that reaches into the zero padding means the data ran out, not bad data.
    if (eof && pos * 8 - bitCount + (found & 15) > dataBits) throw fail('DEFLATE_TRUNCATED', baseBit + dataBits);
    throw fail('DEFLATE_BAD_DATA', invalidSymbol('literal/length', found >> VALUE_SHIFT), baseBit + pos * 8 - bitCount);
  }

  r.pos = pos;
  r.bitBuf = bitBuf;
  r.bitCount = bitCount;
  r.out = out;
  if (ended) checkOverrun(r);
  return ended;
}

/**
 * Records that the match producing output at `at` reads output bytes [from, to) in every stored
 * block those bytes meet. Bytes at or past `at` (an overlapping copy) are never stored bytes:
 * stored blocks all end at or before `at`.
 */
function noteBackReference(r: Reader, from: number, to: number, at: number): void {
  const blocks = r.storedBlocks;
  for (let index = lastAtOrBefore(blocks, (block) => block.outStart, from); index < blocks.length; index++) {
    const block = blocks[index]!;
    if (block.outStart >= to) break;
    const start = Math.max(from, block.outStart);
    const end = Math.min(to, endOf(block));
    if (start < end) {
      if (!block.references) {
        block.references = { ranges: [] };
        r.onReferenced?.(block);
      }
      addReference(block, start, end, at);
    }
    const { watch } = r;
    if (watch && !watch.hit && start < watch.end && watch.start < end) watch.hit = { at, from: start, to: end };
  }
}

function endOf(block: DeflateBlock): number {
  return block.outStart + block.outLength;
}

function addReference(block: DeflateBlock, start: number, end: number, by: number): void {
  const { ranges } = block.references!;
  // Merge with every range that overlaps or touches [start, end); keep the earliest reader.
  let first = 0;
  while (first < ranges.length && ranges[first]!.end < start) first++;
  let last = first;
  while (last < ranges.length && ranges[last]!.start <= end) {
    const range = ranges[last]!;
    start = Math.min(start, range.start);
    end = Math.max(end, range.end);
    by = Math.min(by, range.by);
    last++;
  }
  ranges.splice(first, last - first, { start, end, by });
  if (ranges.length > MAX_REFERENCE_RANGES) {
    const earliest = Math.min(...ranges.map((range) => range.by));
    ranges.splice(0, ranges.length, { start: block.outStart, end: endOf(block), by: earliest });
  }
}

function invalidSymbol(alphabet: string, symbol: number): string {
  return symbol === NO_SYMBOL ? `bit pattern with no ${alphabet} code` : `invalid ${alphabet} symbol ${symbol}`;
}
