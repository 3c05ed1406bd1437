/**
 * Opens a .zst file as a Source of its uncompressed bytes.
 *
 * How frames are found, cheapest first:
 *  - seekable (it ends in the seekable magic): the seek table, read from the end in two bounded
 *    fetches (the 9-byte footer, then the table it sizes), its entries held against the file size;
 *  - otherwise the frame headers, walked front to back (a few bytes per block, nothing decoded):
 *    enough when every frame states its content size (zstd's own files, pzstd, `cat a.zst b.zst`);
 *  - otherwise one checked decoding pass on open learns the size, and the file is read as a stream.
 *
 * Invariant: no byte leaves read() unchecked. A frame is decoded whole (in the pool: libzstd on
 * libuv's thread pool, or fzstd on a worker thread) and
 * must give exactly the size its index claims, with its own Content_Checksum verified and, where
 * the seek table has one, the table's checksum too (XXH64 of the data when the frame has none).
 * A frame larger than `maxFrame`, or a file without sizes, is streamed through libzstd (which
 * checks each frame's checksum) and read front to back only: a read elsewhere fails with
 * ZSTD_NOT_SEEKABLE, which names seekzstd. Pinned by test/zstd.test.ts.
 *
 * Placement: frame k's bytes go out at its uStart, the sum of the sizes claimed for the frames
 * before it, and a right frame at a wrong place is a wrong byte. So before frame k is served (or
 * reported as a zero range) every frame before it has its size proven once: decoded to that size,
 * or proven zero, or, in a seek table, equal to the Frame_Content_Size of its own header (the
 * table and the header are written apart, and a lie told by both leaves that frame undecodable).
 * Plain multi-frame files have only the header's claim, so their frames are decoded, once, to
 * prove it. Pinned by test/zstd.test.ts ("a seek table that moves bytes between frames").
 */
import { fail, type SeekzError } from '../errors.js';
import { lastAtOrBefore } from '../search.js';
import { createBlockCache, type BlockCache } from '../source/block-cache.js';
import { clipRead, readRanges, type Source } from '../source/source.js';
import { createWorkerPool, type WorkerPool } from '../workers/pool.js';
import { isAllZero } from '../zeros.js';
import type { ZstdDecodeBatchJob } from '../workers/jobs.js';
import { decodeBatch, streamDecoder } from './codec.js';
import { FRAME_MAGIC_BYTES, isSkippableMagic, parseFrameHeader, parseSeekTable, parseSeekTableFooter, SEEK_TABLE_FOOTER_SIZE, seekTableSize, walkFrame, MAX_FRAME_HEADER, type FrameHeader } from './format.js';

export interface ZstdFrame {
  /** 1-based, counting data frames only (as zstd -lv). */
  number: number;
  /** File offset of the frame. */
  offset: number;
  compressedSize: number;
  uStart: number;
  uSize: number;
  /** The seek table's checksum for it (low 32 bits of XXH64 of its data), when there is one. */
  tableChecksum?: number;
}

export type ZstdLayout = 'seekable' | 'frames' | 'stream';

