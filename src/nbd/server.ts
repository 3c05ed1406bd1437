/**
 * The NBD server. Invariants, each pinned by a test in test/trust-serve-io.test.ts ("NBD memory")
 * or test/nbd.test.ts:
 * - Memory is bounded across all connections together: a READ, CACHE or BLOCK_STATUS takes its
 *   bytes from one server-wide budget (`maxBytesInFlight`) before its data is read, and gives them
 *   back only once its reply has left for the kernel ('drain'), or the client is gone. A
 *   connection waiting for the budget stops reading requests, and its socket is paused once
 *   `READ_AHEAD` bytes of requests are buffered, so a client that sends requests and reads no
 *   replies holds at most its share of the budget, never more.
 * - A request the server will not carry out gets the errno nbdkit gives it (EINVAL for a zero
 *   length, an unknown command or a flag that does not apply; EPERM for a write to a read-only
 *   export), and the connection goes on.
 * - Replies to one request go out in one corked write, so chunks of two replies never interleave.
 * - A read is charged what it will hold when it is granted, not when it arrives (readCost is asked
 *   then), so a block another read is already decoding or has cached is not charged twice.
 * - Decoding ahead of a sequential reader (readAhead) takes its bytes from the same budget, only
 *   when they are free at once, and never delays a request: it is a hint the server may drop.
 * - A hole reply (or a hole in a BLOCK_STATUS answer) comes only from the source's zeroRanges or
 *   from bytes read (or cached) and found zero: never from a guess.
 * - With `peek` (xz, zstd), BLOCK_STATUS decodes nothing: nbdcopy asks for the status of 128 MiB
 *   per connection before it reads them, and blocks decoded to answer fell out of the cache
 *   before they were read (test/nbd-pipeline.test.ts, "status decodes nothing").
 * - Bytes sent as views of cached blocks (`views`) pin those blocks until the kernel has taken
 *   them; blocks pinned that way stay under `maxPinned` bytes server-wide, else a reply is copied
 *   (test/nbd-pipeline.test.ts, "replies from views of cached blocks"). The views come held (the
 *   export holds each block's buffer from the moment it got it) and are released once the kernel
 *   has taken them or they were copied, so a buffer the cache recycles into a later decode is never
 *   one a reply still sends from (test/nbd-pipeline.test.ts, "recycled buffers").
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { SeekzError } from '../errors.js';
import type { Source } from '../source/source.js';
import { isAllZero } from '../zeros.js';
import * as P from './protocol.js';

/** Bytes one BLOCK_STATUS answer reads at most, when it must read to look (no `peek`). */
const STATUS_LIMIT = 4 * 2 ** 20;
/** Extents in one BLOCK_STATUS answer at most (proto.md lets it cover less than asked). */
const MAX_DESCRIPTORS = 4096;
/** What a BLOCK_STATUS answer from the index holds: its reply, MAX_DESCRIPTORS extents at most. */
const STATUS_REPLY = 4 + 8 * (MAX_DESCRIPTORS + 1);

/** What the server exports: a Source of bytes, and for a writable export a way to write and flush. */
export interface NbdExport {
  name: string;
  source: Source;
  /**
   * Bytes a read of [offset, offset + length) holds while it runs: its output plus what it
   * decodes on the way (whole xz blocks). Charged to the server's budget. Default: length.
   */
  readCost?: (offset: number, length: number) => number;
  /**
   * Decoding ahead of a sequential reader, so that decoder threads work while earlier bytes are
   * sent: points `unit` bytes apart (the source's decode unit, such as an xz block), up to
   * `distance` bytes past the end of its reads, at most `inFlight` at a time (the decoder
   * threads). Absent (the default): no read-ahead.
   */
  readAhead?: { unit: number; distance: number; inFlight: number };
  /**
   * Replies without copies: `read` gives the bytes of [offset, offset + length) as views of what
   * the decoder holds already (cached blocks, a shared zero buffer), and the server writes those
   * views to the socket as they are. A view keeps its whole block alive until the kernel has
   * taken it, past the block's eviction from the cache: such blocks are bounded server-wide by
   * `maxPinned` bytes, beyond which a reply is copied instead. Absent: `source.read`.
   */
  views?: { read(offset: number, length: number): Promise<{ parts: Uint8Array[]; release: () => void }>; maxPinned: number };
  /**
   * What BLOCK_STATUS may know without decoding: the decoded bytes from `offset` to the end of
   * their unit when they are cached whole, or else how many bytes from `offset` on are not at
   * hand. With it, BLOCK_STATUS never reads the source: holes are the source's zeroRanges (the
   * index) and the all-zero granules of cached units; all else is reported as data, which a
   * client such as nbdcopy reads and checks for zeros itself. Absent: status reads to look.
   */
  peek?: (offset: number) => Promise<{ bytes: Uint8Array } | { skip: number }>;
  writable?: {
    /** Rejects with a SeekzError (GZIP_NOT_EDITABLE, XZ_NOT_EDITABLE, ZSTD_NOT_EDITABLE) for bytes that cannot change: EPERM. */
    write(offset: number, data: Uint8Array): Promise<void>;
    flush(): Promise<void>;
  };
}

