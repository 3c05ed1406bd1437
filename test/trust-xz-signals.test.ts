/**
 * Issue 8, xz and signals: a forged .xz (fields changed, CRC32s recomputed) never gives bytes with
 * exit 0 where xz -t rejects it, and Ctrl-C, SIGTERM and SIGHUP stop every command within a second
 * with 128 + the signal number, no native crash and no temp file left. The oracles are the real
 * tools (xz -t, xz -dc) and the original data, never seekz's own reader.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, diskLikeData, requireTool, run, runAsync, runCli, sha256, tempDir, xzList, type CliName, type RunResult } from './helpers/tools.js';
import { blockOffsets, forgeCheckId, forgeHeaderUncompressedSize, forgeIndexRecord, forgeStreamFlags, parseXz } from '../fuzz/xz-forge.js';

const BLOCK = 256 * 1024;
const DATA_SIZE = 3 * 2 ** 20 + 12345;

/** How each kind of file is made: the block header sizes differ ('cu' or '--'), which is what the reader leans on. */
const MAKERS: { name: string; line: string; headerSizes: boolean }[] = [
  { name: 'seekxz', line: `node ${cliPath('seekxz')} -q -c -0 -T2 --block-size=${BLOCK} data.img`, headerSizes: true },
  { name: 'xz -T2', line: `xz -c -0 -T2 --block-size=${BLOCK} data.img`, headerSizes: true },
  { name: 'xz -T1 --block-size (no sizes in block headers)', line: `xz -c -0 -T1 --block-size=${BLOCK} data.img`, headerSizes: false },
  { name: 'pixz', line: 'pixz -0 -t < data.img', headerSizes: true },
];

let dir: { path: string; remove: () => void };
let data: Uint8Array;
const files = new Map<string, Uint8Array>();
const at = (name: string) => join(dir.path, name);

beforeAll(() => {
  requireTool('xz', 'xz-utils');
  requireTool('pixz', 'pixz');
  requireTool('gzip', 'gzip');
  dir = tempDir('seekz-trust-xz-');
  data = diskLikeData(DATA_SIZE, 81);
  writeFileSync(at('data.img'), data);
  for (const maker of MAKERS) {
    const made = run('sh', ['-c', maker.line], { cwd: dir.path });
    if (made.status !== 0) throw new Error(`${maker.line}: ${made.stderr}`);
    files.set(maker.name, new Uint8Array(made.stdout));
  }
  // One-block files must read too: xz's single-threaded default.
  files.set('xz, one block', new Uint8Array(run('xz', ['-c', '-0', '-T1', at('data.img')]).stdout));
});
afterAll(() => dir?.remove());

/** What xz -t says of a file: its exit status (0 good, 1 error, 2 warning such as an unsupported check). */
async function xzTest(path: string): Promise<number> {
  return (await runAsync('xz', ['-t', path])).status!;
}

/**
 * Runs one of our CLIs without blocking the test runner (these tests run hundreds of them);
 * `stdin` is a file redirected to its input, which it may leave unread when it refuses early.
 */
function cli(name: CliName, args: string[], stdin?: string): Promise<RunResult> {
  if (stdin === undefined) return runAsync(process.execPath, [cliPath(name), ...args]);
  const quoted = [process.execPath, cliPath(name), ...args].map((arg) => `'${arg}'`).join(' ');
  return runAsync('sh', ['-c', `${quoted} < '${stdin}'`]);
}

/** A clean failure: non-zero, one line on stderr (`COMMAND: FILE: xz: …`), no stack, no native crash. */
function expectCleanFailure(result: { status: number | null; stderr: string }, what: string): void {
  expect(result.status, `${what} exited 0: ${result.stderr}`).not.toBe(0);
  expect(result.status, what).not.toBe(70);
  expect(result.stderr, what).toMatch(/^(seekz|seekxz): \S+: xz: [^\n]+\n$/);
  expect(result.stderr, what).not.toMatch(/FATAL|internal error|\n\s+at /);
}

