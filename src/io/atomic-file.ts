import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fail } from '../errors.js';
import type { Sink } from '../gzip/partial-deflate.js';

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
  readonly sink: Required<Sink>;
  /** Flushes, fsyncs and renames the temp file onto the target. */
  commit(): Promise<void>;
  /** Closes and removes the temp file. Safe to call after commit (does nothing). */
  abort(): Promise<void>;
}

/**
 * An output file that appears only when complete: bytes go to a temp file beside the target,
 * which is renamed over it on commit. A failure, or a signal through the CLI's handler, leaves
 * nothing behind.
 */
export async function createAtomicFile(path: string, options: { force?: boolean } = {}): Promise<AtomicFile> {
  if (!options.force && (await exists(path))) throw fail('OUTPUT_EXISTS', path);
  const tempPath = join(dirname(path), `.${basename(path)}.seekz-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  liveTempFiles.add(tempPath);
  let handle: FileHandle;
  try {
    handle = await open(tempPath, 'wx', 0o644);
  } catch (error) {
    liveTempFiles.delete(tempPath);
    throw error;
  }
  let buffer = Buffer.allocUnsafe(WRITE_BUFFER);
  let buffered = 0;
  let position = 0; // file offset of buffer[0]
  let done = false;

  const flush = async () => {
    let written = 0;
    while (written < buffered) {
      const { bytesWritten } = await handle.write(buffer, written, buffered - written, position + written);
      written += bytesWritten;
    }
    position += buffered;
    buffered = 0;
  };

  const sink: Required<Sink> = {
    async write(bytes) {
      if (bytes.length >= WRITE_BUFFER) {
        await flush();
        let written = 0;
        while (written < bytes.length) {
          const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, position + written);
          written += bytesWritten;
        }
        position += bytes.length;
        return;
      }
      if (buffered + bytes.length > WRITE_BUFFER) await flush();
      buffer.set(bytes, buffered);
      buffered += bytes.length;
    },
    async writeAt(offset, bytes) {
      await flush();
      await handle.write(bytes, 0, bytes.length, offset);
    },
  };

  return {
    sink,
    async commit() {
      if (done) return;
      await flush();
      await handle.sync();
      await handle.close();
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

/** A sink over a stream such as stdout, with backpressure. It cannot revisit bytes. */
export function streamSink(stream: NodeJS.WritableStream): Sink {
  let failure: Error | undefined;
  stream.on('error', (error: Error) => (failure = error));
  return {
    async write(bytes) {
      if (failure) throw failure;
      if (stream.write(bytes)) return;
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          stream.off('error', onError);
          resolve();
        };
        const onError = (error: Error) => {
          stream.off('drain', onDrain);
          reject(error);
        };
        stream.once('drain', onDrain);
        stream.once('error', onError);
      });
    },
  };
}
