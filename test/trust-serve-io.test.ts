/**
 * Issue 8, the serving and I/O cases of "Never a wrong byte": an interrupted edit is rolled back
 * by every reader, output errors are errors, the NBD server keeps one memory budget and answers
 * bad requests as nbdkit does, and a stalled HTTP body fails in bounded time. Oracles are the
 * real tools: zcat, nbdcopy, nbdkit, the kernel's /dev/full and a small tmpfs.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { journalPath, writeJournal } from '../src/edit/journal.js';
import { SeekzError } from '../src/errors.js';
import { open } from '../src/open.js';
import { httpSource } from '../src/source/http.js';
import { cliPath, diskLikeData, noise, peakRss, requireTool, run, runCli, sha256, tempDir, type CliName } from './helpers/tools.js';

const MIB = 2 ** 20;
let dir: { path: string; remove: () => void };
const file = (name: string) => join(dir.path, name);
const isRoot = process.getuid?.() === 0;

beforeAll(() => {
  for (const [tool, pkg] of [['zcat', 'gzip'], ['xz', 'xz-utils'], ['nbdcopy', 'libnbd-bin'], ['nbdkit', 'nbdkit']]) requireTool(tool!, pkg!);
  dir = tempDir('seekz-trust-serve-io-');
});
afterAll(() => dir?.remove());

/** Runs a CLI with stdout going to `stdoutPath` (a file or device); returns status and stderr. */
function runTo(name: CliName, args: string[], stdoutPath: string): { status: number | null; stderr: string } {
  const fd = openSync(stdoutPath, 'w');
  try {
    const result = spawnSync(process.execPath, [cliPath(name), ...args], { stdio: ['ignore', fd, 'pipe'] });
    return { status: result.status, stderr: result.stderr.toString() };
  } finally {
    closeSync(fd);
  }
}

