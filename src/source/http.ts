import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { fail, SeekzError } from '../errors.js';
import { lastAtOrBefore } from '../search.js';
import { byterangesBoundary, MultipartError, parseByteranges, type BytePart } from './multipart.js';
import { clipRead, type ByteRange, type Source } from './source.js';

export interface HttpStats {
  /** Requests sent: every attempt, retry and redirect hop counts. */
  requests: number;
  /** Response body bytes received. */
  bytesFetched: number;
  /** Attempts repeated after a transient failure. */
  retries: number;
}

export interface HttpSourceOptions {
  /** Bytes of fetched ranges kept in memory (LRU). Default 64 MiB. */
  cacheSize?: number;
  /** Smallest request on a miss, so neighbouring small reads share one request. Default 256 KiB. */
  minFetch?: number;
  /** Retries after a transient failure (5xx, 408, 429, reset, timeout, body cut short). Default 3. */
  retries?: number;
  /** Backoff before the first retry, doubled for each further one. Default 100 ms. */
  retryDelay?: number;
  /** Milliseconds one try may go without receiving anything before it counts as failed (and is retried). Default 10 s. */
  timeout?: number;
  /** Milliseconds one fetch may take over all its tries and backoff, however slowly bytes trickle in. Default 45 s. */
  totalTimeout?: number;
  /** Redirects (301, 302, 303, 307, 308) followed when opening. Default 5. */
  maxRedirects?: number;
  /** Counters to add to, e.g. one object shared by several sources; by default a fresh one. */
  stats?: HttpStats;
  /** Told before each retry, e.g. to log it. */
  onRetry?: (retry: { url: string; range: string; attempt: number; delay: number; reason: string }) => void;
}

export interface HttpSource extends Source {
  /** The URL after redirects; every read goes there. */
  readonly url: string;
  /** What identifies the version pinned at open: its ETag, else its Last-Modified, else nothing (then only its size is checked). */
  readonly validator: string | undefined;
  readonly stats: HttpStats;
  /** See Source.readRanges: one multi-range request per batch of ranges. */
  readRanges(ranges: readonly ByteRange[]): Promise<Uint8Array[]>;
  close(): Promise<void>;
}

export const DEFAULT_HTTP_CACHE_SIZE = 64 * 2 ** 20;
export const DEFAULT_MIN_FETCH = 256 * 2 ** 10;
export const DEFAULT_RETRIES = 3;
export const DEFAULT_RETRY_DELAY = 100;
export const DEFAULT_TIMEOUT = 10_000;
export const DEFAULT_TOTAL_TIMEOUT = 45_000;
export const DEFAULT_MAX_REDIRECTS = 5;
/** Connections per host: enough for a few blocks fetched side by side, polite to the server. */
const MAX_SOCKETS = 8;

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH']);

/** The version of the file pinned at open: a response for any other version is refused. */
interface Pin {
  size: number;
  etag?: string;
  lastModified?: string;
}

/** A byte range of the file, fetched or being fetched. */
interface Piece {
  start: number;
  end: number;
  bytes?: Uint8Array;
  pending?: Promise<Uint8Array>;
}

/** A range of the file as [start, end): end is exclusive. */
type Span = [start: number, end: number];

type Answer =
  | { kind: 'redirect'; location: URL }
  | { kind: 'data'; bytes: Uint8Array; total: number; headers: IncomingHttpHeaders }
  /** The answer to a request for several ranges: parts as sent (maybe coalesced, maybe not all). */
  | { kind: 'parts'; parts: BytePart[] }
  /** A request for several ranges that the server would not answer with them (200, 416, or one part far larger than asked). */
  | { kind: 'refused' };

/**
 * Limits of one multi-range request (readRanges): ranges, characters of its Range header (nginx's
 * default large_client_header_buffers is 8 KiB per line, and proxies may allow less), and bytes asked.
 */
export const MAX_RANGES_PER_REQUEST = 200;
const MAX_RANGE_HEADER = 6000;
const MAX_RANGES_BYTES = 4 * 2 ** 20;
/** What a multipart answer may add to the bytes asked: per part its delimiter and headers, and once a preamble. */
const PART_OVERHEAD = 256;
const BODY_OVERHEAD = 4096;