export interface NbdServerOptions {
  /** Granule of base:allocation answers: all-zero granules are reported as holes. Default 64 KiB. */
  statusGranule?: number;
  /** Requests one connection may have in progress at once. Default 16. */
  maxInFlight?: number;
  /**
   * Bytes of reads in progress and replies not yet handed to the kernel, across all connections
   * together. When they are taken, every connection waits before it reads its next request.
   * One request larger than this still runs, alone. Default 64 MiB.
   */
  maxBytesInFlight?: number;
  onClientError?: (error: Error) => void;
}

export const DEFAULT_MAX_BYTES_IN_FLIGHT = 64 * 2 ** 20;
/** Request bytes buffered per connection beyond what the server is waiting for; then the socket is paused. */
const READ_AHEAD = 256 * 1024;
/** Reads larger than this are read and sent in pieces of this size. */
export const PIECE = 4 * 2 ** 20;
let zeros: Uint8Array | undefined;
/**
 * One piece of zeros for replies of known-zero bytes (and exports' views of zero units); never
 * written, so it stays the kernel's zero page, and it pins nothing.
 */
export const zeroPiece = () => (zeros ??= new Uint8Array(PIECE));

/**
 * Buffered exact reads from a socket: `read(n)` resolves with exactly n bytes, or rejects when the
 * peer goes. The socket is paused while more than READ_AHEAD bytes (or the pending read's count)
 * are buffered, so a client cannot queue requests in server memory faster than they are served.
 */
function socketReader(socket: Duplex) {
  const chunks: Buffer[] = [];
  let available = 0;
  let waiter: { count: number; resolve: (bytes: Buffer) => void; reject: (error: Error) => void } | undefined;
  let closed: Error | undefined;
  const take = (count: number) => {
    const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    chunks.length = 0;
    const out = all.subarray(0, count);
    if (all.length > count) chunks.push(all.subarray(count));
    available -= count;
    return out;
  };
  const settle = () => {
    if (waiter && available >= waiter.count) {
      const { count, resolve } = waiter;
      waiter = undefined;
      resolve(take(count));
    } else if (waiter && closed) {
      const { reject } = waiter;
      waiter = undefined;
      reject(closed);
    }
  };
  const regulate = () => {
    if (available < Math.max(READ_AHEAD, waiter?.count ?? 0)) socket.resume();
    else socket.pause();
  };
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    available += chunk.length;
    settle();
    regulate();
  });
  const onGone = () => {
    closed = new Error('nbd: client disconnected');
    settle();
  };
  // A client may half-close after NBD_CMD_DISC; the server still finishes (flush) before closing.
  socket.on('end', onGone);
  socket.on('close', onGone);
  socket.on('error', () => {});
  return {
    read(count: number): Promise<Buffer> {
      if (available >= count) {
        const bytes = take(count);
        regulate();
        return Promise.resolve(bytes);
      }
      if (closed) return Promise.reject(closed);
      return new Promise((resolve, reject) => {
        waiter = { count, resolve, reject };
        regulate();
      });
    },
  };
}

/** A message as the parts it is sent in: headers are small, data is sent as it is, never copied. */
type Parts = Uint8Array[];

function optionReply(option: number, type: number, data: Uint8Array = new Uint8Array(0)): Parts {
  const header = Buffer.alloc(20);
  header.writeBigUInt64BE(P.OPTION_REPLY_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(type, 12);
  header.writeUInt32BE(data.length, 16);
  return [header, data];
}

function chunkHeader(handle: Buffer, flags: number, type: number, payloadLength: number): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(type, 6);
  handle.copy(header, 8);
  header.writeUInt32BE(payloadLength, 16);
  return header;
}

function structuredChunk(handle: Buffer, flags: number, type: number, payload: Uint8Array = new Uint8Array(0)): Parts {
  return [chunkHeader(handle, flags, type, payload.length), payload];
}

function simpleReply(handle: Buffer, error: number, data?: Uint8Array): Parts {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
  header.writeUInt32BE(error, 4);
  handle.copy(header, 8);
  return data ? [header, data] : [header];
}

/**
 * A byte budget shared by every connection of one server. `take(cost)` waits until cost() bytes
 * are free (first come, first served, so a large request is not starved by small ones) and
 * resolves with the function that gives them back. The cost is asked again each time the request
 * is at the head of the queue, so it is what the request holds once granted (a block decoded
 * meanwhile by another read no longer counts). When nothing is taken, any request may go,
 * however large.
 */
