/**
 * A deterministic disk-image generator for the demo and the benchmark: a GPT disk with a small
 * /boot partition and a large root partition, mostly sparse (zeros), with islands of data that
 * behave like a real image's: text, structured binary tables, code-like bytes, and incompressible
 * runs (already-compressed files). The same size and seed give the same bytes on any machine.
 * It writes through positional writes into a sparse file, so memory stays at one island.
 */
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

const SECTOR = 512;
const ENTRY_SIZE = 128;
const ENTRY_COUNT = 128;
const ENTRIES_SECTORS = (ENTRY_SIZE * ENTRY_COUNT) / SECTOR; // 32
const LINUX_FILESYSTEM = '0fc63daf-8483-4772-8e79-3d69d8477de4';
const EFI_SYSTEM = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
export const BOOT_ENTRY_TEXT = 'title Linux\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=UUID=2f1e5a3c-1d2b-4c5d-9e8f-0a1b2c3d4e5f ro console=ttyS0\n';

export interface DiskImagePlan {
  size: number;
  boot: { start: number; size: number };
  root: { start: number; size: number };
  /** Offset of the boot-loader entry text inside the image. */
  bootEntryOffset: number;
  dataBytes: number;
}

export interface DiskImageOptions {
  size: number;
  seed?: number;
  /** Share of the root partition that holds data; the rest stays zero. Default 0.35; 1 leaves no zero MiB outside the partition table. */
  dataFraction?: number;
}

