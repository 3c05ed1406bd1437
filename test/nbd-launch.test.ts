/**
 * The ways NBD clients start `seekz serve` themselves, as they start nbdkit (issue 9, item 3):
 * - `-s` (one connection on stdin/stdout): nbdfuse --command, libnbd's connect_command (nbdsh);
 * - socket activation (LISTEN_PID/LISTEN_FDS, fd 3): nbdinfo [ … ], nbdcopy [ … ],
 *   nbdfuse --socket-activation and nbdfuse [ … ];
 * - --pidfile and the ready line, --exit-with-parent, the --help example as written, signals.
 * Every client starts seekz by name through a bin directory made the way npm makes
 * node_modules/.bin (a symlink to package.json's bin target, made executable), so socket
 * activation only works if that path keeps the pid the client started. Bytes are judged by
 * `xz -dc` and `zcat`. Waits are on conditions (a file appears, a process is gone), never sleeps.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server as NetServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve } from '../src/nbd/serve.js';
import { cliPath, diskLikeData, requireTool, run, runAsync, sha256, SYSTEM_PYTHON, tempDir, type RunResult } from './helpers/tools.js';

const MIB = 2 ** 20;
const SIZE = 6 * MIB + 4321;
/** The stored range of the partial-deflate file, where clients may write. */
const STORED = { start: 2 * MIB, end: 3 * MIB };
const REPO = fileURLToPath(new URL('..', import.meta.url));
/** Generous: the machine is shared; a wait that is met returns at once. */
const WAIT_MS = 30_000;

function ok(result: RunResult, what: string): RunResult {
  if (result.status !== 0) throw new Error(`${what} exited ${result.status}\nstdout: ${result.stdout.toString().slice(-2000)}\nstderr: ${result.stderr.slice(-4000)}`);
  return result;
}