export interface ZstdSource extends Source {
  readonly layout: ZstdLayout;
  readonly frames: ZstdFrame[];
  /** Skippable frames seen while walking (seekable files: the seek table only). */
  readonly skippableFrames: number;
  readonly fileSize: number;
  readonly cache: BlockCache;
  /** Whether the seek table carries checksums (seekable layout). */
  readonly tableChecksums: boolean;
  locate(offset: number): number;
  /** One frame's bytes, decoded whole and checked (cached). */
  readFrame(index: number): Promise<Uint8Array>;
  /**
   * Frames `first` … `first + count - 1` (none streamed) decoded and checked in one pool job,
   * bypassing the cache: for whole passes (seekzstd -d, -t). `reuse` offers the buffers
   * of an earlier run (its compressed span and its output), taken when large enough; `data` is the
   * frames' bytes one after another, a view of `out`. With `here`, the frames decode on this
   * thread instead (the same checks), so a whole pass can use the main thread as one of its cores.
   * With `to` (in process only: the addon) the frames go to a file instead, each written once it
   * checked out (ZstdDecodeBatchJob's `to`), `out` holds one frame at a time, and `data` is empty.
   */
  decodeRun(first: number, count: number, reuse?: DecodeRunBuffers, here?: boolean, to?: ZstdDecodeBatchJob['to']): Promise<DecodeRunBuffers & { data: Uint8Array }>;
  /** Starts the decoder threads now (they start with the first decode otherwise): for a server, before its first client. Only the fallback (fzstd) has worker threads to start. */
  startThreads(): void;
  /** Whether frame `index` is read as a stream (too large to decode whole, or no sizes). */
  isStreamed(index: number): boolean;
  /**
   * Whether frame `index` is proven all zero: its compressed bytes (and table entry) are those of a
   * frame already decoded, checked and found all zero (seekzstd writes every zero frame of a size
   * as the same bytes). False means unknown, not non-zero.
   */
  isZeroFrame(index: number): Promise<boolean>;
  /** The frame header of frame `index` (for seekz info). */
  frameHeader(index: number): Promise<FrameHeader>;
  zeroRanges(offset: number, length: number): Promise<Array<{ offset: number; length: number }>>;
  close(): Promise<void>;
}

export interface DecodeRunBuffers {
  bytes: Uint8Array;
  out: Uint8Array;
}

export interface ZstdReaderOptions {
  /** Bytes of decoded frames to keep. Default 64 MiB. */
  cacheSize?: number;
  /** Largest frame decoded in one piece (default 512 MiB); larger ones are read as a stream. */
  maxFrame?: number;
  /** Decoder threads. Default 2. */
  threads?: number;
  pool?: WorkerPool;
}

export const DEFAULT_ZSTD_CACHE = 64 * 2 ** 20;
export const DEFAULT_MAX_FRAME = 512 * 2 ** 20;
/** Bytes read per step while streaming. */
const STREAM_READ = 1 << 20;
/** Frame headers read at once (at most MAX_FRAME_HEADER bytes each) while proving placement, and frames proven side by side. */
const PLACE_BATCH = 200;
/** Bytes of zero-frame candidates read at once (a 1 MiB zero frame takes a few dozen). */
const ZERO_READ_AHEAD = 64 << 10;
const PROVE_WINDOW = 32;

interface Layout {
  layout: ZstdLayout;
  frames: ZstdFrame[];
  skippable: number;
  checksums: boolean;
}

/** Finds the frames: the seek table when there is one, else the frame headers. */
export async function readZstdLayout(source: Source): Promise<Layout | { layout: 'stream' }> {
  const size = source.size;
  if (size >= SEEK_TABLE_FOOTER_SIZE) {
    const footer = parseSeekTableFooter(await source.read(size - SEEK_TABLE_FOOTER_SIZE, SEEK_TABLE_FOOTER_SIZE), size);
    if (footer) {
      const tableSize = seekTableSize(footer.frames, footer.checksums);
      const table = parseSeekTable(await source.read(size - tableSize, tableSize), size, footer.frames, footer.checksums);
      const frames: ZstdFrame[] = [];
      let offset = 0;
      let uStart = 0;
      for (const entry of table.entries) {
        frames.push({ number: frames.length + 1, offset, compressedSize: entry.compressedSize, uStart, uSize: entry.decompressedSize, tableChecksum: entry.checksum });
        offset += entry.compressedSize;
        uStart += entry.decompressedSize;
      }
      return { layout: 'seekable', frames, skippable: 1, checksums: footer.checksums };
    }
  }
  const frames: ZstdFrame[] = [];
  let skippable = 0;
  let uStart = 0;
  const read = readAhead(source);
  for (let offset = 0; offset < size; ) {
    const frame = await walkFrame(read, offset, size);
    offset += frame.compressedSize;
    if (frame.skippable) {
      skippable++;
      continue;
    }
    if (frame.contentSize === undefined) return { layout: 'stream' };
    frames.push({ number: frames.length + 1, offset: frame.offset, compressedSize: frame.compressedSize, uStart, uSize: frame.contentSize });
    uStart += frame.contentSize;
    if (!Number.isSafeInteger(uStart)) throw fail('ZSTD_BAD_FRAME', frame.offset, 'content sizes add up to more than 2^53');
  }
  return { layout: 'frames', frames, skippable, checksums: false };
}

