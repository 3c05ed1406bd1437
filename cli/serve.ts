import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:net';
import type { Command } from 'commander';
import { onShutdown } from './common.js';
import { writableFile } from '../src/edit/write-overlay.js';
import { fail } from '../src/errors.js';
import { readGzipLayout } from '../src/gzip/layout.js';
import { readXzEditable } from '../src/xz/editable.js';
import { createNbdServer, type NbdExport } from '../src/nbd/server.js';
import { decoderOf, open, type Decoder } from '../src/open.js';
import { parseSize } from '../src/size.js';
import { fileSource } from '../src/source/file.js';
import type { Source } from '../src/source/source.js';

/** `seekz serve`: thin glue from a compressed file to the NBD server, nbdkit-style. */
export function addServeCommand(program: Command, openUrl: (url: string) => Promise<Source>): void {
  program
    .command('serve')
    .description(
      'Serve the uncompressed data of a .gz or .xz file (or URL) over NBD, for qemu, nbdcopy, nbdinfo,\n' +
        'nbdfuse. Writes are allowed only into the stored ranges of a partial-deflate .gz or a\n' +
        'seekxz --store .xz; they go through the journaled patch, and the checks (CRC-32, xz block\n' +
        'checks) are fixed on flush and on disconnect.',
    )
    .argument('<file|url>')
    .option('-p, --port <port>', 'TCP port on 127.0.0.1 (default 10809)')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('-U, --unix <path>', 'listen on a Unix socket instead')
    .option('-e, --export-name <name>', 'export name', '')
    .option('-r, --readonly', 'refuse writes even where the file allows them')
    .option('--run <command>', "captive mode: run COMMAND with $uri, $nbd and $unixsocket set, then exit with its status")
    .option('--cache <size>', 'decoded-block cache (xz: 128 MiB default)')
    .option('--max-in-flight <size>', 'bytes of reads and unsent replies across all clients before requests wait (default 64 MiB)')
    .option('-v, --verbose', 'log client errors')
    .addHelpText(
      'after',
      `
Memory: about 180 MiB + the cache (--cache; xz 128 MiB, gzip 32 MiB by default) + decoder threads
× 3 × block size (xz blocks decoding in flight: 96 MiB at 2 threads and 16 MiB blocks) + the
--max-in-flight budget (64 MiB by default), shared by all clients together: reads in progress and
replies not yet sent, an xz read counted with the blocks it decodes. When it is taken, every client
waits before its next request is read, so clients that never read their replies cannot grow it.
Reads over 4 MiB are sent in 4 MiB pieces. Measured with nbdcopy on 16 MiB blocks: 247 MiB with
--cache 32M, 387 MiB with the default cache.

Examples:
  seekz serve disk.img.xz --run 'nbdcopy "$uri" disk.img'
  seekz serve disk.img.gz --unix /tmp/disk.sock &  qemu-img info nbd+unix:///?socket=/tmp/disk.sock
  seekz serve https://mirror.example/disk.img.xz --run 'nbdinfo "$uri"'`,
    )
    .action(async (target: string, options) => {
      const isUrl = /^https?:\/\//.test(target);
      const cacheSize = options.cache !== undefined ? parseSize(options.cache) : undefined;
      const data = isUrl ? await openCompressedUrl(target, openUrl, cacheSize) : decoderOf(await open(target, {
            cacheSize,
            onRecovered: (outcome) => process.stderr.write(`seekz serve: ${outcome === 'rolled-back' ? 'rolled back an interrupted edit of' : 'removed the unfinished journal of'} ${target} first\n`),
          }));
      let exported: NbdExport = { name: options.exportName, source: data, readCost: readCostOf(data) };
      if (!isUrl && data.format === 'gzip' && data.access === 'map' && !options.readonly) {
        const file = await fileSource(target);
        const layout = await readGzipLayout(file, { walk: false });
        await file.close();
        if (layout.editableRanges().length > 0) {
          const overlay = writableFile(target, data, { format: 'gzip', walked: layout.walked, ranges: layout.editableRanges() });
          exported = { ...exported, source: overlay.source, writable: { write: overlay.write, flush: overlay.flush } };
        }
      }
      if (!isUrl && data.format === 'xz' && !options.readonly) {
        const file = await fileSource(target);
        const ranges = await (await readXzEditable(file)).editableRanges().finally(() => file.close());
        if (ranges.length > 0) {
          // After a patch the decoded blocks in the cache are old: forget them.
          const overlay = writableFile(target, { size: data.size, read: (offset: number, length: number) => data.read(offset, length), reload: async () => data.cache.clear() }, { format: 'xz', walked: false, ranges });
          exported = { ...exported, source: overlay.source, writable: { write: overlay.write, flush: overlay.flush } };
        }
      }
      const server = createNbdServer(exported, {
        maxBytesInFlight: options.maxInFlight !== undefined ? parseSize(options.maxInFlight) : undefined,
        onClientError: (error) => {
          if (options.verbose) process.stderr.write(`seekz serve: ${error.message}\n`);
        },
      });
      if (options.run) {
        process.exitCode = await runCaptive(server, options.run, options.exportName);
        await exported.writable?.flush();
        return;
      }
      // A signal closes the listener (removing a Unix socket file) and flushes writes first.
      onShutdown(async () => {
        // Clients still connected get 2 s to finish their requests; then writes are flushed anyway.
        await Promise.race([new Promise<void>((resolve) => server.close(() => resolve())), new Promise((resolve) => setTimeout(resolve, 2000))]);
        await exported.writable?.flush();
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        if (options.unix) server.listen(options.unix, resolve);
        else server.listen(Number(options.port ?? 10809), options.host, resolve);
      });
      const where = options.unix ? `nbd+unix:///${options.exportName}?socket=${options.unix}` : `nbd://${options.host}:${options.port ?? 10809}/${options.exportName}`;
      process.stderr.write(`seekz serve: ${target} (${data.size} bytes${exported.writable ? ', writable stored ranges' : ', read-only'}) at ${where}\n`);
      await new Promise<void>(() => {}); // runs until a signal; the shutdown hook ends it
    });
}

/**
 * What one read holds in memory, for the server's budget: its output, plus for xz every block it
 * touches (decoded whole, and held until copied out), plus for gzip as much again for inflation.
 */
function readCostOf(data: Decoder): (offset: number, length: number) => number {
  if (data.format !== 'xz') return (_offset, length) => 2 * length;
  return (offset, length) => {
    let cost = length;
    for (let index = data.locate(offset); index < data.blocks.length && data.blocks[index]!.uStart < offset + length; index++) cost += data.blocks[index]!.uSize;
    return cost;
  };
}

async function openCompressedUrl(url: string, openUrl: (url: string) => Promise<Source>, cacheSize: number | undefined) {
  return decoderOf(await open(await openUrl(url), { cacheSize }));
}

/** nbdkit's --run: serve on a private Unix socket while COMMAND runs, then stop. */
async function runCaptive(server: Server, command: string, exportName: string): Promise<number> {
  const directory = mkdtempSync(join(tmpdir(), 'seekz-serve-'));
  const socket = join(directory, 'nbd.sock');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socket, resolve);
    });
    const uri = `nbd+unix:///${exportName}?socket=${socket}`;
    const env = { ...process.env, uri, nbd: `nbd:unix:${socket}${exportName ? `:exportname=${exportName}` : ''}`, unixsocket: socket, exportname: exportName };
    const child = spawn('sh', ['-c', command], { stdio: 'inherit', env });
    const status = await new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return status;
  } catch (error) {
    throw fail('BAD_ARGUMENT', `serve: ${(error as Error).message}`);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}
