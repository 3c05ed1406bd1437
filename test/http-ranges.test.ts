/**
 * Many small ranges in one request (Source.readRanges): the multipart/byteranges parser on
 * handmade bodies; the I/O plan of a random read near the end of a many-block .xz and a
 * many-frame seekable .zst over a real nginx (the headers before the target in one multi-range
 * request, then the block); and servers that answer a multi-range request otherwise (200 with the
 * whole file, one coalesced 206 part, a broken multipart body), each a tiny node:http server here.
 */
import { once } from 'node:events';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeekzError } from '../src/errors.js';
import { decoderOf, open } from '../src/open.js';
import { httpSource, type HttpStats } from '../src/source/http.js';
import { byterangesBoundary, MultipartError, parseByteranges } from '../src/source/multipart.js';
import { readRanges } from '../src/source/source.js';
import { bufferSource } from '../src/source/buffer.js';
import { crc32 } from '../src/crc/crc32.js';
import { buildIndex, buildStreamFooter } from '../src/xz/format.js';
import { openXz, readXzLayout } from '../src/xz/reader.js';
import { startNginx } from './helpers/nginx.js';
import { countingSource, diskLikeData, findTool, noise, requireTool, run, runCli, tempDir } from './helpers/tools.js';

const KIB = 1024;
const MIB = 1024 * KIB;

const ascii = (text: string) => new Uint8Array(Buffer.from(text, 'latin1'));
const textOf = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1');

/** A multipart/byteranges body as RFC 9110 §14.6 shows it: CRLF lines, parts as given. */
function multipart(boundary: string, parts: { range: string; data: string }[], eol = '\r\n'): Uint8Array {
  let body = `preamble to ignore${eol}`;
  for (const part of parts) body += `--${boundary}${eol}Content-Type: application/octet-stream${eol}Content-Range: ${part.range}${eol}${eol}${part.data}${eol}`;
  return ascii(`${body}--${boundary}--${eol}epilogue`);
}

describe('multipart parser', () => {
  it('reads parts by their content-range length, in the order sent, even when the data holds the boundary', () => {
    const data = 'ab\r\n--XYZ\r\ncd';
    const parts = parseByteranges(
      multipart('XYZ', [
        { range: 'bytes 500-512/1000', data },
        { range: 'bytes 0-3/1000', data: 'head' },
      ]),
      'XYZ',
    );
    expect(parts.map((part) => [part.start, part.total, textOf(part.bytes)])).toEqual([
      [500, 1000, data],
      [0, 1000, 'head'],
    ]);
  });

  it('takes LF line ends and a quoted boundary', () => {
    expect(byterangesBoundary('multipart/byteranges; boundary="a b:c"')).toBe('a b:c');
    expect(byterangesBoundary('Multipart/Byteranges;boundary=00000000001')).toBe('00000000001');
    expect(byterangesBoundary('application/octet-stream')).toBeUndefined();
    const parts = parseByteranges(multipart('a b:c', [{ range: 'bytes 5-6/9', data: 'xy' }], '\n'), 'a b:c');
    expect(parts.map((part) => textOf(part.bytes))).toEqual(['xy']);
  });

  it('refuses, in one line, data longer or shorter than its content-range, a cut body, a missing content-range, no parts', () => {
    const refusals: [Uint8Array, RegExp][] = [
      [multipart('B', [{ range: 'bytes 0-3/10', data: 'abcde' }]), /part 1 \(bytes 0-3\) is not followed by a '--B' line/],
      [multipart('B', [{ range: 'bytes 0-5/10', data: 'abcd' }]), /not followed by a '--B' line|cut short/],
      // One byte more claimed than sent: the CR of the CRLF must not pass for data.
      [multipart('B', [{ range: 'bytes 0-4/10', data: 'abcd' }]), /not followed by a '--B' line/],
      [multipart('B', [{ range: 'bytes 0-3/10', data: 'abcd' }]).subarray(0, 80), /cut short|do not end/],
      [ascii('--B\r\nContent-Type: x\r\n\r\nabcd\r\n--B--\r\n'), /part 1 has content-range ''/],
      [ascii('--B\r\nContent-Range: bytes 4-3/10\r\n\r\n\r\n--B--\r\n'), /impossible content-range/],
      [ascii('--B--\r\n'), /closes before any part/],
      [ascii('no delimiter here'), /no '--B' line opens/],
      [multipart('B', [{ range: 'bytes 0-3/10', data: 'abcd' }]), /no '--C' line opens/],
    ];
    for (const [body, message] of refusals) {
      const boundary = textOf(body).includes('--B') && message.source.includes('--C') ? 'C' : 'B';
      let caught: unknown;
      try {
        parseByteranges(body, boundary);
      } catch (error) {
        caught = error;
      }
      expect(caught, message.source).toBeInstanceOf(MultipartError);
      expect((caught as Error).message).toMatch(message);
      expect((caught as Error).message).not.toContain('\n');
    }
  });

  it('readRanges falls back to parallel reads for a source without it', async () => {
    const bytes = diskLikeData(10_000, 3);
    const got = await readRanges(bufferSource(bytes), [
      { offset: 9000, length: 2000 },
      { offset: 5, length: 10 },
    ]);
    expect(got.map((part) => part.length)).toEqual([1000, 10]);
    expect(Buffer.compare(got[1]!, bytes.subarray(5, 15))).toBe(0);
  });
});

