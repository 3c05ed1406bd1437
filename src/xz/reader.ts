import { fail, type SeekzError } from '../errors.js';
import { createBlockCache, type BlockCache } from '../source/block-cache.js';
import { clipRead, readRanges, type Source } from '../source/source.js';
import type { XzDecodeJob } from '../workers/jobs.js';
import { inProcessRunner } from '../workers/in-process.js';
import { releaseXzCoders } from './block-codec.js';
import { createWorkerPool, type WorkerPool } from '../workers/pool.js';
import { lastAtOrBefore } from '../search.js';
import { isAllZero } from '../zeros.js';
import { announceDecode, identicalDecode, isVerifiedZero, mayBeZeroBlock, rememberZero } from './zero-blocks.js';
import {
  FOOTER_MAGIC,
  HEADER_MAGIC,
  STREAM_FOOTER_SIZE,
  STREAM_HEADER_SIZE,
  checkSize,
  padding4,
  parseBlockHeader,
  parseIndex,
  parseStreamFooter,
  parseStreamHeader,
} from './format.js';

export interface XzBlock {
  number: number; // 1-based across the file, as xz --list counts
  stream: number; // 1-based
  uStart: number;
  uSize: number;
  /** File offset of the block header. */
  offset: number;
  unpaddedSize: number;
  /** Bytes in the file: unpadded size plus block padding. */
  totalSize: number;
  checkId: number;
}

export interface XzStream {
  number: number;
  offset: number;
  size: number; // header through footer
  padding: number; // stream padding after it
  checkId: number;
  blocks: number;
}

export interface XzSource extends Source {
  readonly blocks: XzBlock[];
  readonly streams: XzStream[];
  readonly fileSize: number;
  readonly cache: BlockCache;
  /** Index of the block holding uncompressed `offset` (binary search). */
  locate(offset: number): number;
  /** The decoded bytes of one block (cached), once the sizes of the blocks before it are confirmed. */
  readBlock(index: number): Promise<Uint8Array>;
  /**
   * Resolves once the records of every block before `index` are confirmed (header reads, as for
   * a read): for the NBD server, which answers BLOCK_STATUS from blocks already in the cache.
   */
  confirmBefore(index: number): Promise<void>;
  /** Starts the decoder threads now (they start with the first decode otherwise): for a server, before its first client. */
  startThreads(): void;
  /**
   * The decoded bytes of one block, bypassing the cache and the check of the blocks before it:
   * for sequential passes, which decode (and so confirm) every block before they emit a later one.
   * `into`, when given, is a buffer the caller gives up (it is moved to the decoder) to decode into.
   */
  decodeBlock(index: number, into?: ArrayBuffer): Promise<Uint8Array>;
  /**
   * As decodeBlock, but the decoding thread writes the block into `to.fd` at `to.position` as it
   * decodes (the native engine; holes for zero 4 KiB blocks) and the result is undefined. A block small
   * enough to be a zero block is decoded as by decodeBlock and returned, for the caller to write
   * (or not: a verified zero block comes back as zeros without a decode).
   */
  decodeBlockTo(index: number, to: NonNullable<XzDecodeJob['to']>): Promise<Uint8Array | undefined>;
  /**
   * True when block `index` is known to be all zeros without decoding it (its bytes equal those of
   * a block verified as zeros, zero-blocks.ts); it reads at most the block's own few bytes and
   * never decodes. False says only "not known": a first zero block is learned by decoding it.
   */
  knownZeroBlock(index: number): Promise<boolean>;
  /**
   * Holds every index record against its block header (one small read a block, no decoding), as
   * `xz --list -vv` reads them: for `seekz info`, which states the sizes without reading data.
   */
  checkHeaders(): Promise<void>;
  /** See Source.zeroRanges: answered from the index and compressed-byte comparisons (zero-blocks.ts). */
  zeroRanges(offset: number, length: number): Promise<Array<{ offset: number; length: number }>>;
  close(): Promise<void>;
}

