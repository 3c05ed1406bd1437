import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { onShutdown, workingOnSeekable } from './common.js';
import { fail } from '../src/errors.js';
import { serve, socketActivationFds, type NbdServerHandle, type ServeOptions } from '../src/nbd/serve.js';
import { parseSize } from '../src/size.js';

/** How often --exit-with-parent looks at the parent (see watchParent). */
const PARENT_CHECK_MS = 200;
/** How long a signal waits for a start it aborted to undo itself (a file still opening has made nothing to undo). */
const START_ABORT_WAIT_MS = 300;

/** `seekz serve`: thin glue from the command line to `serve()` in src/nbd/serve.ts, nbdkit-style. */
export function addServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'Serve the uncompressed data of a .gz, .xz or .zst file (or URL) over NBD, for qemu, nbdcopy, nbdinfo, ' +
        'nbdfuse. Writes are allowed only into the stored ranges of a partial-deflate .gz or a seekxz --store ' +
        '.xz; they go through the journaled patch, and the checks (CRC-32, xz block checks) are fixed on ' +
        'flush and on disconnect. ' +
        'Launched by a client with socket activation (LISTEN_PID/LISTEN_FDS, as nbdinfo, nbdcopy and ' +
        'nbdfuse do for [ CMD ]), it serves on the socket it is given.',
    )
    .argument('<file|url>')
    .option('-p, --port <port>', 'TCP port on 127.0.0.1 (default 10809; 0 picks a free one)')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('-U, --unix <path>', 'listen on a Unix socket instead')
    .option('-s, --single', 'serve one connection on stdin/stdout, then exit (nbdkit -s; for nbdfuse --command, connect_command)')
    .option('-e, --export-name <name>', 'export name', '')
    .option('-r, --readonly', 'refuse writes even where the file allows them')
    .option('--run <command>', "captive mode: run COMMAND with $uri, $nbd and $unixsocket set, then exit with its status")
    .option('-P, --pidfile <file>', 'write our pid to FILE once the socket listens (atomically); removed on exit')
    .option('--exit-with-parent', 'exit when the process that started us exits')
    .option('--cache <size>', 'decoded-block cache (xz: 128 MiB default)')
    .option('--max-in-flight <size>', 'bytes of reads and unsent replies across all clients before requests wait (default 64 MiB)')
    .option('-v, --verbose', 'log client errors')
    .addHelpText(
      'after',
      `
Memory: about 180 MiB + the cache (--cache; xz 128 MiB, zstd 64 MiB, gzip 32 MiB by default) +
decoder threads × 3 × block size (xz blocks decoding in flight: 96 MiB at 2 threads and 16 MiB
blocks) + 2 × block size, at least 8 MiB (blocks that left the cache while replies sent straight
from them still go out) + the --max-in-flight budget (64 MiB by default), shared by all clients
together: reads in progress and replies not yet sent, an xz read counted with the blocks it
decodes. When it is taken, every client waits before its next request is read, so clients that
never read their replies cannot grow it. Reads over 4 MiB are sent in 4 MiB pieces. Measured with
nbdcopy on 16 MiB blocks: 247 MiB with --cache 32M, 352–382 MiB with the default cache.

Listening on --unix or --port, one line on stderr says where, once clients can connect; the
--pidfile appears at the same moment. With -s and with socket activation nothing is printed.

Examples:
  seekz serve disk.img.xz --run 'nbdcopy "$uri" disk.img'
  nbdcopy -- [ seekz serve disk.img.xz ] disk.img
  nbdinfo -- [ seekz serve disk.img.xz ]
  nbdfuse mnt --command seekz serve -s disk.img.xz &  # mnt/nbd is the disk; fusermount3 -u mnt
  seekz serve disk.img.gz --unix disk.sock --pidfile disk.pid &
  until [ -e disk.pid ]; do sleep 0.1; done
  qemu-img info 'nbd+unix:///?socket=disk.sock'; kill "$(cat disk.pid)"`,
    )
    .action(async (target: string, options) => {
      const foreign = process.env.LISTEN_FDS !== undefined && process.env.LISTEN_PID !== undefined && Number(process.env.LISTEN_PID) !== process.pid;
      const activated = socketActivationFds();
      // systemd's rule: sockets for another pid are not ours. Most often that pid is a wrapper in
      // between (npx, a shell that forks): say so, since the client will wait on its socket.
      if (foreign) process.stderr.write(`seekz serve: LISTEN_PID is ${process.env.LISTEN_PID}, not our pid ${process.pid}: the sockets it passes are not for us; for socket activation start seekz itself, not through npx or a shell that forks\n`);
      const given = [options.single && '-s', options.unix !== undefined && '--unix', options.port !== undefined && '--port', options.run !== undefined && '--run'].filter(Boolean);
      if (activated.length > 0 && given.length > 0) throw fail('BAD_ARGUMENT', `serve: started by socket activation (LISTEN_FDS), which cannot go with ${given.join(', ')}`);
      if (given.length > 1) throw fail('BAD_ARGUMENT', `serve: ${given.join(' and ')} cannot go together; give one`);
      const common: ServeOptions = {
        pidfile: options.pidfile,
        exportName: options.exportName,
        readonly: options.readonly,
        cacheSize: options.cache !== undefined ? parseSize(options.cache) : undefined,
        maxBytesInFlight: options.maxInFlight !== undefined ? parseSize(options.maxInFlight) : undefined,
        onClientError: (error) => {
          if (options.verbose) process.stderr.write(`seekz serve: ${error.message}\n`);
        },
        onRecovered: (outcome) =>
          process.stderr.write(`seekz serve: ${outcome === 'rolled-back' ? 'rolled back an interrupted edit of' : 'removed the unfinished journal of'} ${target} first\n`),
      };
      const port = options.port !== undefined ? parsePort(options.port) : 10809;
      workingOnSeekable(target); // after the checks of the command line: a mistake there names no file
      if (options.exitWithParent) watchParent();
      // --run serves on a private Unix socket while its command runs (nbdkit's captive mode).
      const captive = options.run !== undefined ? mkdtempSync(join(tmpdir(), 'seekz-serve-')) : undefined;
      const where: ServeOptions = options.single
        ? { stdio: true }
        : captive !== undefined
          ? { unix: join(captive, 'nbd.sock') }
          : activated.length > 0
            ? { fd: activated }
            : options.unix !== undefined
              ? { unix: options.unix }
              : { port, host: options.host };
      // A signal closes the listener (removing a Unix socket file it bound), cuts clients after a
      // short grace, flushes writes and removes the pidfile: within the second a signal allows.
      // One that lands while the server starts aborts the start, which undoes itself.
      const starting = new AbortController();
      let server: NbdServerHandle | undefined;
      onShutdown(async () => {
        starting.abort();
        if (server) await server.close();
        else await Promise.race([started.catch(() => {}), new Promise((resolve) => setTimeout(resolve, START_ABORT_WAIT_MS).unref())]);
        if (captive !== undefined) rmSync(captive, { recursive: true, force: true });
      });
      const started = serve(target, { ...common, ...where, signal: starting.signal });
      try {
        server = await started;
        if (captive !== undefined) {
          process.exitCode = await runCommand(options.run, server, options.exportName);
          await server.close();
          return;
        }
      } finally {
        if (captive !== undefined) rmSync(captive, { recursive: true, force: true });
      }
      if (where.unix !== undefined || where.port !== undefined) {
        process.stderr.write(`seekz serve: ${target} (${server.size} bytes${server.writable ? ', writable stored ranges' : ', read-only'}) at ${server.uri}\n`);
      }
      await server.done; // -s: the connection ended; otherwise only a signal ends it
    });
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw fail('BAD_ARGUMENT', `serve: --port must be a whole number from 0 to 65535, got '${text}'`);
  return port;
}

