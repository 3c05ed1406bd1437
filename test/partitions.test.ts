/**
 * Partition tables written by the real tools (sfdisk, sgdisk, fdisk -b 4096) into sparse images at
 * test time, read back through every source type and compared field by field with what sfdisk
 * (or fdisk) itself reports. Bad images are named after the error they must give.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPartition, readPartitionTable, type Partition, type PartitionTable } from '../src/disk/partitions.js';
import { SeekzError, type ErrorCode } from '../src/errors.js';
import { bufferSource } from '../src/source/buffer.js';
import { fileSource } from '../src/source/file.js';
import type { Source } from '../src/source/source.js';

const MIB = 1024 * 1024;
const SECTOR = 512;

// ---------------------------------------------------------------------------------------------
// tools

/** Finds a tool or fails naming the Debian package to install; these tests are never skipped. */
function tool(name: string, debianPackage: string): string {
  const dirs = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', ...(process.env.PATH ?? '').split(delimiter)];
  const found = dirs.map((dir) => join(dir, name)).find((path) => existsSync(path));
  if (!found) throw new Error(`${name} is not installed; install the Debian package '${debianPackage}' (apt-get install ${debianPackage})`);
  return found;
}

function run(name: string, debianPackage: string, args: string[], input?: string): string {
  return execFileSync(tool(name, debianPackage), args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

const truncate = (path: string, size: number) => run('truncate', 'coreutils', ['-s', String(size), path]);
const sfdisk = (path: string, script: string) => run('sfdisk', 'fdisk', ['-q', path], script);
const sgdisk = (path: string, args: string[]) => run('sgdisk', 'gdisk', [...args, path]);

/** A fresh sparse image of `size` bytes. */
function blankImage(path: string, size: number): string {
  rmSync(path, { force: true });
  truncate(path, size);
  return path;
}

interface SfdiskJson {
  partitiontable: {
    label: 'gpt' | 'dos';
    id: string;
    sectorsize: number;
    partitions?: Array<{ node: string; start: number; size: number; type: string; uuid?: string; name?: string }>;
  };
}

const sfdiskJson = (path: string): SfdiskJson => JSON.parse(run('sfdisk', 'fdisk', ['--json', path])) as SfdiskJson;

/** What readPartitionTable must return, according to sfdisk --json. */
function expectedFromSfdisk(json: SfdiskJson, image: string): PartitionTable {
  const table = json.partitiontable;
  const gpt = table.label === 'gpt';
  const sectorSize = table.sectorsize;
  const partitions = (table.partitions ?? []).map((p) => {
    expect(p.node.startsWith(image)).toBe(true);
    const partition: Partition = {
      number: Number(p.node.slice(image.length)),
      start: p.start * sectorSize,
      size: p.size * sectorSize,
      // sfdisk prints MBR types as bare hex ('5', 'c'); seekz as two-digit '0x05', '0x0c'
      type: gpt ? p.type.toLowerCase() : '0x' + p.type.toLowerCase().padStart(2, '0'),
    };
    if (p.name) partition.name = p.name;
    if (p.uuid) partition.guid = p.uuid.toLowerCase();
    return partition;
  });
  partitions.sort((a, b) => a.number - b.number);
  const expected: PartitionTable = { scheme: gpt ? 'gpt' : 'mbr', sectorSize, partitions };
  if (gpt) expected.diskGuid = table.id.toLowerCase();
  return expected;
}

/** What fdisk -b 4096 -l reports (sfdisk cannot be told a sector size for a plain file). */
function expectedFromFdisk4096(path: string): PartitionTable {
  const out = run('fdisk', 'fdisk', ['-b', '4096', '-l', '-o', 'Device,Start,Sectors,Type-UUID,UUID', path]);
  const diskGuid = /Disk identifier: (\S+)/.exec(out)![1]!.toLowerCase();
  const lines = out.split('\n');
  const rows = lines.slice(lines.findIndex((line) => line.startsWith('Device')) + 1).filter((line) => line.trim() !== '');
  const partitions = rows.map((row) => {
    const [device, start, sectors, type, uuid] = row.trim().split(/\s+/);
    return {
      number: Number(device!.slice(path.length)),
      start: Number(start) * 4096,
      size: Number(sectors) * 4096,
      type: type!.toLowerCase(),
      guid: uuid!.toLowerCase(),
    };
  });
  return { scheme: 'gpt', sectorSize: 4096, partitions, diskGuid };
}

// ---------------------------------------------------------------------------------------------
// byte surgery on copies of good images

function patched(from: string, to: string, edit: (bytes: Buffer) => void): string {
  const bytes = readFileSync(from);
  edit(bytes);
  writeFileSync(to, bytes);
  return to;
}

/** Recomputes the entry-array and header CRCs of the GPT header at `headerOffset`, as a tool would. */
function refreshGptCrcs(bytes: Buffer, headerOffset: number, sectorSize = SECTOR): void {
  const headerSize = bytes.readUInt32LE(headerOffset + 12);
  const arrayOffset = Number(bytes.readBigUInt64LE(headerOffset + 72)) * sectorSize;
  const arrayBytes = bytes.readUInt32LE(headerOffset + 80) * bytes.readUInt32LE(headerOffset + 84);
  bytes.writeUInt32LE(crc32(bytes.subarray(arrayOffset, arrayOffset + arrayBytes)), headerOffset + 88);
  bytes.writeUInt32LE(0, headerOffset + 16);
  bytes.writeUInt32LE(crc32(bytes.subarray(headerOffset, headerOffset + headerSize)), headerOffset + 16);
}

/** Byte offset of GPT entry `number` (1-based) in the primary array of a 512-byte-sector image. */
function primaryEntry(bytes: Buffer, number: number): number {
  const arrayOffset = Number(bytes.readBigUInt64LE(SECTOR + 72)) * SECTOR;
  return arrayOffset + (number - 1) * bytes.readUInt32LE(SECTOR + 84);
}

/** Offsets of the EBRs of the first extended partition, in chain order. */
function ebrOffsets(bytes: Buffer): number[] {
  const entry = [0, 1, 2, 3].map((i) => 446 + i * 16).find((at) => [0x05, 0x0f, 0x85].includes(bytes[at + 4]!))!;
  const extended = bytes.readUInt32LE(entry + 8);
  const offsets: number[] = [];
  for (let lba = extended; offsets.length < 10; ) {
    offsets.push(lba * SECTOR);
    const link = lba * SECTOR + 446 + 16;
    if (bytes[link + 4] === 0) break;
    lba = extended + bytes.readUInt32LE(link + 8);
  }
  return offsets;
}

/** An MBR whose extended partition holds a chain of `count` EBRs, each linking to the next sector. */
function longEbrChain(count: number): Buffer {
  const bytes = Buffer.alloc((count + 2) * SECTOR);
  const entry = (sector: number, slot: number, type: number, start: number, sectors: number) => {
    const at = sector * SECTOR + 446 + slot * 16;
    bytes[at + 4] = type;
    bytes.writeUInt32LE(start, at + 8);
    bytes.writeUInt32LE(sectors, at + 12);
  };
  const sign = (sector: number) => bytes.writeUInt16LE(0xaa55, sector * SECTOR + 510);
  sign(0);
  entry(0, 0, 0x05, 1, count + 1);
  for (let i = 0; i < count; i++) {
    sign(1 + i);
    entry(1 + i, 1, 0x05, i + 1, 1); // the link to the next EBR, relative to the extended partition
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// sources

type Opened = { source: Source; close(): Promise<void> };
const sourceKinds: Array<{ kind: string; open(path: string): Promise<Opened> }> = [
  { kind: 'buffer', open: async (path) => ({ source: bufferSource(await readFile(path)), close: async () => {} }) },
  { kind: 'file', open: async (path) => { const source = await fileSource(path); return { source, close: () => source.close() }; } },
];

/** Counts reads, to check the I/O plan. */
function counted(source: Source): Source & { reads: number } {
  const wrapper = {
    size: source.size,
    reads: 0,
    read(offset: number, length: number) {
      wrapper.reads++;
      return source.read(offset, length);
    },
  };
  return wrapper;
}

// ---------------------------------------------------------------------------------------------
// the corpus

let dir: string;
const image = (name: string) => join(dir, name);
/** Good images and what the reference tool says about them. */
const golden = new Map<string, PartitionTable>();

const GOOD = ['gpt-sfdisk.img', 'gpt-sgdisk-gaps.img', 'mbr-sfdisk-logical.img', 'mbr-sfdisk-empty.img', 'fat-no-partitions.img'];
/** Damaged primary GPT structures that the backup header must paper over. */
const REPAIRED_BY_BACKUP: Array<[string, string]> = [
  ['gpt-primary-header-crc.img', 'gpt-sfdisk.img'],
  ['gpt-primary-array-crc.img', 'gpt-sfdisk.img'],
  ['gpt-primary-entry-size.img', 'gpt-sfdisk.img'],
  ['gpt-primary-entry-count.img', 'gpt-sfdisk.img'],
  ['gpt-primary-signature.img', 'gpt-sfdisk.img'],
];
/** Bad images, named after the error code they must give. */
const BAD: Array<{ file: string; code: ErrorCode; message: RegExp; sectorSize?: number }> = [
  { file: 'disk-too-small.img', code: 'DISK_TOO_SMALL', message: /^disk: the image is 300 bytes/ },
  { file: 'disk-no-signature.img', code: 'DISK_NO_SIGNATURE', message: /expected the boot signature 55 aa at offset 510, found 00 00/ },
  { file: 'disk-mbr-not-a-table.img', code: 'DISK_MBR_NOT_A_TABLE', message: /MBR entry 1 has boot flag 0x54 at offset 446, expected 0x00 or 0x80/ },
  { file: 'disk-gpt-no-header.img', code: 'DISK_GPT_NO_HEADER', message: /primary header at offset 512 .*header crc-32 is 0x[0-9a-f]{8}, the header gives 0x[0-9a-f]{8}; backup header at offset 8388096 .*header crc-32/ },
  { file: 'disk-gpt-no-header-4096.img', code: 'DISK_GPT_NO_HEADER', message: /primary header at offset 512 .*"EFI PART"/, sectorSize: 512 },
  { file: 'disk-gpt-bad-entry-reversed.img', code: 'DISK_GPT_BAD_ENTRY', message: /^disk: GPT partition 2: last lba \d+ is before first lba \d+$/ },
  { file: 'disk-gpt-bad-entry-huge.img', code: 'DISK_GPT_BAD_ENTRY', message: /^disk: GPT partition 1: .*beyond 2\^53 bytes$/ },
  { file: 'disk-partition-past-end-gpt-entry.img', code: 'DISK_PARTITION_PAST_END', message: /^disk: partition 3 \[4194304, 512000000000\) runs past the end of the image \(8388608 bytes\)/ },
  { file: 'disk-partition-past-end-gpt-truncated.img', code: 'DISK_PARTITION_PAST_END', message: /^disk: partition 3 \[4194304, \d+\) runs past the end of the image \(5242880 bytes\)/ },
  { file: 'disk-partition-past-end-mbr-entry.img', code: 'DISK_PARTITION_PAST_END', message: /^disk: partition 1 \[1048576, 2199024303616\) runs past the end of the image \(16777216 bytes\)/ },
  { file: 'disk-partition-past-end-mbr-truncated.img', code: 'DISK_PARTITION_PAST_END', message: /^disk: partition 2 \[3145728, 13631488\) runs past the end of the image \(4194304 bytes\); the image is truncated \(it needs at least 13631488 bytes\)/ },
  { file: 'disk-ebr-loop.img', code: 'DISK_EBR_LOOP', message: /the record at offset \d+ links back to offset 3145728/ },
  { file: 'disk-ebr-bad-signature.img', code: 'DISK_EBR_BAD', message: /^disk: extended boot record at offset \d+: expected the boot signature 55 aa at offset \d+, found 00 00$/ },
  { file: 'disk-ebr-too-many.img', code: 'DISK_EBR_TOO_MANY', message: /longer than 128/ },
];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'seekz-partitions-'));

  // GPT by sfdisk: names (one not ASCII), three types, the last partition running to the end.
  const gpt = blankImage(image('gpt-sfdisk.img'), 8 * MIB);
  sfdisk(gpt, [
    'label: gpt',
    'size=2MiB, type=linux, name="root fs"',
    'size=1MiB, type=uefi, name="données ✓"',
    'type=swap',
  ].join('\n'));

  // GPT by sgdisk: a gap in the numbering (1, 3, 4), fixed GUIDs to pin the mixed-endian layout.
  const gaps = blankImage(image('gpt-sgdisk-gaps.img'), 8 * MIB);
  sgdisk(gaps, [
    '-o', '-U', '00112233-4455-6677-8899-AABBCCDDEEFF',
    '-n', '1:2048:+1M', '-t', '1:ef00', '-c', '1:EFI system',
    '-n', '3:0:+2M', '-t', '3:8300', '-c', '3:data', '-u', '3:01234567-89AB-CDEF-0123-456789ABCDEF',
    '-n', '4:0:+1M', '-t', '4:8200',
  ]);

  // MBR by sfdisk: a bootable primary, an extended partition with three logicals, a primary after it.
  const mbr = blankImage(image('mbr-sfdisk-logical.img'), 16 * MIB);
  sfdisk(mbr, [
    'label: dos',
    `${mbr}1 : size=2MiB, type=83, bootable`,
    `${mbr}2 : size=10MiB, type=5`,
    `${mbr}3 : size=1MiB, type=c`,
    `${mbr}5 : size=3MiB, type=82`,
    `${mbr}6 : size=2MiB, type=83`,
    `${mbr}7 : size=1MiB, type=7`,
  ].join('\n'));

  sfdisk(blankImage(image('mbr-sfdisk-empty.img'), 4 * MIB), 'label: dos\n');
  // A bare FAT file system: its boot sector ends in 55 aa; sfdisk and Linux see an empty MBR.
  run('mkfs.vfat', 'dosfstools', [blankImage(image('fat-no-partitions.img'), 4 * MIB)]);

  for (const name of GOOD) golden.set(name, expectedFromSfdisk(sfdiskJson(image(name)), image(name)));

  // GPT with 4096-byte sectors, which only fdisk -b can write into a plain file.
  const gpt4096 = blankImage(image('gpt-fdisk-4096.img'), 32 * MIB);
  run('fdisk', 'fdisk', ['-b', '4096', gpt4096], 'g\nn\n1\n\n+4M\nn\n2\n\n+2M\nt\n2\n1\nw\n');
  golden.set('gpt-fdisk-4096.img', expectedFromFdisk4096(gpt4096));
  patched(gpt4096, image('gpt-fdisk-4096-primary-signature.img'), (bytes) => bytes.fill(0, 4096, 4104));

  const lastSector = 8 * MIB - SECTOR;
  patched(gpt, image('gpt-primary-header-crc.img'), (bytes) => { bytes[SECTOR + 56] ^= 0xff; }); // disk GUID
  patched(gpt, image('gpt-primary-array-crc.img'), (bytes) => { bytes[primaryEntry(bytes, 1) + 56] ^= 0xff; }); // a name
  patched(gpt, image('gpt-primary-entry-size.img'), (bytes) => {
    bytes.writeUInt32LE(132, SECTOR + 84);
    refreshGptCrcs(bytes, SECTOR);
  });
  patched(gpt, image('gpt-primary-entry-count.img'), (bytes) => {
    bytes.writeUInt32LE(1_000_000, SECTOR + 80);
    bytes.writeUInt32LE(0, SECTOR + 16);
    bytes.writeUInt32LE(crc32(bytes.subarray(SECTOR, SECTOR + 92)), SECTOR + 16);
  });
  patched(gpt, image('gpt-primary-signature.img'), (bytes) => bytes.fill(0, SECTOR, SECTOR + 8));

  writeFileSync(image('disk-too-small.img'), readFileSync(gpt).subarray(0, 300));
  truncate(image('disk-no-signature.img'), MIB);
  patched(image('disk-no-signature.img'), image('disk-mbr-not-a-table.img'), (bytes) => {
    bytes.write('This is not a bootable disk.', 446, 'latin1'); // boot-sector text where entries would be
    bytes.writeUInt16LE(0xaa55, 510);
  });
  patched(gpt, image('disk-gpt-no-header.img'), (bytes) => {
    bytes[SECTOR + 56] ^= 0xff;
    bytes[lastSector + 56] ^= 0xff;
  });
  copyFileSync(gpt4096, image('disk-gpt-no-header-4096.img'));
  patched(gpt, image('disk-gpt-bad-entry-reversed.img'), (bytes) => {
    const entry = primaryEntry(bytes, 2);
    bytes.writeBigUInt64LE(bytes.readBigUInt64LE(entry + 32) - 1n, entry + 40);
    refreshGptCrcs(bytes, SECTOR);
  });
  patched(gpt, image('disk-gpt-bad-entry-huge.img'), (bytes) => {
    bytes.writeBigUInt64LE(0xffff_ffff_ffff_fff0n, primaryEntry(bytes, 1) + 40);
    refreshGptCrcs(bytes, SECTOR);
  });
  patched(gpt, image('disk-partition-past-end-gpt-entry.img'), (bytes) => {
    bytes.writeBigUInt64LE(999_999_999n, primaryEntry(bytes, 3) + 40);
    refreshGptCrcs(bytes, SECTOR);
  });
  writeFileSync(image('disk-partition-past-end-gpt-truncated.img'), readFileSync(gpt).subarray(0, 5 * MIB));
  patched(mbr, image('disk-partition-past-end-mbr-entry.img'), (bytes) => bytes.writeUInt32LE(0xffff_ffff, 446 + 12));
  writeFileSync(image('disk-partition-past-end-mbr-truncated.img'), readFileSync(mbr).subarray(0, 4 * MIB));
  patched(mbr, image('disk-ebr-loop.img'), (bytes) => {
    const second = ebrOffsets(bytes)[1]!;
    bytes.writeUInt32LE(0, second + 446 + 16 + 8); // link back to the first EBR
  });
  patched(mbr, image('disk-ebr-bad-signature.img'), (bytes) => bytes.writeUInt16LE(0, ebrOffsets(bytes)[2]! + 510));
  writeFileSync(image('disk-ebr-too-many.img'), longEbrChain(130));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the reference tools agree with the surgery', () => {
  it('sfdisk still reads the images whose primary GPT was damaged, through the backup', () => {
    for (const [damaged, original] of REPAIRED_BY_BACKUP) {
      // libfdisk takes an entry size of 132 at its word and reads garbage; UEFI requires a
      // multiple of 8 (in fact 128 × 2^n), so seekz rejects that header and uses the backup.
      if (damaged === 'gpt-primary-entry-size.img') continue;
      expect(expectedFromSfdisk(sfdiskJson(image(damaged)), image(damaged)), damaged).toEqual(golden.get(original));
    }
  });
  it('the fixtures hold what the tests assume', () => {
    const gpt = golden.get('gpt-sfdisk.img')!;
    expect(gpt.partitions.map((p) => [p.number, p.start])).toEqual([[1, 1 * MIB], [2, 3 * MIB], [3, 4 * MIB]]);
    expect(gpt.partitions[1]!.name).toBe('données ✓');
    const mbr = golden.get('mbr-sfdisk-logical.img')!;
    expect(mbr.partitions.map((p) => p.number)).toEqual([1, 2, 3, 5, 6, 7]);
    expect(mbr.partitions[1]!.start).toBe(3 * MIB);
    expect(golden.get('gpt-sgdisk-gaps.img')!.partitions.map((p) => p.number)).toEqual([1, 3, 4]);
    expect(golden.get('gpt-fdisk-4096.img')!.partitions).toHaveLength(2);
  });
});