export interface XzReaderOptions {
  /** Bytes of decoded blocks to keep. Default 128 MiB (8 blocks of 16 MiB). */
  cacheSize?: number;
  /** Largest block to decode in one piece. Default 512 MiB. */
  maxBlock?: number;
  /** Decoder threads; blocks decode off the main thread. Default 2. */
  threads?: number;
  /** Share a pool instead of starting one (it is then not closed by close()). */
  pool?: WorkerPool;
}

export const DEFAULT_CACHE_SIZE = 128 * 2 ** 20;
export const DEFAULT_MAX_BLOCK = 512 * 2 ** 20;

/**
 * Reads the layout of an .xz file from its end: each stream's footer, then its index, then its
 * header, walking backwards over stream padding, so that any byte can be found by binary search
 * and one block decode. Reads: 12 + index + 12 bytes per stream, and nothing of the blocks.
 */
export async function readXzLayout(source: Source): Promise<{ blocks: XzBlock[]; streams: XzStream[] }> {
  const streams: Omit<XzStream, 'number'>[] = [];
  const streamBlocks: Omit<XzBlock, 'number' | 'stream' | 'uStart'>[][] = [];
  let end = source.size;
  if (end % 4 !== 0) throw fail('XZ_BAD_DATA', `file size ${end} is not a multiple of four, so the file is truncated or has trailing garbage`, end);
  if (end === 0) throw fail('XZ_TRUNCATED', 'stream header', 0);
  while (end > 0) {
    // Stream padding: zero bytes in groups of four before a footer (§2.2). A footer ends in
    // "YZ", so only a tail of zeros calls for the padding scan; otherwise the first read is the footer.
    let padding = 0;
    let footerBytes = await source.read(Math.max(0, end - STREAM_FOOTER_SIZE), Math.min(end, STREAM_FOOTER_SIZE));
    if (footerBytes.subarray(footerBytes.length - 4).every((byte) => byte === 0)) {
      padding = await paddingBefore(source, end);
      end -= padding;
      if (end === 0) throw fail('XZ_BAD_DATA', 'the file holds only stream padding', 0);
      footerBytes = await source.read(Math.max(0, end - STREAM_FOOTER_SIZE), Math.min(end, STREAM_FOOTER_SIZE));
    }
    if (end < STREAM_HEADER_SIZE + STREAM_FOOTER_SIZE) throw fail('XZ_TRUNCATED', 'stream', 0);
    const footerAt = end - STREAM_FOOTER_SIZE;
    if (footerBytes[10] !== FOOTER_MAGIC[0] || footerBytes[11] !== FOOTER_MAGIC[1]) throw fail('XZ_BAD_FOOTER', footerAt);
    const footer = parseStreamFooter(footerBytes, footerAt);
    const indexAt = footerAt - footer.indexSize;
    if (indexAt < STREAM_HEADER_SIZE) throw fail('XZ_BAD_INDEX', `the footer claims an index of ${footer.indexSize} bytes, more than the file holds before it`, footerAt);
    const records = parseIndex(await source.read(indexAt, footer.indexSize), indexAt);
    let blocksSize = 0;
    for (const record of records) blocksSize += record.unpaddedSize + padding4(record.unpaddedSize);
    const streamAt = indexAt - blocksSize - STREAM_HEADER_SIZE;
    if (streamAt < 0) throw fail('XZ_BAD_INDEX', `its blocks would take ${blocksSize} bytes, more than the ${indexAt} bytes before it`, indexAt);
    const headerBytes = await source.read(streamAt, STREAM_HEADER_SIZE);
    if (streamAt > 0 && !HEADER_MAGIC.every((byte, at) => headerBytes[at] === byte)) {
      throw fail('XZ_BAD_INDEX', `its ${records.length} records put the stream header at offset ${streamAt}, but there is none there: the records do not add up to the blocks`, indexAt);
    }
    const header = parseStreamHeader(headerBytes, streamAt);
    if (header.checkId !== footer.checkId) throw fail('XZ_BAD_DATA', `stream header says check ${header.checkId}, footer says ${footer.checkId}`, streamAt);
    const size = checkSize(header.checkId);
    let offset = streamAt + STREAM_HEADER_SIZE;
    streamBlocks.unshift(
      records.map((record) => {
        if (record.unpaddedSize < size + 1 + 8) throw fail('XZ_BAD_INDEX', `a record's unpadded size ${record.unpaddedSize} is too small`, indexAt);
        const block = { offset, unpaddedSize: record.unpaddedSize, totalSize: record.unpaddedSize + padding4(record.unpaddedSize), checkId: header.checkId, uSize: record.uncompressedSize };
        offset += block.totalSize;
        return block;
      }),
    );
    streams.unshift({ offset: streamAt, size: end - streamAt, padding, checkId: header.checkId, blocks: records.length });
    end = streamAt;
  }
  const blocks: XzBlock[] = [];
  let uStart = 0;
  streamBlocks.forEach((list, streamIndex) => {
    for (const block of list) {
      if (!Number.isSafeInteger(uStart + block.uSize)) throw fail('XZ_BAD_INDEX', 'uncompressed sizes add up to more than 2^53', block.offset);
      blocks.push({ ...block, number: blocks.length + 1, stream: streamIndex + 1, uStart });
      uStart += block.uSize;
    }
  });
  return { blocks, streams: streams.map((stream, index) => ({ ...stream, number: index + 1 })) };
}

