import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32 } from '../crc/crc32.js';
import { ByteReader, ByteWriter } from '../cursor.js';
import { fail } from '../errors.js';
import { syncDirectory } from '../io/atomic-file.js';

/**
 * The undo journal of an in-place edit. Before the file is touched, the old bytes of every
 * place about to change (and the old trailer) are written to `FILE.seekz-journal` and fsynced;
 * the journal appears under that name only by an atomic rename once complete. After the edit is
 * on disk, the journal is deleted. So at any moment either no journal exists and the file is
 * consistent, or a complete journal exists and rolling it back gives the old file exactly.
 *
 * Layout: magic "SZJRNL1\n", u64 file size, u32 entry count, then per entry u64 file offset,
 * u32 length, old bytes; last a u32 CRC-32 of everything before it.
 */
const MAGIC = new TextEncoder().encode('SZJRNL1\n');

export interface JournalEntry {
  fileOffset: number;
  bytes: Uint8Array; // the old bytes
}

export function journalPath(path: string): string {
  return `${path}.seekz-journal`;
}

export async function writeJournal(path: string, fileSize: number, entries: JournalEntry[]): Promise<void> {
  const writer = new ByteWriter().bytes(MAGIC).u64le(fileSize).u32le(entries.length);
  for (const entry of entries) writer.u64le(entry.fileOffset).u32le(entry.bytes.length).bytes(entry.bytes);
  const body = writer.finish();
  const checksum = new ByteWriter().u32le(crc32(body)).finish();
  const finalPath = journalPath(path);
  const tempPath = `${finalPath}.tmp`;
  // 'wx': a file or link already at that name (recovery removed our own leftover) fails the create
  // instead of being written through.
  const handle = await open(tempPath, 'wx', 0o600);
  try {
    await handle.write(body);
    await handle.write(checksum);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tempPath, finalPath);
  await syncDirectory(dirname(path));
}

export async function removeJournal(path: string): Promise<void> {
  await unlink(journalPath(path));
  await syncDirectory(dirname(path));
}

function parseJournal(path: string, bytes: Uint8Array): { fileSize: number; entries: JournalEntry[] } {
  const bad = (what: string) => fail('PATCH_JOURNAL_BAD', journalPath(path), what);
  if (bytes.length < MAGIC.length + 16) throw bad(`only ${bytes.length} bytes`);
  const body = bytes.subarray(0, bytes.length - 4);
  const stored = new DataView(bytes.buffer, bytes.byteOffset + body.length, 4).getUint32(0, true);
  if (crc32(body) !== stored) throw bad('its checksum does not match (it was damaged after it was written)');
  const reader = new ByteReader(body, (what) => bad(`${what} runs past its end`));
  const magic = reader.bytesOf(MAGIC.length, 'magic');
  if (!magic.every((byte, index) => byte === MAGIC[index])) throw bad('wrong magic; not a seekz journal');
  const fileSize = reader.u64le('file size');
  const count = reader.u32le('entry count');
  const entries: JournalEntry[] = [];
  for (let index = 0; index < count; index++) {
    const fileOffset = reader.u64le('entry offset');
    const length = reader.u32le('entry length');
    if (fileOffset + length > fileSize) throw bad(`entry ${index} [${fileOffset}, +${length}) lies outside the file`);
    entries.push({ fileOffset, bytes: reader.bytesOf(length, 'entry bytes') });
  }
  return { fileSize, entries };
}

/**
 * Finishes an interrupted edit by rolling it back: afterwards the file is exactly as it was
 * before that edit began. Returns what it did. The caller holds the lock.
 */
export async function recoverJournal(path: string): Promise<'none' | 'discarded-incomplete' | 'rolled-back'> {
  // A temp journal was never renamed into place, so the file was never touched.
  let outcome: 'none' | 'discarded-incomplete' | 'rolled-back' = 'none';
  if (await unlink(`${journalPath(path)}.tmp`).then(() => true, () => false)) outcome = 'discarded-incomplete';
  let bytes: Uint8Array;
  try {
    bytes = await readFile(journalPath(path));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return outcome;
    throw error;
  }
  const journal = parseJournal(path, bytes);
  const { size } = await stat(path);
  if (size !== journal.fileSize) {
    throw fail('PATCH_JOURNAL_MISMATCH', journalPath(path), `it is for a file of ${journal.fileSize} bytes, this one has ${size}`);
  }
  const handle = await open(path, 'r+');
  try {
    for (const entry of journal.entries) await handle.write(entry.bytes, 0, entry.bytes.length, entry.fileOffset);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await removeJournal(path);
  return 'rolled-back';
}
