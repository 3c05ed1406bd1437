/**
 * Parses a multipart/byteranges body (RFC 9110 §14.6, framing from RFC 2046 §5.1.1): the answer
 * to a request for several ranges at once.
 *
 * Invariant: every part returned holds exactly the bytes its own Content-Range names, no more and
 * no fewer, taken by that length (never by searching for the next boundary, which the data may
 * contain); a body that does not follow the framing exactly is refused with one line saying where,
 * never returned in part. Which parts cover what was asked, and the total against the pinned size,
 * are the caller's checks. Pinned by test/http-ranges.test.ts ("multipart parser").
 *
 * No I/O here: the HTTP source hands in the whole body, bounded by what it asked for.
 */

export interface BytePart {
  /** First byte offset of the part in the file. */
  start: number;
  /** The file's length as the part states it, or undefined for `*`. */
  total: number | undefined;
  bytes: Uint8Array;
}

/** A body not framed as multipart/byteranges; `why` is one line for HTTP_BAD_RESPONSE. */
export class MultipartError extends Error {}

/** The boundary parameter of a `multipart/byteranges; boundary=…` content type, or undefined for another type. */
export function byterangesBoundary(contentType: string | undefined): string | undefined {
  const match = /^\s*multipart\/byteranges\s*;(.*)$/i.exec(contentType ?? '');
  if (!match) return undefined;
  const boundary = /(?:^|;)\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(match[1]!);
  return boundary ? (boundary[1] ?? boundary[2]) : undefined;
}

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;

/**
 * The parts of `body`, in the order the server sent them (RFC 9110 lets it send them in any order,
 * or coalesced). Accepts LF for CRLF in the framing lines, as lenient readers of RFC 2046 do, but
 * one style for the whole body, taken from its first delimiter line: so a CR is never taken for data
 * or data for a CR.
 */
export function parseByteranges(body: Uint8Array, boundary: string): BytePart[] {
  const text = (from: number, to: number) => Buffer.from(body.buffer, body.byteOffset + from, to - from).toString('latin1');
  const delimiter = Buffer.from(`--${boundary}`, 'latin1');
  /** The end of the line starting at `at` (the index of its LF), or -1. */
  const lineEnd = (at: number) => body.indexOf(LF, at);
  const isDelimiterAt = (at: number) => at + delimiter.length <= body.length && delimiter.every((byte, index) => body[at + index] === byte);

  // The preamble (ignored) ends at the first delimiter at the start of a line.
  let at = 0;
  while (!isDelimiterAt(at)) {
    const end = lineEnd(at);
    if (end < 0) throw new MultipartError(`no '--${boundary}' line opens the multipart body`);
    at = end + 1;
  }
  const firstEnd = lineEnd(at);
  const crlf = firstEnd > 0 && body[firstEnd - 1] === CR;
  const parts: BytePart[] = [];
  for (;;) {
    // at: a delimiter. After it: '--' (the close) or the end of the line, with optional spaces (RFC 2046 transport padding).
    at += delimiter.length;
    if (body[at] === DASH && body[at + 1] === DASH) {
      if (parts.length === 0) throw new MultipartError('the multipart body closes before any part');
      return parts; // the epilogue is ignored
    }
    const end = lineEnd(at);
    if (end < 0 || text(at, end).trim() !== '') throw new MultipartError(`the delimiter at byte ${at - delimiter.length} is not followed by a line end`);
    at = end + 1;
    // Header lines up to an empty one.
    let contentRange: string | undefined;
    for (;;) {
      const stop = lineEnd(at);
      if (stop < 0) throw new MultipartError(`the headers of part ${parts.length + 1} do not end`);
      const line = text(at, stop).replace(/\r$/, '');
      at = stop + 1;
      if (line === '') break;
      const colon = line.indexOf(':');
      if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === 'content-range') contentRange = line.slice(colon + 1).trim();
    }
    const range = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(contentRange ?? '');
    if (!range) throw new MultipartError(`part ${parts.length + 1} has content-range '${contentRange ?? ''}', expected 'bytes FIRST-LAST/SIZE'`);
    const start = Number(range[1]);
    const last = Number(range[2]);
    const total = range[3] === '*' ? undefined : Number(range[3]);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(last) || last < start || (total !== undefined && (!Number.isSafeInteger(total) || last >= total))) {
      throw new MultipartError(`part ${parts.length + 1} has an impossible content-range '${contentRange}'`);
    }
    const length = last - start + 1;
    if (at + length > body.length) throw new MultipartError(`part ${parts.length + 1} (bytes ${start}-${last}) is cut short: the body ends ${at + length - body.length} bytes early`);
    parts.push({ start, total, bytes: body.subarray(at, at + length) });
    at += length;
    // The data ends with the line end that belongs to the next delimiter.
    if (crlf && body[at++] !== CR) at = -1;
    if (at < 0 || body[at] !== LF || !isDelimiterAt(at + 1)) throw new MultipartError(`part ${parts.length} (bytes ${start}-${last}) is not followed by a '--${boundary}' line: its data is longer or shorter than its content-range`);
    at++;
  }
}
