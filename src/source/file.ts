import { open, type FileHandle } from 'node:fs/promises';
import { clipRead, type Source } from './source.js';

/** A Source over a local file. Reads are positional, so concurrent reads are safe; each returns a new buffer. */
export async function fileSource(path: string): Promise<Source & { close(): Promise<void> }> {
  const handle: FileHandle = await open(path, 'r');
  const { size } = await handle.stat();
  const readInto = async (into: Uint8Array, offset: number) => {
    const n = clipRead(size, offset, into.length);
    let done = 0;
    while (done < n) {
      const { bytesRead } = await handle.read(into, done, n - done, offset + done);
      if (bytesRead === 0) break; // the file shrank under us; return what exists
      done += bytesRead;
    }
    return done;
  };
  return {
    size,
    async read(offset, length) {
      const out = Buffer.allocUnsafe(clipRead(size, offset, length));
      const done = await readInto(out, offset);
      return done === out.length ? out : out.subarray(0, done);
    },
    readInto,
    close: () => handle.close(),
  };
}
