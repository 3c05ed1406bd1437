/**
 * `serve(target, options)`: an NBD server for a compressed file, in the launch modes nbdkit has.
 * - `unix` / `port` (+ `host`): listen, and serve every client until `close()`.
 * - `fd`: listen on sockets we were handed already listening (systemd socket activation, which
 *   nbdinfo, nbdcopy and nbdfuse use for `[ CMD ]` and `--socket-activation`; see
 *   `socketActivationFds`).
 * - `stdio` or `connection`: serve exactly one connection (nbdkit -s: stdin/stdout, as
 *   `nbdfuse --command` and libnbd's `connect_command` start it); `done` resolves when it ends.
 *
 * Invariants, pinned by test/nbd-launch.test.ts:
 * - `serve` resolves, and the pidfile appears, only once its sockets listen: a client that waits
 *   for either never meets a refusing socket. The pidfile is written by rename, never seen half.
 * - `close()` stops listening (Node unlinks a Unix socket it bound itself; an inherited socket is
 *   the launcher's, and stays), gives open connections CLOSE_GRACE_MS to finish, cuts them, and
 *   flushes writes: well within the second a signal allows.
 * - A start that fails or is aborted (`signal`) undoes every step it made: no socket, no pidfile.
 * - In stdio mode nothing but NBD protocol is written to stdout.
 */
import { fstatSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { Duplex } from 'node:stream';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { writableFile } from '../edit/write-overlay.js';
import type { PatchResult } from '../edit/patch.js';
import { fail } from '../errors.js';
import { createAtomicFile } from '../io/atomic-file.js';
import { readGzipLayout } from '../gzip/layout.js';
import { readXzEditable } from '../xz/editable.js';
import { decoderOf, open, type CompressedFile, type Decoder } from '../open.js';
import { fileSource } from '../source/file.js';
import type { Source } from '../source/source.js';
import { nbdExportOf } from './export.js';
import { createNbdHandler, type NbdExport } from './server.js';

/** How long `close()` lets open connections finish their requests before it cuts them. */
export const CLOSE_GRACE_MS = 300;
/** systemd's first passed file descriptor (SD_LISTEN_FDS_START). */
const LISTEN_FDS_START = 3;

export interface ServeOptions {
  /** Listen on this Unix socket path. */
  unix?: string;
  /** Listen on this TCP port (0: any free port; see `address`). */
  port?: number;
  /** Address for `port`. Default 127.0.0.1. */
  host?: string;
  /** Listen on these inherited, already listening sockets (socket activation: `socketActivationFds()`). */
  fd?: number | number[];
  /** Serve one connection on stdin/stdout (nbdkit -s); `done` resolves when it ends. */
  stdio?: boolean;
  /** Serve one connection on this stream; `done` resolves when it ends. */
  connection?: Duplex;
  /**
   * Write our pid to this file (atomically: a temp file renamed) once clients can connect, as
   * nbdkit --pidfile does: after the socket listens, before a stdio connection is served.
   * `close()` removes it.
   */
  pidfile?: string;
  /** Export name; clients asking for '' get it too. Default ''. */
  exportName?: string;
  /** Refuse writes even into the stored ranges of a partial-deflate .gz. */
  readonly?: boolean;
  /** Decoded-block cache in bytes (xz: 128 MiB, gzip: 32 MiB by default). */
  cacheSize?: number;
  /** Bytes of reads and unsent replies across all clients before requests wait. Default 64 MiB. */
  maxBytesInFlight?: number;
  /** A client's protocol or read error; the connection is dropped, the server goes on. */
  onClientError?: (error: Error) => void;
  /**
   * Aborting it while `serve` starts makes `serve` reject (INTERRUPTED) and leave nothing behind:
   * no socket, no pidfile, nothing open. Once `serve` has resolved, `close()` stops the server.
   */
  signal?: AbortSignal;
  /** A local file's interrupted edit was rolled back (or its torn journal removed) before serving. */
  onRecovered?: (outcome: PatchResult['recovered']) => void;
}

/** `await using server = await serve(…)` closes it at the end of the block. */
export interface NbdServerHandle extends AsyncDisposable {
  /** Where clients connect (`nbd+unix:///NAME?socket=PATH`, `nbd://HOST:PORT/NAME`); undefined for one connection. */
  readonly uri: string | undefined;
  /** The socket path, or the TCP address and port (the real one for port 0); undefined for one connection. */
  readonly address: string | AddressInfo | undefined;
  /** Bytes the export holds (the uncompressed size). */
  readonly size: number;
  /** True when clients may write (the stored ranges of a partial-deflate .gz). */
  readonly writable: boolean;
  /** Resolves once the server has stopped: after `close()`, or when the one connection of `stdio`/`connection` ended. */
  readonly done: Promise<void>;
  /** Stops listening, ends connections (after CLOSE_GRACE_MS), flushes writes, closes what `serve` opened, removes the pidfile. */
  close(): Promise<void>;
}

type Target = string | URL | Source;

/**
 * Serves the uncompressed bytes of `target` over NBD. `target` is a local .gz/.xz path, an
 * http(s) URL, a Source of compressed bytes (opened by its magic), or a file opened already
 * (a CompressedFile that `open` returned), which is served as it is, read-only, and stays the caller's.
 * Exactly one of `unix`, `port`, `fd`, `stdio`, `connection` says where.
 */
export async function serve(target: Target, options: ServeOptions): Promise<NbdServerHandle> {
  const modes = (['unix', 'port', 'fd', 'stdio', 'connection'] as const).filter((mode) => options[mode] !== undefined && options[mode] !== false);
  if (modes.length !== 1) throw fail('BAD_ARGUMENT', `serve: give exactly one of unix, port, fd, stdio, connection; got ${modes.length === 0 ? 'none' : modes.join(', ')}`);
  const exportName = options.exportName ?? '';
  const { exported, release } = await exportOf(target, options);
  const serveConnection = createNbdHandler(exported, { maxBytesInFlight: options.maxBytesInFlight, onClientError: options.onClientError });
  const base = { size: exported.source.size, writable: exported.writable !== undefined };

  const stopData = async () => {
    await exported.writable?.flush();
    await release();
    if (options.pidfile !== undefined) await unlink(options.pidfile).catch(() => {});
  };

  // Starting: each step checks the abort signal, and a failed or aborted start undoes every step
  // before it, so a signal that lands while the server starts leaves no socket and no pidfile.
  const servers: Server[] = [];
  let single: Duplex | undefined;
  let pidfileWritten = false;
  const step = () => {
    if (options.signal?.aborted) throw fail('INTERRUPTED', 'an abort signal');
  };
  const connections = new Map<Socket, Promise<void>>();
  try {
    step();
    if (options.stdio || options.connection) single = options.connection ?? stdioConnection();
    else await listenAll(servers, options, (socket) => connections.set(socket, serveConnection(socket).finally(() => connections.delete(socket))));
    step();
    await writePidfile(options.pidfile);
    pidfileWritten = options.pidfile !== undefined;
    step();
  } catch (error) {
    single?.destroy();
    for (const server of servers) server.close();
    for (const socket of connections.keys()) socket.destroy();
    await release();
    if (pidfileWritten) await unlink(options.pidfile!).catch(() => {});
    throw error;
  }

  if (single) {
    const connection = single;
    const done = (async () => {
      await serveConnection(connection);
      // The last replies may still sit in the stream's buffer: let them out before the caller exits.
      await finished(connection, { readable: false }).catch(() => {});
      connection.destroy();
      await stopData();
    })();
    const close = async () => {
      connection.destroy();
      await done;
    };
    return { ...base, uri: undefined, address: undefined, done, close, [Symbol.asyncDispose]: close };
  }

  const address = servers[0]!.address() ?? undefined;
  let stopped: (() => void) | undefined;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // close() unlinks a bound socket at once; its callback waits for the connections to end.
      const closed = Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
      const all = () => Promise.all(connections.values());
      let timer: NodeJS.Timeout | undefined;
      const graceful = await Promise.race([all().then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_GRACE_MS)))]);
      clearTimeout(timer);
      if (!graceful) {
        for (const socket of connections.keys()) socket.destroy();
        // A cut connection still waits for its reads in progress (an xz block decoding); the
        // writes it took are flushed below either way, so that wait is bounded too.
        await Promise.race([all(), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
        clearTimeout(timer);
      }
      await closed;
      await stopData();
      stopped!();
    })());
  return { ...base, uri: uriOf(address, exportName), address, done, close, [Symbol.asyncDispose]: close };
}