/** The first read-ahead of a header walk; each further one doubles, up to WALK_CHUNK_MAX. */
const WALK_CHUNK_MIN = 64 << 10;
const WALK_CHUNK_MAX = 4 << 20;

/**
 * The header walk's reads (18 bytes of frame header, 3 of each block header, all in file order)
 * served from one chunk read ahead, which doubles from 64 KiB to 4 MiB: over HTTP a walk then
 * costs a few requests (one per 4 MiB at most) instead of one per uncached block header; memory
 * is one chunk. Measured on a two-frame 26 MB zstd file over loopback HTTP: 84 requests before,
 * see the README's zstd section for after.
 */
function readAhead(source: Source): (offset: number, length: number) => Promise<Uint8Array> {
  let start = 0;
  let chunk: Uint8Array = new Uint8Array(0);
  let next = WALK_CHUNK_MIN;
  return async (offset, length) => {
    if (offset >= start && offset + length <= start + chunk.length) return chunk.subarray(offset - start, offset - start + length);
    if (length > WALK_CHUNK_MAX) return source.read(offset, length);
    start = offset;
    chunk = await source.read(offset, Math.min(Math.max(next, length), source.size - offset));
    next = Math.min(WALK_CHUNK_MAX, next * 2);
    return chunk.subarray(0, Math.min(length, chunk.length));
  };
}