function byteBudget(limit: number) {
  let used = 0;
  const queue: { cost: () => number; grant: (release: () => void) => void }[] = [];
  const hold = (bytes: number) => {
    used += bytes;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      used -= bytes;
      pump();
    };
  };
  const fits = (bytes: number) => used === 0 || used + bytes <= limit;
  const pump = () => {
    while (queue.length > 0) {
      const bytes = queue[0]!.cost();
      if (!fits(bytes)) return;
      queue.shift()!.grant(hold(bytes));
    }
  };
  return {
    take(cost: () => number): Promise<() => void> {
      return new Promise((grant) => {
        queue.push({ cost, grant });
        pump();
      });
    },
    /** The bytes at once, or undefined when a request waits or they do not fit: for hints only. */
    tryTake(bytes: number): (() => void) | undefined {
      return queue.length === 0 && used + bytes <= limit ? hold(bytes) : undefined;
    },
  };
}

/** How near the end of an earlier read a read must start to continue it (nbdcopy skips holes). */
const SEQUENTIAL_SLACK = 8 * 2 ** 20;
/** Sequential readers followed at once; a new one replaces the one seen least recently. */
const READ_STREAMS = 8;
/** A reader seen within this time shares the read-ahead distance (nbdcopy's connections read at once). */
const ACTIVE_MS = 1000;

/**
 * Read-ahead for sequential readers, across all connections (nbdcopy's connections share one
 * pass). Once a reader has made two reads in a row (or starts at 0), the server warms points one
 * `unit` apart up to its share of `distance` past the end of its reads: a one-byte read of each
 * makes the source decode the unit holding it, so decoder threads are busy with the next units
 * while this one is sent. At most `inFlight` warm-ups run at once server-wide (the decoder
 * threads), each going to the reader least far ahead, so that with several readers the pool's
 * queue holds no far warm-up in front of a near one. A reader never warms what another reader
 * has read already (nbdcopy's connections copy neighbouring ranges: the first would otherwise
 * decode again, past its range's end, blocks the second has read and let go). Each point is
 * warmed once per reader; each warm-up is charged readCost from the server's budget if the bytes
 * are free at once, and skipped (tried again on the next read) if not. Pinned by
 * test/nbd-pipeline.test.ts ("read-ahead").
 */
function readAheadFor(exported: NbdExport, budget: ReturnType<typeof byteBudget>) {
  const { unit, distance, inFlight } = exported.readAhead ?? { unit: 0, distance: 0, inFlight: 0 };
  type Stream = { start: number; end: number; warmedTo: number; seen: number; warming: boolean };
  const streams: Stream[] = [];
  const size = exported.source.size;
  let warming = 0;
  /** Where the stream's warming stops: its share of `distance` past its end, and never into the range of another reader active now. */
  const limitOf = (stream: Stream, active: Stream[]) => {
    const reach = Math.max(unit, Math.floor(distance / Math.max(1, active.length) / unit) * unit);
    let limit = Math.min(size, stream.end + reach);
    for (const other of active) if (other !== stream && other.start >= stream.end) limit = Math.min(limit, other.start);
    return limit;
  };
  /** Starts warm-ups while there is room: each to the warming reader least far ahead; one that ends makes room for the next. */
  const advance = () => {
    while (warming < inFlight) {
      const now = Date.now();
      const active = streams.filter((other) => now - other.seen < ACTIVE_MS);
      let next: Stream | undefined;
      for (const stream of streams) {
        if (stream.warming && stream.warmedTo < limitOf(stream, active) && (!next || stream.warmedTo - stream.end < next.warmedTo - next.end)) next = stream;
      }
      if (!next) return;
      const release = budget.tryTake(exported.readCost?.(next.warmedTo, 1) ?? 1);
      if (!release) return;
      warming++;
      exported.source
        .read(next.warmedTo, 1)
        .catch(() => {}) // a hint: the read that needs the unit reports its error
        .finally(() => {
          warming--;
          release();
          advance();
        });
      next.warmedTo += unit;
    }
  };
  /** `starts`: false for a request that may only continue a reader already seen (a status query). */
  return (offset: number, length: number, starts = true) => {
    if (unit <= 0 || distance <= 0 || inFlight <= 0) return;
    const end = offset + length;
    let stream = streams.find((candidate) => Math.abs(offset - candidate.end) <= SEQUENTIAL_SLACK);
    if (!stream && !starts) return;
    if (stream) {
      streams.splice(streams.indexOf(stream), 1);
      stream.end = Math.max(stream.end, end);
      stream.seen = Date.now();
      // A reader that jumped ahead (over a hole) resumes warming from where it is.
      stream.warmedTo = Math.max(stream.warmedTo, stream.end);
      stream.warming = true;
    } else {
      if (streams.length === READ_STREAMS) streams.shift();
      // A reader starting at 0 is copying the disk: it is sequential from its first read.
      stream = { start: offset, end, warmedTo: end, seen: Date.now(), warming: offset === 0 };
    }
    streams.push(stream); // most recently seen last
    advance();
  };
}