describe.each(sourceKinds)('$kind source', ({ open }) => {
  async function withImage<T>(name: string, use: (source: Source) => Promise<T>): Promise<T> {
    const opened = await open(image(name));
    try {
      return await use(opened.source);
    } finally {
      await opened.close();
    }
  }

  it.each(GOOD)('%s matches sfdisk --json in every field', async (name) => {
    const table = await withImage(name, (source) => readPartitionTable(source));
    expect(table).toEqual(golden.get(name));
  });

  it('gpt-sgdisk-gaps.img keeps entry numbers and formats GUIDs mixed-endian', async () => {
    const table = await withImage('gpt-sgdisk-gaps.img', (source) => readPartitionTable(source));
    expect(table.diskGuid).toBe('00112233-4455-6677-8899-aabbccddeeff');
    expect(table.partitions.find((p) => p.number === 3)).toMatchObject({
      name: 'data',
      type: '0fc63daf-8483-4772-8e79-3d69d8477de4',
      guid: '01234567-89ab-cdef-0123-456789abcdef',
    });
  });

  it('gpt-fdisk-4096.img: finds the GPT at 4096-byte sectors and matches fdisk -b 4096 -l', async () => {
    const expected = golden.get('gpt-fdisk-4096.img');
    expect(await withImage('gpt-fdisk-4096.img', (source) => readPartitionTable(source))).toEqual(expected);
    expect(await withImage('gpt-fdisk-4096.img', (source) => readPartitionTable(source, { sectorSize: 4096 }))).toEqual(expected);
    // with the primary signature gone, the backup in the last 4096-byte sector is found
    expect(await withImage('gpt-fdisk-4096-primary-signature.img', (source) => readPartitionTable(source))).toEqual(expected);
  });

  it.each(REPAIRED_BY_BACKUP)('%s is read through the backup header', async (damaged, original) => {
    expect(await withImage(damaged, (source) => readPartitionTable(source))).toEqual(golden.get(original));
  });

  it.each(BAD)('$file rejects with $code', async ({ file, code, message, sectorSize }) => {
    const error = await withImage(file, (source) => readPartitionTable(source, { sectorSize })).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(SeekzError);
    expect((error as SeekzError).code).toBe(code);
    expect((error as SeekzError).message).toMatch(message);
  });

  it('findPartition returns a partition, logical ones included', async () => {
    const mbr = golden.get('mbr-sfdisk-logical.img')!;
    expect(await withImage('mbr-sfdisk-logical.img', (source) => findPartition(source, 6))).toEqual(mbr.partitions.find((p) => p.number === 6));
    const gpt = golden.get('gpt-sgdisk-gaps.img')!;
    expect(await withImage('gpt-sgdisk-gaps.img', (source) => findPartition(source, 4))).toEqual(gpt.partitions.find((p) => p.number === 4));
  });

  it('findPartition names the partitions that exist when the number is not one of them', async () => {
    await expect(withImage('gpt-sfdisk.img', (source) => findPartition(source, 4))).rejects.toMatchObject({
      code: 'DISK_NO_SUCH_PARTITION',
      message: expect.stringMatching(
        /^disk: no partition 4; the GPT has partitions 1 \(start 1048576, 2[.0]* MiB\), 2 \(start 3145728, 1[.0]* MiB\), 3 \(start 4194304, [^)]+\)$/,
      ),
    });
    await expect(withImage('gpt-sgdisk-gaps.img', (source) => findPartition(source, 2))).rejects.toMatchObject({
      code: 'DISK_NO_SUCH_PARTITION',
      message: expect.stringMatching(/^disk: no partition 2; the GPT has partitions 1 \(.*\), 3 \(.*\), 4 \(.*\)$/),
    });
    await expect(withImage('mbr-sfdisk-logical.img', (source) => findPartition(source, 4))).rejects.toMatchObject({
      code: 'DISK_NO_SUCH_PARTITION',
      message: expect.stringMatching(/the MBR has partitions 1 .*, 2 .*, 3 .*, 5 .*, 6 .*, 7 \(start 11534336, 1[.0]* MiB\)$/),
    });
    await expect(withImage('mbr-sfdisk-empty.img', (source) => findPartition(source, 1))).rejects.toMatchObject({
      code: 'DISK_NO_SUCH_PARTITION',
      message: 'disk: no partition 1; the MBR has no partitions',
    });
  });

  it('throws BAD_ARGUMENT for a bad partition number or sector size', async () => {
    await expect(withImage('gpt-sfdisk.img', (source) => findPartition(source, 0))).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(withImage('gpt-sfdisk.img', (source) => findPartition(source, 1.5))).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(withImage('gpt-sfdisk.img', (source) => readPartitionTable(source, { sectorSize: 1000 }))).rejects.toMatchObject({
      code: 'BAD_ARGUMENT',
      message: expect.stringContaining('sector size 1000 must be a power of two'),
    });
  });

  it('reads a GPT with two reads and an MBR with one more per logical partition', async () => {
    const gpt = await withImage('gpt-sfdisk.img', async (source) => {
      const wrapped = counted(source);
      await readPartitionTable(wrapped);
      return wrapped.reads;
    });
    expect(gpt).toBe(2); // the first 8 KiB (MBR and header), then the entry array
    const mbr = await withImage('mbr-sfdisk-logical.img', async (source) => {
      const wrapped = counted(source);
      await readPartitionTable(wrapped);
      return wrapped.reads;
    });
    expect(mbr).toBe(1 + 3); // the first 8 KiB, then one EBR per logical partition
  });
});

