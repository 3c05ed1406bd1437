import { constants, fstatSync, ftruncateSync, write as writeFd } from 'node:fs';
import type { Stats } from 'node:fs';
import { access, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { isatty } from 'node:tty';
import { basename, dirname, join } from 'node:path';
import { fail, SeekzError } from '../errors.js';
import { nativeIo, SEEK_CUR, SEEK_SET } from '../native/io.js';
import { dataRuns } from '../zeros.js';
import type { Sink } from './sink.js';

/** Temp files in progress, removed by `removeTempFilesNow` when a signal ends the process. */
const liveTempFiles = new Set<string>();

/** Synchronous, for signal handlers: nothing half-written survives Ctrl-C. */
export function removeTempFilesNow(): void {
  for (const path of liveTempFiles) {
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  }
  liveTempFiles.clear();
}

const WRITE_BUFFER = 1 << 20;

export interface AtomicFile {
  readonly sink: Sink & Required<Pick<Sink, 'writeAt'>>;
  /** Flushes, fsyncs and renames the temp file onto the target. */
  commit(): Promise<void>;
  /** Closes and removes the temp file. Safe to call after commit (does nothing). */
  abort(): Promise<void>;
}

export interface AtomicFileOptions {
  /** Replace the target if it exists. */
  force?: boolean;
  /**
   * The input's stat: the output gets its owner (where allowed), mode and atime/mtime before it is
   * renamed into place, as xz and gzip do, so a 600 file never shows up as 644, not even briefly.
   */
  like?: Stats;
  /**
   * Leave all-zero blocks as holes, as `xz -d` does for files: a 4 KiB block of zeros appended by
   * `write` is seeked over instead of written, and commit sets the size with ftruncate. Only
   * `write` is sparse, and only past every byte written so far, so a hole never hides data.
   */
  sparse?: boolean;
}

/**
 * An output file that appears only when complete: bytes go to a temp file beside the target,
 * which is renamed over it on commit. A failure, or a signal through the CLI's handler, leaves
 * nothing behind. Pinned by test/trust-serve-io.test.ts (full disk) and test/cli-manners.test.ts
 * (holes, mode, owner and times).
 */
/**
 * What makes a temp or lock file's name this process's own: the pid and 8 random base-36 digits.
 * Not from node:crypto (loading it costs every command's start 7 M instructions): no name needs to
 * be unguessable, since every such file is created with O_EXCL ('wx', or link(2) for the lock) and
 * a name someone else made first fails the create; nothing is written through their file or link.
 */
export function tempSuffix(): string {
  return `${process.pid}-${Math.random().toString(36).slice(2, 10).padEnd(8, '0')}`;
}

export async function createAtomicFile(path: string, options: AtomicFileOptions = {}): Promise<AtomicFile> {
  // A device or pipe (-o /dev/stdout, /dev/full, a FIFO) is written as it is: a temp file beside
  // it would be renamed over the device node.
  const existing = await stat(path).catch(() => undefined);
  if (existing && !existing.isFile() && !existing.isDirectory()) return deviceFile(path);
  if (!options.force && (await exists(path))) throw fail('OUTPUT_EXISTS', path);
  const tempPath = join(dirname(path), `.${basename(path)}.seekz-${process.pid}-${tempSuffix()}.tmp`);
  liveTempFiles.add(tempPath);
  let handle: FileHandle;
  try {
    handle = await open(tempPath, 'wx', 0o644);
  } catch (error) {
    liveTempFiles.delete(tempPath);
    // The temp file is ours; the user named the output (`seekz: out/x: No such file or directory`).
    if ((error as NodeJS.ErrnoException).path === tempPath) (error as NodeJS.ErrnoException).path = path;
    throw error;
  }
  let buffer = Buffer.allocUnsafe(WRITE_BUFFER);
  let buffered = 0;
  let position = 0; // file offset of buffer[0]
  let end = 0; // past the last byte written to the file (holes included once committed)
  let done = false;

  // A short write is followed by another, which either goes on or fails with the reason (ENOSPC).
  const writeAll = async (bytes: Uint8Array, at: number) => {
    let written = 0;
    await outputErrors(path, () => at + written, async () => {
      while (written < bytes.length) written += (await handle.write(bytes, written, bytes.length - written, at + written)).bytesWritten;
    });
    end = Math.max(end, at + bytes.length);
  };
  /** Writes `bytes` at `at`, leaving out whole zero blocks from `holesFrom` on (they read back as zeros). */
  const writeSparse = async (bytes: Uint8Array, at: number, holesFrom = end) => {
    for (const [from, to] of dataRuns(bytes, at, holesFrom)) await writeAll(bytes.subarray(from, to), at + from);
  };
  const append = options.sparse ? writeSparse : writeAll;
  const flush = async () => {
    await append(buffer.subarray(0, buffered), position);
    position += buffered;
    buffered = 0;
  };

  const sink: AtomicFile['sink'] = {
    async write(bytes) {
      if (bytes.length >= WRITE_BUFFER) {
        await flush();
        await append(bytes, position);
        position += bytes.length;
        return;
      }
      if (buffered + bytes.length > WRITE_BUFFER) await flush();
      buffer.set(bytes, buffered);
      buffered += bytes.length;
    },
    async writeAt(offset, bytes) {
      await flush();
      await writeAll(bytes, offset);
    },
    // Only a sparse file (a decompressor's) is written by offset: what lies past `position` is
    // nothing yet, so its zeros may stay holes, whatever order the pieces come in (a later piece
    // written first must not cost an earlier one its holes).
    positional: options.sparse
      ? async () => {
          await flush();
          const start = position;
          return {
            fd: handle.fd,
            at: position,
            name: path,
            write: (offset, bytes) => writeSparse(bytes, offset, start),
            advance: (length) => void (position += length),
          };
        }
      : undefined,
  };

  return {
    sink,
    async commit() {
      if (done) return;
      await flush();
      await outputErrors(path, () => position, async () => {
        // A file that ends in a hole gets its size here; so does one that is all holes.
        if (options.sparse && position > end) await handle.truncate(position);
        if (options.like) await takeAttributes(handle, options.like);
        await handle.sync();
        await handle.close();
      });
      await rename(tempPath, path);
      done = true;
      liveTempFiles.delete(tempPath);
      await syncDirectory(dirname(path));
      buffer = Buffer.alloc(0);
    },
    async abort() {
      if (done) return;
      done = true;
      await handle.close().catch(() => {});
      await unlink(tempPath).catch(() => {});
      liveTempFiles.delete(tempPath);
    },
  };
}

/**
 * xz's order (src/xz/file_io.c, io_copy_attrs): owner first, since chown clears the set-user-ID
 * bits; then the mode; then the times, last, since nothing may touch the file after them. Only
 * root may give a file away; anyone may set the group to one of their own, so a refused owner
 * still tries the group.
 */
async function takeAttributes(handle: FileHandle, like: Stats): Promise<void> {
  let mode = like.mode & 0o7777;
  const owned = await handle.chown(like.uid, like.gid).then(() => true, () => handle.chown(-1, like.gid).then(() => true, () => false));
  if (!owned) {
    // The file keeps our own group, which is not the one the bits were meant for: group and others
    // get only what both had (xz does the same).
    const least = ((mode & 0o070) >> 3) & (mode & 0o007);
    mode = (mode & 0o700) | (least << 3) | least;
  }
  await handle.chmod(mode);
  await handle.utimes(like.atime, like.mtime);
}

/** A rename is durable only once the directory entry is on disk. */
export async function syncDirectory(path: string): Promise<void> {
  const directory = await open(path, constants.O_RDONLY);
  try {
    await directory.sync();
  } catch {
    // some filesystems refuse fsync on directories; the rename still happened
  } finally {
    await directory.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs an output step; an error of the output itself (ENOSPC, EIO, EDQUOT, EFBIG, a short write)
 * becomes OUTPUT_FAILED naming the output and how far it got. EPIPE passes through unchanged:
 * the reader went away, and the CLI stops quietly, as zcat does.
 */
async function outputErrors<T>(where: string, at: () => number, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (error instanceof SeekzError || code === 'EPIPE' || !code) throw error;
    throw fail('OUTPUT_FAILED', where, at(), message.replace(/^[A-Z]+: /, '').replace(/, \w+( '.*')?$/, '') + ` (${code})`);
  }
}

/** An existing device or FIFO given as an output file: written in place, nothing to rename. */
async function deviceFile(path: string): Promise<AtomicFile> {
  const handle = await open(path, 'w');
  let position = 0;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await handle.close();
  };
  const sink: AtomicFile['sink'] = {
    write: (bytes) => outputErrors(path, () => position, async () => {
      for (let written = 0; written < bytes.length; ) {
        const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, null);
        written += bytesWritten;
        position += bytesWritten;
      }
    }),
    async writeAt() {
      throw fail('BAD_ARGUMENT', `${path} is not a regular file; this output needs one it can seek in`);
    },
  };
  return { sink, commit: () => outputErrors(path, () => position, close), abort: () => close().catch(() => {}) };
}