/**
 * A Source over a file on an HTTP(S) server that supports range requests (node:http, no
 * dependencies). Opening costs one request, `Range: bytes=0-(minFetch-1)`, which gives the size
 * (from Content-Range), the validator to pin (ETag, else Last-Modified) and the file's first bytes,
 * where every format keeps its magic. Later reads send If-Match (strong ETag) or
 * If-Unmodified-Since and also compare the validator and size in each answer themselves, so a file
 * replaced on the server gives HTTP_CHANGED, never a mix of two versions.
 *
 * Memory: at most `cacheSize` bytes of fetched ranges (default 64 MiB), plus the reads in progress.
 */
export async function httpSource(url: string, options: HttpSourceOptions = {}): Promise<HttpSource> {
  let target = parseUrl(url, url);
  const cacheSize = positive(options.cacheSize ?? DEFAULT_HTTP_CACHE_SIZE, 'cacheSize', 0);
  const minFetch = positive(options.minFetch ?? DEFAULT_MIN_FETCH, 'minFetch', 1);
  const retries = positive(options.retries ?? DEFAULT_RETRIES, 'retries', 0);
  const retryDelay = positive(options.retryDelay ?? DEFAULT_RETRY_DELAY, 'retryDelay', 0);
  const timeout = positive(options.timeout ?? DEFAULT_TIMEOUT, 'timeout', 1);
  const totalTimeout = positive(options.totalTimeout ?? DEFAULT_TOTAL_TIMEOUT, 'totalTimeout', 1);
  const maxRedirects = positive(options.maxRedirects ?? DEFAULT_MAX_REDIRECTS, 'maxRedirects', 0);
  const stats = options.stats ?? { requests: 0, bytesFetched: 0, retries: 0 };
  const agents: Record<string, http.Agent> = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
  };

  /**
   * One request, one answer; redirects are followed only before a version is pinned. A try fails
   * after `timeout` ms without data, or at the fetch's `deadline`, whichever comes first.
   */
  const attempt = async (to: URL, spans: readonly Span[], pin: Pin | undefined, deadline: number): Promise<Answer> => {
    const range = rangeHeader(spans);
    stats.requests++;
    const request = (to.protocol === 'https:' ? https : http).request(to, {
      agent: agents[to.protocol],
      headers: { range, 'accept-encoding': 'identity', ...(pin ? conditions(pin) : {}) },
    });
    let stalled: string | undefined;
    const giveUp = (why: string) => {
      stalled = why;
      request.destroy(Object.assign(new Error(why), { code: 'ETIMEDOUT' }));
    };
    request.setTimeout(timeout, () => giveUp(`no data for ${timeout} ms`));
    const overall = setTimeout(() => giveUp(`not done within ${totalTimeout} ms`), Math.max(0, deadline - Date.now()));
    try {
      return await answer(request, to, spans, pin, range, () => stalled);
    } finally {
      clearTimeout(overall);
    }
  };

  const answer = async (request: http.ClientRequest, to: URL, spans: readonly Span[], pin: Pin | undefined, range: string, stalled: () => string | undefined): Promise<Answer> => {
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      request.on('response', resolve);
      request.on('error', reject); // stays attached: a later error lands on the response instead
      request.end();
    });
    response.on('error', () => {}); // errors reach readBody through its iterator; unread bodies may fail harmlessly
    const status = response.statusCode ?? 0;
    const statusLine = `${status} ${(response.statusMessage ?? '').toLowerCase()}`.trim();
    const headers = response.headers;
    const where = to.href;
    const contentRange = parseContentRange(headers['content-range']);
    if (spans.length > 1) {
      range = shortRange(spans);
      if (status === 206) return severalRanges(response, headers, spans, pin!, where, range, stalled);
      if (status === 200 || status === 416) {
        response.destroy(); // a 200 carries the whole file: never read it
        request.destroy();
        const changed = changeOf(pin!, headers) ?? (contentRange?.total !== undefined && contentRange.total !== pin!.size ? `${pin!.size} bytes at open, ${contentRange.total} now` : undefined);
        if (changed) throw fail('HTTP_CHANGED', where, changed);
        return { kind: 'refused' };
      }
    }
    const [start, end] = spans[0]!;

    if (status === 206) {
      const refuse = (error: SeekzError) => {
        response.destroy();
        return error;
      };
      const changed = pin && changeOf(pin, headers);
      if (changed) throw refuse(fail('HTTP_CHANGED', where, changed));
      if (contentRange?.start === undefined || contentRange.total === undefined) {
        throw refuse(fail('HTTP_BAD_RESPONSE', where, range, `206 with content-range '${headers['content-range'] ?? ''}', expected 'bytes ${start}-${end - 1}/SIZE'`));
      }
      const total = contentRange.total;
      if (pin && total !== pin.size) throw refuse(fail('HTTP_CHANGED', where, `${pin.size} bytes at open, ${total} now`));
      // The server clips the end to the file: at open the size is not known yet.
      const expectedEnd = Math.min(end, total);
      if (contentRange.start !== start || contentRange.end! + 1 !== expectedEnd) {
        throw refuse(fail('HTTP_BAD_RESPONSE', where, range, `content-range says bytes ${contentRange.start}-${contentRange.end}/${total}, expected bytes ${start}-${expectedEnd - 1}`));
      }
      const length = expectedEnd - start;
      const declared = headers['content-length'];
      if (declared !== undefined && Number(declared) !== length) {
        throw refuse(fail('HTTP_BAD_RESPONSE', where, range, `content-length ${declared} does not match the ${length} bytes of its content-range`));
      }
      return { kind: 'data', bytes: await readBody(response, length, stats, where, range, stalled), total, headers };
    }

    if (status === 200) {
      // A whole file may be gigabytes: drop the connection instead of reading it.
      response.destroy();
      request.destroy();
      const changed = pin && changeOf(pin, headers);
      // A server honouring If-Range answers 200 when the file changed; one ignoring ranges always does.
      if (changed) throw fail('HTTP_CHANGED', where, changed);
      const declared = headers['content-length'];
      throw fail('HTTP_NO_RANGE', where, range, declared === undefined ? 'length not given' : `${declared} bytes`);
    }
    response.resume(); // an error page: small, and reading it keeps the connection reusable

    if (REDIRECTS.has(status) && !pin) {
      const location = headers.location;
      if (!location) throw fail('HTTP_BAD_RESPONSE', where, range, `${statusLine} without a location header`);
      return { kind: 'redirect', location: parseUrl(new URL(location, to).href, where) };
    }
    if (status === 412) throw fail('HTTP_CHANGED', where, `the server says the ${pin?.etag ? `etag ${pin.etag}` : `last-modified ${pin?.lastModified}`} pinned at open no longer matches (412)`);
    if (status === 416) {
      if (!pin && contentRange?.total === 0) return { kind: 'data', bytes: new Uint8Array(0), total: 0, headers };
      if (pin && contentRange?.total !== undefined && contentRange.total !== pin.size) {
        throw fail('HTTP_CHANGED', where, `${pin.size} bytes at open, ${contentRange.total} now`);
      }
      throw fail('HTTP_BAD_RESPONSE', where, range, `416 range not satisfiable (content-range '${headers['content-range'] ?? ''}')`);
    }
    if (status === 404 || status === 410) throw fail('HTTP_NOT_FOUND', where, status);
    // 408 and 429 are the client errors that mean "try again later".
    if (status >= 500 || status === 408 || status === 429) throw transient(statusLine);
    throw fail('HTTP_STATUS', where, range, statusLine);
  };

  /**
   * A 206 to a request for several ranges: a multipart/byteranges body, or one part (a server may
   * coalesce ranges, or answer only some). Each part's Content-Range is checked against the pinned
   * size here; which parts cover which range, by the caller. The body is bounded by what was asked:
   * one that says it is far larger (ranges coalesced across a wide gap) is dropped unread and
   * refused, and one that turns out larger is an error.
   */
  const severalRanges = async (response: IncomingMessage, headers: IncomingHttpHeaders, spans: readonly Span[], pin: Pin, where: string, range: string, stalled: () => string | undefined): Promise<Answer> => {
    const refuse = (error: SeekzError) => {
      response.destroy();
      return error;
    };
    const changed = changeOf(pin, headers);
    if (changed) throw refuse(fail('HTTP_CHANGED', where, changed));
    const limit = spans.reduce((sum, [start, end]) => sum + end - start, 0) + spans.length * PART_OVERHEAD + BODY_OVERHEAD;
    const declared = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
    const boundary = byterangesBoundary(header(headers['content-type']));
    if (boundary === undefined) {
      const contentRange = parseContentRange(headers['content-range']);
      if (contentRange?.start === undefined || contentRange.total === undefined) {
        throw refuse(fail('HTTP_BAD_RESPONSE', where, range, `206 with neither a multipart/byteranges body nor a content-range ('${headers['content-range'] ?? ''}')`));
      }
      if (contentRange.total !== pin.size) throw refuse(fail('HTTP_CHANGED', where, `${pin.size} bytes at open, ${contentRange.total} now`));
      const length = contentRange.end! - contentRange.start + 1;
      if (declared !== undefined && declared !== length) throw refuse(fail('HTTP_BAD_RESPONSE', where, range, `content-length ${declared} does not match the ${length} bytes of its content-range`));
      if (length > limit) {
        response.destroy();
        return { kind: 'refused' };
      }
      return { kind: 'parts', parts: [{ start: contentRange.start, total: contentRange.total, bytes: await readBody(response, length, stats, where, range, stalled) }] };
    }
    if (declared !== undefined && !Number.isSafeInteger(declared)) throw refuse(fail('HTTP_BAD_RESPONSE', where, range, `content-length '${headers['content-length']}'`));
    if (declared !== undefined && declared > limit) {
      // Far more than the ranges asked for (whole parts merged, or very wordy part headers): not read.
      response.destroy();
      return { kind: 'refused' };
    }
    const body = await readBody(response, declared ?? limit, stats, where, range, stalled, declared === undefined);
    let parts: BytePart[];
    try {
      parts = parseByteranges(body, boundary);
    } catch (error) {
      if (error instanceof MultipartError) throw fail('HTTP_BAD_RESPONSE', where, range, `multipart/byteranges: ${error.message}`);
      throw error;
    }
    for (const part of parts) {
      if (part.total !== pin.size) {
        if (part.total === undefined) throw fail('HTTP_BAD_RESPONSE', where, range, `a part of bytes ${part.start}-${part.start + part.bytes.length - 1} does not state the file's size`);
        throw fail('HTTP_CHANGED', where, `${pin.size} bytes at open, ${part.total} now`);
      }
    }
    return { kind: 'parts', parts };
  };

  /** Tries `once` until it succeeds, fails for good, runs out of retries, or out of `totalTimeout`. */
  const withRetries = async <T>(range: string, once: (deadline: number) => Promise<T>): Promise<T> => {
    const deadline = Date.now() + totalTimeout;
    for (let attempts = 1; ; attempts++) {
      try {
        return await once(deadline);
      } catch (error) {
        const reason = transientReason(error);
        if (reason === undefined) throw error;
        const delay = retryDelay * 2 ** (attempts - 1);
        if (attempts > retries || Date.now() + delay >= deadline) throw fail('HTTP_FAILED', target.href, range, reason, attempts);
        stats.retries++;
        options.onRetry?.({ url: target.href, range, attempt: attempts, delay, reason });
        await sleep(delay);
      }
    }
  };

  let pin: Pin;
  let first: Uint8Array;
  try {
    for (let redirects = 0; ; redirects++) {
      const answer = await withRetries(`bytes=0-${minFetch - 1}`, (deadline) => attempt(target, [[0, minFetch]], undefined, deadline));
      if (answer.kind === 'redirect') {
        if (redirects === maxRedirects) throw fail('HTTP_TOO_MANY_REDIRECTS', url, maxRedirects);
        target = answer.location;
        continue;
      }
      if (answer.kind !== 'data') throw fail('HTTP_STATUS', url, `bytes=0-${minFetch - 1}`, answer.kind); // one range asked: never
      pin = { size: answer.total, etag: header(answer.headers.etag), lastModified: header(answer.headers['last-modified']) };
      first = answer.bytes;
      break;
    }
  } catch (error) {
    for (const agent of Object.values(agents)) agent.destroy();
    throw error;
  }
  const size = pin.size;

  const ready = new Set<Piece>(); // least recently used first
  const inFlight = new Set<Piece>();
  let cachedBytes = 0;
  let closed = false;

  const remember = (piece: Piece) => {
    const length = piece.end - piece.start;
    if (length === 0 || length > cacheSize) return;
    ready.add(piece);
    cachedBytes += length;
    while (cachedBytes > cacheSize) {
      const oldest = ready.values().next().value as Piece;
      ready.delete(oldest);
      cachedBytes -= oldest.end - oldest.start;
    }
  };
  remember({ start: 0, end: first.length, bytes: first });

  /** One range, exactly, in one request. */
  const fetchSpan = (start: number, end: number): Promise<Uint8Array> => {
    const range = `bytes=${start}-${end - 1}`;
    return withRetries(range, async (deadline) => {
      const answer = await attempt(target, [[start, end]], pin, deadline);
      if (answer.kind !== 'data') throw fail('HTTP_STATUS', target.href, range, 'a redirect');
      return answer.bytes;
    });
  };

  /** Set once the server answers a multi-range request without ranges: later batches go one range a request. */
  let multiRangeRefused = false;

  /**
   * The bytes of each span (sorted, apart), in one request for all of them where the server allows,
   * else one request per span. A span that the answer's parts do not cover whole is fetched alone.
   */
  const fetchSpans = async (spans: readonly Span[]): Promise<Uint8Array[]> => {
    let parts: BytePart[] = [];
    if (spans.length > 1 && !multiRangeRefused) {
      const answer = await withRetries(shortRange(spans), (deadline) => attempt(target, spans, pin, deadline));
      if (answer.kind === 'parts') parts = answer.parts;
      else if (answer.kind === 'refused') multiRangeRefused = true;
      else throw fail('HTTP_STATUS', target.href, shortRange(spans), 'a redirect');
    }
    return Promise.all(
      spans.map(([start, end]) => {
        const part = parts.find((part) => part.start <= start && part.start + part.bytes.length >= end);
        return part ? part.bytes.subarray(start - part.start, end - part.start) : fetchSpan(start, end);
      }),
    );
  };

  const fetchPiece = (start: number, end: number): Piece => {
    const pending = fetchSpan(start, end);
    const piece: Piece = { start, end, pending };
    inFlight.add(piece);
    // Readers await `pending` themselves; this only moves the piece into the cache, or forgets it.
    pending.then(
      (bytes) => {
        inFlight.delete(piece);
        piece.bytes = bytes;
        piece.pending = undefined;
        if (!closed) remember(piece);
      },
      () => inFlight.delete(piece),
    );
    return piece;
  };

  /**
   * What to fetch for a miss at `at` (no piece holds it) when the read wants up to `limit`: the
   * gap up to the next known piece, grown to minFetch forwards and then backwards, since reads
   * move on, and footers and indexes are read from the end backwards.
   */
  const extent = (at: number, limit: number): [number, number] => {
    let nextStart = size;
    let previousEnd = 0;
    for (const piece of [...ready, ...inFlight]) {
      if (piece.start > at) nextStart = Math.min(nextStart, piece.start);
      else previousEnd = Math.max(previousEnd, piece.end);
    }
    const stop = Math.min(nextStart, Math.max(Math.min(limit, nextStart), at + minFetch));
    return [Math.max(previousEnd, Math.min(at, stop - minFetch)), stop];
  };

  const covering = (at: number): Piece | undefined => {
    let best: Piece | undefined;
    for (const piece of [...ready, ...inFlight]) {
      if (piece.start <= at && piece.end > at && (!best || piece.end > best.end)) best = piece;
    }
    return best;
  };

  const read = async (offset: number, length: number): Promise<Uint8Array> => {
    if (closed) throw fail('HTTP_CLOSED', target.href);
    const count = clipRead(size, offset, length);
    const end = offset + count;
    const parts: { piece: Piece; data: Uint8Array | Promise<Uint8Array>; from: number; to: number }[] = [];
    for (let at = offset; at < end; ) {
      let piece = covering(at);
      if (piece && ready.delete(piece)) ready.add(piece);
      piece ??= fetchPiece(...extent(at, end));
      const to = Math.min(end, piece.end);
      parts.push({ piece, data: piece.bytes ?? piece.pending!, from: at, to });
      at = to;
    }
    // Always a copy: callers may transfer or overwrite what they get, and the cache must not change.
    const out = Buffer.allocUnsafe(count);
    await Promise.all(
      parts.map(async ({ piece, data, from, to }) => {
        out.set((await data).subarray(from - piece.start, to - piece.start), from - offset);
      }),
    );
    return out;
  };

  /**
   * Many small ranges (block headers, say) in few requests: those the cache holds whole come from
   * it; the rest, merged where they touch, go in batches of at most MAX_RANGES_PER_REQUEST ranges,
   * MAX_RANGE_HEADER characters and MAX_RANGES_BYTES bytes, each one multi-range request, exactly
   * as asked (not grown to minFetch, and not kept in the cache: they would crowd it with tiny pieces).
   */
  const readRanges = async (ranges: readonly ByteRange[]): Promise<Uint8Array[]> => {
    if (closed) throw fail('HTTP_CLOSED', target.href);
    const out: Promise<Uint8Array>[] = [];
    const wanted: { index: number; start: number; end: number }[] = [];
    for (const [index, { offset, length }] of ranges.entries()) {
      const end = offset + clipRead(size, offset, length);
      const piece = covering(offset);
      if (end === offset || (piece && piece.end >= end)) out[index] = read(offset, end - offset);
      else wanted.push({ index, start: offset, end });
    }
    wanted.sort((a, b) => a.start - b.start);
    const spans: Span[] = [];
    for (const { start, end } of wanted) {
      const last = spans[spans.length - 1];
      if (last && start <= last[1]) last[1] = Math.max(last[1], end);
      else spans.push([start, end]);
    }
    const batches: Span[][] = [];
    let header = Infinity;
    let bytes = 0;
    for (const span of spans) {
      const text = `${span[0]}-${span[1] - 1},`.length;
      const batch = batches[batches.length - 1];
      if (!batch || batch.length === MAX_RANGES_PER_REQUEST || header + text > MAX_RANGE_HEADER || (bytes > 0 && bytes + span[1] - span[0] > MAX_RANGES_BYTES)) {
        batches.push([span]);
        header = 'bytes='.length + text;
        bytes = span[1] - span[0];
      } else {
        batch.push(span);
        header += text;
        bytes += span[1] - span[0];
      }
    }
    const fetched = (await Promise.all(batches.map(fetchSpans))).flat();
    for (const { index, start, end } of wanted) {
      const at = lastAtOrBefore(spans, (span) => span[0], start);
      const span = spans[at]!;
      // A copy, as read() gives: one body holds many ranges, and a caller may transfer what it gets.
      out[index] = Promise.resolve(new Uint8Array(fetched[at]!.subarray(start - span[0], end - span[0])));
    }
    return Promise.all(out);
  };

  return {
    size,
    get url() {
      return target.href;
    },
    validator: pin.etag ?? pin.lastModified,
    stats,
    read,
    readRanges,
    async close() {
      closed = true;
      ready.clear();
      cachedBytes = 0;
      for (const agent of Object.values(agents)) agent.destroy();
    },
  };
}