/** Writes `bytes`, checks that xz -t rejects it, and that seekz cat, seekz read after `readAt` and seekxz -d (file and stdin) all fail cleanly. */
async function expectRejectedEverywhere(name: string, bytes: Uint8Array, readAt: number): Promise<void> {
  const path = at(`${name}.xz`);
  writeFileSync(path, bytes);
  expect(await await xzTest(path), `xz -t accepts ${name}`).not.toBe(0);
  expectCleanFailure(await cli('seekz', ['cat', path]), `${name}: seekz cat`);
  expectCleanFailure(await cli('seekz', ['read', path, '--offset', String(readAt), '--length', '4096']), `${name}: seekz read at ${readAt}`);
  expectCleanFailure(await cli('seekxz', ['-t', '-q', path]), `${name}: seekxz -t`);
  expectCleanFailure(await cli('seekxz', ['-dc', '-q', path]), `${name}: seekxz -dc`);
  expectCleanFailure(await cli('seekxz', ['-dc', '-q', '--max-block=64K', path]), `${name}: seekxz -dc, streamed`);
  expectCleanFailure(await cli('seekxz', ['-dc', '-q'], path), `${name}: seekxz -dc < file`);
}

describe('good files still read (the baseline for the forgeries)', () => {
  it('seekxz, xz -T2, xz -T1 --block-size, one-block xz and pixz: cat, and a read in the last block, equal the input', async () => {
    const digest = sha256(data);
    for (const [name, bytes] of files) {
      const path = at(`good-${name.replace(/\W+/g, '-')}.xz`);
      writeFileSync(path, bytes);
      expect(await xzTest(path), name).toBe(0);
      const cat = await cli('seekz', ['cat', path]);
      expect(cat.status, `${name}: ${cat.stderr}`).toBe(0);
      expect(sha256(cat.stdout), name).toBe(digest);
      // The last block: every record before it is confirmed first.
      const offset = DATA_SIZE - 5000;
      const read = await cli('seekz', ['read', path, '--offset', String(offset), '--length', '5000']);
      expect(read.status, `${name}: ${read.stderr}`).toBe(0);
      expect(sha256(read.stdout), name).toBe(sha256(data.subarray(offset)));
    }
  });
});

describe('forged Index record: uncompressed size, Index CRC32 recomputed', () => {
  it('xz -t rejects it; seekz read after it, seekz cat and seekxz -d fail instead of giving shifted or short data', async () => {
    for (const maker of MAKERS) {
      const file = files.get(maker.name)!;
      const { records } = parseXz(file);
      expect(records.length, maker.name).toBeGreaterThan(3);
      for (const [record, delta] of [[1, -100], [1, 100], [0, 4096]] as const) {
        const forged = forgeIndexRecord(file, record, { uncompressedSize: records[record]!.uncompressedSize + delta });
        // A read two blocks later: its offset depends on the forged record.
        const readAt = records.slice(0, record + 2).reduce((sum, entry) => sum + entry.uncompressedSize, 0) + 10;
        await expectRejectedEverywhere(`usize-${maker.name.replace(/\W+/g, '-')}-${record}-${delta}`, forged, readAt);
      }
    }
  });

  it('the message names the record and what the block header says', async () => {
    const file = files.get('seekxz')!;
    const path = at('usize-message.xz');
    writeFileSync(path, forgeIndexRecord(file, 1, { uncompressedSize: BLOCK - 100 }));
    const read = await cli('seekz', ['read', path, '--offset', String(3 * BLOCK), '--length', '10']);
    expect(read.stderr).toMatch(/^seekz: \S+: xz: index record 2 \(unpadded size \d+, uncompressed size 262044\) does not match block 2 at offset \d+: the block header says 262144 bytes uncompressed; the index or the block header is damaged or forged/);
  });
});

describe('forged Index record: compressed (unpadded) size, Index CRC32 recomputed', () => {
  it('one record off by 4, or two records off by +4 and -4 so that the total still adds up: rejected everywhere', async () => {
    for (const maker of MAKERS) {
      const file = files.get(maker.name)!;
      const { records } = parseXz(file);
      const tag = maker.name.replace(/\W+/g, '-');
      const readAt = records.slice(0, 3).reduce((sum, entry) => sum + entry.uncompressedSize, 0) + 10;
      await expectRejectedEverywhere(`unpadded-${tag}-plus4`, forgeIndexRecord(file, 1, { unpaddedSize: records[1]!.unpaddedSize + 4 }), readAt);
      await expectRejectedEverywhere(`unpadded-${tag}-minus4`, forgeIndexRecord(file, 1, { unpaddedSize: records[1]!.unpaddedSize - 4 }), readAt);
      const shifted = forgeIndexRecord(forgeIndexRecord(file, 1, { unpaddedSize: records[1]!.unpaddedSize + 4 }), 2, { unpaddedSize: records[2]!.unpaddedSize - 4 });
      expect(shifted.length).toBe(file.length);
      await expectRejectedEverywhere(`unpadded-${tag}-swap`, shifted, readAt);
    }
  });

  it('a size within the padding (+1): the block header is where the record says, but its sizes disagree', async () => {
    const file = files.get('seekxz')!;
    const { records } = parseXz(file);
    // Unpadded sizes that round up to the same padded size leave every block where it was.
    const record = records.findIndex((entry) => entry.unpaddedSize % 4 !== 0);
    expect(record).toBeGreaterThanOrEqual(0);
    const forged = forgeIndexRecord(file, record, { unpaddedSize: records[record]!.unpaddedSize + 1 });
    const readAt = records.slice(0, record + 1).reduce((sum, entry) => sum + entry.uncompressedSize, 0) + 10;
    await expectRejectedEverywhere('unpadded-within-padding', forged, readAt);
  });
});

