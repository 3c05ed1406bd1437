/**
 * `seekz serve` against real NBD clients: nbdinfo, nbdcopy, qemu-img, qemu-io (libnbd and
 * qemu's own client) and libnbd's Python binding. Inputs are made at test time by the real
 * tools: xz (1 MiB blocks), gzip -6, and our partial-deflate with a stored range.
 * Servers listen only on private Unix sockets or 127.0.0.1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cliPath,
  diskLikeData,
  peakRss,
  requireTool,
  run,
  runAsync,
  runCli,
  sha256,
  SYSTEM_PYTHON,
  tempDir,
  xzList,
  type RunResult,
} from './helpers/tools.js';

const KIB = 1024;
const MIB = 2 ** 20;
const SIZE = 8 * MIB + 12_345;
/** The stored range of the partial-deflate file: the only bytes a client may write. */
const STORED = { start: 2 * MIB, end: 3 * MIB };
/** The server's documented base:allocation granule: an all-zero granule is reported as a hole. */
const GRANULE = 64 * KIB;
/** xz --block-size of the test file. */
const XZ_BLOCK = MIB;
const EXPORT_NAME = 'disk-image';

/** Disk-like bytes with zero runs long enough to be holes; one spans the first xz block boundary. */
function makeRaw(): Uint8Array {
  const data = diskLikeData(SIZE, 7);
  data.fill(0, MIB - 100_000, MIB + 300_000);
  data.fill(0, 5 * MIB + 10_000, 5 * MIB + 400_000);
  data.fill(0, SIZE - 200_000); // a zero tail, so the last extent is a partial granule
  return data;
}

function allZero(bytes: Uint8Array): boolean {
  for (let index = 0; index < bytes.length; index++) if (bytes[index] !== 0) return false;
  return true;
}

/** xorshift32: the same offsets on every run. */
function randomOffsets(count: number, seed: number, maxLength: number): [offset: number, length: number][] {
  let state = seed;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  return Array.from({ length: count }, () => {
    const length = 1 + (next() % maxLength);
    return [next() % (SIZE - length + 1), length];
  });
}

function ok(result: RunResult, what: string): RunResult {
  if (result.status !== 0) {
    throw new Error(`${what} exited ${result.status}\nstdout: ${result.stdout.toString().slice(-2000)}\nstderr: ${result.stderr.slice(-4000)}`);
  }
  return result;
}