/**
 * A sink over a stream such as stdout, with backpressure. It cannot revisit bytes. Every write
 * resolves only once the bytes are handed over, and rejects with that write's own error.
 *
 * When the stream is a file or a device (stdout redirected), the bytes go straight to its fd:
 * Node's SyncWriteStream ignores short writes (a full disk loses the tail with no error) and
 * reports a failed write only on the next one. Pipes and terminals go through the stream.
 * Pinned by the "Full disk" cases in test/trust-serve-io.test.ts.
 */
export function streamSink(stream: NodeJS.WritableStream & { fd?: number }): Sink {
  const where = stream === process.stdout ? 'stdout' : 'the output stream';
  let position = 0;
  const fd = stream.fd;
  if (typeof fd === 'number' && !isatty(fd)) {
    const kind = fstatSync(fd);
    if (kind.isFile() || kind.isCharacterDevice() || kind.isBlockDevice()) {
      const writeSome = (bytes: Uint8Array, from: number) =>
        new Promise<number>((resolve, reject) => writeFd(fd, bytes, from, bytes.length - from, null, (error, written) => (error ? reject(error) : resolve(written))));
      return {
        write: (bytes) => outputErrors(where, () => position, async () => {
          for (let written = 0; written < bytes.length; ) {
            const count = await writeSome(bytes, written);
            written += count;
            position += count;
          }
        }),
      };
    }
  }
  if (typeof fd === 'number') growPipe(fd);
  let failure: Error | undefined;
  // A listener must stay attached: an 'error' with none would crash the process with a stack.
  stream.on('error', (error: Error) => (failure ??= error));
  return {
    write: (bytes) => outputErrors(where, () => position, async () => {
      if (failure) throw failure;
      await new Promise<void>((resolve, reject) => stream.write(bytes, (error) => (error ? reject(failure ?? error) : resolve())));
      position += bytes.length;
    }),
  };
}