describe('reserved check IDs and reserved stream flag bits are refused, as xz does', () => {
  it('every check ID but 0, 1, 4 and 10: xz -t says "Unsupported type of integrity check", seekz refuses', async () => {
    const file = files.get('xz -T2')!; // CRC64
    for (let checkId = 0; checkId < 16; checkId++) {
      if ([0, 1, 4, 10].includes(checkId)) continue;
      const path = at(`check-${checkId}.xz`);
      writeFileSync(path, forgeCheckId(file, checkId));
      const tested = await runAsync('xz', ['-t', path]);
      expect(tested.status, `check ${checkId}`).not.toBe(0);
      expect(tested.stderr).toMatch(/Unsupported type of integrity check/);
      for (const args of [['cat', path], ['read', path, '--offset', '0', '--length', '10'], ['info', path]]) {
        const result = await cli('seekz', args);
        expectCleanFailure(result, `seekz ${args[0]} with check ${checkId}`);
        expect(result.stderr).toMatch(new RegExp(`integrity check type ${checkId} .*Unsupported type of integrity check`));
      }
      expectCleanFailure(await cli('seekxz', ['-dc', '-q'], path), `seekxz -dc < check ${checkId}`);
    }
  });

  it('reserved bits in either stream flags byte: xz -t says "Unsupported options", seekz refuses', async () => {
    const file = files.get('seekxz')!;
    for (const [first, second] of [[1, 4], [0x80, 4], [0, 0x14], [0, 0x84]] as const) {
      const forged = forgeStreamFlags(file, first, second);
      const path = at(`flags-${first}-${second}.xz`);
      writeFileSync(path, forged);
      expect((await runAsync('xz', ['-t', path])).stderr).toMatch(/Unsupported options/);
      await expectRejectedEverywhere(`flags-${first}-${second}`, forged, 0);
      expect((await cli('seekz', ['cat', path])).stderr).toMatch(/reserved bits/);
    }
  });
});

describe('a block that decodes to another length than its Index record says', () => {
  it('block header and Index record forged alike: only the decode can tell, and it does', async () => {
    // A forger who rewrites both (and both CRC32s) shifts the offsets of later blocks in a way
    // that only decoding this block can show: random reads of later blocks do not decode it
    // (that would end random access), but every read of this block and every whole pass does.
    const file = files.get('seekxz')!;
    const { records } = parseXz(file);
    for (const delta of [-1, 1, -1000]) {
      const header = forgeHeaderUncompressedSize(file, 2, records[2]!.uncompressedSize + delta)!;
      expect(header, 'the forged size fits the header in place').toBeDefined();
      const forged = forgeIndexRecord(header, 2, { uncompressedSize: records[2]!.uncompressedSize + delta });
      await expectRejectedEverywhere(`decode-length-${delta}`, forged, 2 * BLOCK + 10);
      const own = await cli('seekz', ['read', at(`decode-length-${delta}.xz`), '--offset', String(2 * BLOCK + 10), '--length', '10']);
      expect(own.stderr).toMatch(/^seekz: \S+: xz: block 3 at offset \d+ does not decode: /);
    }
  });

  it('no sizes in block headers (xz -T1 --block-size): a forged record is caught by decoding the blocks before a read', async () => {
    const file = files.get('xz -T1 --block-size (no sizes in block headers)')!;
    writeFileSync(at('no-header-sizes-good.xz'), file);
    expect(xzList(at('no-header-sizes-good.xz')).blocks.every((block) => block.sizeFlags === '--')).toBe(true);
    const { records } = parseXz(file);
    const forged = forgeIndexRecord(file, 1, { uncompressedSize: records[1]!.uncompressedSize - 10 });
    const path = at('no-header-sizes.xz');
    writeFileSync(path, forged);
    const read = await cli('seekz', ['read', path, '--offset', String(6 * BLOCK), '--length', '100']);
    expectCleanFailure(read, 'read past the forged record');
    expect(read.stderr).toMatch(/^seekz: \S+: xz: block 2 at offset \d+ does not decode: /);
    // Before it, the file is as good as ever.
    const before = await cli('seekz', ['read', path, '--offset', '1000', '--length', '100']);
    expect(before.status, before.stderr).toBe(0);
    expect(sha256(before.stdout)).toBe(sha256(data.subarray(1000, 1100)));
  });
});