/** A clean error: non-zero, one line (a progress or recovery note may come before it), no stack trace. */
function expectOneLineError(result: { status: number | null; stderr: string }, label: string, pattern: RegExp): void {
  expect(result.status, `${label}: ${result.stderr}`).not.toBe(0);
  expect(result.status).not.toBe(70);
  const lines = result.stderr.trim().split('\n').filter((line) => !/has no index|has no seekz map/.test(line));
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

describe('Interrupted edit: every reader rolls back a journal first, or refuses', () => {
  const size = 6 * MIB;
  let raw: Uint8Array;
  let base: string;

  beforeAll(() => {
    raw = diskLikeData(size, 3);
    writeFileSync(file('edit.img'), raw);
    base = file('edit-base.gz');
    const made = runCli('partial-deflate', ['-q', file('edit.img'), base, String(MIB), String(4 * MIB)]);
    expect(made.status, made.stderr).toBe(0);
    expect(sha256(run('zcat', [base]).stdout)).toBe(sha256(raw));
  });

  /**
   * A copy of the base file as a patcher killed mid-edit leaves it: a complete journal (written by
   * the library's own journal code) holding the old bytes of a range, and that range overwritten.
   */
  async function halfWritten(name: string): Promise<string> {
    const path = file(name);
    copyFileSync(base, path);
    const bytes = readFileSync(path);
    const at = Math.floor(bytes.length / 2);
    const length = 64 * 1024;
    await writeJournal(path, bytes.length, [{ fileOffset: at, bytes: bytes.subarray(at, at + length) }]);
    bytes.set(noise(length, 9), at);
    writeFileSync(path, bytes);
    expect(run('gzip', ['-t', path]).status, 'the half-written file is damaged').not.toBe(0);
    return path;
  }

  function expectRecovered(path: string): void {
    expect(existsSync(journalPath(path)), 'journal left behind').toBe(false);
    expect(existsSync(`${path}.seekz-lock`), 'lock left behind').toBe(false);
    expect(sha256(readFileSync(path)), 'the file is the old file again').toBe(sha256(readFileSync(base)));
  }

  it('seekz cat gives the all-old bytes', async () => {
    const path = await halfWritten('cat.gz');
    const result = runCli('seekz', ['cat', path]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toContain('rolled back an interrupted edit');
    expect(sha256(result.stdout)).toBe(sha256(raw));
    expectRecovered(path);
  });

  it('seekz info and seekz index roll back before they look', async () => {
    const infoPath = await halfWritten('info.gz');
    const info = runCli('seekz', ['info', infoPath]);
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout.toString()).toContain(`uncompressed: ${size} bytes`);
    expectRecovered(infoPath);

    const indexPath = await halfWritten('index.gz');
    const index = runCli('seekz', ['index', '-q', indexPath]);
    expect(index.status, index.stderr).toBe(0);
    expectRecovered(indexPath);
  });

  it('seekz serve --readonly serves the all-old bytes (nbdcopy)', async () => {
    const path = await halfWritten('serve.gz');
    const out = file('served.raw');
    const result = runCli('seekz', ['serve', path, '--readonly', '--run', `nbdcopy "$uri" '${out}'`]);
    expect(result.status, result.stderr).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(raw));
    expectRecovered(path);
  });

  it("the library's open() rolls back too", async () => {
    const path = await halfWritten('library.gz');
    const data = await open(path);
    try {
      expect(sha256(await data.read(0, data.size))).toBe(sha256(raw));
    } finally {
      await data.close?.();
    }
    expectRecovered(path);
  });

  it("a dead patcher's lock and a torn temp journal are cleaned up by the reader that takes over", async () => {
    const path = file('stale.gz');
    copyFileSync(base, path);
    const dead = spawnSync('true');
    writeFileSync(`${path}.seekz-lock`, `${dead.pid}\n`);
    writeFileSync(`${path}.seekz-lock.${dead.pid}-0badcafe`, `${dead.pid}\n`); // its temp, from before the link
    writeFileSync(`${journalPath(path)}.tmp`, noise(1000, 4));
    const result = runCli('seekz', ['cat', path]);
    expect(result.status, result.stderr).toBe(0);
    expect(sha256(result.stdout)).toBe(sha256(raw));
    expect(readdirSync(dir.path).filter((name) => name.startsWith('stale.gz.'))).toEqual([]);
  });

  it('a live lock refuses the read, naming the owner', async () => {
    const path = file('live.gz');
    copyFileSync(base, path);
    const owner = spawn('sleep', ['30']);
    try {
      writeFileSync(`${path}.seekz-lock`, `${owner.pid}\n`);
      expectOneLineError(runCli('seekz', ['cat', path]), 'seekz cat', new RegExp(`another seekz process \\(pid ${owner.pid}\\)`));
    } finally {
      owner.kill('SIGKILL');
    }
  });

  it.runIf(isRoot)('on a read-only file system the half-written file is refused, not read (RECOVERY_NEEDS_WRITE)', async () => {
    const mount = file('ro-mount');
    mkdirSync(mount);
    expect(run('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mount]).status).toBe(0);
    try {
      const source = await halfWritten('ro-source.gz');
      const path = join(mount, 'disk.gz');
      copyFileSync(source, path);
      copyFileSync(journalPath(source), journalPath(path));
      expect(run('mount', ['-o', 'remount,ro', mount]).status).toBe(0);
      for (const args of [['cat', path], ['info', path], ['read', path, '--offset', '0', '--length', '100']]) {
        const result = runCli('seekz', args);
        expectOneLineError(result, `seekz ${args[0]}`, /^seekz: \S+disk\.gz: patch: .*disk\.gz has an interrupted edit .* cannot be rolled back here: .*EROFS.*as a user who can write/);
        expect(result.stdout.length, `seekz ${args[0]} wrote nothing`).toBe(0);
      }
      await expect(open(path)).rejects.toMatchObject({ code: 'RECOVERY_NEEDS_WRITE' });
      await expect(open(path)).rejects.toBeInstanceOf(SeekzError);
    } finally {
      run('umount', [mount]);
    }
  });
});

describe('Full disk: short writes, ENOSPC and EIO are errors for every command', () => {
  let bin: string;
  let gz: string;
  let xzFile: string;
  let zst: string;

  beforeAll(() => {
    bin = file('out-src.bin');
    // Mostly incompressible, so every output (even an index with 64 KiB spacing) overflows 1 MiB.
    writeFileSync(bin, Buffer.concat([noise(4 * MIB, 5), diskLikeData(2 * MIB, 5)]));
    gz = file('out-src.gz');
    expect(run('sh', ['-c', `gzip -6 -c '${bin}' > '${gz}'`]).status).toBe(0);
    xzFile = file('out-src.xz');
    expect(run('sh', ['-c', `xz -T2 -1 --block-size=1MiB -c '${bin}' > '${xzFile}'`]).status).toBe(0);
    zst = file('out-src.zst');
    expect(runCli('seekzstd', ['-q', '-T2', '--frame-size=1M', bin, '-o', zst]).status).toBe(0);
  });

  const toStdout: [label: string, name: CliName, args: () => string[]][] = [
    ['seekz cat FILE.gz', 'seekz', () => ['cat', gz]],
    ['seekz cat FILE.xz', 'seekz', () => ['cat', xzFile]],
    ['seekz read', 'seekz', () => ['read', gz, '--offset', '1000', '--length', String(3 * MIB)]],
    ['seekz extract -o -', 'seekz', () => ['extract', xzFile, '--range', `0:${2 * MIB}`, '-o', '-', '-q']],
    ['seekz info', 'seekz', () => ['info', xzFile]],
    ['seekxz -c', 'seekxz', () => ['-c', '-T1', bin]],
    ['seekxz -dc', 'seekxz', () => ['-dc', xzFile]],
    ['seekzstd -dc', 'seekzstd', () => ['-dc', '-T2', zst]],
    ['partial-deflate IN -', 'partial-deflate', () => ['-q', bin, '-']],
  ];
  const toFile: [label: string, name: CliName, args: (out: string) => string[]][] = [
    ['seekz read -o', 'seekz', (out) => ['read', gz, '--offset', '0', '--length', String(3 * MIB), '-o', out]],
    ['seekz extract -o', 'seekz', (out) => ['extract', xzFile, '--range', `0:${4 * MIB}`, '-o', out, '-q']],
    ['seekz index -o', 'seekz', (out) => ['index', '-q', '--spacing', '64KiB', gz, '-o', out]],
    ['seekxz -o', 'seekxz', (out) => ['-k', '-T1', bin, '-o', out]],
    ['seekzstd -d -o', 'seekzstd', (out) => ['-d', '-q', '-T2', zst, '-o', out]],
    ['partial-deflate IN OUT', 'partial-deflate', (out) => ['-q', bin, out]],
  ];

  it('zcat, the oracle, fails on /dev/full with "No space left on device"', () => {
    const zcat = spawnSync('sh', ['-c', `zcat '${gz}' > /dev/full`]);
    expect(zcat.status).toBe(1);
    expect(zcat.stderr.toString()).toMatch(/No space left on device/);
  });

  it.each(toStdout)(
    'stdout is /dev/full: %s fails with one line',
    (_label, name, args) => {
      expectOneLineError(runTo(name, args(), '/dev/full'), _label, /^(seekz|seekxz|seekzstd|partial-deflate): \S+: writing stdout failed after \d+ bytes: no space left on device \(ENOSPC\)/);
    },
  );

  it.each(toFile)(
    '-o /dev/full: %s fails with one line, and /dev/full is still a device',
    (_label, name, args) => {
      expectOneLineError(runCli(name, args('/dev/full')), _label, /^(seekz|seekxz|seekzstd|partial-deflate): \S+: writing \/dev\/full failed after \d+ bytes: no space left on device \(ENOSPC\)/);
      expect(run('test', ['-c', '/dev/full']).status, '/dev/full was not replaced by a file').toBe(0);
    },
  );

  it.runIf(isRoot)('a 1 MiB tmpfs: every command fails after a short write and leaves no temp file', () => {
    const mount = file('small-fs');
    mkdirSync(mount);
    const mounted = run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
    expect(mounted.status, `mount -t tmpfs failed: ${mounted.stderr}`).toBe(0);
    try {
      for (const [label, name, args] of toStdout.filter(([label]) => label !== 'seekz info')) {
        const out = join(mount, 'stdout');
        expectOneLineError(runTo(name, args(), out), label, /^(seekz|seekxz|seekzstd|partial-deflate): \S+: writing stdout failed after \d+ bytes: no space left on device \(ENOSPC\)/);
        run('rm', ['-f', out]);
      }
      for (const [label, name, args] of toFile) {
        expectOneLineError(runCli(name, args(join(mount, 'out'))), label, /failed after \d+ bytes: no space left on device \(ENOSPC\)/);
        expect(readdirSync(mount), `${name}: nothing left behind`).toEqual([]);
      }
    } finally {
      run('umount', [mount]);
    }
  });

  it('EPIPE stays quiet: seekz cat | head exits 141 and says nothing', () => {
    const piped = spawnSync('bash', ['-c', `node '${cliPath('seekz')}' cat '${xzFile}' | head -c 10 > /dev/null; echo \${PIPESTATUS[0]}`]);
    expect(piped.stdout.toString().trim()).toBe('141');
    expect(piped.stderr.toString()).toBe('');
  });
});

/** A minimal NBD client over node:net: fixed newstyle, NBD_OPT_GO, simple replies. */
async function nbdConnect(socketPath: string): Promise<{ socket: Socket; read: (count: number) => Promise<Buffer>; size: number; flags: number }> {
  const socket = connect(socketPath);
  const chunks: Buffer[] = [];
  let available = 0;
  let waiter: { count: number; resolve: () => void } | undefined;
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    available += chunk.length;
    if (waiter && available >= waiter.count) {
      const { resolve } = waiter;
      waiter = undefined;
      resolve();
    }
  });
  const read = async (count: number) => {
    if (available < count) await new Promise<void>((resolve) => (waiter = { count, resolve }));
    const parts: Buffer[] = [];
    for (let got = 0; got < count; ) {
      const chunk = chunks[0]!;
      const take = Math.min(chunk.length, count - got);
      parts.push(chunk.subarray(0, take));
      got += take;
      if (take === chunk.length) chunks.shift();
      else chunks[0] = chunk.subarray(take);
    }
    available -= count;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  };
  await once(socket, 'connect');
  await read(18); // NBDMAGIC, IHAVEOPT, handshake flags
  socket.write(Buffer.from([0, 0, 0, 3])); // FIXED_NEWSTYLE | NO_ZEROES
  const go = Buffer.alloc(22);
  go.writeBigUInt64BE(0x49484156454f5054n, 0);
  go.writeUInt32BE(7, 8); // NBD_OPT_GO
  go.writeUInt32BE(6, 12); // name length (0) + info count (0)
  socket.write(go);
  let size = 0;
  let flags = 0;
  for (;;) {
    const header = await read(20);
    const data = await read(header.readUInt32BE(16));
    const type = header.readUInt32BE(12);
    if (type >= 2 ** 31) throw new Error(`NBD_OPT_GO failed with ${type}`);
    if (type === 3 && data.readUInt16BE(0) === 0) {
      size = Number(data.readBigUInt64BE(2));
      flags = data.readUInt16BE(10);
    }
    if (type === 1) break;
  }
  return { socket, read, size, flags };
}

