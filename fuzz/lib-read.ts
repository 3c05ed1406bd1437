/**
 * The library's way in, run as its own process so a crash or a hang is judged like a CLI's:
 * `node dist/fuzz/lib-read.js FILE OFFSET LENGTH` opens FILE with the public `open()` (gzip or
 * xz, with a sidecar index when one sits beside it) and writes the bytes it reads.
 * A SeekzError is a clean refusal (exit 1, one line); anything else is a bug (exit 70, stack).
 */
// The package's own entry (package.json `exports`): the bundle that users' `import` loads.
import { open, SeekzError } from 'seekz';

const [path, offsetText, lengthText] = process.argv.slice(2) as [string, string, string];
try {
  const data = await open(path);
  const offset = Number(offsetText);
  if (offset > data.size) throw new SeekzError('OUT_OF_RANGE', `lib-read: offset ${offset} is past the end (${data.size} bytes)`);
  const bytes = await data.read(offset, Math.min(Number(lengthText), data.size - offset));
  await data.close();
  await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (error) => (error ? reject(error) : resolve())));
} catch (error) {
  if (error instanceof SeekzError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`lib-read: internal error: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(70);
}