/**
 * Reads exactly `length` body bytes; a body cut short is transient, one running over is refused.
 * With `upTo`, `length` is only a limit (a body of unknown length): the bytes received are returned.
 */
async function readBody(
  response: IncomingMessage,
  length: number,
  stats: HttpStats,
  url: string,
  range: string,
  stalled: () => string | undefined,
  upTo = false,
): Promise<Uint8Array> {
  const out = Buffer.allocUnsafe(length);
  let got = 0;
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      if (got + chunk.length > length) {
        response.destroy();
        throw fail('HTTP_BAD_RESPONSE', url, range, `the body runs past the ${length} bytes ${upTo ? 'that the ranges asked for can take' : 'of its content-range'}`);
      }
      chunk.copy(out, got);
      got += chunk.length;
      stats.bytesFetched += chunk.length;
    }
  } catch (error) {
    if (error instanceof SeekzError) throw error;
    throw transient(`the body stopped after ${got} of ${length} bytes: ${stalled() ?? (error as Error).message}`);
  }
  if (upTo) return out.subarray(0, got);
  if (got < length) throw transient(`the body stopped after ${got} of ${length} bytes`);
  return out;
}

/** A transient failure, retried with backoff: a 5xx, a connection reset or stalled, a body cut short. */
function transient(reason: string): Error {
  return Object.assign(new Error(reason), { transient: reason });
}