function nbdRequest(type: number, flags: number, handle: number, offset: number, length: number): Buffer {
  const request = Buffer.alloc(28);
  request.writeUInt32BE(0x25609513, 0);
  request.writeUInt16BE(flags, 4);
  request.writeUInt16BE(type, 6);
  request.writeBigUInt64BE(BigInt(handle), 8);
  request.writeBigUInt64BE(BigInt(offset), 16);
  request.writeUInt32BE(length, 24);
  return request;
}

/** Whether a server accepts a connection on `socketPath` now (the probe hangs up at once). */
function accepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Starts a server child that listens on `socketPath`; resolves once it accepts connections. */
async function startNbd(command: string, args: string[], socketPath: string) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit');
  // nbdkit says nothing when ready, and the socket file appears at bind(), a moment before
  // listen(): ready is the first connection that is accepted (refusals until then are retried).
  const deadline = Date.now() + 20_000;
  while (!(await accepts(socketPath))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${command} did not listen: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    pid: child.pid!,
    stderr: () => stderr,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

describe('NBD memory: one budget for the whole server', () => {
  const CONNECTIONS = 3;
  const DEPTH = 16;
  const REQUEST = 32 * MIB;
  let raw: Uint8Array;
  let xzPath: string;

  beforeAll(() => {
    raw = diskLikeData(96 * MIB, 11);
    writeFileSync(file('nbd.img'), raw);
    xzPath = file('nbd.img.xz');
    expect(run('xz', ['-T2', '-1', '--block-size=1MiB', '-k', file('nbd.img')]).status).toBe(0);
  });

  /**
   * Three clients each pipeline 16 reads of 32 MiB and read no replies. Waits until the server's
   * peak RSS has stopped growing (it has done all it will do for clients that do not read), takes
   * that peak, then optionally reads every reply and checks its bytes against the raw image.
   */
  async function stalledClients(server: { pid: number }, socketPath: string, verify: boolean): Promise<{ stalled: number; whole: number }> {
    const clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => nbdConnect(socketPath)));
    const offsets = clients.map((_client, index) => Array.from({ length: DEPTH }, (_unused, slot) => ((index * 7 + slot * 3) * MIB) % (raw.length - REQUEST)));
    clients.forEach((client, index) => {
      client.socket.pause();
      offsets[index]!.forEach((offset, slot) => client.socket.write(nbdRequest(0, 0, slot, offset, REQUEST)));
    });
    let peak = 0;
    for (let unchanged = 0; unchanged < 10; ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const now = peakRss(server.pid);
      unchanged = now > peak ? 0 : unchanged + 1;
      peak = Math.max(peak, now);
    }
    if (verify) {
      // All clients read again at once: the budget is shared, so one still-stalled client holds
      // its share and the others wait for it.
      for (const client of clients) client.socket.resume();
      for (const [index, client] of clients.entries()) {
        for (let slot = 0; slot < DEPTH; slot++) {
          const header = await client.read(16);
          expect(header.readUInt32BE(4), 'reply error').toBe(0);
          const handle = Number(header.readBigUInt64BE(8));
          const offset = offsets[index]![handle]!;
          const data = await client.read(REQUEST);
          expect(Buffer.compare(data, raw.subarray(offset, offset + REQUEST)), `reply ${index}/${handle}`).toBe(0);
        }
      }
    }
    for (const client of clients) client.socket.destroy();
    return { stalled: peak, whole: peakRss(server.pid) };
  }

  it('3 clients × 16 unread 32 MiB reads: peak RSS at most 2× nbdkit --filter=xz, and every reply is right', async () => {
    const nbdkitSocket = file('nbdkit.sock');
    const nbdkit = await startNbd('nbdkit', ['-f', '-U', nbdkitSocket, '--filter=xz', 'file', xzPath], nbdkitSocket);
    let nbdkitPeak: { stalled: number; whole: number };
    try {
      nbdkitPeak = await stalledClients(nbdkit, nbdkitSocket, false);
    } finally {
      await nbdkit.stop();
    }
    const seekzSocket = file('seekz.sock');
    const seekz = await startNbd(process.execPath, [cliPath('seekz'), 'serve', xzPath, '-U', seekzSocket], seekzSocket);
    let seekzPeak: { stalled: number; whole: number };
    try {
      seekzPeak = await stalledClients(seekz, seekzSocket, true);
      expect(seekz.stderr()).not.toMatch(/MaxListenersExceededWarning/);
    } finally {
      await seekz.stop();
    }
    const mib = (bytes: number) => `${(bytes / MIB).toFixed(0)} MiB`;
    console.log(
      `NBD memory, 3 × 16 unread 32 MiB reads: peak RSS while stalled: seekz serve ${mib(seekzPeak.stalled)}, nbdkit --filter=xz ${mib(nbdkitPeak.stalled)}; ` +
        `seekz after the clients read all 1.5 GiB of replies: ${mib(seekzPeak.whole)}`,
    );
    expect(seekzPeak.stalled).toBeLessThanOrEqual(2 * nbdkitPeak.stalled);
  }, 240_000);

  it('--help states the budget and the memory formula', () => {
    const help = runCli('seekz', ['serve', '--help']).stdout.toString();
    expect(help).toMatch(/--max-in-flight <size>/);
    expect(help.replace(/\s+/g, ' ')).toMatch(/Memory: .*--max-in-flight/);
  });
});