/** Command flags proto.md defines, and the commands each one applies to. */
const FLAG_APPLIES_TO: Record<number, number[]> = {
  [P.CMD_FLAG_FUA]: [P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES],
  [P.CMD_FLAG_NO_HOLE]: [P.CMD_WRITE_ZEROES],
  [P.CMD_FLAG_DF]: [P.CMD_READ],
  [P.CMD_FLAG_REQ_ONE]: [P.CMD_BLOCK_STATUS],
  [P.CMD_FLAG_FAST_ZERO]: [P.CMD_WRITE_ZEROES],
};

/**
 * A fixed-newstyle NBD server for one export (proto.md): options GO, INFO, LIST, ABORT,
 * EXPORT_NAME, STRUCTURED_REPLY and the base:allocation meta context; commands READ, WRITE,
 * FLUSH, DISC and BLOCK_STATUS. Several clients at once; each may pipeline requests.
 */
export function createNbdServer(exported: NbdExport, options: NbdServerOptions = {}): Server {
  const serveConnection = createNbdHandler(exported, options);
  return createServer({ allowHalfOpen: true }, (socket) => void serveConnection(socket));
}

/**
 * The server as a function of one connection: a socket, or any Duplex (stdin/stdout for nbdkit's
 * -s). Every connection it serves shares one byte budget. The promise resolves once the client
 * is gone, its replies are handed to the connection and its writes flushed; it never rejects.
 */