/** What a pipe's buffer is grown to: Linux's default limit for unprivileged users (/proc/sys/fs/pipe-max-size). */
const PIPE_BUFFER = 2 ** 20;

/**
 * A pipe's buffer holds 64 KiB by default, and a writer that outruns its reader wakes it, and is
 * woken, every 64 KiB: `seekzstd -dc` of the 2 GiB bench image into `| cat` took 2.9-3.6 s with
 * 1.7-2.6 s of it in the kernel, against 1.6-1.7 s with a 1 MiB buffer (zstd -dc: 2.1-2.3 s).
 * Asks for 1 MiB when `fd` is a pipe with less; a refusal (a user over the kernel's limit of pipe
 * memory, no seekz_io addon) leaves it as it was. It changes nothing about the bytes.
 */
function growPipe(fd: number): void {
  const io = nativeIo();
  try {
    if (!io || !fstatSync(fd).isFIFO() || io.pipeSize(fd, 0) >= PIPE_BUFFER) return;
    io.pipeSize(fd, PIPE_BUFFER);
  } catch {
    // not a pipe we can ask about: it stays as it is
  }
}

/**
 * Stdout as an output with holes, as `xz -dc > FILE` writes it (xz's file_io.c): only when stdout
 * is a regular file, not opened with O_APPEND (`>>`), and its offset is at its end, so a hole never
 * hides bytes that were there; otherwise undefined, and the caller writes stdout in full. Data goes
 * out with write(2) at the offset the shell left, or by offset from workers (positional), whole
 * zero 4 KiB blocks are skipped with lseek; commit() gives the file its size (it may end in a hole)
 * and leaves the offset at the end, as if every byte had been written (the next command of
 * `{ a; b; } > FILE` appends); abort() truncates the file back to where this command began, so a
 * failed decompression leaves nothing of its own. Needs the seekz_io addon for lseek.
 * Pinned by test/cli-manners.test.ts ("holes in stdout").
 */
