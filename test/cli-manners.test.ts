/**
 * Shell manners, judged by xz and gzip themselves where they do the same thing: --version, no
 * compressed data on a terminal, the input's owner, mode and times on the output, holes for zero
 * blocks, one line per error that starts with the command and the file, and xz's exit statuses.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, diskLikeData, noise, run, runCli, SYSTEM_PYTHON, tempDir, xzList, type CliName, type RunResult } from './helpers/tools.js';

const MIB = 1 << 20;
/** Made at load time: the it.each tables below name files in it. */
const dir = tempDir('seekz-manners-');
const at = (name: string) => join(dir.path, name);
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

beforeAll(() => {
  chmodSync(dir.path, 0o755); // so that the unprivileged runs below reach their files
  // 24 MiB with 2 MiB of noise at 10 MiB and one byte at 20 MiB: the rest are zero blocks.
  const image = new Uint8Array(24 * MIB);
  image.set(noise(2 * MIB, 7), 10 * MIB);
  image[20 * MIB + 5] = 1;
  writeFileSync(at('sparse.img'), image);
  expect(runCli('seekxz', ['-k', '-T2', '--block-size', '4MiB', at('sparse.img')]).status).toBe(0);
  writeFileSync(at('small.img'), diskLikeData(256 * 1024, 3));
});
afterAll(() => dir.remove());

/** One line on stderr, no stack trace, and the exit status given. */
function expectOneLine(result: RunResult, status: number, pattern: RegExp): void {
  expect(result.status, result.stderr).toBe(status);
  expect(result.stderr).toMatch(/^[^\n]+\n$/);
  expect(result.stderr).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at |internal error|ERR_|node:/);
}

/**
 * Runs a command with a pseudo-terminal as its stdin, stdout and stderr (Debian's python pty
 * module), as a person at a terminal would; returns what the terminal showed and the exit status.
 */
function runOnTerminal(args: string[]): { output: string; status: number } {
  const script = [
    'import os, pty, sys',
    'pid, fd = pty.fork()',
    'if pid == 0: os.execv(sys.argv[1], sys.argv[1:])',
    'out = b""',
    'while True:',
    '    try: data = os.read(fd, 65536)',
    '    except OSError: break',
    '    if not data: break',
    '    out += data',
    '_, status = os.waitpid(pid, 0)',
    'sys.stdout.buffer.write(out)',
    'sys.exit(os.waitstatus_to_exitcode(status))',
  ].join('\n');
  const result = run(SYSTEM_PYTHON, ['-c', script, ...args]);
  return { output: result.stdout.toString('latin1'), status: result.status! };
}

