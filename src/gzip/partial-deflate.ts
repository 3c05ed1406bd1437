import { crc32, crc32Combine, crc32Zeros } from '../crc/crc32.js';
import { deflateChunk } from '../deflate/chunk.js';
import { createWorkerPool, defaultThreads } from '../workers/pool.js';
import { fail } from '../errors.js';
import type { SequentialInput } from '../source/sequential.js';
import { orderedWindow } from '../workers/ordered.js';
import { isAllZero } from '../zeros.js';
import { buildGzipHeader, trailerBytes } from './header.js';
import type { Sink } from '../io/sink.js';
import {
  FINAL_EMPTY_BLOCK,
  SEEKZ_SUBFIELD_ID,
  STORED_BLOCK_HEADER,
  STORED_BLOCK_MAX,
  STORED_UNIT,
  emptyMap,
  encodeMap,
  planRegions,
  reserveMapSize,
  type RegionKind,
  type MapPiece,
  type SeekzMap,
  decodeMap,
} from './map.js';

export const DEFAULT_LEVEL = 6;
export const DEFAULT_CHUNK_SIZE = 1 << 20;
/**
 * At most this many stored ranges: with the compressed regions between them, each costs the map
 * about 20 bytes (two region entries, and at least one segment with its CRC-32 each), and the map
 * must fit FEXTRA's 64 KiB whatever the thinning.
 */
const MAX_STORED_RANGES = 2048;


/** One run of the deflate stream that starts with no history: reported as it is written. */
export interface Boundary {
  kind: RegionKind;
  uStart: number;
  uLength: number;
  cStart: number; // within the deflate stream
  cLength: number;
  /** CRC-32 of the run's uncompressed bytes: the map records it, and every read checks it. */
  crc: number;
}

export interface PartialDeflateOptions {
  level?: number;
  memLevel?: number;
  chunkSize?: number;
  threads?: number;
  /** Half-open uncompressed ranges to keep as stored blocks. */
  stored?: { start: number; end: number }[];
  onBoundary?: (boundary: Boundary) => void;
  /** Called after each write with the uncompressed bytes done so far. */
  onProgress?: (done: number) => void;
  /** Stops the worker threads at once when aborted; the write then fails. */
  signal?: AbortSignal;
}

export interface PartialDeflateResult {
  totalLength: number;
  compressedLength: number; // whole file
  crc: number;
  headerLength: number;
  /** The map as a reader will decode it; undefined when the sink could not be revisited. */
  map: SeekzMap | undefined;
  zeroChunks: number;
}

/**
 * Peak resident memory of a writing process, for --help and the bench: the chunks in flight (in
 * and out), plus a measured allowance for the Node runtime (about 100 MiB, V8 heap growth
 * included) and for each chunk being deflated (8 MiB: zlib's state and its output buffer, up to
 * 4 MiB). Chunks deflate on libuv's thread pool, with no worker isolate each (those took about
 * 50 MiB a thread). Measured: 90 MiB on 256 MiB and 98 MiB on 1 GiB at 2 threads and 1 MiB chunks,
 * 126 MiB at 4 threads and 4 MiB chunks.
 */
export function writerMemoryBound(threads: number, chunkSize: number): number {
  const inFlight = 2 * threads + 2;
  return 100 * 2 ** 20 + threads * 8 * 2 ** 20 + inFlight * 2 * chunkSize;
}

interface Piece {
  kind: RegionKind;
  uLength: number;
  bytes: Uint8Array[];
  crc: number;
}

/**
 * Writes one gzip member in which the `stored` ranges are deflate stored blocks (editable in
 * place) and everything else is compressed in independent chunks on worker threads. The output
 * is the same for any thread count: chunk boundaries depend only on the input and the options.
 */