export async function openZstd(source: Source, options: ZstdReaderOptions = {}): Promise<ZstdSource> {
  const found = await readZstdLayout(source);
  const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
  let layout: Layout;
  if (found.layout === 'stream') {
    // No sizes in the headers: one checked pass learns the size; the file is then one stream.
    const uSize = await streamedSize(source);
    layout = { layout: 'stream', frames: [{ number: 1, offset: 0, compressedSize: source.size, uStart: 0, uSize }], skippable: 0, checksums: false };
  } else {
    layout = found;
  }
  const { frames } = layout;
  const size = frames.length > 0 ? frames[frames.length - 1]!.uStart + frames[frames.length - 1]!.uSize : 0;
  const cache = createBlockCache(options.cacheSize ?? DEFAULT_ZSTD_CACHE);
  let pool = options.pool;
  const ownPool = !pool;
  const streamed = (frame: ZstdFrame) => layout.layout === 'stream' || frame.uSize > maxFrame;

  // Frames whose size is proven (see Placement above); frames [0, placedUpTo) all are.
  const sized = new Uint8Array(frames.length);
  let placedUpTo = 0;
  const decode = async (frame: ZstdFrame): Promise<Uint8Array> => {
    const bytes = await source.read(frame.offset, frame.compressedSize);
    if (bytes.length !== frame.compressedSize) throw fail('ZSTD_TRUNCATED', `frame ${frame.number}`, frame.offset);
    // The worker takes it by transfer: a copy (not Buffer#slice, a view), as a source may share its buffer.
    const copy = new Uint8Array(bytes);
    pool ??= createWorkerPool(options.threads ?? 2);
    const { data } = await pool.run({ kind: 'zstd-decode', frame: copy, expectedSize: frame.uSize, number: frame.number, offset: frame.offset, tableChecksum: frame.tableChecksum }, [copy.buffer as ArrayBuffer]);
    sized[frame.number - 1] = 1;
    return data;
  };
  const needsProof = (index: number) => !sized[index] && !streamed(frames[index]!); // a streamed frame is read front to back, its size checked at its end
  const headRange = (frame: ZstdFrame) => ({ offset: frame.offset, length: Math.min(MAX_FRAME_HEADER, frame.compressedSize) });
  /** `head`: the frame's first bytes when already read (ensurePlaced reads a batch of them at once). */
  const proveSize = async (index: number, head?: Uint8Array): Promise<void> => {
    const frame = frames[index]!;
    if (!needsProof(index)) return;
    if (layout.layout === 'seekable') {
      let header: FrameHeader;
      try {
        header = parseFrameHeader(head ?? (await source.read(frame.offset, headRange(frame).length)), frame.offset);
      } catch (error) {
        // Where the table puts a frame there is none: the same failure its decode would give.
        const { message } = error as SeekzError;
        throw fail('ZSTD_DECODE_FAILED', frame.number, frame.offset, message.replace(/^zstd: /, ''));
      }
      if (header.contentSize !== undefined) {
        if (header.contentSize !== frame.uSize) throw fail('ZSTD_SIZE_CLAIMS', frame.number, frame.offset, frame.uSize, header.contentSize);
        sized[index] = 1;
        return;
      }
    }
    if (!(await isZeroFrame(index))) await readFrame(index);
  };
  const readFrame = (index: number) => cache.get(index, () => decode(frames[index]!));
  let placing: Promise<void> = Promise.resolve();
  /**
   * Proves the sizes of all frames before `index`, once: in a seek table, the headers of up to
   * PLACE_BATCH frames in one readRanges call (over HTTP: one multi-range request); the frames
   * that need a decode, PROVE_WINDOW at a time.
   */
  const ensurePlaced = (index: number): Promise<void> => {
    if (index <= placedUpTo) return Promise.resolve();
    const step = placing.then(async () => {
      while (placedUpTo < index) {
        const end = Math.min(index, placedUpTo + PLACE_BATCH);
        const heads = new Map<number, Uint8Array>();
        if (layout.layout === 'seekable') {
          const unproven = [];
          for (let at = placedUpTo; at < end; at++) if (needsProof(at)) unproven.push(at);
          const read = await readRanges(source, unproven.map((at) => headRange(frames[at]!)));
          unproven.forEach((at, position) => heads.set(at, read[position]!));
        }
        for (let from = placedUpTo; from < end; from += PROVE_WINDOW) {
          const batch: Promise<void>[] = [];
          for (let at = from; at < Math.min(end, from + PROVE_WINDOW); at++) batch.push(proveSize(at, heads.get(at)));
          const failed = (await Promise.allSettled(batch)).find((result) => result.status === 'rejected');
          if (failed) throw failed.reason as SeekzError;
        }
        placedUpTo = end;
      }
    });
    placing = step.catch(() => {});
    return step;
  };
  const decodeRun = async (first: number, count: number, reuse?: DecodeRunBuffers, here = false, to?: ZstdDecodeBatchJob['to']) => {
    const run = frames.slice(first, first + count);
    const head = run[0]!;
    const tail = run[run.length - 1]!;
    const span = tail.offset + tail.compressedSize - head.offset;
    // Room for the run's frames, or with `to` for its largest (one at a time), plus the byte that catches more.
    const room = (to ? run.reduce((most, frame) => Math.max(most, frame.uSize), 0) : run.reduce((sum, frame) => sum + frame.uSize, 0)) + 1;
    // Fresh buffers own their ArrayBuffer whole: the worker takes them by transfer. A compressed
    // span is rounded up to a MiB, so that the spans of later runs, which vary, fit it.
    const bytes = reuse && reuse.bytes.length >= span ? reuse.bytes : new Uint8Array(Math.ceil(span / 2 ** 20) * 2 ** 20);
    const out = reuse && reuse.out.length >= room ? reuse.out : new Uint8Array(room);
    let got: number;
    if (source.readInto) got = await source.readInto(bytes.subarray(0, span), head.offset);
    else {
      const read = await source.read(head.offset, span);
      bytes.set(read);
      got = read.length;
    }
    if (got !== span) throw fail('ZSTD_TRUNCATED', `frame ${run.find((frame) => frame.offset + frame.compressedSize > head.offset + got)!.number}`, head.offset + got);
    const jobFrames = run.map((frame) => ({
      start: frame.offset - head.offset,
      compressedSize: frame.compressedSize,
      expectedSize: frame.uSize,
      number: frame.number,
      offset: frame.offset,
      tableChecksum: frame.tableChecksum,
    }));
    const total = to ? 0 : room - 1;
    if (here) {
      decodeBatch({ bytes, out, frames: jobFrames });
      return { bytes, out, data: out.subarray(0, total) };
    }
    pool ??= createWorkerPool(options.threads ?? 2);
    const reply = await pool.run({ kind: 'zstd-decode-batch', bytes, out, frames: jobFrames, to }, [bytes.buffer as ArrayBuffer, out.buffer as ArrayBuffer]);
    return { bytes: reply.bytes, out: reply.out, data: reply.out.subarray(0, total) };
  };
  const locate = (offset: number) => lastAtOrBefore(frames, (frame) => frame.uStart, offset);

  // A stream in progress: where it is in the uncompressed data, and bytes decoded but not yet read.
  let stream: { frame: number; at: number; readAt: number; decoder: ReturnType<typeof streamDecoder>; pending: Uint8Array[]; end: number } | undefined;
  const readStreamed = async (index: number, within: number, take: number): Promise<Uint8Array> => {
    const frame = frames[index]!;
    if (!stream || stream.frame !== index || stream.at !== within) {
      if (within !== 0) {
        const why =
          layout.layout === 'stream'
            ? `its frames do not state their sizes, so it is read front to back only (asked for offset ${frame.uStart + within}${stream ? `, the stream is at ${frame.uStart + stream.at}` : ''})`
            : `frame ${frame.number} holds ${frame.uSize} bytes, more than the ${maxFrame}-byte limit for one decode, so it is read front to back only (asked for offset ${frame.uStart + within})`;
        throw fail('ZSTD_NOT_SEEKABLE', why);
      }
      stream = { frame: index, at: 0, readAt: frame.offset, decoder: streamDecoder(), pending: [], end: frame.offset + frame.compressedSize };
    }
    const out = new Uint8Array(take);
    let filled = 0;
    while (filled < take) {
      const next = stream.pending[0];
      if (next) {
        const piece = Math.min(next.length, take - filled);
        out.set(next.subarray(0, piece), filled);
        filled += piece;
        if (piece === next.length) stream.pending.shift();
        else stream.pending[0] = next.subarray(piece);
        continue;
      }
      if (stream.readAt >= stream.end) throw fail('ZSTD_SIZE_MISMATCH', frame.number, frame.offset, frame.uSize, stream.at + filled);
      const input = await source.read(stream.readAt, Math.min(STREAM_READ, stream.end - stream.readAt));
      if (input.length === 0) throw fail('ZSTD_TRUNCATED', `frame ${frame.number}`, stream.readAt);
      stream.readAt += input.length;
      stream.pending.push(...stream.decoder.push(input));
    }
    stream.at += take;
    if (stream.at === frame.uSize) {
      // The end of the frame: nothing may be left over, and the decoder must be at a frame end.
      while (stream.readAt < stream.end) {
        const input = await source.read(stream.readAt, Math.min(STREAM_READ, stream.end - stream.readAt));
        stream.readAt += input.length;
        stream.pending.push(...stream.decoder.push(input));
      }
      const extra = stream.pending.reduce((sum, piece) => sum + piece.length, 0);
      if (extra > 0) throw fail('ZSTD_SIZE_MISMATCH', frame.number, frame.offset, frame.uSize, frame.uSize + extra);
      if (!stream.decoder.ended()) throw fail('ZSTD_TRUNCATED', `frame ${frame.number}`, frame.offset + frame.compressedSize);
      stream = undefined;
    }
    return out;
  };

  // Zero frames: 0 unknown, 1 all zero (bytes identical to a frame decoded, checked and found all
  // zero), 2 not or not known. seekzstd writes every zero frame of a size as the same bytes.
  const zeroState = new Uint8Array(frames.length);
  const zeroFrameBytes = new Map<string, Uint8Array>();
  const zeroKey = (frame: ZstdFrame) => `${frame.compressedSize}/${frame.uSize}/${frame.tableChecksum}`;
  // Candidates: in a seek table with checksums, compressed at least 32 to 1, small enough to compare.
  const isZeroCandidate = (frame: ZstdFrame) =>
    frame.tableChecksum !== undefined && !streamed(frame) && frame.compressedSize <= 65536 && frame.compressedSize * 32 <= frame.uSize;
  // The compressed bytes of a candidate and of the candidates right after it, read in one piece of
  // at most ZERO_READ_AHEAD bytes: a whole pass asks about every frame in turn, and one read per
  // frame of a few dozen bytes kept it waiting on the disk (measured: 100 ms of a 180 ms seekzstd -t).
  let ahead: { offset: number; bytes: Uint8Array } | undefined;
  const candidateBytes = async (index: number): Promise<Uint8Array> => {
    const frame = frames[index]!;
    let span = ahead;
    if (!span || frame.offset < span.offset || frame.offset + frame.compressedSize > span.offset + span.bytes.length) {
      let end = index + 1;
      while (end < frames.length && isZeroCandidate(frames[end]!) && frames[end]!.offset + frames[end]!.compressedSize - frame.offset <= ZERO_READ_AHEAD) end++;
      const last = frames[end - 1]!;
      span = ahead = { offset: frame.offset, bytes: await source.read(frame.offset, last.offset + last.compressedSize - frame.offset) };
    }
    return span.bytes.subarray(frame.offset - span.offset, frame.offset - span.offset + frame.compressedSize);
  };
  const isZeroFrame = async (index: number): Promise<boolean> => {
    const frame = frames[index]!;
    if (zeroState[index]) return zeroState[index] === 1;
    if (!isZeroCandidate(frame)) {
      zeroState[index] = 2;
      return false;
    }
    const key = zeroKey(frame);
    const known = zeroFrameBytes.get(key);
    const bytes = await candidateBytes(index);
    let zero: boolean;
    if (known) zero = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(known);
    else {
      // The first of its kind is decoded (its checksums checked) and looked at.
      zero = isAllZero(await readFrame(index));
      if (zero) zeroFrameBytes.set(key, new Uint8Array(bytes));
    }
    zeroState[index] = zero ? 1 : 2;
    if (zero) sized[index] = 1; // the same bytes as a frame decoded to this size
    return zero;
  };

  return {
    layout: layout.layout,
    frames,
    skippableFrames: layout.skippable,
    tableChecksums: layout.checksums,
    size,
    fileSize: source.size,
    cache,
    locate,
    readFrame,
    decodeRun,
    startThreads: () => void (pool ??= createWorkerPool(options.threads ?? 2)),
    isStreamed: (index) => streamed(frames[index]!),
    isZeroFrame,
    async frameHeader(index) {
      let at = frames[index]!.offset;
      // A file read as a stream is one pseudo-frame from offset 0: its first zstd frame may follow skippable ones.
      for (;;) {
        const head = await source.read(at, Math.min(MAX_FRAME_HEADER, source.size - at));
        if (head.length < 8 || !isSkippableMagic(new DataView(head.buffer, head.byteOffset).getUint32(0, true))) {
          const header = parseFrameHeader(head, at);
          // seekz info states the table's sizes: each must be what its own header says.
          const frame = frames[index]!;
          if (layout.layout === 'seekable' && header.contentSize !== undefined && header.contentSize !== frame.uSize) {
            throw fail('ZSTD_SIZE_CLAIMS', frame.number, frame.offset, frame.uSize, header.contentSize);
          }
          return header;
        }
        at += 8 + new DataView(head.buffer, head.byteOffset).getUint32(4, true);
      }
    },
    async read(offset, length) {
      const count = clipRead(size, offset, length);
      const out = new Uint8Array(count);
      if (count === 0) return out;
      // Every frame this read spans is placed: one claiming 0 bytes is never decoded below. A read
      // to the end proves every frame's size: frames claiming 0 bytes at the end would else cut
      // the data short unseen (seekz cat).
      await ensurePlaced(offset + count === size ? frames.length : locate(offset + count - 1));
      const pieces: Promise<void>[] = [];
      // A step that fails in the loop (a zero proof, a stream) lets the decodes already started
      // settle first, so that no worker stays busy on behalf of a failed read.
      const settle = async () => (await Promise.allSettled(pieces.splice(0))).find((result) => result.status === 'rejected');
      try {
        for (let index = locate(offset), done = 0; done < count; index++) {
          const frame = frames[index]!;
          const within = offset + done - frame.uStart;
          const take = Math.min(count - done, frame.uSize - within);
          const at = done;
          done += take;
          if (take <= 0) continue;
          if (zeroState[index] === 1 || (zeroState[index] === 0 && isZeroCandidate(frame) && (await isZeroFrame(index)))) continue; // proven zero: so is the buffer
          if (streamed(frame)) {
            // A stream goes in order: wait for what is before it, then read on.
            const failed = await settle();
            if (failed) throw failed.reason as SeekzError;
            out.set(await readStreamed(index, within, take), at);
            continue;
          }
          const piece = readFrame(index).then((data) => out.set(data.subarray(within, within + take), at));
          piece.catch(() => {}); // handled by settle(), maybe only after a later await in this loop
          pieces.push(piece);
        }
      } catch (error) {
        await settle();
        throw error;
      }
      // Every decode of this read settles before it fails: no worker stays busy on its behalf.
      const failed = await settle();
      if (failed) throw failed.reason as SeekzError;
      return out;
    },
    async zeroRanges(offset, length) {
      const count = clipRead(size, offset, length);
      const ranges: Array<{ offset: number; length: number }> = [];
      if (count === 0 || !layout.checksums) return ranges;
      await ensurePlaced(locate(offset + count - 1));
      for (let index = locate(offset); index < frames.length && frames[index]!.uStart < offset + count; index++) {
        const frame = frames[index]!;
        if (frame.uSize === 0 || !(await isZeroFrame(index))) continue;
        const start = Math.max(offset, frame.uStart);
        const end = Math.min(offset + count, frame.uStart + frame.uSize);
        const last = ranges[ranges.length - 1];
        if (last && last.offset + last.length === start) last.length += end - start;
        else ranges.push({ offset: start, length: end - start });
      }
      return ranges;
    },
    async close() {
      if (ownPool && pool) await pool.close();
      await source.close?.();
    },
  };
}

/** Decodes the whole file once (every frame's checksum checked by libzstd) to learn its size. */
async function streamedSize(source: Source): Promise<number> {
  const decoder = streamDecoder();
  let total = 0;
  for (let at = 0; at < source.size; at += STREAM_READ) {
    for (const piece of decoder.push(await source.read(at, Math.min(STREAM_READ, source.size - at)))) total += piece.length;
  }
  if (!decoder.ended()) throw fail('ZSTD_TRUNCATED', 'the last frame', source.size);
  return total;
}

export { FRAME_MAGIC_BYTES };