describe('--version and -V', () => {
  const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  it.each(['seekz', 'seekxz', 'partial-deflate'] as CliName[])('%s prints its name and the package version', (name) => {
    // -V also inside a group of short flags, as `xz -dV` takes it (seekz has none: after a subcommand)
    const grouped = { seekz: ['serve', '-V'], seekxz: ['-dV'], 'partial-deflate': ['-qV'] }[name as string]!;
    for (const args of [['--version'], ['-V'], grouped]) {
      const result = runCli(name, args);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.toString()).toBe(`${name} (seekz) ${version}\n`);
    }
  });
  it('--version -v also names the engine each codec runs on: the addons here, the pure-Node path with SEEKZ_NATIVE=0', () => {
    const engines = (env: NodeJS.ProcessEnv) => {
      const result = spawnSync(process.execPath, [cliPath('seekz'), '--version', '-v'], { env: { ...process.env, ...env }, encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(0);
      return result.stdout;
    };
    expect(engines({ SEEKZ_NATIVE: '1' })).toMatch(new RegExp(`^seekz \\(seekz\\) ${version.replace(/\./g, '\\.')}\nxz: native addon seekz_xz \\(liblzma [\\d.]+\\).*\ngzip index: seekz_zlib addon.*\nzstd: native addon seekz_zstd \\(libzstd 1\\.`));
    expect(engines({ SEEKZ_NATIVE: '0' })).toMatch(/\nxz: node-liblzma \(fallback: SEEKZ_NATIVE=0\)\ngzip index: node:zlib \+ JavaScript block walker.*\nzstd: fzstd, decoding only \(SEEKZ_NATIVE=0\)/);
    expect(runCli('seekxz', ['-Vv']).stdout.toString()).toMatch(/^seekxz \(seekz\) .*\nxz: /);
  });
});

describe('--help', () => {
  // Commander wraps descriptions itself; a hard newline in one gave ragged lines ("nbdinfo,\nnbdfuse.").
  it.each([
    ['seekz', ['serve', '--help']],
    ['seekz', ['patch', '--help']],
    ['seekz', ['index', '--help']],
    ['seekxz', ['--help']],
    ['partial-deflate', ['--help']],
  ] as [CliName, string[]][])('%s %s: the description is one paragraph, filled to the width', (name, args) => {
    const result = runCli(name, args);
    expect(result.status, result.stderr).toBe(0);
    const paragraph = result.stdout.toString().split('\n\n')[1]!.split('\n');
    for (const line of paragraph.slice(0, -1)) expect(line.length, paragraph.join('\n')).toBeGreaterThan(60);
  });
});

describe('seekz extract', () => {
  it('takes an .xz as its help says, and writes what xz -d gives', () => {
    expect(runCli('seekz', ['extract', '--help']).stdout.toString()).toMatch(/^Usage: seekz extract \[options\] <file>$/m);
    const result = runCli('seekz', ['extract', at('sparse.img.xz'), '--range', '10M:11M', '-o', at('extracted-xz.bin'), '-q']);
    expect(result.status, result.stderr).toBe(0);
    expect(readFileSync(at('extracted-xz.bin')).equals(run('xz', ['-dc', at('sparse.img.xz')]).stdout.subarray(10 * MIB, 11 * MIB))).toBe(true);
  });
});

describe('compressed data and terminals', () => {
  it('xz, the oracle, refuses to write compressed data to a terminal', () => {
    const xz = runOnTerminal(['/usr/bin/xz', '-c', at('small.img')]);
    expect(xz.status).toBe(1);
    expect(xz.output).toMatch(/Compressed data cannot be written to a terminal/);
  });

  it.each([
    ['seekxz -c FILE', 'seekxz', ['-c', at('small.img')]],
    ['seekxz with no file (stdin to stdout)', 'seekxz', []],
    ['partial-deflate FILE -', 'partial-deflate', [at('small.img'), '-']],
  ] as [string, CliName, string[]][])('%s refuses, exit 1, and writes nothing', (_label, name, args) => {
    const result = runOnTerminal([process.execPath, cliPath(name), ...args]);
    expect(result.status, result.output).toBe(1);
    expect(result.output).toBe(`${name}: compressed data cannot be written to a terminal (xz and gzip refuse too); use -f to force it\r\n`);
  });

  it('seekxz -d refuses to read compressed data from a terminal, as xz -d does', () => {
    expect(runOnTerminal(['/usr/bin/xz', '-d']).output).toMatch(/Compressed data cannot be read from a terminal/);
    const result = runOnTerminal([process.execPath, cliPath('seekxz'), '-d']);
    expect(result.status, result.output).toBe(1);
    expect(result.output).toMatch(/^seekxz: compressed data cannot be read from a terminal/);
  });

  it('-f writes it anyway', () => {
    const result = runOnTerminal([process.execPath, cliPath('seekxz'), '-c', '-f', '-T1', at('small.img')]);
    expect(result.status, result.output.slice(0, 200)).toBe(0);
    expect(result.output.startsWith('\xfd7zXZ')).toBe(true);
  });
});

describe("the input's owner, mode and times go to the output, as xz and gzip give them", () => {
  /** An input with a mode and times no default would give, owned by nobody when we may give it away. */
  function oddInput(name: string): string {
    const path = at(name);
    writeFileSync(path, diskLikeData(300 * 1024, 5));
    if (isRoot) chownSync(path, NOBODY, NOBODY);
    chmodSync(path, 0o640);
    utimesSync(path, 1_500_000_000, 1_400_000_000);
    return path;
  }
  const same = (ours: Stats, theirs: Stats) => {
    expect((ours.mode & 0o7777).toString(8)).toBe((theirs.mode & 0o7777).toString(8));
    expect([ours.uid, ours.gid]).toEqual([theirs.uid, theirs.gid]);
    expect(ours.mtimeMs).toBe(theirs.mtimeMs);
    expect(ours.atimeMs).toBe(theirs.atimeMs);
  };

  it('seekxz compress and decompress against xz -k and xz -dk', () => {
    mkdirSync(at('attrs-xz'));
    mkdirSync(at('attrs-ours'));
    const theirs = oddInput('attrs-xz/file');
    const ours = oddInput('attrs-ours/file');
    expect(run('xz', ['-k', '-T1', theirs]).status).toBe(0);
    expect(runCli('seekxz', ['-k', '-T1', ours]).status).toBe(0);
    const compressed = statSync(`${ours}.xz`);
    same(compressed, statSync(`${theirs}.xz`));
    expect(compressed.mode & 0o777).toBe(0o640);
    expect(compressed.mtimeMs).toBe(1_400_000_000_000);
    if (isRoot) expect(compressed.uid).toBe(NOBODY);

    // Decompression keeps them too, and removes the .xz only once the output is in place.
    chmodSync(`${theirs}.xz`, 0o604);
    chmodSync(`${ours}.xz`, 0o604);
    expect(run('xz', ['-df', `${theirs}.xz`]).status).toBe(0);
    expect(runCli('seekxz', ['-df', `${ours}.xz`]).status).toBe(0);
    same(statSync(ours), statSync(theirs));
    expect(statSync(ours).mode & 0o777).toBe(0o604);
    expect(existsSync(`${ours}.xz`)).toBe(false);
  });

  it('partial-deflate against gzip -k', () => {
    mkdirSync(at('attrs-gzip'));
    mkdirSync(at('attrs-pd'));
    const theirs = oddInput('attrs-gzip/file');
    const ours = oddInput('attrs-pd/file');
    expect(run('gzip', ['-k', theirs]).status).toBe(0);
    expect(runCli('partial-deflate', ['-q', ours, `${ours}.gz`, '0', '64K']).status).toBe(0);
    const made = statSync(`${ours}.gz`);
    const gzip = statSync(`${theirs}.gz`);
    expect((made.mode & 0o7777).toString(8)).toBe((gzip.mode & 0o7777).toString(8));
    expect([made.uid, made.gid]).toEqual([gzip.uid, gzip.gid]);
    expect(made.mtimeMs).toBe(gzip.mtimeMs);
  });

  it('a failed decompression leaves the input and no output', () => {
    const bad = at('bad.xz');
    const bytes = new Uint8Array(readFileSync(at('sparse.img.xz')));
    bytes[bytes.length >> 1] ^= 0x10;
    writeFileSync(bad, bytes);
    const result = runCli('seekxz', ['-d', bad]);
    expectOneLine(result, 1, new RegExp(`^seekxz: ${bad}: xz: `));
    expect(existsSync(bad)).toBe(true);
    expect(existsSync(at('bad'))).toBe(false);
  });
});

describe('zero blocks become holes, as xz -d makes them', () => {
  const image = () => readFileSync(at('sparse.img'));
  const allocated = (path: string) => statSync(path).blocks;
  let xzBlocks = 0;

  beforeAll(() => {
    mkdirSync(at('holes-xz'));
    writeFileSync(at('holes-xz/sparse.img.xz'), readFileSync(at('sparse.img.xz')));
    expect(run('xz', ['-d', at('holes-xz/sparse.img.xz')]).status).toBe(0);
    xzBlocks = allocated(at('holes-xz/sparse.img'));
    // The oracle makes holes: 2 MiB of data and a block, not 24 MiB.
    expect(xzBlocks * 512).toBeLessThan(3 * MIB);
    // 1 MiB frames: whole zero frames (not written at all) and zero 4 KiB blocks inside data frames.
    expect(runCli('seekzstd', ['-q', '-f', '--frame-size=1M', at('sparse.img'), '-o', at('sparse.img.zst')]).status).toBe(0);
  });

  it.each([
    ['seekxz -d', (out: string) => ['seekxz', ['-dk', '-T2', at('sparse.img.xz'), '-o', out]]],
    ['seekzstd -d -T2', (out: string) => ['seekzstd', ['-d', '-T2', at('sparse.img.zst'), '-o', out]]],
    ['seekzstd -d -T1', (out: string) => ['seekzstd', ['-d', '-T1', at('sparse.img.zst'), '-o', out]]],
    ['seekz cat -o', (out: string) => ['seekz', ['cat', at('sparse.img.xz'), '-o', out]]],
    ['seekz extract -o', (out: string) => ['seekz', ['extract', at('sparse.img.xz'), '--range', `0:${24 * MIB}`, '-o', out, '-q']]],
  ] as [string, (out: string) => [CliName, string[]]][])('%s: the same bytes in no more blocks than xz -d', (label, command) => {
    const out = at(`holes-${label.replace(/\W+/g, '-')}`);
    const [name, args] = command(out);
    const result = runCli(name, args);
    expect(result.status, result.stderr).toBe(0);
    expect(statSync(out).size).toBe(24 * MIB);
    expect(readFileSync(out).equals(image())).toBe(true);
    expect(allocated(out)).toBeLessThanOrEqual(xzBlocks);
  });

  it('a file that ends in zeros gets its full size', () => {
    const out = at('tail-zeros');
    expect(runCli('seekz', ['extract', at('sparse.img.xz'), '--range', `${10 * MIB}:${16 * MIB}`, '-o', out, '-q']).status).toBe(0);
    expect(statSync(out).size).toBe(6 * MIB);
    expect(readFileSync(out).equals(image().subarray(10 * MIB, 16 * MIB))).toBe(true);
    expect(allocated(out) * 512).toBeLessThan(3 * MIB);
  });
});

describe('holes in stdout: a decompressed stdout that is a regular file gets them, as xz -dc > FILE makes them', () => {
  const image = () => readFileSync(at('sparse.img'));
  const allocated = (path: string) => statSync(path).blocks;
  const node = JSON.stringify(process.execPath);
  const seekxz = (args: string, env = '') => `${env} ${node} ${JSON.stringify(cliPath('seekxz'))} ${args}`;
  const shell = (script: string) => run('sh', ['-c', script]);

  it.each([
    ['native engine', ''],
    ['SEEKZ_NATIVE=0 (no lseek: written in full)', 'SEEKZ_NATIVE=0'],
  ])('%s: the same bytes, no more blocks than xz -dc > FILE, and the offset left at the end', (_label, env) => {
    const oracle = at(`stdout-xz-${env || 'native'}`);
    const ours = at(`stdout-seekxz-${env || 'native'}`);
    const source = JSON.stringify(at('sparse.img.xz'));
    // What follows in the same redirection lands after the data, as after xz.
    expect(shell(`{ xz -dc ${source}; echo tail; } > ${JSON.stringify(oracle)}`).status).toBe(0);
    const result = shell(`{ ${seekxz(`-dc -T2 ${source}`, env)}; echo tail; } > ${JSON.stringify(ours)}`);
    expect(result.status, result.stderr).toBe(0);
    expect(readFileSync(ours).equals(readFileSync(oracle))).toBe(true);
    expect(readFileSync(ours).subarray(0, 24 * MIB).equals(image())).toBe(true);
    if (env === '') expect(allocated(ours)).toBeLessThanOrEqual(allocated(oracle));
    const zstd = at(`stdout-seekzstd-${env || 'native'}`);
    const zstdRun = shell(`{ ${env} ${node} ${JSON.stringify(cliPath('seekzstd'))} -dc -T2 ${JSON.stringify(at('sparse.img.zst'))}; echo tail; } > ${JSON.stringify(zstd)}`);
    expect(zstdRun.status, zstdRun.stderr).toBe(0);
    expect(readFileSync(zstd).equals(readFileSync(oracle))).toBe(true);
    if (env === '') expect(allocated(zstd)).toBeLessThanOrEqual(allocated(oracle));
    // seekz cat and seekz read write a redirected stdout the same way.
    const seekz = (args: string) => `${env} ${node} ${JSON.stringify(cliPath('seekz'))} ${args}`;
    const cat = at(`stdout-cat-${env || 'native'}`);
    const catRun = shell(`{ ${seekz(`cat ${source}`)}; echo tail; } > ${JSON.stringify(cat)}`);
    expect(catRun.status, catRun.stderr).toBe(0);
    expect(readFileSync(cat).equals(readFileSync(oracle))).toBe(true);
    if (env === '') expect(allocated(cat)).toBeLessThanOrEqual(allocated(oracle));
    const read = at(`stdout-read-${env || 'native'}`);
    const readRun = shell(`{ ${seekz(`read ${JSON.stringify(at('sparse.img.zst'))} --offset 0 --length ${24 * MIB}`)}; echo tail; } > ${JSON.stringify(read)}`);
    expect(readRun.status, readRun.stderr).toBe(0);
    expect(readFileSync(read).equals(readFileSync(oracle))).toBe(true);
    if (env === '') expect(allocated(read)).toBeLessThanOrEqual(allocated(oracle));
  });

  it('a file that ends in zeros gets its full size; >> appends in full', () => {
    const out = at('stdout-tail-zeros');
    const source = JSON.stringify(at('sparse.img.xz'));
    expect(shell(`${seekxz(`-dc ${source}`)} > ${JSON.stringify(out)}`).status).toBe(0);
    expect(statSync(out).size).toBe(24 * MIB); // the last 4 MiB but 6 bytes are zeros
    expect(readFileSync(out).equals(image())).toBe(true);
    expect(allocated(out) * 512).toBeLessThan(3 * MIB);
    writeFileSync(out, 'head\n');
    expect(shell(`${seekxz(`-dc ${source}`)} >> ${JSON.stringify(out)}`).status).toBe(0);
    expect(readFileSync(out).equals(Buffer.concat([Buffer.from('head\n'), image()]))).toBe(true);
  });

  it('a block that fails leaves the file as it was before the command, whatever the workers wrote', () => {
    const bytes = new Uint8Array(readFileSync(at('sparse.img.xz')));
    // The block with the noise: liblzma stores it as uncompressed chunks, so a flipped bit in it is
    // seen only by the block's check, after its bytes went to the file.
    const noisy = xzList(at('sparse.img.xz')).blocks.find((block) => block.totalSize > MIB)!;
    bytes[noisy.compressedOffset + (noisy.totalSize >> 1)] ^= 0x40;
    const bad = at('bad-check.img.xz');
    writeFileSync(bad, bytes);
    const out = at('stdout-failed');
    // xz -dc leaves what it wrote before the bad block; seekxz, whose workers may have written
    // later blocks too, leaves nothing.
    expect(shell(`xz -dc ${JSON.stringify(bad)} > ${JSON.stringify(out)}`).status).toBe(1);
    expect(statSync(out).size).toBeGreaterThan(0);
    const result = shell(`${seekxz(`-dc -T2 ${JSON.stringify(bad)}`)} > ${JSON.stringify(out)}`);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/xz: block \d+ at offset \d+ does not decode/);
    expect(statSync(out).size).toBe(0);
  });
});

