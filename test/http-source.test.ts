/**
 * The HTTP source against a real nginx started here on 127.0.0.1 (never a mock): bytes, the I/O
 * plan of an .xz opened over HTTP, and every refusal — a server that ignores Range, a file replaced
 * while it is read, 404, bounded retries on 503 — named after the error it must give.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, renameSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeekzError, type ErrorCode } from '../src/errors.js';
import { decoderOf, open } from '../src/open.js';
import { httpSource, type HttpStats } from '../src/source/http.js';
import { diskLikeData, findTool, requireTool, run, runCli, tempDir } from './helpers/tools.js';

const KIB = 1024;
const MIB = 1024 * KIB;

/** A port nobody listens on now: bind port 0, read the number, let it go. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

async function waitForPort(port: number, child: ChildProcess, errorLog: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${readFileSync(errorLog, 'utf8')}`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on 127.0.0.1:${port} within 10 s: ${readFileSync(errorLog, 'utf8')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** nginx as a foreground child with everything (pid, logs, temp paths, root) under `dir`. */
function nginxConfig(dir: string, port: number): string {
  const www = join(dir, 'www');
  return `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 64; }
http {
  default_type application/octet-stream;
  log_format plan '$status $request_method $uri "$http_range" $body_bytes_sent';
  access_log ${dir}/access.log plan;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${www};
    # max_ranges 0 disables byte ranges: every answer is 200 with the whole file.
    location /norange/ { max_ranges 0; alias ${www}/; }
    # Only Last-Modified identifies the version here.
    location /noetag/ { etag off; alias ${www}/; }
    # A proxy that drops the preconditions: only the client's own validator check is left.
    location /nocond/ {
      proxy_pass http://127.0.0.1:${port}/;
      proxy_set_header If-Match "";
      proxy_set_header If-Unmodified-Since "";
    }
    location /flaky/ { return 503; }
    # 503 until the file exists: a failure the retries outlast.
    location /later/ { try_files $uri =503; }
    location = /moved.bin { return 301 /data.bin; }
    location /loop/ { return 302 /loop/again; }
  }
}
`;
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<SeekzError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(SeekzError);
  expect((error as SeekzError).code, (error as Error).message).toBe(code);
  return error as SeekzError;
}

