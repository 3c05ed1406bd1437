/**
 * The serve section: the uncompressed data of an .xz file served over NBD and read over HTTP.
 * On an `xz -6 -T2 --block-size=16MiB` file of each bench image: nbdcopy through `seekz serve`
 * against nbdkit's xz filter, with 1 and 4 connections to a file and synchronously to /dev/null
 * (wall time, throughput, speed ratio, peak RSS of each row); one more row, not a target, on
 * seekxz's own file of the image (zero MiB runs as blocks of their own); then random 4 KiB reads of the
 * first image's .xz, and of a seekable .zst of it, through openCompressed(httpSource(url)) from a
 * local nginx, counting what each fetches.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { decoderOf, open as openCompressed } from '../src/open.js';
import { DEFAULT_MIN_FETCH, httpSource } from '../src/source/http.js';
import { fileSource } from '../src/source/file.js';
import { formatSize } from '../src/size.js';
import { DEFAULT_CACHE_SIZE } from '../src/xz/reader.js';
import { STREAM_FOOTER_SIZE } from '../src/xz/format.js';
import { MIB, cli, mib, ms, percentile, seededRandom, succeeds, type Bench, type Image } from './bench-common.js';
import { formatTable, measure, median } from './bench-measure.js';

const BLOCK_SIZE = 16 * MIB;
const READ_SIZE = 4096;
const HTTP_READS = 20;
/**
 * `seekz serve --help`: about 180 MiB + the cache + decoder threads × 3 × block size + 2 × block
 * size (blocks pinned by replies sent from them) + the --max-in-flight budget (64 MiB), whatever
 * the number of clients.
 */
const SERVE_MEMORY_BOUND = 180 * MIB + DEFAULT_CACHE_SIZE + 2 * 3 * BLOCK_SIZE + 2 * BLOCK_SIZE + 64 * MIB;
const NGINX = '/usr/sbin/nginx';

export async function serveSection(bench: Bench): Promise<void> {
  const image = bench.image!;
  const nbdcopy: Record<string, unknown> = {};
  let mainXz = '';
  for (const { label, image: served } of serveImages(bench)) {
    // The xz section, when it ran, made this very file (xz -6 -T2 --block-size=16MiB of the image) and
    // keeps it until the run ends: compressing the image again would take minutes.
    const fromXzSection = served === image ? bench.scratch.find((path) => path === join(bench.dir, 'xz-xz-6-T2.xz') && existsSync(path)) : undefined;
    const xz = fromXzSection ?? join(bench.dir, `serve-${label}.xz`);
    let wall: number | undefined;
    if (!fromXzSection) {
      bench.scratch.push(xz);
      wall = (await measure('xz', ['-6', '-T2', `--block-size=${BLOCK_SIZE}`, '-c', served.path], { stdout: xz })).wall;
    }
    const xzSize = statSync(xz).size;
    console.log(
      `
${label} image: xz -6 -T2 --block-size=16MiB: ${xzSize} bytes (${formatSize(xzSize)}), ` +
        (wall === undefined ? `the xz section's ${xz}` : `made in ${wall.toFixed(2)} s`),
    );
    nbdcopy[label] = { xz: { path: xz, bytes: xzSize, blockSize: BLOCK_SIZE, wall, fromXzSection: fromXzSection !== undefined }, ...(await nbdcopyPart(bench, served, xz, label)) };
    if (served === image) mainXz = xz;
  }
  nbdcopy.seekxzFile = await seekxzFilePart(bench, image);
  const http = await httpPart(bench, image, mainXz);
  bench.report.serve = { nbdcopy, http };
}

/**
 * The images nbdcopy copies: the generated disk image (mostly zeros) and, once bench-common makes
 * it, a second image whose data has no zeros (issue 10 asks for both). Hook: when bench-common
 * offers the no-zeros image, push it here as { label: 'no-zeros', image }.
 */
function serveImages(bench: Bench): { label: string; image: Image }[] {
  return [{ label: 'generated', image: bench.image! }];
}

// ---- 1. nbdcopy through seekz serve and through nbdkit

/**
 * After nbdcopy, the --run command prints the server's own VmHWM: `seekz serve` runs it with
 * `sh -c`, so $PPID is the server. GNU time's %M is the highest over the server and everything
 * it waited for, nbdcopy included. nbdkit runs the command from a forked child, so for nbdkit
 * only GNU time's number exists.
 */