describe('a stdout that is a pipe: its buffer is grown to 1 MiB (streamSink), and the bytes are the same', () => {
  const node = JSON.stringify(process.execPath);
  // The reader reads everything, then says what it got and how large the pipe's buffer was (F_GETPIPE_SZ).
  const reader = `${SYSTEM_PYTHON} -c "import sys, fcntl, hashlib; data = sys.stdin.buffer.read(); print(hashlib.sha256(data).hexdigest(), fcntl.fcntl(0, 1032))"`;
  const pipeMax = () => Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'));

  it.each([
    ['seekzstd -dc', 'seekzstd', '-dc -T2 pipe.img.zst'],
    ['seekxz -dc', 'seekxz', '-dc -T2 sparse.img.xz'],
    ['seekz cat', 'seekz', 'cat sparse.img.xz'],
  ] as const)('%s, with the addon and without', (_label, command, args) => {
    if (command === 'seekzstd') expect(runCli('seekzstd', ['-q', '-f', at('sparse.img'), '-o', at('pipe.img.zst')]).status).toBe(0);
    const expected = createHash('sha256').update(readFileSync(at('sparse.img'))).digest('hex');
    const argv = args.split(' ').map((word) => (word.includes('.img') ? JSON.stringify(at(word)) : word)).join(' ');
    for (const env of ['', 'SEEKZ_NATIVE=0']) {
      const result = run('bash', ['-o', 'pipefail', '-c', `${env} ${node} ${JSON.stringify(cliPath(command))} ${argv} | ${reader}`]);
      expect(result.status, result.stderr).toBe(0);
      const [digest, size] = result.stdout.toString().trim().split(' ');
      expect(digest).toBe(expected);
      // Without the addon there is no fcntl: the pipe keeps Linux's default of 64 KiB.
      expect(Number(size)).toBe(env === '' && pipeMax() >= 2 ** 20 ? 2 ** 20 : 65536);
    }
  });
});