describe('damaged tables never crash or hang', () => {
  /** Random byte changes in the table areas: the result is a table or a SeekzError, nothing else. */
  async function fuzz(name: string, regions: Array<[number, number]>): Promise<void> {
    const original = readFileSync(image(name));
    const offset = fc.oneof(...regions.map(([from, to]) => fc.integer({ min: from, max: to - 1 })));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(offset, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), async (edits) => {
        const bytes = Buffer.from(original);
        for (const [at, value] of edits) bytes[at] = value;
        try {
          const table = await readPartitionTable(bufferSource(bytes));
          for (const p of table.partitions) expect(p.start + p.size).toBeLessThanOrEqual(bytes.length);
        } catch (error) {
          expect(error).toBeInstanceOf(SeekzError);
        }
      }),
      { numRuns: 300 },
    );
  }

  it('in a GPT (MBR, both headers, both entry arrays)', async () => {
    const size = 8 * MIB;
    await fuzz('gpt-sfdisk.img', [[446, 512], [512, 604], [1024, 1024 + 4 * 128], [size - 33 * SECTOR, size - 33 * SECTOR + 512], [size - SECTOR, size - SECTOR + 92]]);
  });

  it('in an MBR with an extended partition (MBR and every EBR)', async () => {
    const ebrs = ebrOffsets(readFileSync(image('mbr-sfdisk-logical.img')));
    await fuzz('mbr-sfdisk-logical.img', [[446, 512], ...ebrs.map((at): [number, number] => [at + 446, at + 512])]);
  });
});