function transientReason(error: unknown): string | undefined {
  if (error instanceof SeekzError) return undefined;
  const { transient: reason, code, message } = error as NodeJS.ErrnoException & { transient?: string };
  if (reason) return reason;
  if (code && TRANSIENT_CODES.has(code)) return `${code} (${message})`;
  return undefined;
}

/**
 * The preconditions that make the server refuse another version (412). If-Match needs a strong
 * ETag: RFC 9110 §13.1.1 compares strongly, so a weak one would never match. Weak ETags are
 * compared by `changeOf` alone.
 */
function conditions(pin: Pin): Record<string, string> {
  if (pin.etag && !pin.etag.startsWith('W/')) return { 'if-match': pin.etag };
  if (pin.lastModified) return { 'if-unmodified-since': pin.lastModified };
  return {};
}

/** How the answer's validator differs from the pinned one, or undefined when it is the same version. */
function changeOf(pin: Pin, headers: IncomingHttpHeaders): string | undefined {
  const opaque = (etag: string) => etag.replace(/^W\//, '');
  if (pin.etag !== undefined) {
    const now = header(headers.etag);
    return now !== undefined && opaque(now) === opaque(pin.etag) ? undefined : `etag ${pin.etag} at open, ${now ?? 'none'} now`;
  }
  if (pin.lastModified !== undefined) {
    const now = header(headers['last-modified']);
    return now === pin.lastModified ? undefined : `last-modified ${pin.lastModified} at open, ${now ?? 'none'} now`;
  }
  return undefined;
}

/** `bytes FIRST-LAST/TOTAL` or `bytes * /TOTAL` (RFC 9110 §14.4); TOTAL may be `*` (unknown). */
function parseContentRange(value: string | undefined): { start?: number; end?: number; total?: number } | undefined {
  const match = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(value?.trim() ?? '');
  if (!match) return undefined;
  const number = (text: string | undefined) => (text === undefined || text === '*' ? undefined : Number(text));
  const [start, end, total] = [number(match[1]), number(match[2]), number(match[3])];
  for (const claim of [start, end, total]) if (claim !== undefined && !Number.isSafeInteger(claim)) return undefined;
  if (start !== undefined && (end! < start || (total !== undefined && end! >= total))) return undefined;
  return { start, end, total };
}

/** The Range header for `spans`: `bytes=a-b,c-d,…` (RFC 9110 §14.1.2). */
function rangeHeader(spans: readonly Span[]): string {
  return `bytes=${spans.map(([start, end]) => `${start}-${end - 1}`).join(',')}`;
}

/** A long Range header shortened for messages: its first ranges and how many there are. */
function shortRange(spans: readonly Span[]): string {
  return spans.length <= 3 ? rangeHeader(spans) : `${rangeHeader(spans.slice(0, 2))},… (${spans.length} ranges)`;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function parseUrl(text: string, from: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw fail('HTTP_BAD_URL', text, 'found text that does not parse as a url');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw fail('HTTP_BAD_URL', text, `found ${url.protocol.slice(0, -1)}:${from === text ? '' : ` (redirected from ${from})`}`);
  }
  return url;
}

function positive(value: number, name: string, least: number): number {
  if (!Number.isSafeInteger(value) || value < least) throw fail('BAD_ARGUMENT', `httpSource: ${name} must be an integer of at least ${least}, found ${value}`);
  return value;
}