export async function partialDeflate(input: SequentialInput, sink: Sink, options: PartialDeflateOptions = {}): Promise<PartialDeflateResult> {
  const level = options.level ?? DEFAULT_LEVEL;
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const threads = options.threads ?? defaultThreads();
  if (!Number.isInteger(level) || level < 1 || level > 9) throw fail('BAD_ARGUMENT', `level ${level} must be 1 to 9`);
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 4096 || chunkSize > 64 * 1024 * 1024) {
    throw fail('BAD_ARGUMENT', `chunk size ${chunkSize} must be 4 KiB to 64 MiB`);
  }
  const storedRanges = planRegions(Number.MAX_SAFE_INTEGER, options.stored ?? []).filter((region) => region.kind === 'stored');
  if (storedRanges.length > MAX_STORED_RANGES) throw fail('BAD_ARGUMENT', `${storedRanges.length} stored ranges; at most ${MAX_STORED_RANGES}`);
  if (input.size !== undefined) {
    for (const range of storedRanges) {
      if (range.start + range.length > input.size) {
        throw fail('BAD_ARGUMENT', `stored range [${range.start}, ${range.start + range.length}) runs past the end of the input (${input.size} bytes)`);
      }
    }
  }

  const fillable = sink.writeAt !== undefined;
  const reserved = fillable ? reserveMapSize(chunkSize, input.size === undefined ? undefined : planRegions(input.size, options.stored ?? [])) : 2;
  const header = buildGzipHeader({ id: SEEKZ_SUBFIELD_ID, data: emptyMap(reserved) }, level);
  const mapOffset = header.length - reserved;
  await sink.write(header);

  const pool = createWorkerPool(threads, options.signal);
  const zeroBlocks = new Map<number, Uint8Array>();
  const pieces: MapPiece[] = [];
  const maxInFlight = 2 * pool.threads + 2;
  let crc = 0;
  let uWritten = 0;
  let cWritten = 0;
  let zeroChunks = 0;

  const window = orderedWindow<Piece>(maxInFlight, async (piece) => {
    let cLength = 0;
    for (const bytes of piece.bytes) {
      await sink.write(bytes);
      cLength += bytes.length;
    }
    crc = crc32Combine(crc, piece.crc, piece.uLength);
    pieces.push({ kind: piece.kind, uLength: piece.uLength, cLength, crc: piece.crc });
    options.onBoundary?.({ kind: piece.kind, uStart: uWritten, uLength: piece.uLength, cStart: cWritten, cLength, crc: piece.crc });
    uWritten += piece.uLength;
    cWritten += cLength;
    options.onProgress?.(uWritten);
  });
  const push = (piece: Promise<Piece>) => window.push(piece);

  // A few chunk buffers go round: read into one, lend it to a worker, get it back. Allocating one
  // per chunk instead leaves garbage that V8 collects late, and peak memory then grows with input.
  const spare: Uint8Array[] = [];
  const takeBuffer = (length: number) => (length === chunkSize && spare.pop()) || new Uint8Array(length);
  const giveBack = (buffer: Uint8Array) => {
    if (buffer.buffer.byteLength === chunkSize && spare.length < maxInFlight) spare.push(new Uint8Array(buffer.buffer));
  };
  try {
    let position = 0;
    let storedIndex = 0;
    for (;;) {
      const stored = storedRanges[storedIndex];
      if (stored && position >= stored.start) {
        // Inside a stored range: whole stored blocks, read in pieces of one map unit (kept until
        // written), so that each boundary report is one stored segment of the map.
        const end = stored.start + stored.length;
        const want = Math.min(STORED_UNIT, end - position);
        const data = await input.read(new Uint8Array(want));
        if (data.length === 0) break;
        await push(Promise.resolve(storedPiece(data)));
        position += data.length;
        if (position >= end) storedIndex++;
        if (data.length < want) break;
        continue;
      }
      const want = Math.min(chunkSize, (stored ? stored.start : Number.MAX_SAFE_INTEGER) - position);
      const buffer = takeBuffer(chunkSize);
      const data = await input.read(want === chunkSize ? buffer : buffer.subarray(0, want));
      const length = data.length; // read before the buffer moves to a worker thread
      if (length === 0) break;
      position += length;
      if (isAllZero(data)) {
        zeroChunks++;
        let compressed = zeroBlocks.get(length);
        if (!compressed) zeroBlocks.set(length, (compressed = deflateChunk(data, { level, memLevel: options.memLevel })));
        giveBack(buffer);
        await push(Promise.resolve({ kind: 'compressed', uLength: length, bytes: [compressed], crc: crc32Zeros(length) }));
      } else {
        await push(
          pool.run({ kind: 'deflate', data, level, memLevel: options.memLevel }, [data.buffer as ArrayBuffer]).then(({ compressed, crc: chunkCrc, data: returned }) => {
            giveBack(returned);
            return { kind: 'compressed' as const, uLength: length, bytes: [compressed], crc: chunkCrc };
          }),
        );
      }
      if (length < want) break;
    }
    await window.drain();
  } finally {
    await pool.close();
  }

  await sink.write(FINAL_EMPTY_BLOCK);
  cWritten += FINAL_EMPTY_BLOCK.length;
  const trailer = trailerBytes(crc, uWritten);
  await sink.write(trailer);

  const regions = planRegions(uWritten, options.stored ?? []);
  let map: SeekzMap | undefined;
  if (fillable) {
    const payload = encodeMap({ chunkSize, totalLength: uWritten, deflateLength: cWritten, regions, pieces }, reserved);
    await sink.writeAt!(mapOffset, payload);
    map = decodeMap(payload, cWritten);
  }
  return { totalLength: uWritten, compressedLength: header.length + cWritten + trailer.length, crc, headerLength: header.length, map, zeroChunks };
}

/** Stored blocks for `data`, which starts on a stored-block boundary of its range. */
function storedPiece(data: Uint8Array): Piece {
  const bytes: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += STORED_BLOCK_MAX) {
    const length = Math.min(STORED_BLOCK_MAX, data.length - at);
    // BFINAL=0, BTYPE=00, padded to the byte boundary; then LEN and NLEN (RFC 1951 §3.2.4).
    const blockHeader = new Uint8Array(STORED_BLOCK_HEADER);
    blockHeader[1] = length & 0xff;
    blockHeader[2] = length >>> 8;
    blockHeader[3] = ~length & 0xff;
    blockHeader[4] = (~length >>> 8) & 0xff;
    bytes.push(blockHeader, data.subarray(at, at + length));
  }
  return { kind: 'stored', uLength: data.length, bytes, crc: crc32(data) };
}