/** The JSON a Python script printed on its last line. */
function lastJson<T>(result: RunResult): T {
  const lines = result.stdout.toString().trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

interface Extent {
  offset: number;
  length: number;
  zero: boolean;
}

/**
 * Holds a base:allocation map against the bytes: the extents tile the export, every hole reads
 * as zeros, no data extent is all zeros, and (unless the server may not know it: xz blocks not
 * decoded yet, for BLOCK_STATUS decodes nothing) every all-zero granule is reported as a hole.
 */
function expectMapMatches(extents: Extent[], raw: Uint8Array, { everyZeroGranule = true } = {}): void {
  let at = 0;
  for (const extent of extents) {
    expect(extent.offset, 'extents are contiguous').toBe(at);
    at += extent.length;
  }
  expect(at, 'extents cover the export').toBe(raw.length);
  for (const extent of extents) {
    const bytes = raw.subarray(extent.offset, extent.offset + extent.length);
    if (everyZeroGranule || extent.zero) expect(allZero(bytes), `extent [${extent.offset}, +${extent.length}) ${extent.zero ? 'hole,zero' : 'data'}`).toBe(extent.zero);
  }
  if (!everyZeroGranule) return;
  let holes = 0;
  for (let granule = 0; granule < raw.length; granule += GRANULE) {
    if (!allZero(raw.subarray(granule, granule + GRANULE))) continue;
    holes++;
    const extent = extents.find((candidate) => candidate.offset <= granule && granule < candidate.offset + candidate.length)!;
    expect(extent.zero, `all-zero granule at ${granule} is reported as a hole`).toBe(true);
  }
  expect(holes).toBeGreaterThan(4);
}

/** Shared by every Python client: libnbd errors become { errno, message } for the test to check. */
const PYTHON_PRELUDE = `
import gzip, hashlib, json, os, sys, time, zlib
import nbd

ARGS = json.load(open(sys.argv[1]))
SOCKET = ARGS.get('socket') or os.environ['unixsocket']

def failure(call):
    try:
        call()
        return None
    except nbd.Error as error:
        return {'errno': error.errno, 'message': error.string}

def sha(data):
    return hashlib.sha256(bytes(data)).hexdigest()

def done(result):
    print(json.dumps(result))
`;

interface Failure {
  errno: string;
  message: string;
}

interface Server {
  pid: number;
  socket: string;
  uri: string;
  stderr: () => string;
  /** SIGTERM, then the exit status (or signal name). */
  stop: () => Promise<number | string | null>;
}

describe('seekz serve with real NBD clients', () => {
  let dir: { path: string; remove: () => void };
  let raw: Uint8Array;
  const started: ChildProcess[] = [];
  const path = (name: string) => join(dir.path, name);

  beforeAll(() => {
    requireTool('nbdinfo', 'libnbd-bin');
    requireTool('nbdcopy', 'libnbd-bin');
    requireTool('qemu-img', 'qemu-utils');
    requireTool('qemu-io', 'qemu-utils');
    requireTool('xz', 'xz-utils');
    requireTool('gzip', 'gzip');
    requireTool('zcat', 'gzip');
    if (run(SYSTEM_PYTHON, ['-c', 'import nbd']).status !== 0) throw new Error(`${SYSTEM_PYTHON} cannot import nbd: apt-get install -y python3-libnbd`);

    dir = tempDir('seekz-nbd-');
    raw = makeRaw();
    writeFileSync(path('disk.img'), raw);
    // -1 keeps the test quick; the block layout, not the ratio, is what matters here.
    ok(run('xz', ['-T2', '-1', `--block-size=${XZ_BLOCK}`, '-k', path('disk.img')]), 'xz');
    ok(run('sh', ['-c', `gzip -6 -c '${path('disk.img')}' > '${path('disk.img.gz')}'`]), 'gzip');
    ok(runCli('partial-deflate', ['-q', path('disk.img'), path('disk.pd.gz'), String(STORED.start), String(STORED.end)]), 'partial-deflate');
  });

  afterAll(() => {
    for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    dir?.remove();
  });

  const formats = [
    { label: 'xz, 1 MiB blocks', file: 'disk.img.xz', reference: 'xz -dc' },
    { label: 'partial-deflate gzip', file: 'disk.pd.gz', reference: 'zcat' },
    { label: 'plain gzip -6 (index built in memory)', file: 'disk.img.gz', reference: 'zcat' },
  ];

  /** Captive mode: the server runs while COMMAND runs, then exits with its status. */
  const captive = (file: string, command: string, extra: string[] = []) => runCli('seekz', ['serve', path(file), ...extra, '--run', command]);

  /** Writes a Python client and its arguments; returns the command line that runs it. */
  const python = (name: string, body: string, args: object) => {
    writeFileSync(path(`${name}.py`), PYTHON_PRELUDE + body);
    writeFileSync(path(`${name}.json`), JSON.stringify(args));
    return `${SYSTEM_PYTHON} ${path(`${name}.py`)} ${path(`${name}.json`)}`;
  };

  /** A long-running `seekz serve` child; resolves once it says where it listens. */
  const startServer = (file: string, listen: string[], extra: string[] = []): Promise<Server> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [cliPath('seekz'), 'serve', path(file), ...listen, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
      started.push(child);
      let stderr = '';
      const exited = new Promise<number | string | null>((done) => child.on('exit', (code, signal) => done(code ?? signal)));
      const timer = setTimeout(() => reject(new Error(`seekz serve did not start within 15 s: ${stderr}`)), 15_000);
      child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const where = / at (nbd[^\s]+)/.exec(stderr);
        if (!where) return;
        clearTimeout(timer);
        const socketIndex = listen.indexOf('--unix');
        resolve({
          pid: child.pid!,
          socket: socketIndex >= 0 ? listen[socketIndex + 1]! : '',
          uri: where[1]!,
          stderr: () => stderr,
          stop: () => {
            child.kill('SIGTERM');
            return exited;
          },
        });
      });
      void exited.then((status) => {
        clearTimeout(timer);
        reject(new Error(`seekz serve exited ${status} before listening: ${stderr}`));
      });
    });

  describe('1. nbdinfo', () => {
    it('shows the exact size, read-only and base:allocation for xz, and the export name', () => {
      const result = ok(captive('disk.img.xz', 'nbdinfo --json "$uri"', ['--export-name', EXPORT_NAME]), 'nbdinfo --json');
      const info = JSON.parse(result.stdout.toString()) as { protocol: string; exports: Record<string, unknown>[] };
      expect(info.protocol).toBe('newstyle-fixed');
      expect(info.exports).toHaveLength(1);
      const exported = info.exports[0]!;
      expect(exported['export-name']).toBe(EXPORT_NAME);
      expect(exported['export-size']).toBe(SIZE);
      expect(exported['is_read_only']).toBe(true);
      expect(exported['can_flush']).toBe(false);
      expect(exported['contexts']).toContain('base:allocation');
    });

    it('nbdinfo --list lists the export named with --export-name', () => {
      const result = ok(captive('disk.img.xz', 'nbdinfo --list --json "$uri"', ['--export-name', EXPORT_NAME]), 'nbdinfo --list');
      const info = JSON.parse(result.stdout.toString()) as { exports: { 'export-name': string; 'export-size': number }[] };
      expect(info.exports.map((exported) => exported['export-name'])).toEqual([EXPORT_NAME]);
      expect(info.exports[0]!['export-size']).toBe(SIZE);
    });

    it('a partial-deflate gzip is writable (flush, FUA) and a plain gzip is read-only', () => {
      const writable = JSON.parse(ok(captive('disk.pd.gz', 'nbdinfo --json "$uri"'), 'nbdinfo pd').stdout.toString()).exports[0];
      expect(writable['export-size']).toBe(SIZE);
      expect(writable['is_read_only']).toBe(false);
      expect(writable['can_flush']).toBe(true);
      expect(writable['can_fua']).toBe(true);
      // Writes are kept per server, not shared through a cache every connection sees at once.
      expect(writable['can_multi_conn']).toBe(false);
      const plain = JSON.parse(ok(captive('disk.img.gz', 'nbdinfo --json "$uri"'), 'nbdinfo plain').stdout.toString()).exports[0];
      expect(plain['export-size']).toBe(SIZE);
      expect(plain['is_read_only']).toBe(true);
    });

    it('serves over TCP on 127.0.0.1 with --port', async () => {
      const port = await new Promise<number>((resolve) => {
        const probe = createServer().listen(0, '127.0.0.1', () => {
          const { port: free } = probe.address() as { port: number };
          probe.close(() => resolve(free));
        });
      });
      const server = await startServer('disk.img.xz', ['--port', String(port)]);
      try {
        expect(server.uri).toBe(`nbd://127.0.0.1:${port}/`);
        const info = JSON.parse(ok(await runAsync('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/`]), 'nbdinfo tcp').stdout.toString());
        expect(info.exports[0]['export-size']).toBe(SIZE);
      } finally {
        await server.stop();
      }
    });
  });

  describe('2. nbdcopy', () => {
    for (const format of formats) {
      it(`copies exactly what ${format.reference} gives: ${format.label}`, () => {
        const out = path(`copy-${format.file}.raw`);
        ok(captive(format.file, `nbdcopy "$uri" '${out}'`), 'nbdcopy');
        const reference = ok(run('sh', ['-c', `${format.reference} '${path(format.file)}'`]), format.reference).stdout;
        expect(reference.length).toBe(SIZE);
        expect(sha256(readFileSync(out))).toBe(sha256(reference));
        expect(sha256(reference)).toBe(sha256(raw));
      });
    }
  });

  describe('3. qemu-img compare and nbdinfo --map', () => {
    for (const format of formats) {
      it(`qemu-img says identical and the map agrees with the zero ranges: ${format.label}`, () => {
        const mapFile = path(`map-${format.file}.json`);
        // For xz the map is granule-exact because qemu-img compare has read (and cached) every block first.
        const result = ok(
          captive(format.file, `qemu-img compare -f raw -F raw "$uri" '${path('disk.img')}' && nbdinfo --map --json "$uri" > '${mapFile}'`),
          'qemu-img compare / nbdinfo --map',
        );
        expect(result.stdout.toString()).toContain('Images are identical.');
        const map = JSON.parse(readFileSync(mapFile, 'utf8')) as { offset: number; length: number; type: number; description: string }[];
        for (const extent of map) expect(['data', 'hole,zero']).toContain(extent.description);
        expectMapMatches(
          map.map((extent) => ({ offset: extent.offset, length: extent.length, zero: extent.type === 3 })),
          raw,
        );
      });
    }
  });

  describe('4. random reads', () => {
    it('libnbd pread, pipelined and one at a time, equals the raw bytes, across xz blocks', () => {
      const starts = xzList(path('disk.img.xz')).blocks.map((block) => block.uncompressedOffset);
      expect(starts.length).toBeGreaterThanOrEqual(8);
      const reads: [number, number][] = [
        ...randomOffsets(40, 0x5eed, 300_000),
        ...starts.slice(1).map((start): [number, number] => [start - 3000, Math.min(70_000, SIZE - start + 3000)]), // one block into the next
        [MIB - 10, 2 * MIB + 20], // three blocks in one read
        [0, 1],
        [SIZE - 1, 1],
        [SIZE - 100_000, 100_000],
      ];
      const script = python(
        'random-reads',
        `
h = nbd.NBD()
h.connect_unix(SOCKET)
# All in flight at once: the server answers them concurrently, in any order.
buffers = [nbd.Buffer(length) for offset, length in ARGS['reads']]
for buffer, (offset, length) in zip(buffers, ARGS['reads']):
    h.aio_pread(buffer, offset)
while h.aio_in_flight() > 0:
    h.poll(-1)
pipelined = [sha(buffer.to_bytearray()) for buffer in buffers]
sequential = [sha(h.pread(length, offset)) for offset, length in ARGS['reads']]
h.shutdown()
done({'pipelined': pipelined, 'sequential': sequential})
`,
        { reads },
      );
      const expected = reads.map(([offset, length]) => sha256(raw.subarray(offset, offset + length)));
      for (const format of formats) {
        const got = lastJson<{ pipelined: string[]; sequential: string[] }>(ok(captive(format.file, script), `python reads ${format.label}`));
        reads.forEach(([offset, length], index) => {
          expect(got.sequential[index], `${format.label}: pread(${length}, ${offset})`).toBe(expected[index]);
          expect(got.pipelined[index], `${format.label}: aio_pread(${length}, ${offset})`).toBe(expected[index]);
        });
      }
    });

    it('qemu-io read -v shows the raw bytes across an xz block boundary', () => {
      const offset = MIB - 100_000 - 24; // nonzero bytes, then the zero run that crosses 1 MiB
      const result = ok(captive('disk.img.xz', `qemu-io -f raw -r -c 'read -v ${offset} 48' "$uri" && qemu-io -f raw -r -c 'read -v ${2 * MIB - 20} 40' "$uri"`), 'qemu-io');
      const dumped: number[] = [];
      const at: number[] = [];
      for (const line of result.stdout.toString().split('\n')) {
        const row = /^([0-9a-f]{8}):\s+((?:[0-9a-f]{2} )+)/.exec(line);
        if (!row) continue;
        const bytes = row[2]!.trim().split(' ').map((hex) => parseInt(hex, 16));
        bytes.forEach((byte, index) => {
          at.push(parseInt(row[1]!, 16) + index);
          dumped.push(byte);
        });
      }
      expect(dumped).toHaveLength(88);
      expect(dumped).toEqual(at.map((position) => raw[position]));
    });
  });

  describe('5. writes', () => {
    it('qemu-io writes inside the stored range, is refused outside it, and the file stays valid gzip', () => {
      copyFileSync(path('disk.pd.gz'), path('qemu-write.gz'));
      const cases = { inside: STORED.start + 64 * KIB, outside: 0, straddling: STORED.end - 32 * KIB };
      const script = Object.entries(cases)
        .map(([name, offset]) => `qemu-io -f raw -c 'write -P 0x5a ${offset} 65536' "$uri" > '${path(`${name}.out`)}' 2>&1; echo "status $?" >> '${path(`${name}.out`)}'`)
        .join('\n');
      writeFileSync(path('qemu-writes.sh'), script);
      ok(captive('qemu-write.gz', `sh '${path('qemu-writes.sh')}'`), 'seekz serve');
      const output = (name: string) => readFileSync(path(`${name}.out`), 'utf8');
      expect(output('inside')).toContain(`wrote 65536/65536 bytes at offset ${cases.inside}`);
      expect(output('inside')).toContain('status 0');
      for (const refused of ['outside', 'straddling']) {
        expect(output(refused)).toContain('write failed: Operation not permitted');
        expect(output(refused)).not.toContain('status 0');
      }
      ok(run('gzip', ['-t', path('qemu-write.gz')]), 'gzip -t');
      const expected = new Uint8Array(raw);
      expected.fill(0x5a, cases.inside, cases.inside + 65536);
      expect(sha256(ok(run('zcat', [path('qemu-write.gz')]), 'zcat').stdout)).toBe(sha256(expected));
    });

    describe('libnbd writes to a partial-deflate gzip', () => {
      const A_AT = STORED.start + 4096;
      const B_AT = STORED.end - 1000;
      const a = Uint8Array.from({ length: 65536 }, (_, index) => (index * 7 + 3) & 0xff);
      const b = Uint8Array.from({ length: 1000 }, (_, index) => index % 200);
      let result: Record<string, unknown>;

      beforeAll(() => {
        copyFileSync(path('disk.pd.gz'), path('python-write.gz'));
        const script = python(
          'writes',
          `
path = ARGS['path']
a_at, a = ARGS['a_at'], bytes((index * 7 + 3) & 0xff for index in range(65536))
b_at, b = ARGS['b_at'], bytes(range(200)) * 5
(start, end) = ARGS['stored']

def file_now():
    """What gzip reads from the file now; a message instead for a torn file."""
    try:
        return gzip.open(path).read()
    except gzip.BadGzipFile as error:
        return 'bad gzip: %s' % error

def compare(now, expected):
    return now == expected if isinstance(now, bytes) else now

original = file_now()
h = nbd.NBD()
h.connect_unix(SOCKET)
result = {'readOnly': h.is_read_only()}
h.pwrite(a, a_at)
result['readBack'] = h.pread(len(a), a_at) == a
result['readAround'] = h.pread(len(a) + 200, a_at - 100) == original[a_at - 100:a_at] + a + original[a_at + len(a):a_at + len(a) + 100]
result['fileBeforeFlush'] = compare(file_now(), original)
h.flush()
after_a = original[:a_at] + a + original[a_at + len(a):]
result['fileAfterFlush'] = compare(file_now(), after_a)
result['outside'] = failure(lambda: h.pwrite(b'x' * 512, start - 512))
result['straddling'] = failure(lambda: h.pwrite(b'x' * 1024, end - 512))
h.set_strict_mode(0)  # let the server, not libnbd, judge a write past the end
result['pastEnd'] = failure(lambda: h.pwrite(b'x' * 1024, h.get_size() - 512))
h.set_strict_mode(nbd.STRICT_MASK)
final = after_a[:b_at] + b + after_a[b_at + len(b):]
result['crcExpected'] = '%08x' % zlib.crc32(final)
h.pwrite(b, b_at)  # never flushed: the server applies it when the client goes
h.shutdown()  # returns when the server has closed the connection
with open(path, 'rb') as file:
    file.seek(-8, 2)
    result['crcAtClose'] = '%08x' % int.from_bytes(file.read(4), 'little')  # the gzip trailer, at once
result['fileAfterDisconnect'] = compare(file_now(), final)
done(result)
`,
          { path: path('python-write.gz'), stored: [STORED.start, STORED.end], a_at: A_AT, b_at: B_AT },
        );
        result = lastJson(ok(captive('python-write.gz', script), 'python writes'));
      });

      it('a write reads back at once, before FLUSH, and the file is untouched until FLUSH', () => {
        expect(result).toMatchObject({ readOnly: false, readBack: true, readAround: true, fileBeforeFlush: true });
      });

      it('FLUSH patches the file: gzip reads the new bytes with a good CRC', () => {
        expect(result.fileAfterFlush).toBe(true);
      });

      it('writes outside the stored range get EPERM, past the end ENOSPC', () => {
        expect(result).toMatchObject({ outside: { errno: 'EPERM' }, straddling: { errno: 'EPERM' }, pastEnd: { errno: 'ENOSPC' } });
      });

      it('after the server exits, gzip -t passes and zcat shows both writes and nothing else changed', () => {
        ok(run('gzip', ['-t', path('python-write.gz')]), 'gzip -t');
        const expected = new Uint8Array(raw);
        expected.set(a, A_AT);
        expected.set(b, B_AT);
        expect(sha256(ok(run('zcat', [path('python-write.gz')]), 'zcat').stdout)).toBe(sha256(expected));
      });

      // Product bug: src/nbd/server.ts creates its server without allowHalfOpen, so when libnbd
      // half-closes after NBD_CMD_DISC, Node ends the socket at once, before the flush on
      // disconnect that should come first; the client sees the close while the patch still runs.
      it('a client that disconnects without FLUSH finds its writes in a whole file once the server has closed', () => {
        expect(result.crcAtClose, 'gzip trailer CRC-32 when the client saw the connection close').toBe(result.crcExpected);
        expect(result.fileAfterDisconnect).toBe(true);
      });
    });

    // Product bug: src/edit/write-overlay.ts flush() empties `pending` before patchFile has
    // written the file, so a read already in flight when FLUSH arrives returns the old bytes.
    it('a read sent together with a FLUSH sees the write acknowledged before both', () => {
      copyFileSync(path('disk.pd.gz'), path('pipelined-flush.gz'));
      const script = python(
        'read-during-flush',
        `
h = nbd.NBD()
h.connect_unix(SOCKET)
stale = []
for round in range(5):
    data = bytes([round * 41 + 1]) * 65536
    h.pwrite(data, ARGS['offset'])  # acknowledged: every later read must see it
    buffer = nbd.Buffer(len(data))
    h.aio_pread(buffer, ARGS['offset'])
    h.aio_flush()
    while h.aio_in_flight() > 0:
        h.poll(-1)
    if bytes(buffer.to_bytearray()) != data:
        stale.append(round)
h.shutdown()
done({'staleRounds': stale})
`,
        { offset: STORED.start + 8192 },
      );
      const result = lastJson<{ staleRounds: number[] }>(ok(captive('pipelined-flush.gz', script), 'python read during flush'));
      expect(result.staleRounds, 'rounds in which the read returned the bytes from before the write').toEqual([]);
    });

    const refusal = `
h = nbd.NBD()
h.connect_unix(SOCKET)
result = {'readOnly': h.is_read_only()}
result['client'] = failure(lambda: h.pwrite(b'x' * 512, ARGS['offset']))
h.set_strict_mode(0)  # now the write reaches the server, which must refuse it too
result['server'] = failure(lambda: h.pwrite(b'x' * 512, ARGS['offset']))
result['after'] = sha(h.pread(512, ARGS['offset']))
h.shutdown()
done(result)
`;

    it('--readonly refuses every write, even into the stored range', () => {
      copyFileSync(path('disk.pd.gz'), path('readonly.gz'));
      const before = sha256(readFileSync(path('readonly.gz')));
      const offset = STORED.start + 4096;
      const result = lastJson<Record<string, unknown>>(ok(captive('readonly.gz', python('readonly', refusal, { offset }), ['--readonly']), 'python --readonly'));
      expect(result).toMatchObject({ readOnly: true, client: { errno: 'EPERM' }, server: { errno: 'EPERM' }, after: sha256(raw.subarray(offset, offset + 512)) });
      const qemu = captive('readonly.gz', `qemu-io -f raw -c 'write -P 0x5a ${offset} 512' "$uri"`, ['--readonly']);
      expect(qemu.status).not.toBe(0);
      expect(sha256(readFileSync(path('readonly.gz')))).toBe(before);
    });

    it('an xz export is read-only and refuses writes with EPERM', () => {
      const before = sha256(readFileSync(path('disk.img.xz')));
      const result = lastJson<Record<string, unknown>>(ok(captive('disk.img.xz', python('xz-write', refusal, { offset: 4096 })), 'python xz write'));
      expect(result).toMatchObject({ readOnly: true, client: { errno: 'EPERM' }, server: { errno: 'EPERM' }, after: sha256(raw.subarray(4096, 4096 + 512)) });
      const qemu = captive('disk.img.xz', `qemu-io -f raw -c 'write -P 0x5a 0 512' "$uri"`);
      expect(qemu.status).not.toBe(0);
      expect(sha256(readFileSync(path('disk.img.xz')))).toBe(before);
    });
  });

  describe('6. several clients and memory', () => {
    /**
     * The bound the "Memory:" paragraph of `seekz serve --help` states for this xz file (1 MiB
     * blocks, default cache), with CONNECTIONS clients sending REQUEST-byte reads. Every term
     * the paragraph names is counted: base, cache, decoder threads × k × block size, and
     * clients × n × request size where it has one.
     */
    const memoryBound = (connections: number, request: number) => {
      const help = ok(runCli('seekz', ['serve', '--help']), 'seekz serve --help').stdout.toString();
      const line = help.slice(help.indexOf('Memory:')).split('\n\n')[0]!.replace(/\s+/g, ' ');
      const base = /about (\d+) MiB/.exec(line);
      const cache = /xz (\d+) MiB/.exec(line);
      expect(base && cache, `--help states a base and an xz cache size: "${line}"`).toBeTruthy();
      let bound = (Number(base![1]) + Number(cache![1])) * MIB;
      const decoding = /decoder threads × (\d+) × block size.*?at (\d+) threads/.exec(line);
      if (decoding) bound += Number(decoding[1]) * Number(decoding[2]) * XZ_BLOCK;
      const perClient = /clients × (\d+) × request size/.exec(line);
      if (perClient) bound += connections * Number(perClient[1]) * request;
      return { line, bound };
    };

    it('4 nbdcopy at once over one Unix socket all copy exactly, within the --help memory bound', async () => {
      const server = await startServer('disk.img.xz', ['--unix', path('many.sock')]);
      try {
        expect(existsSync(server.socket)).toBe(true);
        // nbdcopy opens 4 connections to a multi-conn export; say so, so the count is known.
        const copies = await Promise.all(
          [1, 2, 3, 4].map((client) => runAsync('nbdcopy', ['--connections=4', `--request-size=${256 * KIB}`, server.uri, path(`many-${client}.raw`)])),
        );
        copies.forEach((copy, index) => ok(copy, `nbdcopy ${index + 1}`));
        for (const client of [1, 2, 3, 4]) expect(sha256(readFileSync(path(`many-${client}.raw`))), `copy ${client}`).toBe(sha256(raw));
        const peak = peakRss(server.pid);
        const { line, bound } = memoryBound(4 * 4, 256 * KIB);
        console.log(`seekz serve peak RSS with 4 nbdcopy × 4 connections: ${(peak / MIB).toFixed(1)} MiB (bound ${(bound / MIB).toFixed(0)} MiB from "${line}")`);
        expect(peak).toBeLessThan(bound);
      } finally {
        await server.stop();
      }
    });

    // Product bug: src/nbd/server.ts frees a request's in-flight slot as soon as its reply is
    // queued on the socket, without waiting for 'drain', so replies a client has not read yet
    // pile up in memory without limit and maxInFlight bounds nothing.
    it('a client that reads its replies slowly cannot push the server past the --help memory bound', async () => {
      const server = await startServer('disk.img.xz', ['--unix', path('slow.sock')]);
      try {
        const request = 256 * KIB;
        const script = python(
          'slow-reader',
          `
h = nbd.NBD()
h.connect_unix(SOCKET)
buffer = nbd.Buffer(ARGS['length'])
for _ in range(ARGS['count']):
    h.aio_pread(buffer, 0)
time.sleep(ARGS['pause'])  # the replies wait on the server: this client reads none yet
while h.aio_in_flight() > 0:
    h.poll(-1)
h.shutdown()
done({'ok': True})
`,
          { socket: server.socket, length: request, count: 2048, pause: 2 },
        );
        ok(await runAsync('sh', ['-c', script]), 'python slow reader');
        const peak = peakRss(server.pid);
        const { bound } = memoryBound(1, request);
        console.log(`seekz serve peak RSS with one client and 2048 unread 256 KiB replies: ${(peak / MIB).toFixed(1)} MiB (bound ${(bound / MIB).toFixed(0)} MiB)`);
        expect(peak).toBeLessThan(bound);
      } finally {
        await server.stop();
      }
    });

    // Product bug: cli/common.ts runCli's SIGTERM handler calls process.exit at once, so the stop
    // handler in cli/serve.ts (server.close, final flush) never runs and the socket file stays.
    it('SIGTERM removes the Unix socket, so the server can start again on the same path', async () => {
      const socket = path('restart.sock');
      const first = await startServer('disk.img.xz', ['--unix', socket]);
      await first.stop();
      expect(existsSync(socket), `${socket} left behind after SIGTERM`).toBe(false);
      const second = await startServer('disk.img.xz', ['--unix', socket]);
      try {
        ok(await runAsync('nbdinfo', ['--size', second.uri]), 'nbdinfo after restart');
      } finally {
        await second.stop();
      }
    });
  });

  describe('7. protocol edge cases (libnbd)', () => {
    let result: {
      wrongName: Failure | null;
      simple: { structured: boolean; reads: string[]; pastEnd: Failure | null; afterError: string; dfClaims: string[] };
      structured: { negotiated: boolean; allocation: boolean; pastEnd: Failure | null; farPastEnd: Failure | null; afterError: string };
      extents: [number, number, number][];
      coldExtents: [number, number, number][];
      one: [number, number][];
      opt: { count: number; exports: string[]; wrongInfo: Failure | null; size: number; readOnly: boolean; allocation: boolean; closed: boolean };
      go: { size: number; read: string };
    };
    const reads: [number, number][] = [[0, 4096], [MIB - 1000, 5000], [SIZE - 777, 777]];

    beforeAll(() => {
      const script = python(
        'protocol',
        `
name, size = ARGS['name'], ARGS['size']
result = {}

h = nbd.NBD()
h.set_export_name('wrong')
result['wrongName'] = failure(lambda: h.connect_unix(SOCKET))

h = nbd.NBD()
h.set_export_name(name)
h.set_request_structured_replies(False)
messages = []
h.set_debug_callback(lambda context, message: messages.append(message))
h.set_debug(True)
h.connect_unix(SOCKET)
h.set_debug(False)
simple = {'structured': h.get_structured_replies_negotiated()}
simple['reads'] = [sha(h.pread(length, offset)) for offset, length in ARGS['reads']]
h.set_strict_mode(0)  # send the bad request to the server instead of refusing it here
simple['pastEnd'] = failure(lambda: h.pread(100, size - 50))
simple['afterError'] = sha(h.pread(4096, size - 4096))
# libnbd logs this when a server sets NBD_FLAG_SEND_DF without structured replies.
simple['dfClaims'] = [message for message in messages if 'claim of df' in message]
h.shutdown()
result['simple'] = simple

h = nbd.NBD()
h.set_export_name(name)
h.add_meta_context('base:allocation')
h.connect_unix(SOCKET)
structured = {'negotiated': h.get_structured_replies_negotiated(), 'allocation': h.can_meta_context('base:allocation')}
h.set_strict_mode(0)
structured['pastEnd'] = failure(lambda: h.pread(100, size - 50))
structured['farPastEnd'] = failure(lambda: h.pread(4096, 2 ** 62))
structured['afterError'] = sha(h.pread(4096, 0))
h.set_strict_mode(nbd.STRICT_MASK)
result['structured'] = structured

def status(length, offset, flags=0):
    got = []
    def extent(context, at, entries, error):
        for index in range(0, len(entries), 2):
            got.append([entries[index], entries[index + 1]])
        return 0
    h.block_status(length, offset, extent, flags)
    return got

def walk():
    extents = []
    offset = 0
    while offset < size:
        before = offset
        for length, flags in status(min(size - offset, 3 * 2 ** 20), offset):
            extents.append([offset, length, flags])
            offset += length
        if offset == before:
            raise Exception('no progress at %d' % offset)
    return extents
# Before the blocks are read, status comes from the index alone; once read (and cached), from their bytes.
result['coldExtents'] = walk()
h.pread(size, 0)
result['extents'] = walk()
result['one'] = status(size, 0, nbd.CMD_FLAG_REQ_ONE)
h.shutdown()

h = nbd.NBD()
h.set_opt_mode(True)
h.add_meta_context('base:allocation')
h.connect_unix(SOCKET)
exports = []
count = h.opt_list(lambda export, description: exports.append(export))
h.set_export_name('wrong')
wrong_info = failure(h.opt_info)
h.set_export_name(name)
h.opt_info()
result['opt'] = {'count': count, 'exports': exports, 'wrongInfo': wrong_info, 'size': h.get_size(), 'readOnly': h.is_read_only(), 'allocation': h.can_meta_context('base:allocation')}
h.opt_abort()
result['opt']['closed'] = h.aio_is_closed()

h = nbd.NBD()
h.set_opt_mode(True)
h.connect_unix(SOCKET)
h.set_export_name(name)
h.opt_go()
result['go'] = {'size': h.get_size(), 'read': sha(h.pread(4096, 2 ** 20))}
h.shutdown()
done(result)
`,
        { name: EXPORT_NAME, size: SIZE, reads },
      );
      result = lastJson(ok(captive('disk.img.xz', script, ['--export-name', EXPORT_NAME]), 'python protocol'));
    });

    it('a wrong export name fails the connection with a clear error', () => {
      expect(result.wrongName).toMatchObject({ errno: 'ENOENT' });
      expect(result.wrongName!.message).toMatch(/no export named 'wrong'/);
    });

    it('without structured replies, reads work as simple replies and an error keeps the connection', () => {
      expect(result.simple.structured).toBe(false);
      expect(result.simple.reads).toEqual(reads.map(([offset, length]) => sha256(raw.subarray(offset, offset + length))));
      expect(result.simple.pastEnd).toMatchObject({ errno: 'EINVAL' });
      expect(result.simple.afterError).toBe(sha256(raw.subarray(SIZE - 4096)));
    });

    // Product bug: src/nbd/server.ts sets FLAG_SEND_DF in transmissionFlags whatever was
    // negotiated; proto.md: the server "MUST leave this flag clear if structured replies have
    // not been negotiated". libnbd notices and says so in its debug log.
    it('without structured replies the server does not claim NBD_FLAG_SEND_DF', () => {
      expect(result.simple.dfClaims).toEqual([]);
    });

    it('a read past the end gets EINVAL, with structured replies too, and the connection goes on', () => {
      expect(result.structured.negotiated).toBe(true);
      expect(result.structured.allocation).toBe(true);
      expect(result.structured.pastEnd).toMatchObject({ errno: 'EINVAL' });
      expect(result.structured.farPastEnd).toMatchObject({ errno: 'EINVAL' });
      expect(result.structured.afterError).toBe(sha256(raw.subarray(0, 4096)));
    });

    it('BLOCK_STATUS decodes nothing: before any block is read, its extents tile the export and every hole reads as zeros', () => {
      expectMapMatches(
        result.coldExtents.map(([offset, length, flags]) => ({ offset, length, zero: flags === 3 })),
        raw,
        { everyZeroGranule: false },
      );
    });

    it('BLOCK_STATUS agrees with the zero ranges once the blocks are cached, and REQ_ONE gives one extent', () => {
      expectMapMatches(
        result.extents.map(([offset, length, flags]) => {
          expect([0, 3]).toContain(flags);
          return { offset, length, zero: flags === 3 };
        }),
        raw,
      );
      expect(result.one).toHaveLength(1);
      expect(result.one[0]).toEqual([result.extents[0]![1], result.extents[0]![2]]);
    });

    it('option mode: LIST, INFO (a wrong name fails, the right one answers), ABORT, then GO on a new handle', () => {
      expect(result.opt.count).toBe(1);
      expect(result.opt.exports).toEqual([EXPORT_NAME]);
      expect(result.opt.wrongInfo).toMatchObject({ errno: 'ENOENT' });
      expect(result.opt.size).toBe(SIZE);
      expect(result.opt.readOnly).toBe(true);
      expect(result.opt.allocation).toBe(true);
      expect(result.opt.closed).toBe(true);
      expect(result.go).toEqual({ size: SIZE, read: sha256(raw.subarray(MIB, MIB + 4096)) });
    });
  });

  describe('8. captive mode', () => {
    it("exits with the command's status", () => {
      expect(captive('disk.img.xz', 'exit 3').status).toBe(3);
      expect(captive('disk.img.xz', 'true').status).toBe(0);
    });

    it('sets $uri, $nbd and $unixsocket so qemu and libnbd tools can use either', () => {
      const result = ok(
        captive('disk.img.xz', 'test -S "$unixsocket" && echo "uri=$uri" && qemu-img info --output=json "$nbd"', ['--export-name', EXPORT_NAME]),
        'captive env',
      );
      const text = result.stdout.toString();
      expect(text).toMatch(new RegExp(`uri=nbd\\+unix:///${EXPORT_NAME}\\?socket=/`));
      const info = JSON.parse(text.slice(text.indexOf('{'))) as { 'virtual-size': number };
      // qemu's block layer counts whole 512-byte sectors.
      expect(info['virtual-size']).toBe(Math.ceil(SIZE / 512) * 512);
    });

    it('--cache takes a size: a bad one is a usage error, a small one still serves the right bytes', () => {
      const bad = captive('disk.img.xz', 'true', ['--cache', '12Q']);
      expect(bad.status).toBe(1); // a usage error, as in xz
      expect(bad.stderr).toMatch(/12Q/);
      const out = path('small-cache.raw');
      ok(captive('disk.img.xz', `nbdcopy "$uri" '${out}'`, ['--cache', '2M']), 'nbdcopy with --cache 2M');
      expect(sha256(readFileSync(out))).toBe(sha256(raw));
    });
  });
});