describe('readRanges over a real nginx', () => {
  let dir: { path: string; remove: () => void };
  let nginx: { url: string; stop: () => Promise<void> };
  // Incompressible, so that the blocks near the end are not in what open fetched.
  const disk = noise(20 * 256 * KIB, 11);
  let xzFile: Uint8Array;
  let zstFile: Uint8Array;
  const log = () => readFileSync(join(dir.path, 'access.log'), 'utf8').split('\n').filter(Boolean);

  beforeAll(async () => {
    findTool('nginx', 'nginx');
    requireTool('xz', 'xz-utils');
    requireTool('zstd', 'zstd');
    dir = tempDir('seekz-ranges-');
    const www = join(dir.path, 'www');
    mkdirSync(www);
    chmodSync(dir.path, 0o755); // nginx workers run as nobody when the tests run as root
    // 20 blocks of 256 KiB: xz's own block splitting, an independent writer.
    const xz = run('xz', ['-T2', '--block-size=256KiB', '-c'], { input: disk });
    expect(xz.status, xz.stderr).toBe(0);
    xzFile = new Uint8Array(xz.stdout);
    writeFileSync(join(www, 'disk.img.xz'), xzFile);
    writeFileSync(join(dir.path, 'disk.img'), disk);
    // 80 frames of 64 KiB (seekzstd), and zstd itself checks that the file round trips.
    const made = runCli('seekzstd', ['--frame-size', '64KiB', '-o', join(www, 'disk.img.zst'), join(dir.path, 'disk.img')]);
    expect(made.status, made.stderr).toBe(0);
    zstFile = new Uint8Array(readFileSync(join(www, 'disk.img.zst')));
    const check = run('zstd', ['-dc', join(www, 'disk.img.zst')]);
    expect(Buffer.compare(check.stdout, disk)).toBe(0);

    nginx = await startNginx(www, dir.path, join(dir.path, 'access.log'));
  });

  afterAll(async () => {
    await nginx?.stop();
    dir?.remove();
  });

  it('gives the bytes of many ranges, in the order asked, in one multi-range request', async () => {
    const source = await httpSource(`${nginx.url}/disk.img.xz`, { minFetch: 4 * KIB });
    try {
      const ranges = Array.from({ length: 150 }, (_, at) => ({ offset: xzFile.length - 1 - ((at * 7919) % (xzFile.length - 8 * KIB)), length: 1 + (at % 40) }));
      const before = source.stats.requests;
      const got = await source.readRanges(ranges);
      ranges.forEach(({ offset, length }, at) => expect(Buffer.compare(got[at]!, xzFile.subarray(offset, offset + length)), `range ${at}`).toBe(0));
      expect(source.stats.requests - before).toBe(1);
    } finally {
      await source.close();
    }
  });

  // The random read of the brief: 4 KiB near the end, after open.
  for (const name of ['disk.img.xz', 'disk.img.zst']) {
    it(`a random 4 KiB read near the end of ${name} takes 2 requests after open (the headers before it, then its block), exact bytes`, async () => {
      const source = await httpSource(`${nginx.url}/${name}`);
      const data = decoderOf(await open(source, { cacheSize: 0 }));
      try {
        const opened: HttpStats = { ...source.stats };
        const units = data.format === 'xz' ? data.blocks.length : data.format === 'zstd' ? data.frames.length : 0;
        expect(units).toBeGreaterThanOrEqual(20);
        const offset = disk.length - 300 * KIB + 123;
        expect(Buffer.compare(await data.read(offset, 4096), disk.subarray(offset, offset + 4096))).toBe(0);
        const requests = source.stats.requests - opened.requests;
        const bytes = source.stats.bytesFetched - opened.bytesFetched;
        console.log(`${name}: ${units} blocks/frames, open ${opened.requests} requests ${opened.bytesFetched} bytes; the read: ${requests} requests, ${bytes} bytes`);
        expect(requests).toBeLessThanOrEqual(2);
        // The headers' batch is small: the read fetches little beyond its block, grown to minFetch.
        const target = data.format === 'xz' ? data.blocks[data.locate(offset)]!.totalSize : data.format === 'zstd' ? data.frames[data.locate(offset)]!.compressedSize : 0;
        expect(requests).toBe(2);
        expect(bytes).toBeLessThanOrEqual(Math.max(target, 256 * KIB) + units * 200);
        expect(log().some((line) => /^206 "bytes=\d+-\d+,\d+-\d+,/.test(line))).toBe(true);
      } finally {
        await data.close?.();
      }
    });
  }
});

describe('a block header longer than the head read of it', () => {
  /** `xz`'s file with every block header padded to 128 bytes (§3.1.1 allows zero padding), index and footer rebuilt. */
  const padHeaders = async (xz: Uint8Array): Promise<Uint8Array> => {
    const { blocks } = await readXzLayout(bufferSource(xz));
    const pieces: Uint8Array[] = [xz.subarray(0, 12)];
    const records = blocks.map((block) => {
      const old = xz.subarray(block.offset, block.offset + block.totalSize);
      const oldSize = (old[0]! + 1) * 4;
      const header = new Uint8Array(128);
      header.set(old.subarray(0, oldSize - 4));
      header[0] = 128 / 4 - 1;
      new DataView(header.buffer).setUint32(124, crc32(header.subarray(0, 124)), true);
      const unpaddedSize = 128 + block.unpaddedSize - oldSize;
      // Data, block padding, check: as they were (the padding is the same, as 128 - oldSize is a multiple of 4).
      pieces.push(header, old.subarray(oldSize));
      return { unpaddedSize, uncompressedSize: block.uSize };
    });
    const index = buildIndex(records);
    pieces.push(index, buildStreamFooter(blocks[0]!.checkId, index.length));
    return Buffer.concat(pieces);
  };

  it('is read again whole (xz -t and xz -dc accept the file; the read gives its bytes)', async () => {
    requireTool('xz', 'xz-utils');
    const data = diskLikeData(12 * 64 * KIB, 4);
    const made = run('xz', ['-T2', '--block-size=64KiB', '-c'], { input: data });
    expect(made.status, made.stderr).toBe(0);
    const padded = await padHeaders(new Uint8Array(made.stdout));
    const dir = tempDir('seekz-ranges-pad-');
    try {
      writeFileSync(join(dir.path, 'padded.xz'), padded);
      expect(run('xz', ['-t', join(dir.path, 'padded.xz')]).status).toBe(0);
      expect(Buffer.compare(run('xz', ['-dc', join(dir.path, 'padded.xz')]).stdout, data)).toBe(0);
    } finally {
      dir.remove();
    }
    const counted = countingSource(bufferSource(padded));
    const xz = await openXz(counted.source);
    try {
      counted.reads.length = 0;
      const offset = data.length - 1000;
      expect(Buffer.compare(await xz.read(offset, 1000), data.subarray(offset))).toBe(0);
      const before = xz.blocks.slice(0, -1);
      for (const block of before) {
        expect(counted.reads).toContainEqual([block.offset, 64]);
        expect(counted.reads).toContainEqual([block.offset, 128]);
      }
    } finally {
      await xz.close();
    }
  });
});

/**
 * A node:http server for the file `bytes` whose answer to a multi-range request is `multi`'s;
 * single ranges are answered properly (206 with Content-Range). Counts requests and body bytes sent.
 */
async function oddServer(bytes: Uint8Array, multi: (ranges: [number, number][], response: ServerResponse) => void) {
  const sent = { requests: 0, multiRequests: 0, bytes: 0 };
  const server: Server = createHttpServer((request: IncomingMessage, response: ServerResponse) => {
    sent.requests++;
    const header = request.headers.range ?? '';
    const ranges = header
      .replace(/^bytes=/, '')
      .split(',')
      .map((text) => text.split('-').map(Number) as [number, number]);
    const write = response.write.bind(response);
    response.write = ((chunk: Uint8Array | string, ...rest: unknown[]) => {
      sent.bytes += chunk.length;
      return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof response.write;
    response.setHeader('etag', '"v1"');
    if (ranges.length > 1) {
      sent.multiRequests++;
      multi(ranges, response);
      return;
    }
    const [start, last] = ranges[0]!;
    const end = Math.min(last, bytes.length - 1);
    response.writeHead(206, { 'content-range': `bytes ${start}-${end}/${bytes.length}`, 'content-length': end - start + 1 });
    response.write(bytes.subarray(start, end + 1));
    response.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/file`;
  return { url, sent, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('servers that answer a multi-range request otherwise', () => {
  const file = diskLikeData(8 * MIB, 21);
  const ranges = Array.from({ length: 40 }, (_, at) => ({ offset: 300 * KIB + at * 170 * KIB + (at % 9), length: 64 }));
  const expectExact = (got: Uint8Array[]) => ranges.forEach(({ offset, length }, at) => expect(Buffer.compare(got[at]!, file.subarray(offset, offset + length)), `range ${at}`).toBe(0));

  it('200 with the whole file: dropped after the headers, then one request per range', async () => {
    let hungUpEarly: Promise<boolean> | undefined;
    const server = await oddServer(file, (_, response) => {
      response.writeHead(200, { 'content-length': file.length });
      response.flushHeaders();
      // The body at a slow link's pace (64 KiB per 10 ms, 1.3 s in all), so that what was sent
      // before the client hung up is not hidden in socket buffers: it must hang up after the headers.
      let at = 0;
      const more = () => {
        if (response.destroyed || response.socket?.destroyed) return;
        if (at >= file.length) return void response.end();
        response.write(file.subarray(at, at + 64 * KIB));
        at += 64 * KIB;
        setTimeout(more, 10);
      };
      hungUpEarly = once(response, 'close').then(() => at < file.length);
      more();
    });
    const source = await httpSource(server.url);
    try {
      expectExact(await source.readRanges(ranges));
      expect(server.sent.multiRequests).toBe(1);
      expect(source.stats.requests).toBe(1 + 1 + ranges.length);
      expect(source.stats.bytesFetched).toBeLessThan(256 * KIB + ranges.length * 64 + 1);
      expect(await hungUpEarly).toBe(true);
      expect(server.sent.bytes).toBeLessThan(file.length / 2);
      // Refused once, not asked again: the next batch goes one range a request at once.
      expectExact(await source.readRanges(ranges));
      expect(server.sent.multiRequests).toBe(1);
    } finally {
      await source.close();
      await server.close();
    }
  });

  it('one coalesced 206 part covering all the ranges: the covered bytes, in one request', async () => {
    const server = await oddServer(file, (asked, response) => {
      const start = Math.min(...asked.map(([first]) => first));
      const last = Math.max(...asked.map(([, end]) => end));
      response.writeHead(206, { 'content-range': `bytes ${start}-${last}/${file.length}`, 'content-length': last - start + 1 });
      response.end(file.subarray(start, last + 1));
    });
    const source = await httpSource(server.url);
    try {
      // Close together, so that the coalesced part stays within what the ranges asked for plus overhead.
      const near = Array.from({ length: 30 }, (_, at) => ({ offset: MIB + at * 100, length: 64 }));
      const got = await source.readRanges(near);
      near.forEach(({ offset, length }, at) => expect(Buffer.compare(got[at]!, file.subarray(offset, offset + length))).toBe(0));
      expect(source.stats.requests).toBe(2);
      // Coalesced across a wide gap: far more than asked, dropped unread, then one request per range.
      expectExact(await source.readRanges(ranges));
      expect(source.stats.requests).toBe(2 + 1 + ranges.length);
    } finally {
      await source.close();
      await server.close();
    }
  });

  it('a 206 multipart body with a part missing: the missing range fetched alone; out of order is fine', async () => {
    const server = await oddServer(file, (asked, response) => {
      const boundary = 'SEEKZTEST';
      const kept = asked.slice(1).reverse();
      const pieces = kept.map(([start, last]) => Buffer.concat([Buffer.from(`\r\n--${boundary}\r\nContent-Range: bytes ${start}-${last}/${file.length}\r\n\r\n`), file.subarray(start, last + 1)]));
      response.writeHead(206, { 'content-type': `multipart/byteranges; boundary=${boundary}` });
      response.end(Buffer.concat([...pieces, Buffer.from(`\r\n--${boundary}--\r\n`)]));
    });
    const source = await httpSource(server.url);
    try {
      expectExact(await source.readRanges(ranges));
      expect(source.stats.requests).toBe(1 + 1 + 1);
    } finally {
      await source.close();
      await server.close();
    }
  });

  /** A proper multipart/byteranges answer to `asked`. */
  const multipartAnswer = (asked: [number, number][], response: ServerResponse) => {
    const boundary = 'SEEKZTEST';
    const pieces = asked.map(([start, last]) => Buffer.concat([Buffer.from(`\r\n--${boundary}\r\nContent-Range: bytes ${start}-${last}/${file.length}\r\n\r\n`), file.subarray(start, last + 1)]));
    response.writeHead(206, { 'content-type': `multipart/byteranges; boundary=${boundary}` });
    response.end(Buffer.concat([...pieces, Buffer.from(`\r\n--${boundary}--\r\n`)]));
  };

  it('a 503 to the batch is retried like a single read; a 416 falls back to one request per range', async () => {
    let tries = 0;
    const flaky = await oddServer(file, (asked, response) => {
      if (tries++ === 0) {
        response.writeHead(503);
        return void response.end();
      }
      multipartAnswer(asked, response);
    });
    const refusing = await oddServer(file, (_, response) => {
      response.writeHead(416, { 'content-range': `bytes */${file.length}` });
      response.end();
    });
    const first = await httpSource(flaky.url, { retryDelay: 1 });
    const second = await httpSource(refusing.url);
    try {
      expectExact(await first.readRanges(ranges));
      expect(first.stats).toMatchObject({ requests: 1 + 2, retries: 1 });
      expectExact(await second.readRanges(ranges));
      expect(second.stats.requests).toBe(1 + 1 + ranges.length);
    } finally {
      await first.close();
      await second.close();
      await flaky.close();
      await refusing.close();
    }
  });

  it('a malformed multipart body, or a part of another size of file, is one clear error, never bytes', async () => {
    for (const [breakage, code, message] of [
      ['long', 'HTTP_BAD_RESPONSE', /multipart\/byteranges: part 1 \(bytes \d+-\d+\) is not followed by a '--SEEKZTEST' line/],
      ['total', 'HTTP_CHANGED', /8388608 bytes at open, 8388609 now/],
    ] as const) {
      const server = await oddServer(file, (asked, response) => {
        const boundary = 'SEEKZTEST';
        const pieces = asked.map(([start, last]) =>
          Buffer.concat([
            Buffer.from(`\r\n--${boundary}\r\nContent-Range: bytes ${start}-${last}/${file.length + (breakage === 'total' ? 1 : 0)}\r\n\r\n`),
            file.subarray(start, last + 1 + (breakage === 'long' ? 1 : 0)),
          ]),
        );
        response.writeHead(206, { 'content-type': `multipart/byteranges; boundary=${boundary}` });
        response.end(Buffer.concat([...pieces, Buffer.from(`\r\n--${boundary}--\r\n`)]));
      });
      const source = await httpSource(server.url);
      try {
        const error = await source.readRanges(ranges).then(
          () => undefined,
          (caught: unknown) => caught,
        );
        expect(error).toBeInstanceOf(SeekzError);
        expect((error as SeekzError).code).toBe(code);
        expect((error as Error).message).toMatch(message);
        expect((error as Error).message).not.toContain('\n');
      } finally {
        await source.close();
        await server.close();
      }
    }
  });
});