/** Polls `condition` until it holds; fails after WAIT_MS naming what it waited for. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** True once `pid` has exited: gone, or a zombie its new parent has not reaped yet. */
function hasExited(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

interface Child {
  process: ChildProcess;
  stderr: () => string;
  exited: Promise<number | string | null>;
}

describe('NBD launch modes: -s, socket activation, --pidfile, --exit-with-parent', () => {
  let dir: { path: string; remove: () => void };
  let raw: Uint8Array;
  let rawSha: string;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];
  const mounts: string[] = [];
  const path = (name: string) => join(dir.path, name);

  /** A child with the bin directory on PATH; stderr collected, its end as a promise. */
  const start = (command: string, args: string[], options: { stdin?: 'ignore' | 'pipe'; stdout?: 'ignore' | 'pipe' } = {}): Child => {
    const child = spawn(command, args, { cwd: dir.path, env, stdio: [options.stdin ?? 'ignore', options.stdout ?? 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | string | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
    return { process: child, stderr: () => stderr, exited };
  };
  /** Runs a command to its end with the bin directory on PATH. */
  const runHere = (command: string, args: string[]) =>
    new Promise<RunResult>((resolve, reject) => {
      const child = spawn(command, args, { cwd: dir.path, env, stdio: ['ignore', 'pipe', 'pipe'] });
      const stdout: Buffer[] = [];
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('close', (status) => resolve({ status, stdout: Buffer.concat(stdout), stderr }));
    });
  const oracle = (file: string) => ok(run('sh', ['-c', `${file.endsWith('.xz') ? 'xz -dc' : 'zcat'} '${path(file)}'`]), 'oracle').stdout;

  /** nbdfuse in the foreground; resolves with the exported file once it appears in the mountpoint. */
  const mount = async (name: string, args: string[]) => {
    const mountpoint = path(name);
    mkdirSync(mountpoint);
    mounts.push(mountpoint);
    const fuse = start('nbdfuse', [mountpoint, ...args]);
    await Promise.race([
      waitFor(`${mountpoint}/nbd to appear`, () => existsSync(join(mountpoint, 'nbd'))),
      fuse.exited.then((status) => Promise.reject(new Error(`nbdfuse exited ${status} before mounting: ${fuse.stderr()}`))),
    ]);
    return {
      file: join(mountpoint, 'nbd'),
      unmount: async () => {
        ok(run('fusermount3', ['-u', mountpoint]), 'fusermount3 -u');
        mounts.splice(mounts.indexOf(mountpoint), 1);
        expect(await fuse.exited, `nbdfuse: ${fuse.stderr()}`).toBe(0);
      },
    };
  };

  beforeAll(() => {
    for (const [tool, debianPackage] of [['nbdfuse', 'nbdfuse'], ['fusermount3', 'fuse3'], ['nbdinfo', 'libnbd-bin'], ['nbdcopy', 'libnbd-bin'], ['nbdsh', 'python3-libnbd'], ['qemu-img', 'qemu-utils'], ['xz', 'xz-utils'], ['zcat', 'gzip']]) {
      requireTool(tool!, debianPackage!);
    }
    if (run(SYSTEM_PYTHON, ['-c', 'import nbd']).status !== 0) throw new Error(`${SYSTEM_PYTHON} cannot import nbd: apt-get install -y python3-libnbd`);
    // The commands run as they ship: the bundle, which vitest's global setup has just built from the sources.

    dir = tempDir('seekz-launch-');
    raw = diskLikeData(SIZE, 11);
    raw.fill(0, 3 * MIB, 4 * MIB + 777); // a hole across an xz block boundary
    rawSha = sha256(raw);
    writeFileSync(path('disk.img'), raw);
    ok(run('xz', ['-T1', '-1', `--block-size=${MIB}`, '-k', path('disk.img')]), 'xz');
    ok(run('sh', ['-c', `gzip -6 -c '${path('disk.img')}' > '${path('disk.img.gz')}'`]), 'gzip');
    ok(run(process.execPath, [cliPath('partial-deflate'), '-q', path('disk.img'), path('disk.pd.gz'), String(STORED.start), String(STORED.end)]), 'partial-deflate');

    // node_modules/.bin as npm makes it: a symlink to the package's bin target, made executable.
    const bins = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).bin as Record<string, string>;
    mkdirSync(path('bin'));
    chmodSync(join(REPO, bins.seekz!), 0o755);
    symlinkSync(join(REPO, bins.seekz!), path('bin/seekz'));
    // nbdsh runs `python3 -m nbd`: Debian's python3, where the nbd module is, must come first.
    env = { ...process.env, PATH: [path('bin'), dirname(process.execPath), '/usr/bin', process.env.PATH].join(':') };
  });

  afterAll(() => {
    for (const mountpoint of mounts) run('fusermount3', ['-u', mountpoint]);
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    dir?.remove();
  });

  describe('-s: one connection on stdin/stdout', () => {
    it('libnbd connect_command (nbdsh) reads every byte of an xz and a gzip, and seekz exits when the handle closes', async () => {
      for (const file of ['disk.img.xz', 'disk.img.gz']) {
        const script = [
          'import hashlib, json, os',
          `h.connect_command(["seekz", "serve", "-s", "--pidfile", "s.pid", "${file}"])`,
          'pid = int(open("s.pid").read())',
          'size = h.get_size()',
          'digest = hashlib.sha256()',
          'for offset in range(0, size, 1 << 20): digest.update(h.pread(min(1 << 20, size - offset), offset))',
          'h.shutdown()',
          'print(json.dumps({"size": size, "sha": digest.hexdigest(), "pid": pid}))',
        ].join('\n');
        const result = ok(await runHere('nbdsh', ['-c', script]), `nbdsh connect_command ${file}`);
        const answer = JSON.parse(result.stdout.toString().trim()) as { size: number; sha: string; pid: number };
        expect(answer.size).toBe(SIZE);
        expect(answer.sha).toBe(rawSha);
        expect(sha256(oracle(file))).toBe(rawSha);
        await waitFor(`seekz -s (pid ${answer.pid}) to exit after its connection closed`, () => hasExited(answer.pid) && !existsSync(path('s.pid')));
      }
    });

    it('nbdfuse --command seekz serve -s: the mounted file is the xz -dc output', async () => {
      const mounted = await mount('mnt-command', ['--command', 'seekz', 'serve', '-s', 'disk.img.xz']);
      expect(sha256(readFileSync(mounted.file))).toBe(sha256(oracle('disk.img.xz')));
      await mounted.unmount();
    });

    it('-s on two pipes (not a socketpair) serves nbdcopy through a relay, and exits 0 at EOF', async () => {
      const server = start('seekz', ['serve', '-s', 'disk.img.xz'], { stdin: 'pipe', stdout: 'pipe' });
      const relay: NetServer = createServer({ allowHalfOpen: true }, (socket) => {
        socket.pipe(server.process.stdin!);
        server.process.stdout!.pipe(socket);
      });
      await new Promise<void>((resolve) => relay.listen(path('pipes.sock'), resolve));
      try {
        // One connection: the relay has one server behind it.
        ok(await runHere('nbdcopy', ['--connections=1', `nbd+unix:///?socket=${path('pipes.sock')}`, 'pipes.img']), 'nbdcopy through the relay');
        expect(sha256(readFileSync(path('pipes.img')))).toBe(sha256(oracle('disk.img.xz')));
        expect(await server.exited, server.stderr()).toBe(0);
      } finally {
        relay.close();
      }
    });

    it('writes through -s reach the file when the connection ends (zcat sees them)', async () => {
      copyFileSync(path('disk.pd.gz'), path('w1.pd.gz'));
      const offset = STORED.start + 10_000;
      const script = [
        `h.connect_command(["seekz", "serve", "-s", "--pidfile", "w1.pid", "w1.pd.gz"])`,
        `h.pwrite(b"\\x5a" * 4096, ${offset})`,
        'print(open("w1.pid").read().strip())',
        'h.shutdown()',
      ].join('\n');
      const result = ok(await runHere('nbdsh', ['-c', script]), 'nbdsh write');
      const pid = Number(result.stdout.toString().trim());
      await waitFor('seekz -s to flush and exit', () => hasExited(pid) && !existsSync(path('w1.pid')));
      const expected = Buffer.from(raw).fill(0x5a, offset, offset + 4096);
      expect(sha256(oracle('w1.pd.gz'))).toBe(sha256(expected));
    });
  });

  describe('socket activation: serve on fd 3 when LISTEN_PID is our pid', () => {
    it('nbdinfo -- [ seekz serve FILE ] gives the size, and the server is gone when nbdinfo is', async () => {
      const result = ok(await runHere('nbdinfo', ['--size', '--', '[', 'seekz', 'serve', '--pidfile', 'a.pid', 'disk.img.xz', ']']), 'nbdinfo [ ]');
      expect(result.stdout.toString().trim()).toBe(String(SIZE));
      await waitFor('the activated server to exit and remove its pidfile', () => !existsSync(path('a.pid')));
    });

    it('nbdcopy -- [ seekz serve FILE ] out.img copies the xz -dc bytes', async () => {
      for (const file of ['disk.img.xz', 'disk.img.gz']) {
        ok(await runHere('nbdcopy', ['--', '[', 'seekz', 'serve', file, ']', 'out.img']), `nbdcopy [ ${file} ]`);
        expect(sha256(readFileSync(path('out.img'))), file).toBe(sha256(oracle(file)));
      }
    });

    it('nbdfuse --socket-activation and nbdfuse [ … ] mount the export', async () => {
      const expected = sha256(oracle('disk.img.xz'));
      const first = await mount('mnt-activation', ['--socket-activation', 'seekz', 'serve', 'disk.img.xz']);
      expect(sha256(readFileSync(first.file))).toBe(expected);
      await first.unmount();
      const second = await mount('mnt-brackets', ['[', 'seekz', 'serve', 'disk.img.gz', ']']);
      expect(sha256(readFileSync(second.file))).toBe(sha256(oracle('disk.img.gz')));
      await second.unmount();
    });

    it('sockets passed for another pid are left alone, and a line says why', async () => {
      const server = spawn('seekz', ['serve', 'disk.img.xz', '--port', '0'], { cwd: dir.path, env: { ...env, LISTEN_PID: '1', LISTEN_FDS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(server);
      let stderr = '';
      server.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      await waitFor('the ready line on a port, not fd 3', () => /at nbd:\/\/127\.0\.0\.1:\d+\//.test(stderr));
      expect(stderr).toContain(`LISTEN_PID is 1, not our pid ${server.pid}`);
      server.kill('SIGTERM');
      await new Promise((resolve) => server.on('exit', resolve));
    });

    it('refuses --unix under socket activation, as nbdkit refuses -U', async () => {
      const result = await runHere('nbdinfo', ['--size', '--', '[', 'seekz', 'serve', '--unix', 'x.sock', 'disk.img.xz', ']']);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toMatch(/socket activation.*--unix/);
    });
  });

  describe('listening: --pidfile, the ready line, signals', () => {
    it('the pidfile appears once the socket accepts; the ready line gives the URI; SIGTERM removes both within a second', async () => {
      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        const server = start('seekz', ['serve', 'disk.img.xz', '--unix', 'p.sock', '--pidfile', 'p.pid']);
        await waitFor('the pidfile', () => existsSync(path('p.pid')));
        expect(readFileSync(path('p.pid'), 'utf8')).toBe(`${server.process.pid}\n`);
        await waitFor('the ready line', () => server.stderr().includes('at nbd+unix:///?socket=p.sock\n'));
        // No retry: the pidfile says the socket listens now.
        const info = ok(await runHere('nbdinfo', ['--size', 'nbd+unix:///?socket=p.sock']), 'nbdinfo');
        expect(info.stdout.toString().trim()).toBe(String(SIZE));
        const sent = Date.now();
        server.process.kill(signal);
        const status = await server.exited;
        expect(Date.now() - sent, `${signal} stops the server within a second`).toBeLessThan(1000);
        expect(status).toBe(signal === 'SIGTERM' ? 143 : 130);
        expect(existsSync(path('p.sock')), 'socket removed').toBe(false);
        expect(existsSync(path('p.pid')), 'pidfile removed').toBe(false);
      }
    });

    it('SIGTERM with a writing client connected flushes its writes into the file', async () => {
      copyFileSync(path('disk.pd.gz'), path('w2.pd.gz'));
      const server = start('seekz', ['serve', 'w2.pd.gz', '--unix', 'w.sock', '--pidfile', 'w2.pid']);
      await waitFor('the pidfile', () => existsSync(path('w2.pid')));
      const offset = STORED.start + 200_000;
      // The client writes (no FLUSH), says so, and stays connected until it is killed.
      const client = spawn(
        'nbdsh',
        ['-c', `h.connect_uri("nbd+unix:///?socket=w.sock")\nh.pwrite(b"\\xa5" * 8192, ${offset})\nprint("written", flush=True)\nimport sys\nsys.stdin.read()`],
        { cwd: dir.path, env, stdio: ['pipe', 'pipe', 'inherit'] },
      );
      children.push(client);
      await new Promise<void>((resolve) => client.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('written') && resolve()));
      const sent = Date.now();
      server.process.kill('SIGTERM');
      expect(await server.exited).toBe(143);
      expect(Date.now() - sent).toBeLessThan(1000);
      client.kill('SIGKILL');
      expect(sha256(oracle('w2.pd.gz'))).toBe(sha256(Buffer.from(raw).fill(0xa5, offset, offset + 8192)));
    });

    it('--port 0 picks a free port and the ready line names it', async () => {
      const server = start('seekz', ['serve', 'disk.img.gz', '--port', '0', '--pidfile', 't.pid']);
      await waitFor('the pidfile', () => existsSync(path('t.pid')));
      await waitFor('the ready line', () => /at nbd:\/\/127\.0\.0\.1:\d+\/\n/.test(server.stderr()));
      const uri = /at (nbd:\/\/127\.0\.0\.1:\d+\/)/.exec(server.stderr())![1]!;
      ok(await runHere('nbdcopy', [uri, 'tcp.img']), 'nbdcopy over TCP');
      expect(sha256(readFileSync(path('tcp.img')))).toBe(sha256(oracle('disk.img.gz')));
      server.process.kill('SIGTERM');
      expect(await server.exited).toBe(143);
    });

    it('--exit-with-parent: the server exits when the shell that started it does', async () => {
      const parent = ok(await runHere('sh', ['-c', 'seekz serve disk.img.xz --unix e.sock --pidfile e.pid --exit-with-parent & while [ ! -e e.pid ]; do sleep 0.05; done; cat e.pid']), 'sh');
      const pid = Number(parent.stdout.toString().trim());
      expect(pid).toBeGreaterThan(1);
      await waitFor('the orphaned server to exit', () => hasExited(pid) && !existsSync(path('e.pid')) && !existsSync(path('e.sock')));
    });

    it('the --help example runs as written', async () => {
      const help = ok(await runHere('seekz', ['serve', '--help']), 'seekz serve --help').stdout.toString();
      const example = help.slice(help.indexOf('seekz serve disk.img.gz --unix')).trim();
      expect(example.split('\n')).toHaveLength(3);
      mkdirSync(path('help-example'));
      copyFileSync(path('disk.img.gz'), path('help-example/disk.img.gz')); // the example's own names, in a directory of its own
      const result = await new Promise<RunResult>((resolve) => {
        const child = spawn('sh', ['-c', example.replace(/^ +/gm, '')], { cwd: path('help-example'), env, stdio: ['ignore', 'pipe', 'pipe'] });
        const stdout: Buffer[] = [];
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.on('close', (status) => resolve({ status, stdout: Buffer.concat(stdout), stderr }));
      });
      ok(result, 'the --help example');
      // qemu rounds the size of an NBD export up to whole sectors.
      expect(result.stdout.toString()).toMatch(new RegExp(`virtual size: .*\\(${Math.ceil(SIZE / 512) * 512} bytes\\)`));
      await waitFor('the example server to remove its socket and pidfile', () => !existsSync(path('help-example/disk.sock')) && !existsSync(path('help-example/disk.pid')));
    });
  });

  it("the README's --run 'nbdcopy \"$uri\" disk.img' on a multi-block xz copies the bytes with no MaxListenersExceededWarning", async () => {
    // 64 blocks of 256 KiB: nbdcopy keeps many requests in flight, so replies queue behind 'drain'.
    ok(run('sh', ['-c', `xz -T1 -0 --block-size=256KiB -c '${path('disk.img')}' > '${path('small-blocks.img.xz')}'`]), 'xz');
    const result = await runHere('seekz', ['serve', 'small-blocks.img.xz', '--run', 'nbdcopy --requests=64 "$uri" run.img']);
    ok(result, 'seekz serve --run nbdcopy');
    expect(result.stderr).not.toMatch(/Warning/);
    expect(sha256(readFileSync(path('run.img')))).toBe(sha256(oracle('small-blocks.img.xz')));
  });

  describe('serve() from the library', () => {
    it('serves a file on a Unix socket until close(), which removes the socket', async () => {
      const socket = path('lib.sock');
      const server = await serve(path('disk.img.xz'), { unix: socket });
      expect(server.uri).toBe(`nbd+unix:///?socket=${socket}`);
      expect(server.size).toBe(SIZE);
      expect(server.writable).toBe(false);
      const result = ok(await runAsync('nbdcopy', [server.uri!, path('lib.img')]), 'nbdcopy');
      expect(result.stderr).toBe('');
      expect(sha256(readFileSync(path('lib.img')))).toBe(sha256(oracle('disk.img.xz')));
      await server.close();
      await server.done;
      expect(existsSync(socket)).toBe(false);
    });

    it('serves one connection on any Duplex; done resolves when the client leaves', async () => {
      let served: Promise<void> | undefined;
      const relay: NetServer = createServer((socket) => {
        served = serve(path('disk.img.gz'), { connection: socket, exportName: 'disk' }).then((server) => server.done);
      });
      await new Promise<void>((resolve) => relay.listen(path('relay.sock'), resolve));
      try {
        const result = ok(await runAsync('nbdinfo', ['--size', `nbd+unix:///disk?socket=${path('relay.sock')}`]), 'nbdinfo');
        expect(result.stdout.toString().trim()).toBe(String(SIZE));
        await served;
      } finally {
        relay.close();
      }
    });

    it('an aborted start rejects with INTERRUPTED and leaves no socket, no pidfile', async () => {
      const controller = new AbortController();
      const starting = serve(path('disk.img.xz'), { unix: path('abort.sock'), pidfile: path('abort.pid'), signal: controller.signal });
      controller.abort(); // while the file opens
      await expect(starting).rejects.toMatchObject({ code: 'INTERRUPTED' });
      expect(existsSync(path('abort.sock'))).toBe(false);
      expect(existsSync(path('abort.pid'))).toBe(false);
    });

    it('refuses two places at once', async () => {
      await expect(serve(path('disk.img.xz'), { unix: path('x.sock'), port: 0 })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    });
  });
});