/** Zero bytes, in whole groups of four, that end just before `end`. */
async function paddingBefore(source: Source, end: number): Promise<number> {
  let padding = 0;
  for (;;) {
    const window = Math.min(end - padding, 4096);
    const tail = await source.read(end - padding - window, window);
    let zeros = 0;
    while (zeros < tail.length && tail[tail.length - 1 - zeros] === 0) zeros++;
    const whole = zeros - (zeros % 4);
    padding += whole;
    if (whole < window || padding === end) return padding;
  }
}

const UNKNOWN: number = 0;
const ZERO: number = 1;
const NOT_ZERO: number = 2;

/** Block headers checked at a time while confirming the blocks before a random read. */
const CONFIRM_WINDOW = 8;
/** A block header is at most 1024 bytes (§3.1.1: size byte 0xff). */
const MAX_BLOCK_HEADER = 1024;
/**
 * Block headers read in one readRanges call (over HTTP: one multi-range request), and the bytes
 * read of each: enough for a header with both sizes and a filter chain of a few filters; a
 * longer one is read again whole.
 */
const HEADER_BATCH = 200;
const HEADER_HEAD = 64;

/**
 * Opens an .xz file (any: multi-stream, padded, with or without sizes in block headers) as a Source.
 *
 * Invariant: no byte leaves read() unless the index record of its block and of every block before
 * it has been confirmed, because a forged record (CRC32 recomputed) would shift every later
 * offset. A block's own decode confirms its record: liblzma checks the block against a one-record
 * index of its unpadded and uncompressed size. Blocks before it are confirmed once, lazily, by
 * their block header (which must parse where the records put it, and agree with the record on
 * both sizes where it has them), or by a decode when the header has no uncompressed size.
 * What this cannot see without decoding every earlier block: a header and a record forged alike
 * (both CRC32s recomputed). Whole passes (cat, seekxz -d/-t) decode every block and catch it.
 * Pinned by test/trust-xz-signals.test.ts ("forged Index record", "decodes to another length").
 */