export function sparseStdout(): AtomicFile | undefined {
  const fd = 1;
  const io = nativeIo();
  if (!io || isatty(fd) || !fstatSync(fd).isFile() || io.appendMode(fd) !== 0) return undefined;
  const start = io.seek(fd, 0, SEEK_CUR);
  if (start !== fstatSync(fd).size) return undefined;
  let position = start; // where the next byte of the output goes
  let fdAt = start; // where the fd's offset is: behind `position` by the zeros not yet seeked over
  const seekTo = (offset: number) => {
    const at = io.seek(fd, offset, SEEK_SET);
    if (at < 0) throw fail('OUTPUT_FAILED', 'stdout', position - start, `cannot seek to offset ${offset} (errno ${-at})`);
    fdAt = offset;
  };
  /** Writes bytes[from, to) at file offset `at`: with write(2) from the fd's offset, or pwrite when `moveOffset` is false. */
  const writeRun = async (bytes: Uint8Array, from: number, to: number, at: number, moveOffset: boolean) => {
    if (moveOffset && fdAt !== at) seekTo(at);
    for (let done = from; done < to; ) {
      const written = await new Promise<number>((resolve, reject) =>
        writeFd(fd, bytes, done, to - done, moveOffset ? null : at + done - from, (error, count) => (error ? reject(error) : resolve(count))),
      );
      done += written;
      if (moveOffset) fdAt += written;
    }
  };
  const writeHoles = async (bytes: Uint8Array, at: number, moveOffset: boolean) => {
    for (const [from, to] of dataRuns(bytes, at)) await writeRun(bytes, from, to, at + from, moveOffset);
  };
  const sink: AtomicFile['sink'] = {
    write: (bytes) => outputErrors('stdout', () => position - start, async () => {
      await writeHoles(bytes, position, true);
      position += bytes.length;
    }),
    async writeAt() {
      throw fail('BAD_ARGUMENT', 'stdout cannot be written at an offset; use -o FILE');
    },
    positional: async () => ({
      fd,
      at: position,
      name: 'stdout',
      write: (offset, bytes) => outputErrors('stdout', () => offset - start, () => writeHoles(bytes, offset, false)),
      advance: (length) => void (position += length),
    }),
  };
  return {
    sink,
    // The file gets its size (it may end in a hole) and the fd's offset its end.
    commit: () => outputErrors('stdout', () => position - start, async () => {
      if (fstatSync(fd).size < position) ftruncateSync(fd, position);
      if (fdAt !== position) seekTo(position);
    }),
    // What this command wrote goes: later blocks may be in the file before an earlier one failed.
    async abort() {
      try {
        ftruncateSync(fd, start);
        seekTo(start);
      } catch {
        // the error that made us abort is the one to report
      }
    },
  };
}

let stdout: Sink | undefined;

/** Writes to stdout through one shared sink, awaited: `seekz info > /dev/full` fails, it does not crash. */
export function writeStdout(text: string | Uint8Array): Promise<void> {
  stdout ??= streamSink(process.stdout);
  return stdout.write(typeof text === 'string' ? Buffer.from(text) : text);
}