export function createNbdHandler(exported: NbdExport, options: NbdServerOptions = {}): (connection: Duplex) => Promise<void> {
  const granule = options.statusGranule ?? 64 * 1024;
  const maxInFlight = options.maxInFlight ?? 16;
  const budget = byteBudget(options.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT);
  const readAhead = readAheadFor(exported, budget);
  const views = exported.views;
  /**
   * Bytes of a read: views of the decoder's blocks when the export offers them (held until
   * `release`, so that no later decode writes into them), else one new buffer.
   */
  const readParts = async (offset: number, length: number): Promise<{ parts: Uint8Array[]; release: () => void }> =>
    views ? views.read(offset, length) : { parts: [await exported.source.read(offset, length)], release: () => {} };
  /**
   * Blocks that views in the socket's queue keep alive, server-wide: each block's buffer counted
   * once, whatever number of replies show it. `pinned(data)` pins the blocks of a reply's views
   * and returns their release (for when the kernel has taken the reply), or undefined when they
   * would take more than `maxPinned`: then the reply is copied, and pins nothing.
   */
  const pins = new Map<ArrayBufferLike, number>();
  let pinnedBytes = 0;
  const pinned = (data: Uint8Array[]): (() => void) | undefined => {
    if (!views) return undefined;
    const shared = zeroPiece().buffer;
    const buffers = [...new Set(data.map((view) => view.buffer))].filter((buffer) => buffer !== shared);
    const added = buffers.reduce((sum, buffer) => sum + (pins.has(buffer) ? 0 : buffer.byteLength), 0);
    if (pinnedBytes + added > views.maxPinned) return undefined;
    pinnedBytes += added;
    for (const buffer of buffers) pins.set(buffer, (pins.get(buffer) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const buffer of buffers) {
        const count = pins.get(buffer)! - 1;
        if (count > 0) pins.set(buffer, count);
        else {
          pins.delete(buffer);
          pinnedBytes -= buffer.byteLength;
        }
      }
    };
  };
  const size = exported.source.size;
  const transmissionFlags =
    P.FLAG_HAS_FLAGS |
    P.FLAG_SEND_DF |
    (exported.writable ? P.FLAG_SEND_FLUSH | P.FLAG_SEND_FUA : P.FLAG_READ_ONLY | P.FLAG_CAN_MULTI_CONN);

  const serve = async (socket: Duplex) => {
    (socket as Partial<Socket>).setNoDelay?.(true);
    const reader = socketReader(socket);
    // Replies wait for the socket to drain, so a client that does not read cannot make the server
    // queue replies without bound: their budget and in-flight slots stay taken until the bytes
    // are sent. All waiting replies share one listener pair per connection.
    let drained: Promise<void> | undefined;
    const whenDrained = () =>
      (drained ??= new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          drained = undefined;
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      }));
    /** Writes a message in one corked batch; `flushed` runs once the kernel has taken all of it (or the socket is gone). */
    const send = (parts: Parts, flushed?: () => void): Promise<void> => {
      if (socket.destroyed || socket.writableEnded) {
        flushed?.();
        return Promise.resolve();
      }
      let last = parts.length - 1;
      while (last >= 0 && parts[last]!.length === 0) last--;
      socket.cork();
      parts.forEach((part, index) => {
        if (index === last) socket.write(part, flushed && (() => flushed()));
        else if (part.length > 0) socket.write(part);
      });
      socket.uncork();
      if (last < 0) flushed?.();
      return socket.writableNeedDrain ? whenDrained() : Promise.resolve();
    };
    /**
     * A reply's headers, then its data as views (pinned until flushed, within the server's
     * maxPinned) or, when the pins would go over, copied into one buffer the budget paid for.
     * The views' holds are released once the kernel has taken them, or once they are copied.
     */
    const sendData = (head: Parts, { parts, release }: { parts: Uint8Array[]; release: () => void }): Promise<void> => {
      if (!views) return send([...head, ...parts]);
      const unpin = pinned(parts);
      if (!unpin) {
        const copy = Buffer.concat(parts);
        release();
        return send([...head, copy]);
      }
      return send([...head, ...parts], () => {
        unpin();
        release();
      });
    };
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(P.NBDMAGIC, 0);
    hello.writeBigUInt64BE(P.IHAVEOPT, 8);
    hello.writeUInt16BE(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES, 16);
    send([hello]);
    const clientFlags = (await reader.read(4)).readUInt32BE(0);
    const noZeroes = (clientFlags & P.FLAG_C_NO_ZEROES) !== 0;
    let structured = false;
    let allocationContext = false;

    // proto.md: NBD_FLAG_SEND_DF must stay clear unless structured replies were negotiated.
    const flagsNow = () => (structured ? transmissionFlags : transmissionFlags & ~P.FLAG_SEND_DF);
    const exportInfo = () => {
      const info = Buffer.alloc(12);
      info.writeUInt16BE(P.INFO_EXPORT, 0);
      info.writeBigUInt64BE(BigInt(size), 2);
      info.writeUInt16BE(flagsNow(), 10);
      return info;
    };
    const blockSizeInfo = () => {
      const info = Buffer.alloc(14);
      info.writeUInt16BE(P.INFO_BLOCK_SIZE, 0);
      info.writeUInt32BE(1, 2); // minimum
      info.writeUInt32BE(4096, 6); // preferred
      info.writeUInt32BE(P.MAX_REQUEST, 10); // maximum
      return info;
    };

    // Option haggling.
    for (;;) {
      const header = await reader.read(16);
      if (header.readBigUInt64BE(0) !== P.IHAVEOPT) {
        socket.destroy();
        return;
      }
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > 65536) {
        socket.destroy(); // hostile: proto.md lets a server drop such a client
        return;
      }
      const data = await reader.read(length);
      const nameOf = () => (data.length >= 4 && data.readUInt32BE(0) <= data.length - 4 ? data.subarray(4, 4 + data.readUInt32BE(0)).toString('utf8') : undefined);
      const known = (name: string | undefined) => name === exported.name || name === '';

      if (option === P.OPT_EXPORT_NAME) {
        if (!known(data.toString('utf8'))) {
          socket.destroy();
          return;
        }
        const reply = Buffer.alloc(noZeroes ? 10 : 134);
        reply.writeBigUInt64BE(BigInt(size), 0);
        reply.writeUInt16BE(flagsNow(), 8);
        send([reply]);
        break;
      }
      if (option === P.OPT_ABORT) {
        send(optionReply(option, P.REP_ACK));
        socket.end();
        return;
      }
      if (option === P.OPT_LIST) {
        const name = Buffer.from(exported.name);
        const payload = Buffer.alloc(4 + name.length);
        payload.writeUInt32BE(name.length, 0);
        name.copy(payload, 4);
        send(optionReply(option, P.REP_SERVER, payload));
        send(optionReply(option, P.REP_ACK));
        continue;
      }
      if (option === P.OPT_STRUCTURED_REPLY) {
        structured = length === 0;
        send(optionReply(option, structured ? P.REP_ACK : P.REP_ERR_INVALID));
        continue;
      }
      if (option === P.OPT_LIST_META_CONTEXT || option === P.OPT_SET_META_CONTEXT) {
        const queries = parseMetaQueries(data);
        if (!structured || !queries || !known(queries.name)) {
          send(optionReply(option, P.REP_ERR_INVALID));
          continue;
        }
        const wanted = queries.queries.length === 0 ? option === P.OPT_LIST_META_CONTEXT : queries.queries.some((query) => query === P.BASE_ALLOCATION || query === 'base:');
        if (option === P.OPT_SET_META_CONTEXT) allocationContext = wanted;
        if (wanted) {
          const name = Buffer.from(P.BASE_ALLOCATION);
          const payload = Buffer.alloc(4 + name.length);
          payload.writeUInt32BE(0, 0); // context id 0
          name.copy(payload, 4);
          send(optionReply(option, P.REP_META_CONTEXT, payload));
        }
        send(optionReply(option, P.REP_ACK));
        continue;
      }
      if (option === P.OPT_INFO || option === P.OPT_GO) {
        if (!known(nameOf())) {
          send(optionReply(option, P.REP_ERR_UNKNOWN, Buffer.from(`no export named '${nameOf()}'; this server exports '${exported.name}'`)));
          continue;
        }
        send(optionReply(option, P.REP_INFO, exportInfo()));
        send(optionReply(option, P.REP_INFO, blockSizeInfo()));
        send(optionReply(option, P.REP_ACK));
        if (option === P.OPT_GO) break;
        continue;
      }
      send(optionReply(option, P.REP_ERR_UNSUP));
    }

    // Transmission.
    let inFlight = 0;
    let slotFree: (() => void) | undefined;
    const finished = () => {
      inFlight--;
      slotFree?.();
      slotFree = undefined;
    };
    // Every reply of the transmission phase holds the connection's writer while it is sent, so a
    // reply sent in pieces is never cut into by another.
    let writer: Promise<unknown> = Promise.resolve();
    const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
      const turn = writer.then(work);
      writer = turn.catch(() => {});
      return turn;
    };
    const reply = (parts: Parts) => exclusive(() => send(parts));
    /**
     * A READ reply: the first piece is read before the writer is taken, the rest while it is held.
     * A read the source knows to be all zero is one hole chunk (structured) or zero bytes sent
     * from one untouched buffer (simple), and reads nothing.
     */
    const streamRead = async (handle: Buffer, offset: number, length: number) => {
      if (await knownZero(offset, length)) {
        if (structured) {
          const hole = Buffer.alloc(12);
          hole.writeBigUInt64BE(BigInt(offset), 0);
          hole.writeUInt32BE(length, 8);
          return reply(structuredChunk(handle, P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_HOLE, hole));
        }
        return exclusive(async () => {
          await send(simpleReply(handle, 0));
          for (let done = 0; done < length && !socket.destroyed; done += PIECE) await send([zeroPiece().subarray(0, Math.min(PIECE, length - done))]);
        });
      }
      const first = await readParts(offset, Math.min(length, PIECE));
      await exclusive(async () => {
        const at = Buffer.alloc(8);
        at.writeBigUInt64BE(BigInt(offset), 0);
        await sendData(structured ? [chunkHeader(handle, P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_DATA, 8 + length), at] : simpleReply(handle, 0), first);
        for (let done = lengthOf(first.parts); done < length && !socket.destroyed; ) {
          const piece = await readParts(offset + done, Math.min(length - done, PIECE)).catch((error: Error) => {
            // proto.md: after a reply header that promised data, an error leaves only a hard disconnect.
            options.onClientError?.(error);
            socket.destroy();
            return undefined;
          });
          if (!piece) return;
          await sendData([], piece);
          done += lengthOf(piece.parts);
        }
      });
    };
    const replyError = (handle: Buffer, error: number, message: string) => {
      if (!structured) return reply(simpleReply(handle, error));
      const text = Buffer.from(message.slice(0, 4096));
      const payload = Buffer.alloc(6 + text.length);
      payload.writeUInt32BE(error, 0);
      payload.writeUInt16BE(text.length, 4);
      text.copy(payload, 6);
      return reply(structuredChunk(handle, P.REPLY_FLAG_DONE, P.REPLY_TYPE_ERROR, payload));
    };
    const replyDone = (handle: Buffer) => reply(structured ? structuredChunk(handle, P.REPLY_FLAG_DONE, P.REPLY_TYPE_NONE) : simpleReply(handle, 0));
    const errnoOf = (error: unknown) => (error instanceof SeekzError && (error.code === 'GZIP_NOT_EDITABLE' || error.code === 'XZ_NOT_EDITABLE' || error.code === 'ZSTD_NOT_EDITABLE' || error.code === 'OUT_OF_RANGE') ? P.EPERM : P.EIO);

    /**
     * Why a request is refused before anything is done for it, as nbdkit refuses it, or undefined.
     * proto.md, "Error values": "The server SHOULD return EINVAL if it receives an unknown command",
     * "…an unknown command flag", and "…a request with a flag not explicitly documented as
     * applicable to the given request"; a write to a read-only export SHOULD get EPERM, and one
     * past the end ENOSPC. A zero length is refused with EINVAL as nbdkit does ("offset and count
     * are out of range"): proto.md gives a zero-length request no meaning.
     */
    const refusal = (type: number, flags: number, offset: number, length: number): { errno: number; message: string } | undefined => {
      const writes = type === P.CMD_WRITE || type === P.CMD_TRIM || type === P.CMD_WRITE_ZEROES;
      if (writes && !exported.writable) return { errno: P.EPERM, message: 'nbd: this export is read-only' };
      const known = [P.CMD_READ, P.CMD_WRITE, P.CMD_FLUSH, P.CMD_CACHE, P.CMD_BLOCK_STATUS];
      if (!known.includes(type)) return { errno: P.EINVAL, message: `nbd: command ${type} is not supported (the export does not offer it)` };
      for (let bit = 1; bit < 1 << 16; bit <<= 1) {
        if (!(flags & bit)) continue;
        const appliesTo = FLAG_APPLIES_TO[bit];
        if (!appliesTo) return { errno: P.EINVAL, message: `nbd: unknown command flag 0x${bit.toString(16)}` };
        if (!appliesTo.includes(type)) return { errno: P.EINVAL, message: `nbd: command flag 0x${bit.toString(16)} does not apply to command ${type}` };
      }
      if (flags & P.CMD_FLAG_DF && !structured) return { errno: P.EINVAL, message: 'nbd: the DF flag needs structured replies' };
      if (type === P.CMD_FLUSH) return offset === 0 && length === 0 ? undefined : { errno: P.EINVAL, message: 'nbd: FLUSH needs offset and length 0' };
      if (length === 0) return { errno: P.EINVAL, message: 'nbd: a request of length 0' };
      if (offset + length > size) {
        return { errno: writes ? P.ENOSPC : P.EINVAL, message: `nbd: [${offset}, ${offset + length}) is past the end (${size} bytes)` };
      }
      if (type === P.CMD_READ && length > P.MAX_REQUEST) return { errno: P.EINVAL, message: `nbd: reads are limited to ${P.MAX_REQUEST} bytes` };
      if (type === P.CMD_BLOCK_STATUS && !allocationContext) return { errno: P.EINVAL, message: 'nbd: no meta context was negotiated' };
      return undefined;
    };

    for (;;) {
      let request: Buffer;
      try {
        request = await reader.read(28);
      } catch {
        break;
      }
      if (request.readUInt32BE(0) !== P.REQUEST_MAGIC) break;
      const flags = request.readUInt16BE(4);
      const type = request.readUInt16BE(6);
      const handle = Buffer.from(request.subarray(8, 16));
      const offset = Number(request.readBigUInt64BE(16));
      const length = request.readUInt32BE(24);

      if (type === P.CMD_DISC) break;
      const refused = refusal(type, flags, offset, length);
      if (type === P.CMD_WRITE) {
        // The payload must be read even when the write is refused, to stay in sync; it is taken
        // from the budget like a read, so writers cannot pile up payloads either.
        if (length > P.MAX_REQUEST) break;
        const release = await budget.take(() => length);
        try {
          const data = await reader.read(length);
          if (refused) await replyError(handle, refused.errno, refused.message);
          else {
            try {
              await exported.writable!.write(offset, data);
              if (flags & P.CMD_FLAG_FUA) await exported.writable!.flush();
              await replyDone(handle);
            } catch (error) {
              await replyError(handle, errnoOf(error), (error as Error).message);
            }
          }
        } finally {
          release();
        }
        continue;
      }
      if (refused) {
        await replyError(handle, refused.errno, refused.message);
        continue;
      }
      if (type === P.CMD_FLUSH) {
        try {
          await exported.writable?.flush();
          await replyDone(handle);
        } catch (error) {
          await replyError(handle, P.EIO, (error as Error).message);
        }
        continue;
      }
      // Reads and status queries run concurrently, within the connection's slots and the server's
      // byte budget. A read larger than PIECE is read and sent a piece at a time within one
      // reservation, so a client that does not read its replies pins one piece, not the request.
      while (inFlight >= maxInFlight) await new Promise<void>((resolve) => (slotFree = resolve));
      // A status answer from the index holds only its reply; one that reads holds what it reads.
      const statusReads = type === P.CMD_BLOCK_STATUS && !exported.peek;
      const reading = type === P.CMD_BLOCK_STATUS ? Math.min(length, exported.peek ? STATUS_REPLY : STATUS_LIMIT) : Math.min(length, PIECE);
      const release = await budget.take(() => (type === P.CMD_BLOCK_STATUS && !statusReads ? reading : (exported.readCost?.(offset, reading) ?? reading)));
      inFlight++;
      const work =
        type === P.CMD_BLOCK_STATUS
          ? blockStatus(offset, length, (flags & P.CMD_FLAG_REQ_ONE) !== 0).then((payload) =>
              reply(structuredChunk(handle, P.REPLY_FLAG_DONE, P.REPLY_TYPE_BLOCK_STATUS, payload)),
            )
          : type === P.CMD_CACHE
            ? exported.source.read(offset, reading).then(() => replyDone(handle)) // a hint: warms one piece at most
            : streamRead(handle, offset, length);
      // A status query continues a reader, never starts one: nbdcopy to a pipe asks the status of
      // each 256 KiB before it reads it, and reads nothing where it hears of a hole, so its reads
      // alone jump past holes and look like new readers (whose warming waits for a second read).
      // A map of the disk alone (nbdinfo --map) decodes nothing.
      if (type === P.CMD_READ) readAhead(offset, length);
      else if (type === P.CMD_BLOCK_STATUS) readAhead(offset, Math.min(length, statusReads ? reading : PIECE), statusReads);
      work
        .catch((error: Error) => replyError(handle, P.EIO, error.message))
        .finally(() => {
          release();
          finished();
        });
    }
    while (inFlight > 0) await new Promise<void>((resolve) => (slotFree = resolve));
    // A client that goes away without FLUSH still gets its writes kept (and the CRC fixed).
    await exported.writable?.flush().catch((error: Error) => options.onClientError?.(error));
    socket.end();
  };

  /** True when the source's zeroRanges says all of [offset, offset + length) is zero. */
  const knownZero = async (offset: number, length: number): Promise<boolean> => {
    if (!exported.source.zeroRanges) return false;
    const zeros = await exported.source.zeroRanges(offset, length);
    return zeros.length === 1 && zeros[0]!.offset === offset && zeros[0]!.length === length;
  };

  /**
   * base:allocation: all-zero granules are holes that read as zeros, so nbdcopy skips them. What
   * the source's zeroRanges knows to be zero is a hole without reading; the rest is read and
   * classified granule by granule. One answer reads at most 4 MiB, the bytes the request was
   * charged for (proto.md lets a reply cover less than asked), so a status query for a whole disk
   * costs one bounded read, not a huge one; known zeros within the request cost nothing.
   */
  const blockStatus = async (offset: number, length: number, one: boolean): Promise<Buffer> => {
    const end = offset + length;
    const peek = exported.peek;
    const readable = peek ? end : offset + Math.min(length, STATUS_LIMIT);
    const zeros = exported.source.zeroRanges ? await exported.source.zeroRanges(offset, length) : [];
    const descriptors: { length: number; state: number }[] = [];
    const add = (bytes: number, state: number) => {
      const last = descriptors[descriptors.length - 1];
      if (last && last.state === state) last.length += bytes;
      else descriptors.push({ length: bytes, state });
    };
    const full = () => descriptors.length > (one ? 1 : MAX_DESCRIPTORS);
    /** Granule by granule: all-zero granules (aligned to the export) are holes. */
    const classify = (data: Uint8Array, from: number) => {
      for (let index = 0; index < data.length && !full(); ) {
        const next = Math.min(data.length, index - ((from + index) % granule) + granule);
        add(next - index, isAllZero(data.subarray(index, next)) ? P.STATE_HOLE | P.STATE_ZERO : 0);
        index = next;
      }
    };
    let at = offset;
    for (const zero of [...zeros, { offset: end, length: 0 }]) {
      if (zero.offset > at) {
        // Unknown bytes: read (within the charged window) and look.
        const stop = Math.min(zero.offset, readable);
        if (stop <= at) break;
        if (peek) {
          // What is cached is looked at; what is not is data, and is not decoded to find out.
          for (let here = at; here < stop && !full(); ) {
            const known = await peek(here);
            if ('bytes' in known && known.bytes.length > 0) {
              const bytes = known.bytes.subarray(0, stop - here);
              classify(bytes, here);
              here += bytes.length;
            } else {
              const skip = 'skip' in known && known.skip > 0 ? Math.min(known.skip, stop - here) : stop - here;
              add(skip, 0);
              here += skip;
            }
          }
        } else {
          classify(await exported.source.read(at, stop - at), at);
        }
        at = stop;
        if (at < zero.offset || full()) break;
      }
      if (zero.length > 0) add(zero.length, P.STATE_HOLE | P.STATE_ZERO);
      at = zero.offset + zero.length;
      if (full()) break;
    }
    const used = descriptors.slice(0, one ? 1 : MAX_DESCRIPTORS);
    const payload = Buffer.alloc(4 + 8 * used.length);
    payload.writeUInt32BE(0, 0); // context id
    used.forEach((descriptor, index) => {
      payload.writeUInt32BE(descriptor.length, 4 + index * 8);
      payload.writeUInt32BE(descriptor.state, 8 + index * 8);
    });
    return payload;
  };

  return (connection) =>
    serve(connection).catch((error: Error) => {
      if (!/client disconnected/.test(error.message)) options.onClientError?.(error);
      connection.destroy();
    });
}

const lengthOf = (parts: Uint8Array[]) => parts.reduce((sum, part) => sum + part.length, 0);

function parseMetaQueries(data: Buffer): { name: string; queries: string[] } | undefined {
  try {
    let at = 0;
    const nameLength = data.readUInt32BE(at);
    at += 4;
    const name = data.subarray(at, at + nameLength).toString('utf8');
    at += nameLength;
    const count = data.readUInt32BE(at);
    at += 4;
    if (count > 1024) return undefined;
    const queries: string[] = [];
    for (let index = 0; index < count; index++) {
      const length = data.readUInt32BE(at);
      at += 4;
      if (at + length > data.length) return undefined;
      queries.push(data.subarray(at, at + length).toString('utf8'));
      at += length;
    }
    return { name, queries };
  } catch {
    return undefined;
  }
}