describe('http source against a real nginx', () => {
  let dir: { path: string; remove: () => void };
  let www: string;
  let nginx: ChildProcess;
  let base: string;
  const data = diskLikeData(3 * MIB + 12345, 5);
  const disk = diskLikeData(2 * MIB, 9);
  let xzFile: Uint8Array;

  /** Access log lines for one path: `status method uri "range" bytes`. */
  const logFor = (uri: string) =>
    readFileSync(join(dir.path, 'access.log'), 'utf8')
      .split('\n')
      .filter((line) => line.split(' ')[2] === uri);

  /** nginx writes a line once it has finished a request, which may be just after the client saw the answer. */
  const waitForLog = async (uri: string, count: number) => {
    const deadline = Date.now() + 3000;
    while (logFor(uri).length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    return logFor(uri);
  };

  beforeAll(async () => {
    const nginxPath = findTool('nginx', 'nginx');
    requireTool('xz', 'xz-utils');
    requireTool('gzip', 'gzip');
    dir = tempDir('seekz-http-');
    www = join(dir.path, 'www');
    mkdirSync(www);
    mkdirSync(join(www, 'later'));
    mkdirSync(join(dir.path, 'tmp'));
    // nginx workers run as nobody when the tests run as root: they must be able to read the tree.
    chmodSync(dir.path, 0o755);
    chmodSync(www, 0o755);
    chmodSync(join(www, 'later'), 0o755);

    writeFileSync(join(www, 'data.bin'), data);
    const xz = run('xz', ['-T2', '--block-size=64KiB', '-c'], { input: disk });
    expect(xz.status, xz.stderr).toBe(0);
    xzFile = new Uint8Array(xz.stdout);
    writeFileSync(join(www, 'disk.img.xz'), xzFile);
    const gz = run('gzip', ['-6', '-c', '-n'], { input: disk });
    expect(gz.status, gz.stderr).toBe(0);
    writeFileSync(join(www, 'disk.img.gz'), gz.stdout);
    // 4 GiB, sparse: a body nobody may download whole.
    writeFileSync(join(www, 'huge.bin'), '');
    truncateSync(join(www, 'huge.bin'), 4 * 1024 * MIB);

    const port = await freePort();
    writeFileSync(join(dir.path, 'nginx.conf'), nginxConfig(dir.path, port));
    const errorLog = join(dir.path, 'error.log');
    nginx = spawn(nginxPath, ['-p', dir.path, '-c', join(dir.path, 'nginx.conf'), '-e', errorLog, '-g', 'daemon off;'], { stdio: 'ignore' });
    await waitForPort(port, nginx, errorLog);
    base = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = once(nginx, 'exit');
      nginx.kill('SIGTERM');
      const timer = setTimeout(() => nginx.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    dir?.remove();
  });

  it('gives the size and bytes of the file, and pins its strong ETag', async () => {
    const source = await httpSource(`${base}/data.bin`);
    try {
      expect(source.size).toBe(data.length);
      expect(source.validator).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
      let state = 7;
      const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
      for (let probe = 0; probe < 40; probe++) {
        const offset = next() % data.length;
        const length = probe % 7 === 0 ? 700 * KIB + 3 : 1 + (next() % 20_000);
        const got = await source.read(offset, length);
        expect(Buffer.compare(got, data.subarray(offset, offset + length)), `read(${offset}, ${length})`).toBe(0);
      }
    } finally {
      await source.close();
    }
  });

  it('clips reads at and past the end', async () => {
    const source = await httpSource(`${base}/data.bin`);
    try {
      expect(Buffer.compare(await source.read(data.length - 10, 100), data.subarray(data.length - 10))).toBe(0);
      expect((await source.read(data.length, 10)).length).toBe(0);
      expect((await source.read(data.length + 4096, 10)).length).toBe(0);
      expect((await source.read(5, 0)).length).toBe(0);
    } finally {
      await source.close();
    }
  });

  it('serves reads inside fetched ranges from memory, and shares one request among overlapping reads', async () => {
    const source = await httpSource(`${base}/data.bin`);
    try {
      expect(source.stats.requests).toBe(1); // the open also fetched the first minFetch bytes
      expect((await source.read(100, 4096)).length).toBe(4096);
      expect(source.stats.requests).toBe(1);
      const at = MIB + 17;
      const reads = await Promise.all([source.read(at, 100), source.read(at + 50, 100), source.read(at + 10, 10), source.read(at + 200 * KIB, 4096)]);
      expect(source.stats.requests).toBe(2);
      expect(Buffer.compare(reads[1], data.subarray(at + 50, at + 150))).toBe(0);
      expect(Buffer.compare(reads[3], data.subarray(at + 200 * KIB, at + 200 * KIB + 4096))).toBe(0);
      expect(source.stats.bytesFetched).toBe(2 * 256 * KIB);
    } finally {
      await source.close();
    }
  });

  it('keeps the cache within cacheSize, fetching an evicted range again', async () => {
    const source = await httpSource(`${base}/data.bin`, { cacheSize: 512 * KIB, minFetch: 256 * KIB });
    try {
      await source.read(MIB, 10); // cache: [0, 256K), [1M, 1M+256K)
      await source.read(2 * MIB, 10); // evicts [0, 256K)
      expect(source.stats.requests).toBe(3);
      await source.read(2 * MIB + 5, 10);
      expect(source.stats.requests).toBe(3);
      expect(Buffer.compare(await source.read(0, 10), data.subarray(0, 10))).toBe(0);
      expect(source.stats.requests).toBe(4);
    } finally {
      await source.close();
    }
  });

  it('opens an .xz with one fetch of its start and one of its end (index); a random read costs one block fetch, plus once one multi-range request for the headers before it', async () => {
    const minFetch = 4 * KIB;
    const footer = xzFile.subarray(xzFile.length - 12);
    const indexSize = (new DataView(footer.buffer, footer.byteOffset).getUint32(4, true) + 1) * 4;
    expect(indexSize + 12).toBeLessThan(minFetch); // so the end fetch holds footer and index

    const source = await httpSource(`${base}/disk.img.xz`, { minFetch });
    const xz = decoderOf(await open(source));
    let opened: HttpStats;
    let logLines: number;
    try {
      if (xz.format !== 'xz') throw new Error(`expected xz, got ${xz.format}`);
      expect(xz.size).toBe(disk.length);
      expect(xz.blocks.length).toBe(32);
      expect(source.stats.requests).toBe(2);
      expect(source.stats.bytesFetched).toBeLessThanOrEqual(2 * minFetch);
      opened = { ...source.stats };

      // Block 16's offset rests on the index records of blocks 1–16, so the first read there
      // holds each against its block header (issue 8: a forged record would shift the data).
      // The headers the first fetch holds come from it; the others, 64 bytes of each, in one
      // multi-range request (Source.readRanges), whatever their number.
      const block = xz.blocks[16]!;
      const offset = block.uStart + 1000;
      expect(Buffer.compare(await xz.read(offset, 4096), disk.subarray(offset, offset + 4096))).toBe(0);
      const uncached = xz.blocks.slice(0, 16).filter((earlier) => earlier.offset + 64 > minFetch);
      expect(uncached.length).toBeGreaterThan(10);
      expect(source.stats.requests - opened.requests).toBe(2);
      expect(source.stats.bytesFetched - opened.bytesFetched).toBeLessThanOrEqual(Math.max(block.totalSize, minFetch) + uncached.length * 200);
      await xz.read(offset + 8192, 4096); // same block: no I/O
      expect(source.stats.requests - opened.requests).toBe(2);
      const log = (await waitForLog('/disk.img.xz', 4)).map((line) => line.split(' ')[3]);
      expect(log.slice(0, 2)).toEqual([`"bytes=0-${minFetch - 1}"`, `"bytes=${xzFile.length - minFetch}-${xzFile.length - 1}"`]);
      expect(log).toContain(`"bytes=${block.offset}-${block.offset + Math.max(block.totalSize, minFetch) - 1}"`);
      expect(log).toContain(`"bytes=${uncached.map((earlier) => `${earlier.offset}-${earlier.offset + 63}`).join(',')}"`);
      // A block before it is confirmed already: reading it costs its block fetch alone.
      const earlier = xz.blocks[5]!;
      await xz.read(earlier.uStart, 10);
      expect(source.stats.requests - opened.requests).toBe(3);
      logLines = 5;
    } finally {
      await xz.close?.();
    }

    // Each open has its own cache: a second one fetches the start and the index once more.
    const again = await httpSource(`${base}/disk.img.xz`, { minFetch });
    const xzAgain = decoderOf(await open(again));
    try {
      expect(again.stats).toEqual(opened);
      expect(await waitForLog('/disk.img.xz', logLines + 2)).toHaveLength(logLines + 2);
    } finally {
      await xzAgain.close?.();
    }
  });

  it('with the default minFetch, opening an .xz takes 2 requests and a random read at most one more', async () => {
    const source = await httpSource(`${base}/disk.img.xz`);
    const xz = decoderOf(await open(source));
    try {
      if (xz.format !== 'xz') throw new Error(`expected xz, got ${xz.format}`);
      expect(source.stats.requests).toBe(2);
      const block = xz.blocks[20]!;
      const offset = block.uStart + 333;
      expect(Buffer.compare(await xz.read(offset, 4096), disk.subarray(offset, offset + 4096))).toBe(0);
      expect(source.stats.requests).toBeLessThanOrEqual(3);
      expect(source.stats.bytesFetched).toBeLessThanOrEqual(3 * 256 * KIB + block.totalSize);
    } finally {
      await xz.close?.();
    }
  });

  it('reads a gzip file over HTTP', async () => {
    const gz = decoderOf(await open(await httpSource(`${base}/disk.img.gz`)));
    try {
      expect(gz.format).toBe('gzip');
      expect(gz.size).toBe(disk.length);
      const offset = 1234567;
      expect(Buffer.compare(await gz.read(offset, 10_000), disk.subarray(offset, offset + 10_000))).toBe(0);
    } finally {
      await gz.close?.();
    }
  });

  it('seekz read takes a URL', () => {
    const offset = 1_500_000;
    const length = 70_000;
    const result = runCli('seekz', ['read', `${base}/disk.img.xz`, '--offset', String(offset), '--length', String(length)]);
    expect(result.status, result.stderr).toBe(0);
    expect(Buffer.compare(result.stdout, disk.subarray(offset, offset + length))).toBe(0);
  });

  it('refuses a server that ignores Range at once, without downloading the body (HTTP_NO_RANGE)', async () => {
    const stats: HttpStats = { requests: 0, bytesFetched: 0, retries: 0 };
    const started = Date.now();
    const error = await expectCode(httpSource(`${base}/norange/huge.bin`, { stats }), 'HTTP_NO_RANGE');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(error.message).toContain(`${base}/norange/huge.bin ignores range requests`);
    expect(error.message).toContain('download the file');
    expect(stats).toEqual({ requests: 1, bytesFetched: 0, retries: 0 });
    const [line] = await waitForLog('/norange/huge.bin', 1);
    expect(line).toMatch(/^200 GET /);
    // What nginx managed to push into socket buffers before the connection was dropped.
    expect(Number(line!.split(' ')[4])).toBeLessThan(256 * MIB);
  });

  /** Replaces `name` in www by a file of other content and another mtime, atomically. */
  const replace = (name: string, seed: number) => {
    const temp = join(www, `${name}.new`);
    writeFileSync(temp, diskLikeData(data.length, seed));
    const later = Date.now() / 1000 + 100;
    utimesSync(temp, later, later);
    renameSync(temp, join(www, name));
  };

  for (const [how, prefix, says] of [
    ['its strong ETag (If-Match)', '', /the server says the etag "[0-9a-f-]+" pinned at open no longer matches \(412\)/],
    ['its Last-Modified (If-Unmodified-Since)', '/noetag', /the server says the last-modified .* GMT pinned at open no longer matches \(412\)/],
    ['its ETag, compared by the client when a proxy drops If-Match', '/nocond', /etag "[0-9a-f-]+" at open, "[0-9a-f-]+" now/],
  ] as const) {
    it(`notices a file replaced while it is read, by ${how} (HTTP_CHANGED)`, async () => {
      const name = `changing${prefix.replace('/', '-')}.bin`;
      writeFileSync(join(www, name), data);
      const source = await httpSource(`${base}${prefix}/${name}`);
      try {
        if (prefix === '/noetag') expect(source.validator).toMatch(/GMT$/);
        expect(Buffer.compare(await source.read(MIB, 4096), data.subarray(MIB, MIB + 4096))).toBe(0);
        replace(name, 99);
        const error = await expectCode(source.read(2 * MIB, 4096), 'HTTP_CHANGED');
        expect(error.message).toContain(`${base}${prefix}/${name} changed while it was being read`);
        expect(error.message).toMatch(says);
        // What was fetched before the change is the old version, consistently.
        expect(Buffer.compare(await source.read(MIB, 4096), data.subarray(MIB, MIB + 4096))).toBe(0);
      } finally {
        await source.close();
      }
    });
  }

  it('names the URL of a missing file and does not retry it (HTTP_NOT_FOUND)', async () => {
    const error = await expectCode(httpSource(`${base}/missing.bin`, { retryDelay: 1 }), 'HTTP_NOT_FOUND');
    expect(error.message).toContain(`${base}/missing.bin answered 404`);
    expect(await waitForLog('/missing.bin', 1)).toHaveLength(1);
  });

  it('retries a 503 a bounded number of times, then names the URL, range, status and attempts (HTTP_FAILED)', async () => {
    const stats: HttpStats = { requests: 0, bytesFetched: 0, retries: 0 };
    const delays: number[] = [];
    const error = await expectCode(
      httpSource(`${base}/flaky/data.bin`, { stats, retryDelay: 5, onRetry: ({ delay }) => delays.push(delay) }),
      'HTTP_FAILED',
    );
    expect(error.message).toContain(`${base}/flaky/data.bin (bytes=0-262143)`);
    expect(error.message).toContain('503 service');
    expect(error.message).toContain('4 attempts');
    expect(stats).toMatchObject({ requests: 4, retries: 3 });
    expect(delays).toEqual([5, 10, 20]);
    expect((await waitForLog('/flaky/data.bin', 4)).map((line) => line.split(' ')[0])).toEqual(['503', '503', '503', '503']);
  });

  it('outlasts a transient failure: 503 first, then the file', async () => {
    const source = await httpSource(`${base}/later/data.bin`, {
      retryDelay: 5,
      onRetry: () => copyFileSync(join(www, 'data.bin'), join(www, 'later', 'data.bin')),
    });
    try {
      expect(source.stats).toMatchObject({ requests: 2, retries: 1 });
      expect(Buffer.compare(await source.read(2 * MIB, 5000), data.subarray(2 * MIB, 2 * MIB + 5000))).toBe(0);
    } finally {
      await source.close();
    }
  });

  it('follows redirects when opening and keeps the final URL; gives up after 5 (HTTP_TOO_MANY_REDIRECTS)', async () => {
    const source = await httpSource(`${base}/moved.bin`);
    try {
      expect(source.url).toBe(`${base}/data.bin`);
      expect(source.size).toBe(data.length);
      expect(Buffer.compare(await source.read(MIB, 100), data.subarray(MIB, MIB + 100))).toBe(0);
    } finally {
      await source.close();
    }
    const stats: HttpStats = { requests: 0, bytesFetched: 0, retries: 0 };
    await expectCode(httpSource(`${base}/loop/start`, { stats }), 'HTTP_TOO_MANY_REDIRECTS');
    expect(stats.requests).toBe(6);
  });
});