describe('xz -t is the oracle: random forgeries with CRC32s recomputed', () => {
  /** xorshift32, so a failing case can be rerun from its seed. */
  const random = (seed: number) => {
    let state = seed >>> 0 || 1;
    return (below: number) => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) % below;
    };
  };

  it('40 cases: where xz -t rejects, seekz cat fails; where it accepts, seekz cat gives xz -dc bytes; a read gives the right bytes or fails', async () => {
    const names = [...files.keys()];
    const verdicts: string[] = [];
    for (let seed = 1; seed <= 40; seed++) {
      const next = random(seed * 7919);
      const name = names[next(names.length)]!;
      const file = files.get(name)!;
      const { records } = parseXz(file);
      const record = next(records.length);
      const kind = next(5);
      let forged: Uint8Array | undefined;
      let what: string;
      if (kind === 0) {
        const delta = [-4096, -1, 1, 7, 4096][next(5)]!;
        what = `record ${record} uncompressed ${delta > 0 ? '+' : ''}${delta}`;
        forged = forgeIndexRecord(file, record, { uncompressedSize: Math.max(0, records[record]!.uncompressedSize + delta) });
      } else if (kind === 1) {
        const delta = [-8, -4, -1, 1, 4, 8][next(6)]!;
        what = `record ${record} unpadded ${delta > 0 ? '+' : ''}${delta}`;
        forged = forgeIndexRecord(file, record, { unpaddedSize: records[record]!.unpaddedSize + delta });
      } else if (kind === 2) {
        const checkId = next(16);
        what = `check ID ${checkId}`;
        forged = forgeCheckId(file, checkId);
      } else if (kind === 3) {
        const [first, second] = [next(2) ? 1 << next(8) : 0, (next(2) ? 0x10 << next(4) : 0) | (file[7]! & 0x0f)];
        what = `stream flags ${first} ${second}`;
        forged = forgeStreamFlags(file, first, second);
      } else {
        const delta = [-1, 1][next(2)]!;
        what = `block header ${record} uncompressed ${delta > 0 ? '+' : ''}${delta}`;
        forged = forgeHeaderUncompressedSize(file, record, records[record]!.uncompressedSize + delta) ?? forgeIndexRecord(file, record, { uncompressedSize: records[record]!.uncompressedSize + delta });
      }
      const path = at(`oracle-${seed}.xz`);
      writeFileSync(path, forged);
      const label = `seed ${seed}: ${name}, ${what}`;
      // A random read either gives the input's bytes or fails cleanly, whatever xz -t says.
      const offset = next(DATA_SIZE - 4096);
      const [verdict, cat, read, reference] = await Promise.all([
        xzTest(path),
        cli('seekz', ['cat', path]),
        cli('seekz', ['read', path, '--offset', String(offset), '--length', '4096']),
        runAsync('xz', ['-dc', path]),
      ]);
      if (verdict !== 0) {
        expectCleanFailure(cat, `${label}: xz -t rejects (${verdict}) but seekz cat`);
      } else {
        expect(cat.status, `${label}: xz -t accepts, seekz cat says ${cat.stderr}`).toBe(0);
        expect(sha256(cat.stdout), label).toBe(sha256(reference.stdout));
      }
      if (read.status === 0) expect(sha256(read.stdout), `${label}: read at ${offset}`).toBe(sha256(data.subarray(offset, offset + 4096)));
      else expectCleanFailure(read, `${label}: read at ${offset}`);
      verdicts.push(`${label}: xz -t ${verdict}, cat ${cat.status}, read ${read.status}`);
    }
    console.log(verdicts.join('\n'));
    // The property only means something if xz rejected most of them.
    expect(verdicts.filter((line) => !line.includes('xz -t 0')).length).toBeGreaterThan(30);
  }, 600_000);
});