describe('NBD requests nbdkit refuses with EINVAL get EINVAL here too', () => {
  const cases: [label: string, type: number, flags: number, offset: number, length: number][] = [
    ['read of length 0', 0, 0, 0, 0],
    ['cache of length 0', 5, 0, 0, 0],
    ['read with an unknown flag (1 << 5)', 0, 1 << 5, 0, 512],
    ['read with FUA (a write flag)', 0, 1, 0, 512],
    ['read with DF, structured replies not negotiated', 0, 1 << 2, 0, 512],
    ['read with REQ_ONE (a block status flag)', 0, 1 << 3, 0, 512],
    ['an unknown command (99)', 99, 0, 0, 512],
    ['flush with a length', 3, 0, 0, 512],
    ['a write to a read-only export (EPERM)', 1, 0, 0, 512],
    ['a good read (0)', 0, 0, 4096, 512],
  ];

  async function errnos(socketPath: string): Promise<number[]> {
    const client = await nbdConnect(socketPath);
    const found: number[] = [];
    for (const [index, [, type, flags, offset, length]] of cases.entries()) {
      client.socket.write(nbdRequest(type, flags, index, offset, length));
      if (type === 1) client.socket.write(Buffer.alloc(length));
      const header = await client.read(16);
      const errno = header.readUInt32BE(4);
      if (errno === 0 && type === 0) await client.read(length);
      found.push(errno);
    }
    client.socket.destroy();
    return found;
  }

  it('the same errno as nbdkit for every case, and the connection goes on', async () => {
    let xzPath = file('nbd.img.xz');
    if (!existsSync(xzPath)) {
      writeFileSync(file('einval.img'), diskLikeData(2 * MIB, 2));
      expect(run('xz', ['-T2', '-1', '--block-size=1MiB', '-k', file('einval.img')]).status).toBe(0);
      xzPath = file('einval.img.xz');
    }
    const nbdkitSocket = file('einval-nbdkit.sock');
    const nbdkit = await startNbd('nbdkit', ['-f', '-U', nbdkitSocket, '--filter=xz', 'file', xzPath], nbdkitSocket);
    const expected = await errnos(nbdkitSocket).finally(() => nbdkit.stop());
    const seekzSocket = file('einval-seekz.sock');
    const seekz = await startNbd(process.execPath, [cliPath('seekz'), 'serve', xzPath, '-U', seekzSocket], seekzSocket);
    const found = await errnos(seekzSocket).finally(() => seekz.stop());
    expect(Object.fromEntries(cases.map(([label], index) => [label, found[index]]))).toEqual(Object.fromEntries(cases.map(([label], index) => [label, expected[index]])));
    expect(expected.slice(0, 8)).toEqual(Array(8).fill(22));
  }, 60_000);
});