function rng(seed: number) {
  let state = seed >>> 0 || 0x9e3779b9;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

const WORDS = (
  'the of and to in is that for it as with was on be by this are from or have an they which one you were all we ' +
  'her she there would their will when who him been has more if no out do so can what up said about other into ' +
  'kernel module driver device memory page file system user process thread socket buffer error return value ' +
  'config option enable disable default static const struct void int char unsigned long size offset length ' +
  'usr lib share bin etc var log boot root home systemd network service target mount block partition'
).split(' ');

/** Fills `out` with one kind of realistic content. */
function fillIsland(out: Uint8Array, random: () => number): void {
  let at = 0;
  while (at < out.length) {
    const kind = random();
    const run = Math.min(out.length - at, 4096 + Math.floor(random() * 262144));
    const piece = out.subarray(at, at + run);
    if (kind < 0.4) fillText(piece, random);
    else if (kind < 0.7) fillTable(piece, random);
    else if (kind < 0.85) fillCode(piece, random);
    else for (let index = 0; index < piece.length; index++) piece[index] = Math.floor(random() * 256);
    at += run;
  }
}

function fillText(out: Uint8Array, random: () => number): void {
  let at = 0;
  let previous = 0;
  while (at < out.length) {
    // Zipf-like word choice with some dependence on the previous word.
    const index = (Math.floor(WORDS.length * random() * random()) + previous) % WORDS.length;
    previous = index % 7;
    const word = WORDS[index]!;
    for (let char = 0; char < word.length && at < out.length; char++) out[at++] = word.charCodeAt(char);
    if (at < out.length) out[at++] = random() < 0.08 ? 0x0a : random() < 0.05 ? 0x2c : 0x20;
  }
}

function fillTable(out: Uint8Array, random: () => number): void {
  // Records of little-endian fields with small deltas: symbol tables, inode tables, databases.
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let value = Math.floor(random() * 1e6);
  for (let at = 0; at + 16 <= out.length; at += 16) {
    value += 1 + Math.floor(random() * 64);
    view.setUint32(at, value, true);
    view.setUint32(at + 4, Math.floor(random() * 4096), true);
    view.setUint16(at + 8, Math.floor(random() * 16), true);
    view.setUint16(at + 10, 0x1ed, true);
    view.setUint32(at + 12, random() < 0.7 ? 0 : Math.floor(random() * 2 ** 32), true);
  }
}

function fillCode(out: Uint8Array, random: () => number): void {
  // Machine-code-like: a small vocabulary of instruction patterns with random operands.
  const patterns = [[0x48, 0x89], [0x48, 0x8b], [0xe8], [0x0f, 0x1f, 0x44, 0x00, 0x00], [0x55], [0xc3], [0x41, 0x57], [0x74], [0x75]];
  let at = 0;
  while (at < out.length) {
    const pattern = patterns[Math.floor(random() * random() * patterns.length)]!;
    for (const byte of pattern) if (at < out.length) out[at++] = byte;
    const operands = Math.floor(random() * 4);
    for (let index = 0; index < operands && at < out.length; index++) out[at++] = Math.floor(random() * 256);
  }
}

function guidBytes(text: string): Uint8Array {
  const hex = text.replace(/-/g, '');
  const bytes = Uint8Array.from({ length: 16 }, (_, index) => Number.parseInt(hex.slice(index * 2, index * 2 + 2), 16));
  // GPT stores the first three fields little-endian.
  return Uint8Array.from([bytes[3]!, bytes[2]!, bytes[1]!, bytes[0]!, bytes[5]!, bytes[4]!, bytes[7]!, bytes[6]!, ...bytes.subarray(8)]);
}

function gptStructures(size: number, partitions: { start: number; size: number; type: string; name: string; guid: string }[]) {
  const lastLba = size / SECTOR - 1;
  const entries = new Uint8Array(ENTRY_SIZE * ENTRY_COUNT);
  partitions.forEach((partition, index) => {
    const entry = new DataView(entries.buffer, index * ENTRY_SIZE, ENTRY_SIZE);
    entries.set(guidBytes(partition.type), index * ENTRY_SIZE);
    entries.set(guidBytes(partition.guid), index * ENTRY_SIZE + 16);
    entry.setBigUint64(32, BigInt(partition.start / SECTOR), true);
    entry.setBigUint64(40, BigInt((partition.start + partition.size) / SECTOR - 1), true);
    for (let char = 0; char < partition.name.length; char++) entry.setUint16(56 + char * 2, partition.name.charCodeAt(char), true);
  });
  const header = (myLba: number, alternateLba: number, entriesLba: number) => {
    const bytes = new Uint8Array(SECTOR);
    const view = new DataView(bytes.buffer);
    bytes.set(new TextEncoder().encode('EFI PART'), 0);
    view.setUint32(8, 0x00010000, true); // revision 1.0
    view.setUint32(12, 92, true); // header size
    view.setBigUint64(24, BigInt(myLba), true);
    view.setBigUint64(32, BigInt(alternateLba), true);
    view.setBigUint64(40, BigInt(2 + ENTRIES_SECTORS), true); // first usable LBA
    view.setBigUint64(48, BigInt(lastLba - 1 - ENTRIES_SECTORS), true); // last usable LBA
    bytes.set(guidBytes('5eed5eed-0000-4000-8000-000000000001'), 56);
    view.setBigUint64(72, BigInt(entriesLba), true);
    view.setUint32(80, ENTRY_COUNT, true);
    view.setUint32(84, ENTRY_SIZE, true);
    view.setUint32(88, crc32(entries), true);
    view.setUint32(16, crc32(bytes.subarray(0, 92)), true);
    return bytes;
  };
  const mbr = new Uint8Array(SECTOR);
  const mbrView = new DataView(mbr.buffer);
  mbr[446 + 4] = 0xee; // protective partition
  mbrView.setUint32(446 + 8, 1, true);
  mbrView.setUint32(446 + 12, Math.min(lastLba, 0xffffffff), true);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  return {
    primary: [mbr, header(1, lastLba, 2), entries],
    backup: { entriesOffset: (lastLba - ENTRIES_SECTORS) * SECTOR, entries, header: header(lastLba, 1, lastLba - ENTRIES_SECTORS) },
  };
}

export function planDiskImage(options: DiskImageOptions): DiskImagePlan {
  const mib = 2 ** 20;
  const size = Math.ceil(options.size / mib) * mib;
  if (size < 16 * mib) throw new Error('disk image: at least 16 MiB');
  const bootSize = Math.max(4 * mib, Math.min(256 * mib, Math.floor(size / 32 / mib) * mib));
  const boot = { start: mib, size: bootSize };
  const root = { start: boot.start + boot.size, size: size - boot.start - boot.size - mib };
  return { size, boot, root, bootEntryOffset: boot.start + 65536, dataBytes: 0 };
}

/** Writes the image to `path` (created sparse) and returns where things are. */
export async function makeDiskImage(path: string, options: DiskImageOptions): Promise<DiskImagePlan> {
  const plan = planDiskImage(options);
  const random = rng(options.seed ?? 1);
  const handle = await open(path, 'w');
  try {
    await handle.truncate(plan.size);
    const gpt = gptStructures(plan.size, [
      { ...plan.boot, type: EFI_SYSTEM, name: 'boot', guid: '5eed5eed-0000-4000-8000-0000000000b0' },
      { ...plan.root, type: LINUX_FILESYSTEM, name: 'root', guid: '5eed5eed-0000-4000-8000-0000000000f0' },
    ]);
    let at = 0;
    for (const part of gpt.primary) {
      await handle.write(part, 0, part.length, at);
      at += part.length;
    }
    await handle.write(gpt.backup.entries, 0, gpt.backup.entries.length, gpt.backup.entriesOffset);
    await handle.write(gpt.backup.header, 0, SECTOR, plan.size - SECTOR);

    const island = new Uint8Array(8 * 2 ** 20);
    const writeIsland = async (offset: number, length: number) => {
      const bytes = island.subarray(0, length);
      fillIsland(bytes, random);
      await handle.write(bytes, 0, length, offset);
      plan.dataBytes += length;
    };
    // /boot: a boot-loader entry, then a kernel- and initrd-like island.
    const entry = new TextEncoder().encode(BOOT_ENTRY_TEXT);
    await handle.write(entry, 0, entry.length, plan.bootEntryOffset);
    // At data fraction 1 (the bench's no-zeros image) /boot is full too.
    const bootData = (options.dataFraction ?? 0.35) >= 1 ? plan.boot.size - 2 ** 20 : plan.boot.size / 2;
    for (let at = 0; at < bootData; at += island.length) await writeIsland(plan.boot.start + 2 ** 20 + at, Math.min(island.length, bootData - at));
    // root: islands until the data fraction is reached, placed on a 1 MiB grid.
    const target = (options.dataFraction ?? 0.35) * plan.root.size;
    const slots = Math.floor(plan.root.size / 2 ** 20);
    let written = 0;
    let slot = 0;
    while (written < target && slot < slots) {
      const length = Math.min((1 + Math.floor(random() * 8)) * 2 ** 20, island.length, (slots - slot) * 2 ** 20);
      await writeIsland(plan.root.start + slot * 2 ** 20, length);
      written += length;
      const remainingSlots = slots - slot - length / 2 ** 20;
      const remainingData = Math.max(0, target - written);
      // Spread the rest evenly, with jitter: gaps of zeros between islands.
      const gapMean = remainingData > 0 ? (remainingSlots * 2 ** 20 - remainingData) / (remainingData / (4.5 * 2 ** 20)) : 0;
      slot += length / 2 ** 20 + Math.max(0, Math.floor((gapMean / 2 ** 20) * 2 * random()));
    }
  } finally {
    await handle.close();
  }
  return plan;
}