describe('messages: COMMAND: FILE: detail, and xz exit statuses', () => {
  it('a missing file reads like xz', () => {
    expect(run('xz', ['-t', at('missing')]).stderr).toBe(`xz: ${at('missing')}: No such file or directory\n`);
    expectOneLine(runCli('seekz', ['cat', at('missing')]), 1, new RegExp(`^seekz: ${at('missing')}: No such file or directory$`, 'm'));
    expectOneLine(runCli('seekxz', ['-t', at('missing')]), 1, new RegExp(`^seekxz: ${at('missing')}: No such file or directory$`, 'm'));
    expectOneLine(runCli('partial-deflate', [at('missing'), at('missing.gz')]), 1, new RegExp(`^partial-deflate: ${at('missing')}: No such file or directory$`, 'm'));
  });

  it('a directory, and an output in a folder that does not exist, read like xz', () => {
    expect(run('xz', ['-t', dir.path]).stderr).toMatch(new RegExp(`^xz: ${dir.path}: Is a directory`));
    expectOneLine(runCli('seekxz', ['-t', dir.path]), 1, new RegExp(`^seekxz: ${dir.path}: Is a directory$`, 'm'));
    expectOneLine(runCli('seekz', ['cat', dir.path]), 1, new RegExp(`^seekz: ${dir.path}: Is a directory$`, 'm'));
    const nowhere = at('no-such-folder/out');
    expectOneLine(runCli('seekz', ['cat', at('sparse.img.xz'), '-o', nowhere]), 1, new RegExp(`^seekz: ${nowhere}: No such file or directory$`, 'm'));
    expectOneLine(runCli('seekxz', ['-k', at('small.img'), '-o', nowhere]), 1, new RegExp(`^seekxz: ${nowhere}: No such file or directory$`, 'm'));
  });

  it('a file we may not read reads like xz', () => {
    const secret = at('secret.xz');
    writeFileSync(secret, readFileSync(at('sparse.img.xz')));
    chmodSync(secret, 0o600);
    // root reads anything, so the refusal is tried as nobody (setpriv, util-linux)
    const as = (command: string, args: string[]) =>
      isRoot ? run('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', command, ...args]) : (chmodSync(secret, 0), run(command, args));
    expect(as('xz', ['-t', secret]).stderr).toBe(`xz: ${secret}: Permission denied\n`);
    expectOneLine(as(process.execPath, [cliPath('seekz'), 'read', secret, '--offset', '0', '--length', '1']), 1, new RegExp(`^seekz: ${secret}: Permission denied$`, 'm'));
    expectOneLine(as(process.execPath, [cliPath('seekxz'), '-t', secret]), 1, new RegExp(`^seekxz: ${secret}: Permission denied$`, 'm'));
  });

  it('bad data names the command, the file, then the format', () => {
    const notXz = at('not.xz');
    writeFileSync(notXz, 'no xz here\n');
    expectOneLine(runCli('seekxz', ['-t', notXz]), 1, new RegExp(`^seekxz: ${notXz}: xz: `));
    expectOneLine(runCli('seekz', ['cat', notXz]), 1, new RegExp(`^seekz: ${notXz}: not a gzip, xz or zstd file`));
    expectOneLine(runCli('seekxz', ['-d'], { input: 'no xz here\n' }), 1, /^seekxz: \(stdin\): xz: /);
  });

  it('with several files, each error names its file and the others go on (exit 1)', () => {
    const result = runCli('seekxz', ['-t', at('missing'), at('sparse.img.xz'), at('small.img')]);
    expect(result.status).toBe(1);
    const lines = result.stderr.split('\n');
    expect(lines, result.stderr).toHaveLength(3);
    expect(lines[0]).toBe(`seekxz: ${at('missing')}: No such file or directory`);
    expect(lines[1]).toMatch(new RegExp(`^seekxz: ${at('small.img')}: xz: `));
  });

  it('usage errors exit 1, whether commander or seekz finds them, as xz', () => {
    expect(run('xz', ['--bogus']).status).toBe(1);
    expectOneLine(runCli('seekz', ['read', 'x', '--offset', '0', '--length', '1', '--bogus']), 1, /^seekz: unknown option '--bogus'$/m);
    expectOneLine(runCli('seekz', ['read', 'x', '--length', '1']), 1, /^seekz: required option '--offset <n>' not specified$/m);
    expectOneLine(runCli('seekz', ['read', 'x', '--offset', '1Q', '--length', '1']), 1, /^seekz: cannot parse size '1Q'/);
    expectOneLine(runCli('seekxz', ['--bogus']), 1, /^seekxz: unknown option '--bogus'$/m);
    expectOneLine(runCli('partial-deflate', [at('small.img'), at('x.gz'), '1M']), 1, /^partial-deflate: give both START and END, or neither$/m);
  });

  it.each([['cat', '-'], ['read', '-', '--offset', '0', '--length', '1'], ['info', '-'], ['index', '-'], ['serve', '-', '-s']])(
    "seekz %s - says stdin cannot be read at random offsets (it tried a file named '-')",
    (...args) => {
      expectOneLine(runCli('seekz', args, { input: readFileSync(at('sparse.img.xz')).subarray(0, 4096) }), 1, /^seekz: \(stdin\): stdin cannot be read at random offsets; give a file or a URL/);
    },
  );

  it('a mistake in the serve command line names no file', () => {
    expectOneLine(runCli('seekz', ['serve', at('sparse.img.xz'), '-s', '--unix', at('never.sock')]), 1, /^seekz: serve: -s and --unix cannot go together/);
    expectOneLine(runCli('seekz', ['serve', at('sparse.img.xz'), '--port', '99999']), 1, /^seekz: serve: --port must be a whole number from 0 to 65535, got '99999'$/m);
    expectOneLine(runCli('seekz', ['serve', at('sparse.img.xz'), '--cache', '12Q']), 1, /^seekz: cannot parse size '12Q'/);
  });

  it('seekxz -c with -o is refused, not -o silently winning', () => {
    expectOneLine(runCli('seekxz', ['-c', '-k', at('small.img'), '-o', at('never.xz')]), 1, /^seekxz: -c and -o cannot go together; give one$/m);
    expect(existsSync(at('never.xz'))).toBe(false);
  });

  it('partial-deflate -T 0 is all cores, as seekxz -T 0 and xz -T0', () => {
    const result = runCli('partial-deflate', ['-T', '0', '-f', at('small.img'), at('all-cores.gz')]);
    expect(result.status, result.stderr).toBe(0);
    expect(run('gzip', ['-dc', at('all-cores.gz')]).stdout.equals(readFileSync(at('small.img')))).toBe(true);
  });

  it('seekxz -T -1 speaks of threads, seekxz -10 of the level', () => {
    expectOneLine(runCli('seekxz', ['-T', '-1', at('small.img')]), 1, /^seekxz: -T\/--threads must be a whole number from 0 to 256, got '-1'$/m);
    expectOneLine(runCli('seekxz', ['-10', at('small.img')]), 1, /^seekxz: level must be a whole number from 0 to 9, got '10'$/m);
    expectOneLine(runCli('partial-deflate', ['-10', at('small.img'), at('x.gz')]), 1, /^partial-deflate: level must be a whole number from 1 to 9, got '10'$/m);
    expect(existsSync(`${at('small.img')}.xz`)).toBe(false);
  });

  it('START > END is refused like --store 5:1, and nothing is written', () => {
    const out = at('backwards.gz');
    expectOneLine(runCli('partial-deflate', [at('small.img'), out, '2M', '1M']), 1, /^partial-deflate: range '2M:1M' ends \(1048576\) before it starts \(2097152\)$/m);
    expectOneLine(runCli('partial-deflate', [at('small.img'), out, '--store', '5:1']), 1, /^partial-deflate: range '5:1' ends \(1\) before it starts \(5\)$/m);
    expect(existsSync(out)).toBe(false);
  });

  it('an existing output is an error about the file being worked on', () => {
    const input = at('again.img');
    writeFileSync(input, diskLikeData(64 * 1024, 9));
    writeFileSync(`${input}.xz`, 'x');
    expectOneLine(runCli('seekxz', [input]), 1, new RegExp(`^seekxz: ${input}: ${input}\\.xz already exists; use -f to overwrite it$`, 'm'));
    expect(existsSync(input)).toBe(true);
  });
});