export async function openXz(source: Source, options: XzReaderOptions = {}): Promise<XzSource> {
  const { blocks, streams } = await readXzLayout(source);
  const maxBlock = options.maxBlock ?? DEFAULT_MAX_BLOCK;
  const cache = createBlockCache(options.cacheSize ?? DEFAULT_CACHE_SIZE);
  let pool = options.pool;
  const ownPool = !pool;
  const size = blocks.length > 0 ? blocks[blocks.length - 1]!.uStart + blocks[blocks.length - 1]!.uSize : 0;

  const locate = (offset: number) => lastAtOrBefore(blocks, (block) => block.uStart, offset);

  /** What is known of each block being all zeros (zero-blocks.ts): UNKNOWN, ZERO or NOT_ZERO. */
  const zero = new Uint8Array(blocks.length);

  /**
   * True when block `index` is known to be all zeros without decoding it: its bytes equal a verified
   * zero block's. With `verifyOnce`, a candidate that matches nothing is decoded (it is small, and
   * zeros decode at memory speed), so the first zero block of a file teaches the rest.
   */
  const isZeroBlock = async (index: number, verifyOnce: boolean): Promise<boolean> => {
    const block = blocks[index]!;
    if (zero[index] !== UNKNOWN) return zero[index] === ZERO;
    if (!mayBeZeroBlock(block)) {
      zero[index] = NOT_ZERO;
      return false;
    }
    if (isVerifiedZero(block, await source.read(block.offset, block.totalSize))) {
      zero[index] = ZERO;
      confirmed[index] = 1;
      return true;
    }
    if (verifyOnce) await decode(block);
    return zero[index] === ZERO;
  };

  /** Blocks whose uncompressed size is confirmed; every block below `confirmedPrefix` is. */
  const confirmed = new Uint8Array(blocks.length);
  let confirmedPrefix = 0;
  let confirming: Promise<void> = Promise.resolve();

  /** A block's bytes as in the file, its header held against its record. */
  const blockBytes = async (block: XzBlock): Promise<Uint8Array> => {
    if (block.uSize > maxBlock) throw fail('XZ_BLOCK_TOO_LARGE', block.number, block.uSize, maxBlock);
    const bytes = await source.read(block.offset, block.totalSize);
    if (bytes.length !== block.totalSize) throw fail('XZ_TRUNCATED', `block ${block.number}`, block.offset);
    // The header is in hand: a record it contradicts is named as such, not as corrupt data. A
    // header that does not parse is left to liblzma, whose error names the block (XZ_DECODE_FAILED).
    try {
      checkHeader(block, bytes);
    } catch (error) {
      if ((error as SeekzError).code === 'XZ_INDEX_MISMATCH') throw error;
    }
    return bytes;
  };

  /**
   * The job for a block and the buffers it moves. In process (workers/in-process.ts) the decoder
   * reads the source's bytes where they are (only read, and nothing else writes them). A worker
   * gets a copy to move (not slice(): on a Buffer that is a view): the source's bytes may be a view
   * of a buffer that is not ours to move. The copy of a 16 MiB block's bytes cost the main thread
   * 99 ms of a 1.4 s `seekxz -d` (node --cpu-prof), most of it page faults of the fresh copy.
   */
  const decodeJob = (block: XzBlock, bytes: Uint8Array) => {
    const inProcess = typeof inProcessRunner('xz-decode') === 'function';
    const own = inProcess ? bytes : new Uint8Array(bytes);
    const job = { kind: 'xz-decode', bytes: own, checkId: block.checkId, unpaddedSize: block.unpaddedSize, expectedSize: block.uSize, block: block.number, offset: block.offset } as const;
    return { job, transfer: inProcess ? [] : [own.buffer as ArrayBuffer] };
  };

  const decodeTo = async (block: XzBlock, to: NonNullable<XzDecodeJob['to']>): Promise<Uint8Array | undefined> => {
    if (mayBeZeroBlock(block)) return decode(block);
    const { job, transfer } = decodeJob(block, await blockBytes(block));
    pool ??= createWorkerPool(options.threads ?? 2);
    await pool.run({ ...job, to }, transfer);
    confirmed[block.number - 1] = 1;
    return undefined;
  };

  const decode = async (block: XzBlock, into?: ArrayBuffer): Promise<Uint8Array> => {
    const bytes = await blockBytes(block);
    const candidate = mayBeZeroBlock(block);
    if (candidate) {
      await identicalDecode(block, bytes);
      if (isVerifiedZero(block, bytes)) {
        confirmed[block.number - 1] = 1;
        zero[block.number - 1] = ZERO;
        return new Uint8Array(block.uSize);
      }
    }
    pool ??= createWorkerPool(options.threads ?? 2);
    const lend = into && into.byteLength >= block.uSize ? into : undefined;
    const { job, transfer } = decodeJob(block, bytes);
    const running = pool.run({ ...job, into: lend }, lend ? [...transfer, lend] : transfer);
    if (candidate) announceDecode(block, bytes, running);
    const { data } = await running;
    if (data.length !== block.uSize) throw fail('XZ_SIZE_MISMATCH', block.number, block.uSize, data.length);
    confirmed[block.number - 1] = 1;
    if (candidate) {
      const allZero = isAllZero(data);
      zero[block.number - 1] = allZero ? ZERO : NOT_ZERO;
      if (allZero) rememberZero(block, bytes);
    }
    return data;
  };

  /**
   * Holds one index record against the block header found where the records say the block starts;
   * true when the header states the uncompressed size too, so the record is confirmed whole.
   */
  const checkHeader = (block: XzBlock, bytes: Uint8Array): boolean => {
    const header = parseBlockHeader(bytes, block.offset);
    const check = checkSize(block.checkId);
    const mismatch = (what: string) => fail('XZ_INDEX_MISMATCH', block.number, block.unpaddedSize, block.uSize, block.offset, what);
    if (header.size + 1 + check > block.unpaddedSize) throw mismatch(`it leaves no room for the ${header.size}-byte block header and a ${check}-byte check`);
    if (header.compressedSize !== undefined && header.size + header.compressedSize + check !== block.unpaddedSize) {
      throw mismatch(`the block header says header ${header.size} + compressed ${header.compressedSize} + check ${check} = ${header.size + header.compressedSize + check} bytes`);
    }
    if (header.uncompressedSize === undefined) return false;
    if (header.uncompressedSize !== block.uSize) throw mismatch(`the block header says ${header.uncompressedSize} bytes uncompressed`);
    return true;
  };

  const readHeader = (block: XzBlock) => source.read(block.offset, Math.min(MAX_BLOCK_HEADER, block.totalSize));

  /** The headers of `batch`, a head of each in one readRanges call; a header longer than its head read again, whole. */
  const readHeaders = async (batch: XzBlock[]): Promise<Uint8Array[]> => {
    const heads = await readRanges(source, batch.map((block) => ({ offset: block.offset, length: Math.min(HEADER_HEAD, block.totalSize) })));
    // Byte 0 is the header size: (byte + 1) × 4 (§3.1.1).
    return Promise.all(
      heads.map((head, at) => {
        const block = batch[at]!;
        const size = Math.min((head[0]! + 1) * 4, block.totalSize);
        return size > head.length ? source.read(block.offset, size) : head;
      }),
    );
  };

  const confirmBlock = async (block: XzBlock): Promise<void> => {
    if (confirmed[block.number - 1]) return;
    if (checkHeader(block, await readHeader(block))) {
      confirmed[block.number - 1] = 1;
      return;
    }
    await decode(block); // no uncompressed size in the header: only decoding can confirm it
  };

  /**
   * Resolves once every block before `index` is confirmed: the headers of up to HEADER_BATCH
   * unconfirmed blocks in one readRanges call, then the blocks whose header has no uncompressed
   * size decoded, a few at a time.
   */
  const confirmBefore = (index: number): Promise<void> => {
    while (confirmedPrefix < index && confirmed[confirmedPrefix]) confirmedPrefix++;
    if (confirmedPrefix >= index) return Promise.resolve();
    const run = confirming.catch(() => {}).then(async () => {
      while (confirmedPrefix < index) {
        const batch = blocks.slice(confirmedPrefix, index).filter((block) => !confirmed[block.number - 1]).slice(0, HEADER_BATCH);
        const headers = await readHeaders(batch);
        const undecided: XzBlock[] = [];
        batch.forEach((block, at) => (checkHeader(block, headers[at]!) ? (confirmed[block.number - 1] = 1) : undecided.push(block)));
        for (let at = 0; at < undecided.length; at += CONFIRM_WINDOW) await Promise.all(undecided.slice(at, at + CONFIRM_WINDOW).map((block) => decode(block)));
        while (confirmedPrefix < index && confirmed[confirmedPrefix]) confirmedPrefix++;
      }
    });
    confirming = run;
    return run;
  };

  // A spare buffer (the cache recycles them only when the NBD server turned that on) saves the
  // page faults of a fresh one.
  const cachedDecode = (index: number) => cache.get(index, (spare) => decode(blocks[index]!, spare(blocks[index]!.uSize)));
  const readBlock = async (index: number) => {
    await confirmBefore(index);
    return cachedDecode(index);
  };

  return {
    size,
    blocks,
    streams,
    fileSize: source.size,
    cache,
    locate,
    readBlock,
    confirmBefore,
    startThreads: () => void (pool ??= createWorkerPool(options.threads ?? 2)),
    decodeBlock: (index, into) => decode(blocks[index]!, into),
    decodeBlockTo: (index, to) => decodeTo(blocks[index]!, to),
    knownZeroBlock: (index) => isZeroBlock(index, false),
    async checkHeaders() {
      for (let at = 0; at < blocks.length; at += HEADER_BATCH) {
        const batch = blocks.slice(at, at + HEADER_BATCH);
        (await readHeaders(batch)).forEach((header, index) => checkHeader(batch[index]!, header));
      }
    },
    async read(offset, length) {
      const count = clipRead(size, offset, length);
      const out = new Uint8Array(count);
      const first = count > 0 ? locate(offset) : 0;
      // The blocks of this read confirm one another by their decodes: the read fails if any does.
      // The blocks before them are confirmed while these decode (one round trip over HTTP, not
      // two); no byte is returned before both have settled.
      const pieces: Promise<void>[] = [confirmBefore(first)];
      // Blocks whose record says 0 bytes give nothing to the read, but a record forged to 0 would
      // shift every later offset, or (at the end) cut the data short: they are confirmed too.
      for (let index = first, done = 0; index < blocks.length && (done < count || blocks[index]!.uSize === 0); index++) {
        const block = blocks[index]!;
        if (block.uSize === 0) {
          pieces.push(confirmBlock(block));
          continue;
        }
        const within = offset + done - block.uStart;
        const take = Math.min(count - done, block.uSize - within);
        const at = done;
        // `out` starts as zeros: a zero block has nothing to copy.
        const copy = async () => {
          if (!(await isZeroBlock(index, false))) out.set((await cachedDecode(index)).subarray(within, within + take), at);
        };
        if (take > 0) pieces.push(copy());
        done += take;
      }
      // Every decode of this read settles before it fails: a failed read leaves no worker busy on
      // its behalf, so a caller that exits on the error does not exit under a native call.
      const failed = (await Promise.allSettled(pieces)).find((result) => result.status === 'rejected');
      if (failed) throw failed.reason;
      return out;
    },
    async zeroRanges(offset, length) {
      const count = clipRead(size, offset, length);
      const ranges: { offset: number; length: number }[] = [];
      if (count === 0) return ranges;
      const first = locate(offset);
      // Offsets rest on the records before them, as for read().
      await confirmBefore(first);
      for (let index = first; index < blocks.length && blocks[index]!.uStart < offset + count; index++) {
        const block = blocks[index]!;
        if (block.uSize === 0 || !(await isZeroBlock(index, true))) continue;
        const start = Math.max(offset, block.uStart);
        const end = Math.min(offset + count, block.uStart + block.uSize);
        const last = ranges[ranges.length - 1];
        if (last && last.offset + last.length === start) last.length += end - start;
        else ranges.push({ offset: start, length: end - start });
      }
      return ranges;
    },
    async close() {
      if (ownPool && pool) await pool.close();
      releaseXzCoders();
      await source.close?.();
    },
  };
}