/**
 * --exit-with-parent. nbdkit asks the kernel for SIGTERM when its parent dies
 * (prctl PR_SET_PDEATHSIG); Node has no prctl, and no event tells a process that its parent is
 * gone. What does change is getppid(): the orphan is re-parented to init or a subreaper, and
 * process.ppid reads getppid() afresh on each access. So the parent is looked at every
 * PARENT_CHECK_MS on an unref'd timer (a syscall, no I/O), and its death raises our own SIGTERM,
 * which takes the one shutdown path that signals take. As with PR_SET_PDEATHSIG, a parent that
 * is gone before the first look is not seen: by then our parent is already the new one.
 */
function watchParent(): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.kill(process.pid, 'SIGTERM');
  }, PARENT_CHECK_MS);
  timer.unref();
}

/** nbdkit's --run: COMMAND with $uri, $nbd, $unixsocket and $exportname set; its exit status. */
async function runCommand(command: string, server: NbdServerHandle, exportName: string): Promise<number> {
  const socket = server.address as string;
  const env = { ...process.env, uri: server.uri, nbd: `nbd:unix:${socket}${exportName ? `:exportname=${exportName}` : ''}`, unixsocket: socket, exportname: exportName };
  const child = spawn('sh', ['-c', command], { stdio: 'inherit', env });
  return new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
}
