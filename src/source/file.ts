import { open, type FileHandle } from 'node:fs/promises';
import { clipRead, type Source } from './source.js';

/** A Source over a local file. Reads are positional, so concurrent reads are safe; each returns a new buffer. */
export async function fileSource(path: string): Promise<Source & { close(): Promise<void> }> {
  const handle: FileHandle = await open(path, 'r');
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length) {
      const n = clipRead(size, offset, length);
      const out = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const { bytesRead } = await handle.read(out, done, n - done, offset + done);
        if (bytesRead === 0) break; // the file shrank under us; return what exists
        done += bytesRead;
      }
      return done === n ? out : out.subarray(0, done);
    },
    close: () => handle.close(),
  };
}