// ---------------------------------------------------------------------------------------------
// Signals

const SIGNALS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
type StopSignal = keyof typeof SIGNALS;
/** The target is 1 s; this leaves room for a busy machine, and is printed each time. */
const STOP_LIMIT_MS = 1500;
/** How long a command may take to get busy before the test gives up on it. */
const START_LIMIT_MS = 120_000;

interface Stopped {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  stopMs: number;
}

/** The temp files a command is writing in `folder` (createAtomicFile's `.NAME.seekz-PID-RAND.tmp`). */
const tempFiles = (folder: string) => readdirSync(folder).filter((name) => name.endsWith('.tmp'));
const tempBytes = (folder: string) =>
  tempFiles(folder).reduce((sum, name) => {
    try {
      return sum + statSync(join(folder, name)).size;
    } catch {
      return sum; // renamed or removed in between
    }
  }, 0);

/** Resolves when a temp file in `folder` holds more than `bytes` (fs.watch events, not a timer). */
function tempFileGrows(folder: string, bytes: number): (child: ChildProcess) => Promise<void> {
  return () =>
    new Promise((resolve) => {
      const watcher = watch(folder, () => {
        if (tempBytes(folder) > bytes) {
          watcher.close();
          resolve();
        }
      });
    });
}

/** Resolves at the first bytes on stdout; stdout keeps being drained so the command keeps working. */
const firstOutput = (child: ChildProcess) => new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));

/**
 * Resolves once the process has read `bytes` of input (rchar in /proc/PID/io), for a command that
 * writes nothing until it ends. /proc cannot be watched, so this looks every 10 ms: it waits for a
 * condition, never for a fixed time.
 */
function hasRead(bytes: number): (child: ChildProcess) => Promise<void> {
  return (child) =>
    new Promise((resolve) => {
      const timer = setInterval(() => {
        const io = existsSync(`/proc/${child.pid}/io`) ? readFileSync(`/proc/${child.pid}/io`, 'utf8') : '';
        if (Number(/rchar: (\d+)/.exec(io)?.[1] ?? 0) > bytes) {
          clearInterval(timer);
          resolve();
        }
      }, 10);
    });
}

/** Starts a CLI, waits until `busy` says it is working, sends `signal`, and times the stop from the signal. */
async function interrupt(name: CliName, args: string[], signal: StopSignal, busy: (child: ChildProcess) => Promise<void>, cwd: string): Promise<Stopped> {
  const child = spawn(process.execPath, [cliPath(name), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout!.on('data', () => {}); // drained: a blocked pipe would stop the work being interrupted
  const exited = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (status, exitSignal) => resolve({ status, signal: exitSignal })));
  let timer: NodeJS.Timeout | undefined;
  const started = await Promise.race([
    busy(child).then(() => true),
    exited.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), START_LIMIT_MS))),
  ]);
  clearTimeout(timer);
  if (!started) {
    child.kill('SIGKILL');
    throw new Error(`${name} ${args.join(' ')} ended or never got busy before the signal: ${stderr}`);
  }
  const sent = performance.now();
  child.kill(signal);
  const result = await exited;
  return { ...result, stderr, stopMs: performance.now() - sent };
}

