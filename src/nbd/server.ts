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
 */
import { createServer, type Server, type Socket } from 'node:net';
import { SeekzError } from '../errors.js';
import type { Source } from '../source/source.js';
import { isAllZero } from '../zeros.js';
import * as P from './protocol.js';

const STATUS_LIMIT = 4 * 2 ** 20;

/** What the server exports: a Source of bytes, and for a writable export a way to write and flush. */
export interface NbdExport {
  name: string;
  source: Source;
  /**
   * Bytes a read of [offset, offset + length) holds while it runs: its output plus what it
   * decodes on the way (whole xz blocks). Charged to the server's budget. Default: length.
   */
  readCost?: (offset: number, length: number) => number;
  writable?: {
    /** Rejects with a SeekzError (GZIP_NOT_EDITABLE, XZ_NOT_EDITABLE) for bytes that cannot change: EPERM. */
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
const PIECE = 4 * 2 ** 20;

/**
 * Buffered exact reads from a socket: `read(n)` resolves with exactly n bytes, or rejects when the
 * peer goes. The socket is paused while more than READ_AHEAD bytes (or the pending read's count)
 * are buffered, so a client cannot queue requests in server memory faster than they are served.
 */
function socketReader(socket: Socket) {
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
 * A byte budget shared by every connection of one server. `take(n)` waits until n bytes are free
 * (first come, first served, so a large request is not starved by small ones) and resolves with
 * the function that gives them back. When nothing is taken, any request may go, however large.
 */
function byteBudget(limit: number) {
  let used = 0;
  const queue: { bytes: number; grant: (release: () => void) => void }[] = [];
  const pump = () => {
    while (queue.length > 0 && (used === 0 || used + queue[0]!.bytes <= limit)) {
      const { bytes, grant } = queue.shift()!;
      used += bytes;
      let given = false;
      grant(() => {
        if (given) return;
        given = true;
        used -= bytes;
        pump();
      });
    }
  };
  return {
    take(bytes: number): Promise<() => void> {
      return new Promise((grant) => {
        queue.push({ bytes, grant });
        pump();
      });
    },
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
  const granule = options.statusGranule ?? 64 * 1024;
  const maxInFlight = options.maxInFlight ?? 16;
  const budget = byteBudget(options.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT);
  const size = exported.source.size;
  const transmissionFlags =
    P.FLAG_HAS_FLAGS |
    P.FLAG_SEND_DF |
    (exported.writable ? P.FLAG_SEND_FLUSH | P.FLAG_SEND_FUA : P.FLAG_READ_ONLY | P.FLAG_CAN_MULTI_CONN);

  const serve = async (socket: Socket) => {
    socket.setNoDelay(true);
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
    const send = (parts: Parts): Promise<void> => {
      if (socket.destroyed || socket.writableEnded) return Promise.resolve();
      socket.cork();
      for (const part of parts) if (part.length > 0) socket.write(part);
      socket.uncork();
      return socket.writableNeedDrain ? whenDrained() : Promise.resolve();
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
    /** A READ reply: the first piece is read before the writer is taken, the rest while it is held. */
    const streamRead = async (handle: Buffer, offset: number, length: number) => {
      const first = await exported.source.read(offset, Math.min(length, PIECE));
      await exclusive(async () => {
        const at = Buffer.alloc(8);
        at.writeBigUInt64BE(BigInt(offset), 0);
        await send(structured ? [chunkHeader(handle, P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_DATA, 8 + length), at, first] : [...simpleReply(handle, 0), first]);
        for (let done = first.length; done < length && !socket.destroyed; ) {
          const piece = await exported.source.read(offset + done, Math.min(length - done, PIECE)).catch((error: Error) => {
            // proto.md: after a reply header that promised data, an error leaves only a hard disconnect.
            options.onClientError?.(error);
            socket.destroy();
            return undefined;
          });
          if (!piece) return;
          await send([piece]);
          done += piece.length;
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
    const errnoOf = (error: unknown) => (error instanceof SeekzError && (error.code === 'GZIP_NOT_EDITABLE' || error.code === 'XZ_NOT_EDITABLE' || error.code === 'OUT_OF_RANGE') ? P.EPERM : P.EIO);

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
        const release = await budget.take(length);
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
      const reading = type === P.CMD_BLOCK_STATUS ? Math.min(length, STATUS_LIMIT) : Math.min(length, PIECE);
      const release = await budget.take(exported.readCost?.(offset, reading) ?? reading);
      inFlight++;
      const work =
        type === P.CMD_BLOCK_STATUS
          ? blockStatus(offset, length, (flags & P.CMD_FLAG_REQ_ONE) !== 0).then((payload) =>
              reply(structuredChunk(handle, P.REPLY_FLAG_DONE, P.REPLY_TYPE_BLOCK_STATUS, payload)),
            )
          : type === P.CMD_CACHE
            ? exported.source.read(offset, reading).then(() => replyDone(handle)) // a hint: warms one piece at most
            : streamRead(handle, offset, length);
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

  /**
   * base:allocation: all-zero granules are holes that read as zeros, so nbdcopy skips them. One
   * answer covers at most 4 MiB (proto.md lets a reply cover less than asked), so a status query
   * for a whole disk costs one bounded read, not a huge one.
   */
  const blockStatus = async (offset: number, length: number, one: boolean): Promise<Buffer> => {
    const limit = Math.min(length, STATUS_LIMIT);
    const data = await exported.source.read(offset, limit);
    const descriptors: { length: number; state: number }[] = [];
    for (let at = 0; at < data.length; ) {
      const end = Math.min(data.length, at - ((offset + at) % granule) + granule);
      const state = isAllZero(data.subarray(at, end)) ? P.STATE_HOLE | P.STATE_ZERO : 0;
      const last = descriptors[descriptors.length - 1];
      if (last && last.state === state) last.length += end - at;
      else descriptors.push({ length: end - at, state });
      at = end;
      if (one && descriptors.length > 1) break;
    }
    const used = one ? descriptors.slice(0, 1) : descriptors;
    const payload = Buffer.alloc(4 + 8 * used.length);
    payload.writeUInt32BE(0, 0); // context id
    used.forEach((descriptor, index) => {
      payload.writeUInt32BE(descriptor.length, 4 + index * 8);
      payload.writeUInt32BE(descriptor.state, 8 + index * 8);
    });
    return payload;
  };

  return createServer({ allowHalfOpen: true }, (socket) => {
    serve(socket).catch((error: Error) => {
      if (!/client disconnected/.test(error.message)) options.onClientError?.(error);
      socket.destroy();
    });
  });
}

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