const SERVER_HIGH_WATER = 'grep VmHWM /proc/$PPID/status; tr "\\0" " " < /proc/$PPID/cmdline';

/**
 * The ways nbdcopy copies, each a row (issue 10 asks for 1 and 4 connections, to a file and to
 * /dev/null): its multi-threaded copier walks BLOCK_STATUS over a 128 MiB work range per
 * connection, then keeps up to --requests reads in flight; to /dev/null it writes nothing.
 */
const COPIES = [
  { label: 'to a file, --connections=1 --requests=4', connections: 1, args: ['--connections=1', '--requests=4'], toFile: true },
  { label: 'to a file, 4 connections (default)', connections: 4, args: ['--connections=4'], toFile: true },
  { label: 'to /dev/null, --connections=1 --requests=4', connections: 1, args: ['--connections=1', '--requests=4'], toFile: false },
  { label: 'to /dev/null, 4 connections (default)', connections: 4, args: ['--connections=4'], toFile: false },
];
const TARGET_RATIO = 1.5;

async function nbdcopyPart(bench: Bench, image: Image, xz: string, label: string, ways = COPIES, targets = true) {
  const printed = join(bench.dir, 'serve-run.txt');
  const copy = join(bench.dir, 'serve-copy.img');
  bench.scratch.push(printed, copy);
  console.log(
    `\nnbdcopy from each server, captive (--run), ${bench.repeat} run(s) each, round-robin. Caches: seekz serve ${formatSize(DEFAULT_CACHE_SIZE)} ` +
      `(its default), nbdkit xz-max-depth 8 × ${formatSize(BLOCK_SIZE)} blocks (its default) = the same. Load average at start: ${loadavg().map((load) => load.toFixed(2)).join(' ')}`,
  );
  const rows = [];
  for (const way of ways) {
    const command = (uri: string) => `rm -f '${copy}' && nbdcopy ${way.args.join(' ')} "${uri}" ${way.toFile ? `'${copy}'` : '/dev/null'}`;
    const servers = [
      { name: 'seekz serve', run: () => measure(process.execPath, [cli('seekz'), 'serve', xz, '--run', `${command('$uri')} && ${SERVER_HIGH_WATER}`], { stdout: printed }) },
      { name: 'nbdkit --filter=xz file', run: () => measure('nbdkit', ['-U', '-', '--filter=xz', 'file', `file=${xz}`, '--run', command('$uri')]) },
    ];
    console.log(`\nnbdcopy ${way.label}, ${label} image:`);
    const walls: number[][] = servers.map(() => []);
    const cpus: number[][] = servers.map(() => []);
    const treeRss = servers.map(() => 0);
    let serverRss = 0;
    for (let round = 0; round < bench.repeat; round++) {
      for (const [index, server] of servers.entries()) {
        const run = await server.run();
        walls[index]!.push(run.wall);
        cpus[index]!.push(run.cpu);
        treeRss[index] = Math.max(treeRss[index]!, run.rss);
        if (index === 0) serverRss = Math.max(serverRss, serverHighWater(readFileSync(printed, 'utf8')));
        console.log(`  ${server.name}: ${run.wall.toFixed(2)} s, ${run.cpu.toFixed(2)} s CPU`);
      }
    }
    const [ours, nbdkit] = walls.map(median) as [number, number];
    const ratio = nbdkit / ours;
    console.log(
      formatTable(
        ['server', 'wall s', 'CPU s (with nbdcopy)', 'MiB/s uncompressed', 'peak RSS MiB (GNU time, with nbdcopy)'],
        servers.map((server, index) => [server.name, median(walls[index]!).toFixed(2), median(cpus[index]!).toFixed(2), (image.plan.size / MIB / median(walls[index]!)).toFixed(1), mib(treeRss[index]!)]),
      ) + `\nspeed ratio nbdkit time / seekz serve time: ${ratio.toFixed(3)}; seekz serve process alone peaked at ${mib(serverRss)} MiB`,
    );
    if (targets) bench.targets.push(
      { what: `serve (${label}): nbdcopy ${way.label}, seekz serve vs nbdkit --filter=xz`, goal: `≥ ${TARGET_RATIO.toFixed(2)}`, measured: ratio.toFixed(3), pass: ratio >= TARGET_RATIO },
      { what: `serve (${label}): peak RSS of seekz serve, nbdcopy ${way.label}, --help's formula`, goal: `≤ ${mib(SERVE_MEMORY_BOUND)} MiB`, measured: `${mib(serverRss)} MiB`, pass: serverRss <= SERVE_MEMORY_BOUND },
    );
    rows.push({ way: way.label, connections: way.connections, walls: { seekzServe: walls[0], nbdkit: walls[1] }, cpu: { seekzServe: cpus[0], nbdkit: cpus[1] }, ratio, rss: { seekzServeProcess: serverRss, seekzServeTree: treeRss[0], nbdkitTree: treeRss[1] } });
  }
  // Once, untimed: the bytes nbdcopy gets from our server are the image's.
  const same = succeeds(process.execPath, [cli('seekz'), 'serve', xz, '--run', `nbdcopy "$uri" - | cmp -s - '${image.path.replace(/'/g, `'\\''`)}'`]);
  if (!same) process.exitCode = 1;
  console.log(
    `\npeak RSS bound, --help: ${serveHelpMemory()} (= ${mib(SERVE_MEMORY_BOUND)} MiB at 2 threads and ${formatSize(BLOCK_SIZE)} blocks)\n` +
      `nbdcopy through seekz serve gives the image's bytes (cmp): ${same ? 'yes' : 'NO'}`,
  );
  if (targets) bench.targets.push({ what: `serve (${label}): nbdcopy output equals the image`, goal: 'yes', measured: same ? 'yes' : 'NO', pass: same });
  return { rows, loadAverage: loadavg(), cacheSize: DEFAULT_CACHE_SIZE, memoryBound: SERVE_MEMORY_BOUND, sameBytes: same };
}

/**
 * Not a target row: the same copy from seekxz's own file of the image, whose runs of zero MiBs are
 * blocks of their own (src/xz/writer.ts), so seekz serve reports them as holes and nbdcopy skips
 * them; nbdkit's xz filter serves the same file. The xz section's file when it ran, else made here.
 */
async function seekxzFilePart(bench: Bench, image: Image) {
  const fromXzSection = bench.scratch.find((path) => path === join(bench.dir, 'xz-seekxz-6-T2.xz') && existsSync(path));
  const xz = fromXzSection ?? join(bench.dir, 'serve-seekxz.xz');
  if (!fromXzSection) {
    bench.scratch.push(xz);
    await measure(process.execPath, [cli('seekxz'), '-6', '-T2', `--block-size=${BLOCK_SIZE}`, '-c', image.path], { stdout: xz });
  }
  console.log(`
not a target: the same from seekxz's own .xz of the image (${formatSize(statSync(xz).size)}), both servers on that file`);
  return nbdcopyPart(bench, image, xz, "generated, seekxz's file", COPIES.filter((way) => way.connections === 4 && way.toFile), false);
}

function serverHighWater(printed: string): number {
  const match = /VmHWM:\s+(\d+) kB\s*\n(.*)/.exec(printed);
  if (!match || !match[2]!.includes('serve')) throw new Error(`bench: expected the seekz serve process's VmHWM and command line, got: ${printed.trim()}`);
  return Number(match[1]) * 1024;
}

function serveHelpMemory(): string {
  const help = execFileSync(process.execPath, [cli('seekz'), 'serve', '--help'], { encoding: 'utf8' });
  const start = help.indexOf('Memory:');
  return start < 0 ? "(no 'Memory:' in seekz serve --help)" : help.slice(start, help.indexOf('\n\n', start)).replace(/\s*\n\s*/g, ' ');
}

// ---- 2. random reads over HTTP

/**
 * Random reads over HTTP of the .xz, and of a seekable .zst of the same image (seekzstd, 1 MiB
 * frames). A read's first visit past the blocks confirmed so far also reads the headers of the
 * blocks (frames) before it, all in one multi-range request (Source.readRanges): so at most 2
 * requests a read, and at most its block plus a header batch of ≤ HEADER_PART_BYTES per earlier block.
 */
async function httpPart(bench: Bench, image: Image, xz: string) {
  const zst = join(bench.dir, 'serve-http.zst');
  bench.scratch.push(zst);
  await measure(process.execPath, [cli('seekzstd'), '-q', '-c', image.path], { stdout: zst });
  return { xz: await httpReads(bench, image, xz, 'xz'), zstd: await httpReads(bench, image, zst, 'zstd') };
}

/** What one earlier header may add to a read: 64 bytes read of it, and its part's headers in the multipart answer. */
const HEADER_PART_BYTES = 256;

async function httpReads(bench: Bench, image: Image, file: string, format: 'xz' | 'zstd') {
  const nginx = await startNginx(file);
  const imageSource = await fileSource(image.path);
  try {
    const source = await httpSource(nginx.url);
    const data = decoderOf(await openCompressed(source, { cacheSize: 0 }));
    if (data.format !== format) throw new Error(`bench: ${nginx.url} opened as ${data.format}`);
    const open = { ...source.stats };
    // The units reads land in (xz blocks, zstd frames) with their file bytes, and the index's size.
    const units = data.format === 'xz' ? data.blocks.map((block) => block.totalSize) : data.format === 'zstd' ? data.frames.map((frame) => frame.compressedSize) : [];
    let indexBytes = 0;
    if (data.format === 'xz') {
      const lastBlock = data.blocks[data.blocks.length - 1]!;
      const stream = data.streams[data.streams.length - 1]!;
      indexBytes = stream.offset + stream.size - STREAM_FOOTER_SIZE - (lastBlock.offset + lastBlock.totalSize);
    } else if (data.format === 'zstd') {
      const last = data.frames[data.frames.length - 1]!;
      indexBytes = data.fileSize - (last.offset + last.compressedSize);
    }
    const unit = format === 'xz' ? 'block' : 'frame';
    // Offsets in another block than the read before, so that the one-block cache never answers.
    const random = seededRandom(bench.seed + 2);
    const slots = Math.floor(image.plan.size / READ_SIZE);
    const reads: { offset: number; block: number; blockBytes: number; allowed: number; requests: number; bytes: number; time: number }[] = [];
    let wrong = 0;
    let confirmedUpTo = 0;
    try {
      while (reads.length < HTTP_READS) {
        const offset = Math.floor(random() * slots) * READ_SIZE;
        const block = data.locate(offset);
        if (reads.length > 0 && reads[reads.length - 1]!.block === block) continue;
        const before = { ...source.stats };
        const started = process.hrtime.bigint();
        const bytes = await data.read(offset, READ_SIZE);
        const time = Number(process.hrtime.bigint() - started) / 1e9;
        // Headers this read had to confirm: those between the furthest read so far and its block.
        const allowed = Math.max(units[block]!, DEFAULT_MIN_FETCH) + Math.max(0, block - confirmedUpTo) * HEADER_PART_BYTES;
        confirmedUpTo = Math.max(confirmedUpTo, block);
        reads.push({ offset, block, blockBytes: units[block]!, allowed, requests: source.stats.requests - before.requests, bytes: source.stats.bytesFetched - before.bytesFetched, time });
        if (!Buffer.from(await imageSource.read(offset, READ_SIZE)).equals(bytes)) wrong++;
      }
    } finally {
      await data.close();
    }
    const mostRequests = Math.max(...reads.map((read) => read.requests));
    const overBound = reads.filter((read) => read.bytes > read.allowed).length;
    const fromCache = reads.filter((read) => read.requests === 0).length;
    const fetching = reads.filter((read) => read.requests > 0);
    const openBound = indexBytes + 2 * DEFAULT_MIN_FETCH;
    console.log(
      `\nover HTTP (${format}): nginx ${nginx.version} on ${nginx.url}; openCompressed(httpSource(url)) with a one-${unit} cache (cacheSize 0),\n` +
        `httpSource at its defaults (its own 64 MiB cache of fetched ranges, ${formatSize(DEFAULT_MIN_FETCH)} smallest fetch)\n` +
        `open: ${open.requests} requests, ${open.bytesFetched} bytes (the ${format} index is ${indexBytes} bytes; ${units.length} ${unit}s)\n` +
        `${HTTP_READS} random ${READ_SIZE}-byte reads, each in another ${unit} than the one before (${fromCache} answered by httpSource's cache);\n` +
        `the first read past the ${unit}s confirmed so far also reads their headers, in one multi-range request:\n` +
        formatTable(
          ['per read', 'requests', 'bytes fetched', `of its ${unit}`],
          [
            ['median of reads that fetched', String(median(fetching.map((read) => read.requests))), String(median(fetching.map((read) => read.bytes))), (median(fetching.map((read) => read.bytes / read.blockBytes)) * 100).toFixed(1) + ' %'],
            ['most', String(mostRequests), String(Math.max(...reads.map((read) => read.bytes))), (Math.max(...reads.map((read) => read.bytes / read.blockBytes)) * 100).toFixed(1) + ' %'],
          ],
        ) +
        `\nread time p50 ${ms(median(reads.map((read) => read.time)))} ms, p90 ${ms(percentile(reads.map((read) => read.time), 0.9))} ms; ` +
        `bytes equal to the image's: ${wrong === 0 ? 'all' : `${wrong} reads WRONG`}`,
    );
    if (wrong > 0) process.exitCode = 1;
    bench.targets.push(
      {
        what: `serve http (${format}): a random 4 KiB read fetches at most its ${unit} and the headers before it`,
        goal: `≤ 2 requests (headers batch + ${unit}), ≤ ${unit} (or ${formatSize(DEFAULT_MIN_FETCH)}) + ${HEADER_PART_BYTES} B per header`,
        measured: `${mostRequests} request(s), ${overBound} read(s) over`,
        pass: mostRequests <= 2 && overBound === 0 && wrong === 0,
      },
      {
        what: `serve http (${format}): open fetches the index once`,
        goal: `≤ 3 requests, ≤ ${formatSize(openBound)}`,
        measured: `${open.requests} requests, ${formatSize(open.bytesFetched)}`,
        pass: open.requests <= 3 && open.bytesFetched <= openBound,
      },
    );
    return { url: nginx.url, nginx: nginx.version, open, indexBytes, reads, wrongReads: wrong };
  } finally {
    await imageSource.close();
    await nginx.stop();
  }
}

/** nginx in the foreground on a free port of 127.0.0.1, serving FILE alone from a temp dir, with a config of its own; each request a line of `accessLog`, when given. */
export async function startNginx(file: string, accessLog?: string): Promise<{ url: string; version: string; stop: () => Promise<void> }> {
  const directory = mkdtempSync(join(tmpdir(), 'seekz-bench-nginx-'));
  const root = join(directory, 'root');
  const name = `served${extname(file)}`;
  mkdirSync(root);
  symlinkSync(file, join(root, name));
  const port = await freePort();
  // master_process off: one process, as the user running the bench, stopped by one signal.
  writeFileSync(
    join(directory, 'nginx.conf'),
    `daemon off;
master_process off;
worker_processes 1;
pid ${directory}/nginx.pid;
error_log ${directory}/error.log warn;
events { worker_connections 64; }
http {
  access_log ${accessLog ?? 'off'};
  client_body_temp_path ${directory}/client_body;
  proxy_temp_path ${directory}/proxy;
  fastcgi_temp_path ${directory}/fastcgi;
  uwsgi_temp_path ${directory}/uwsgi;
  scgi_temp_path ${directory}/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`,
  );
  // nginx -v prints to stderr.
  const version = /nginx\/(\S+)/.exec(spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr)?.[1] ?? '?';
  const child: ChildProcess = spawn(NGINX, ['-p', directory, '-e', join(directory, 'error.log'), '-c', join(directory, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const url = `http://127.0.0.1:${port}/${name}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(directory, { recursive: true, force: true });
  };
  for (let tries = 0; ; tries++) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`bench: nginx exited (${child.exitCode}): ${stderr.trim()}`);
    }
    if (await answers(url)) return { url, version, stop };
    if (tries === 100) {
      await stop();
      throw new Error(`bench: nginx did not answer on ${url} within 5 s: ${stderr.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A port that was free a moment ago: nginx takes it next. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** True when a HEAD request to URL gets 200. */
function answers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = request(url, { method: 'HEAD', agent: false }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    probe.on('error', () => resolve(false));
    probe.end();
  });
}