describe('HTTP: a stalled body fails within 10 s per try and 45 s in all', () => {
  let server: HttpServer;
  let port: number;
  const tries: number[] = [];
  const size = 1 * MIB;

  beforeAll(async () => {
    // Answers every range request with a correct 206 header and half its body, then stalls
    // (or, under /trickle, sends one byte a second and never finishes). 127.0.0.1 only.
    server = createHttpServer((request, response) => {
      tries.push(Date.now());
      const [, first, last] = /bytes=(\d+)-(\d+)/.exec(request.headers.range ?? '') ?? [];
      const start = Number(first);
      const end = Math.min(Number(last), size - 1);
      response.writeHead(206, { 'content-range': `bytes ${start}-${end}/${size}`, 'content-length': String(end - start + 1), etag: '"fixed"' });
      if (request.url === '/trickle') {
        const timer = setInterval(() => response.write(Buffer.from([0])), 1000);
        response.on('close', () => clearInterval(timer));
      } else {
        response.write(Buffer.alloc(Math.floor((end - start + 1) / 2)));
      }
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it('with the defaults: each try gives up after 10 s of silence, the open fails in under 45 s (HTTP_FAILED)', async () => {
    tries.length = 0;
    const began = Date.now();
    const error = await httpSource(`http://127.0.0.1:${port}/stall`).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    const elapsed = Date.now() - began;
    expect(error).toBeInstanceOf(SeekzError);
    expect((error as SeekzError).code).toBe('HTTP_FAILED');
    expect((error as SeekzError).message).toMatch(/no data for 10000 ms/);
    expect(elapsed).toBeLessThan(45_000);
    const gaps = tries.slice(1).map((at, index) => at - tries[index]!);
    for (const gap of gaps) expect(gap).toBeLessThan(10_000 + 2_000); // 10 s of silence plus the backoff
    console.log(`HTTP stall: ${tries.length} tries, failed after ${(elapsed / 1000).toFixed(1)} s`);
  }, 60_000);

  it('a body that trickles one byte a second still fails at totalTimeout', async () => {
    const began = Date.now();
    await expect(httpSource(`http://127.0.0.1:${port}/trickle`, { timeout: 3000, totalTimeout: 4000 })).rejects.toMatchObject({
      code: 'HTTP_FAILED',
      message: expect.stringMatching(/not done within 4000 ms/),
    });
    expect(Date.now() - began).toBeLessThan(4000 + 1500);
  }, 20_000);
});