/** Listens on every place the options name (one, or each inherited fd); a failure names the place. */
async function listenAll(servers: Server[], options: ServeOptions, onConnection: (socket: Socket) => void): Promise<void> {
  const places =
    options.unix !== undefined
      ? [options.unix]
      : options.port !== undefined
        ? [{ port: options.port, host: options.host ?? '127.0.0.1' }]
        : [options.fd!].flat().map((fd) => ({ fd }));
  for (const place of places) {
    const server = createServer({ allowHalfOpen: true }, onConnection);
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(place, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((error: NodeJS.ErrnoException) => {
      const where = typeof place === 'string' ? place : 'fd' in place ? `fd ${place.fd}` : `${place.host}:${place.port}`;
      throw fail('SERVE_LISTEN_FAILED', where, error.code === 'EADDRINUSE' ? 'it is in use (another server, or a stale socket file to remove)' : error.message);
    });
  }
}

async function writePidfile(path: string | undefined): Promise<void> {
  if (path === undefined) return;
  try {
    const file = await createAtomicFile(path, { force: true });
    await file.sink.write(Buffer.from(`${process.pid}\n`));
    await file.commit();
  } catch (error) {
    throw fail('SERVE_PIDFILE_FAILED', path, (error as Error).message);
  }
}

/** An NBD URI for a listening address (the nbd-uri spec: nbd+unix for sockets, nbd for TCP). */
function uriOf(address: string | AddressInfo | undefined, exportName: string): string | undefined {
  if (address === undefined) return undefined;
  const name = encodeURIComponent(exportName);
  if (typeof address === 'string') return `nbd+unix:///${name}?socket=${encodeURIComponent(address).replace(/%2F/g, '/')}`;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `nbd://${host}:${address.port}/${name}`;
}

/**
 * The listening sockets systemd's protocol hands us, as nbdkit reads them: fds 3 … 3+LISTEN_FDS-1
 * when LISTEN_PID is our pid, else none. LISTEN_PID guards against variables a parent meant for
 * itself. The variables are removed, as sd_listen_fds(1) does, so a command we start does not
 * take the sockets for its own.
 */
export function socketActivationFds(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number[] {
  if (env.LISTEN_PID === undefined || Number(env.LISTEN_PID) !== pid) return [];
  const count = Number(env.LISTEN_FDS);
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (!Number.isInteger(count) || count < 1 || count > 64) return [];
  return Array.from({ length: count }, (_, index) => LISTEN_FDS_START + index);
}

/**
 * stdin/stdout as one connection. libnbd's connect_command and nbdfuse --command hand us one end
 * of a socketpair as both fd 0 and fd 1: then it is used as the socket it is (one handle, full
 * duplex, no blocking writes). Otherwise (two pipes, say) the two streams are paired.
 */
function stdioConnection(): Duplex {
  const input = fstatSync(0);
  const output = fstatSync(1);
  if (input.isSocket() && input.dev === output.dev && input.ino === output.ino) {
    return new Socket({ fd: 0, readable: true, writable: true, allowHalfOpen: true });
  }
  return Duplex.from({ readable: process.stdin, writable: process.stdout });
}

/**
 * The export for a target, and how to let go of what was opened for it. A local partial-deflate
 * .gz, seekxz --store .xz or seekzstd --store .zst with stored ranges is writable unless `readonly`: writes go through the
 * journaled patch.
 */
async function exportOf(target: Target, options: ServeOptions): Promise<{ exported: NbdExport; release: () => Promise<void> }> {
  const name = options.exportName ?? '';
  if (typeof target !== 'string' && !(target instanceof URL) && 'format' in target) {
    const data = decoderOf(target as CompressedFile);
    return { exported: nbdExportOf(name, data), release: async () => {} };
  }
  // A file: URL is the local path it names, as open() takes it: writable like the path would be.
  const text = target instanceof URL ? (target.protocol === 'file:' ? fileURLToPath(target) : target.href) : typeof target === 'string' ? target : undefined;
  const isUrl = text !== undefined && /^https?:\/\//.test(text);
  const file = await open(target, { cacheSize: options.cacheSize, onRecovered: options.onRecovered });
  const data = decoderOf(file);
  const release = () => file.close();
  // The server opened this file and nothing else reads it: decoded blocks' buffers may be recycled.
  const exported = nbdExportOf(name, data, { recycle: true });
  if (text === undefined || isUrl || options.readonly) return { exported, release };
  const overlay = await writableOverlay(text, data);
  if (!overlay) return { exported, release };
  return { exported: { ...exported, source: overlay.source, writable: { write: overlay.write, flush: overlay.flush } }, release };
}

/** The write overlay of a local file with editable ranges, or undefined when it has none. */
async function writableOverlay(path: string, data: Decoder): Promise<ReturnType<typeof writableFile> | undefined> {
  if (data.format === 'gzip' && data.access === 'map') {
    const compressed = await fileSource(path);
    const layout = await readGzipLayout(compressed, { walk: false }).finally(() => compressed.close());
    const ranges = layout.editableRanges();
    return ranges.length > 0 ? writableFile(path, data, { format: 'gzip', walked: layout.walked, ranges }) : undefined;
  }
  if (data.format === 'xz') {
    const compressed = await fileSource(path);
    const ranges = await (await readXzEditable(compressed)).editableRanges().finally(() => compressed.close());
    if (ranges.length === 0) return undefined;
    // After a patch the decoded blocks in the cache are old: forget them.
    const source = { size: data.size, read: (offset: number, length: number) => data.read(offset, length), reload: async () => data.cache.clear() };
    return writableFile(path, source, { format: 'xz', walked: false, ranges });
  }
  if (data.format === 'zstd') {
    const { readZstdEditable, reloadTableChecksums } = await import('../zstd/editable.js');
    const compressed = await fileSource(path);
    const ranges = await (await readZstdEditable(compressed)).editableRanges().finally(() => compressed.close());
    if (ranges.length === 0) return undefined;
    // After a patch the decoded frames in the cache are old, and so are the seek table's checksums the reads are held against.
    const reload = async () => {
      data.cache.clear();
      const table = await fileSource(path);
      await reloadTableChecksums(table, data.frames).finally(() => table.close());
    };
    return writableFile(path, { size: data.size, read: (offset: number, length: number) => data.read(offset, length), reload }, { format: 'zstd', walked: false, ranges });
  }
  return undefined;
}