describe('start-up: each command loads what it uses', () => {
  /**
   * What a run of the shipped command requires, through a Module._load hook: the bundle itself and
   * every Node built-in or package it asks for. The sources' modules are inside the one bundle file;
   * those imported lazily stay behind esbuild's lazy wrappers, and what they would bring shows as
   * the built-ins and packages they require (the NBD server node:net, the HTTP client node:http,
   * xz node-liblzma and the seekz_xz addon).
   */
  function modulesLoaded(args: string[]): string[] {
    writeFileSync(at('require-hook.cjs'), "const Module = require('node:module');\nconst load = Module._load;\nModule._load = function (request, ...rest) { process._rawDebug(`loaded ${request}`); return load.call(this, request, ...rest); };\n");
    const result = run(process.execPath, ['--require', at('require-hook.cjs'), cliPath('seekz'), ...args]);
    expect(result.status, result.stderr).toBe(0);
    return result.stderr.split('\n').filter((line) => line.startsWith('loaded ')).map((line) => line.slice(7));
  }

  it('seekz read and patch of a .gz are one file that loads neither the NBD server, the HTTP client, liblzma, a worker thread, crypto nor child_process', () => {
    const gz = at('startup.gz');
    expect(runCli('partial-deflate', ['-q', at('small.img'), gz, '0', '64K']).status).toBe(0);
    writeFileSync(at('startup.bin'), 'patched');
    const read = modulesLoaded(['read', gz, '--offset', '100', '--length', '4096', '-o', at('startup.out')]);
    const patch = modulesLoaded(['patch', '-q', gz, '--offset', '100', '--data', at('startup.bin')]);
    for (const loaded of [read, patch]) {
      expect(loaded, 'the hook sees what the bundle requires').toContain('node:zlib');
      // The bin script and start.js, which compiles the one bundle through node:vm (with V8's code cache).
      expect(loaded.filter((request) => /^\.?\//.test(request)), 'the bundle is all of ours').toEqual([cliPath('seekz'), './start.js']);
      expect(loaded.filter((request) => /^(node:)?(net|http|https)$|liblzma|seekz_xz|worker\.js$/.test(request))).toEqual([]);
      // Nor what they would use only elsewhere (src/lazy-builtins.ts, the plugin in scripts/bundle.mjs).
      expect(loaded.filter((request) => /^(node:)?(crypto|worker_threads|child_process)$/.test(request))).toEqual([]);
    }
    // --help still lists serve: its definition loads when no other command is named.
    expect(runCli('seekz', ['--help']).stdout.toString()).toMatch(/^ {2}serve /m);
  });

  it("partial-deflate starts no worker thread: its chunks deflate on libuv's thread pool (a worker would show in the hook, as seekxz's do without the addon)", () => {
    writeFileSync(
      at('worker-hook.cjs'),
      "const threads = require('node:worker_threads');\nconst Worker = threads.Worker;\n" +
        "threads.Worker = class extends Worker { constructor(...args) { process._rawDebug('worker started'); super(...args); } };\n",
    );
    const started = (name: CliName, args: string[], env: NodeJS.ProcessEnv = {}) => {
      const result = run(process.execPath, ['--require', at('worker-hook.cjs'), cliPath(name), ...args], { env: { ...process.env, ...env } });
      expect(result.status, result.stderr).toBe(0);
      return result.stderr.split('\n').filter((line) => line === 'worker started').length;
    };
    const input = at('threads.img');
    writeFileSync(input, Buffer.concat([randomBytes(3 * MIB), Buffer.alloc(2 * MIB), Buffer.from('text '.repeat(300_000))]));
    expect(started('partial-deflate', ['-q', '-T2', '--chunk-size', '256K', input, at('threads.gz')])).toBe(0);
    expect(run('gzip', ['-dc', at('threads.gz')]).stdout.equals(readFileSync(input))).toBe(true);
    expect(started('seekxz', ['-q', '-k', '-f', '-T2', '--block-size', '1MiB', input], { SEEKZ_NATIVE: '0' })).toBe(2);
  });

  it("V8's compiled code is kept between runs, for the bundle it came from, only in a directory closed to others", () => {
    const gz = at('cached.gz');
    expect(runCli('partial-deflate', ['-q', at('small.img'), gz, '0', '64K']).status).toBe(0);
    const expected = readFileSync(at('small.img')).subarray(5000, 5000 + 4096);
    const cacheHome = at('cache-home');
    const directory = join(cacheHome, 'seekz');
    const read = () => {
      const result = run(process.execPath, [cliPath('seekz'), 'read', gz, '--offset', '5000', '--length', '4096'], { env: { ...process.env, XDG_CACHE_HOME: cacheHome } });
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.equals(expected)).toBe(true);
    };
    const caches = () => (existsSync(directory) ? readdirSync(directory).filter((entry) => entry.endsWith('.v8')) : []);
    // start.js takes an all-ASCII bundle as Latin-1, without decoding UTF-8.
    for (const name of ['seekz', 'partial-deflate', 'seekxz', 'seekzstd', 'lib']) {
      const bundle = readFileSync(join(dirname(cliPath('seekz')), `${name}.bundle.js`));
      expect(bundle.findIndex((byte) => byte > 0x7f), `${name}.bundle.js is ASCII`).toBe(-1);
    }

    read();
    expect(statSync(directory).mode & 0o777).toBe(0o700);
    const [cache] = caches();
    expect(caches()).toEqual([expect.stringMatching(/^seekz-.*\.v8$/)]);
    const written = readFileSync(join(directory, cache!));
    read();
    expect(readFileSync(join(directory, cache!)).equals(written), 'a cache V8 took is left as it is').toBe(true);

    // A cache V8 refuses (here garbage) only costs a compile, and is written again. Writing one
    // also removes caches of other installs not rewritten for 30 days, and keeps newer ones.
    writeFileSync(join(directory, cache!), 'not a code cache');
    const gone = join(directory, 'seekxz-oldinstall-v20-x64-1-2-3.v8');
    const kept = join(directory, 'seekxz-otherinstall-v20-x64-1-2-3.v8');
    writeFileSync(gone, 'an old cache');
    writeFileSync(kept, 'a recent cache');
    const daysAgo = (days: number) => new Date(Date.now() - days * 24 * 3600 * 1000);
    utimesSync(gone, daysAgo(31), daysAgo(31));
    utimesSync(kept, daysAgo(29), daysAgo(29));
    read();
    expect(readFileSync(join(directory, cache!)).length).toBeGreaterThan(written.length / 2);
    expect([existsSync(gone), existsSync(kept)]).toEqual([false, true]);
    rmSync(kept);

    // Cached code runs as the user: a directory others may write to is neither read nor written.
    rmSync(join(directory, cache!));
    chmodSync(directory, 0o777);
    read();
    expect(caches()).toEqual([]);
  });
});