describe('signals: Ctrl-C, SIGTERM and SIGHUP stop every command within a second', () => {
  let work: { path: string; remove: () => void };
  const big = () => join(work.path, 'big.img');
  const stopTimes: string[] = [];

  beforeAll(() => {
    work = tempDir('seekz-signals-');
    // 200 MiB that compresses slowly: disk-like, a quarter of it random.
    const piece = 8 << 20;
    const parts = Array.from({ length: 25 }, (_, index) => Buffer.from(diskLikeData(piece, 900 + index)));
    writeFileSync(big(), Buffer.concat(parts));
    // A 208 MiB .xz cheaply: one 16 MiB block compressed once, as 13 concatenated streams.
    const one = runCli('seekxz', ['-q', '-c', '-0', '--block-size=16M'], { input: parts.slice(0, 2).reduce((a, b) => Buffer.concat([a, b])) });
    if (one.status !== 0) throw new Error(one.stderr);
    writeFileSync(join(work.path, 'big.xz'), Buffer.concat(Array.from({ length: 13 }, () => one.stdout)));
    const gz = run('sh', ['-c', `gzip -1 -c '${big()}' > '${join(work.path, 'big.gz')}'`]);
    if (gz.status !== 0) throw new Error(gz.stderr);
  });
  afterAll(() => {
    console.log(`stop times (from the signal to the exit):\n${stopTimes.join('\n')}`);
    work?.remove();
  });

  const commands: { label: string; name: CliName; args: () => string[]; busy: () => (child: ChildProcess) => Promise<void>; output?: () => string }[] = [
    {
      label: 'seekxz (compress 200 MiB, -6, 1 MiB blocks)',
      name: 'seekxz',
      args: () => ['-q', '-T2', '--block-size=1M', big()],
      busy: () => tempFileGrows(work.path, 12), // the first block is out: the others are inside liblzma
      output: () => `${big()}.xz`,
    },
    {
      // The longest slices there are: 64 KiB at -9e, with a 674 MiB encoder per block in flight.
      label: 'seekxz -9e (compress 200 MiB, 1 MiB blocks)',
      name: 'seekxz',
      args: () => ['-q', '-T2', '-9e', '--block-size=1M', big()],
      busy: () => tempFileGrows(work.path, 12),
      output: () => `${big()}.xz`,
    },
    {
      label: 'seekxz -d (208 MiB)',
      name: 'seekxz',
      args: () => ['-d', '-k', '-f', '-q', '-T2', join(work.path, 'big.xz')],
      busy: () => tempFileGrows(work.path, 0),
      output: () => join(work.path, 'big'),
    },
    {
      label: "seekxz -d --max-block=1M (streamed through the liblzma binding's async API)",
      name: 'seekxz',
      args: () => ['-d', '-k', '-f', '-q', '--max-block=1M', join(work.path, 'big.xz')],
      busy: () => tempFileGrows(work.path, 0),
      output: () => join(work.path, 'big'),
    },
    { label: 'seekz cat x.xz', name: 'seekz', args: () => ['cat', join(work.path, 'big.xz')], busy: () => firstOutput },
    {
      label: 'partial-deflate (200 MiB, -9)',
      name: 'partial-deflate',
      args: () => ['-q', '-f', '-T2', '-9', big(), join(work.path, 'big.pd.gz')],
      busy: () => tempFileGrows(work.path, 1 << 20),
      output: () => join(work.path, 'big.pd.gz'),
    },
    {
      label: 'seekz index (gzip -1 of 200 MiB)',
      name: 'seekz',
      args: () => ['index', '-q', '-f', join(work.path, 'big.gz')],
      busy: () => hasRead(32 << 20),
      output: () => join(work.path, 'big.gz.idx'),
    },
  ];

  for (const command of commands) {
    for (const signal of Object.keys(SIGNALS) as StopSignal[]) {
      it(`${command.label}: ${signal} → exit ${SIGNALS[signal]}, no crash, no temp file`, async () => {
        const stopped = await interrupt(command.name, command.args(), signal, command.busy(), work.path);
        stopTimes.push(`  ${command.label}, ${signal}: ${stopped.stopMs.toFixed(0)} ms, exit ${stopped.status ?? stopped.signal}`);
        console.log(`${command.label}, ${signal}: stopped ${stopped.stopMs.toFixed(0)} ms after the signal, exit ${stopped.status ?? stopped.signal}`);
        expect(stopped.stderr).not.toMatch(/FATAL|napi|internal error|\n\s+at /);
        expect(stopped.stderr).toMatch(new RegExp(`interrupted by ${signal}`));
        expect(stopped.signal, 'killed by a signal instead of exiting').toBe(null);
        expect(stopped.status).toBe(SIGNALS[signal]);
        expect(stopped.stopMs).toBeLessThanOrEqual(STOP_LIMIT_MS);
        expect(tempFiles(work.path)).toEqual([]);
        if (command.output) expect(existsSync(command.output()), `${command.output()} left behind`).toBe(false);
        expect(existsSync(big()), 'the input is kept').toBe(true);
      });
    }
  }
});

// Keep blockOffsets exercised: the forger's own walk must agree with xz --list (else the forgeries above test nothing).
describe('the forger agrees with xz --list', () => {
  it('block offsets from the index equal xz --list -vv', async () => {
    for (const [name, bytes] of files) {
      const path = at(`list-${name.replace(/\W+/g, '-')}.xz`);
      writeFileSync(path, bytes);
      expect(blockOffsets(bytes), name).toEqual(xzList(path).blocks.map((block) => block.compressedOffset));
    }
  });
});
