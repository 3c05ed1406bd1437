/**
 * MBR and GPT partition tables: where each partition of a disk image starts and how long it is.
 * Parsing only; the bytes come from a Source. Partitions are numbered the way sfdisk, fdisk and
 * parted number them, so `--partition 2` means the same thing here as in those tools.
 *
 * Every number in a table is a claim: offsets and sizes are checked against the image size and
 * against Number.MAX_SAFE_INTEGER before use, the extended-partition chain is bounded and may not
 * loop, and the GPT entry array is size-capped before it is read.
 */
import { crc32 } from 'node:zlib';
import { fail, hex32, hexBytes } from '../errors.js';
import { formatSize } from '../size.js';
import type { Source } from '../source/source.js';

export interface Partition {
  /** 1-based. GPT: entry index + 1. MBR: 1–4 primary, 5+ logical in chain order. */
  number: number;
  /** Byte offset in the image. */
  start: number;
  /** Length in bytes. */
  size: number;
  /** GPT: type GUID, lowercase 8-4-4-4-12. MBR: type byte as '0x83'. */
  type: string;
  /** GPT partition name (UTF-16LE, up to the first NUL); absent when empty. */
  name?: string;
  /** GPT unique partition GUID. */
  guid?: string;
}

export interface PartitionTable {
  scheme: 'gpt' | 'mbr';
  sectorSize: number;
  /** Sorted by number. An MBR extended partition is listed too, as sfdisk and fdisk list it. */
  partitions: Partition[];
  /** GPT disk GUID. */
  diskGuid?: string;
}

export interface PartitionOptions {
  /**
   * Logical sector size in bytes. Default: 512 for an MBR; for a GPT, 512 and then 4096, chosen
   * by where the "EFI PART" signature is.
   */
  sectorSize?: number;
}

// MBR and EBR sector (UEFI spec 5.2.1; the same layout is reused by every EBR)
const MBR_SIZE = 512;
const MBR_ENTRIES_OFFSET = 446; // four 16-byte entries
const MBR_ENTRY_SIZE = 16;
const MBR_ENTRY_COUNT = 4;
const MBR_SIGNATURE_OFFSET = 510;
const MBR_SIGNATURE = 0xaa55; // bytes 55 aa, read little-endian
const MBR_BOOT_FLAG_ACTIVE = 0x80;
const MBR_TYPE_EMPTY = 0x00;
const MBR_TYPE_GPT_PROTECTIVE = 0xee;
const MBR_EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]); // CHS, LBA, Linux
/** Linux and libfdisk go no further; a longer chain is damage or a trap. */
const MAX_LOGICAL_PARTITIONS = 128;

// GPT header (UEFI spec 5.3.2) and partition entry (5.3.3)
const GPT_SIGNATURE = new TextEncoder().encode('EFI PART');
const GPT_HEADER_MIN_SIZE = 92;
const GPT_HEADER_CRC_OFFSET = 16;
const GPT_ENTRY_MIN_SIZE = 128;
const GPT_ENTRY_SIZE_ALIGN = 8;
const GPT_MAX_ENTRIES = 16384;
const GPT_MAX_ARRAY_BYTES = 4 * 1024 * 1024;
const GPT_NAME_OFFSET = 56;
const GPT_NAME_BYTES = 72;
const GPT_SECTOR_SIZES = [512, 4096];
const SECTOR_SIZE_MIN = 512;
const SECTOR_SIZE_MAX = 65536;

/** LBA 0 plus LBA 1 at both sector sizes, so one read finds the MBR and either GPT header. */
const HEAD_BYTES = 2 * 4096;

/** Reads the partition table of a disk image: GPT when the MBR is protective, MBR otherwise. */
export async function readPartitionTable(source: Source, options: PartitionOptions = {}): Promise<PartitionTable> {
  const { sectorSize } = options;
  if (sectorSize !== undefined) checkSectorSize(sectorSize);
  if (source.size < MBR_SIZE) throw fail('DISK_TOO_SMALL', source.size);
  const head = await readExact(source, 0, Math.min(source.size, HEAD_BYTES), 'the first sectors');
  const view = viewOf(head);
  if (view.getUint16(MBR_SIGNATURE_OFFSET, true) !== MBR_SIGNATURE) {
    throw fail('DISK_NO_SIGNATURE', hexBytes(head.subarray(MBR_SIGNATURE_OFFSET, MBR_SIZE)));
  }
  const entries = readMbrEntries(view);
  // Linux's msdos parser uses the same test to tell a partition table from a bare FAT boot sector.
  entries.forEach((entry, index) => {
    if (entry.bootFlag !== 0 && entry.bootFlag !== MBR_BOOT_FLAG_ACTIVE) {
      throw fail('DISK_MBR_NOT_A_TABLE', index + 1, MBR_ENTRIES_OFFSET + index * MBR_ENTRY_SIZE, entry.bootFlag);
    }
  });
  // A hybrid MBR has other entries next to the 0xee one; the GPT is still the real table.
  if (entries.some((entry) => entry.type === MBR_TYPE_GPT_PROTECTIVE)) return readGpt(source, head, sectorSize);
  return readMbr(source, entries, sectorSize ?? SECTOR_SIZE_MIN);
}

/** The partition numbered `number`; the error lists the partitions that exist. */
export async function findPartition(source: Source, number: number, options: PartitionOptions = {}): Promise<Partition> {
  if (!Number.isSafeInteger(number) || number < 1) {
    throw fail('BAD_ARGUMENT', `partition number ${number} must be a whole number from 1`);
  }
  const table = await readPartitionTable(source, options);
  const found = table.partitions.find((partition) => partition.number === number);
  if (found) return found;
  const list =
    table.partitions.length === 0
      ? 'no partitions'
      : 'partitions ' +
        table.partitions.map((p) => `${p.number} (start ${p.start}, ${formatSize(p.size)})`).join(', ');
  throw fail('DISK_NO_SUCH_PARTITION', number, table.scheme.toUpperCase(), list);
}

// ---------------------------------------------------------------------------------------------
// MBR

interface MbrEntry {
  bootFlag: number;
  type: number;
  firstLba: number;
  sectorCount: number;
}

function readMbrEntries(sector: DataView): MbrEntry[] {
  const entries: MbrEntry[] = [];
  for (let index = 0; index < MBR_ENTRY_COUNT; index++) {
    const at = MBR_ENTRIES_OFFSET + index * MBR_ENTRY_SIZE;
    entries.push({
      bootFlag: sector.getUint8(at + 0), // +0 boot indicator; +1..3 CHS start (ignored)
      type: sector.getUint8(at + 4), // +4 partition type; +5..7 CHS end (ignored)
      firstLba: sector.getUint32(at + 8, true), // +8 starting LBA
      sectorCount: sector.getUint32(at + 12, true), // +12 size in sectors
    });
  }
  return entries;
}

function isEmpty(entry: MbrEntry): boolean {
  return entry.type === MBR_TYPE_EMPTY || entry.sectorCount === 0;
}

async function readMbr(source: Source, entries: MbrEntry[], sectorSize: number): Promise<PartitionTable> {
  const partitions: Partition[] = [];
  entries.forEach((entry, index) => {
    if (!isEmpty(entry)) {
      partitions.push(makePartition(source, index + 1, entry.firstLba, entry.sectorCount, sectorSize, mbrType(entry.type)));
    }
  });
  const extended = entries.filter((entry) => !isEmpty(entry) && MBR_EXTENDED_TYPES.has(entry.type));
  const logical: Partition[] = [];
  let records = 0;
  for (const container of extended) {
    records = await readLogicalPartitions(source, container, sectorSize, logical, records);
  }
  return { scheme: 'mbr', sectorSize, partitions: [...partitions, ...logical] };
}

/**
 * Walks one extended partition's chain of EBRs. In each EBR, entry 1 is a logical partition
 * relative to that EBR, and entry 2 links to the next EBR relative to the extended partition's
 * start. Appends to `logical`; returns the number of EBRs read so far, which is bounded.
 */
async function readLogicalPartitions(
  source: Source,
  container: MbrEntry,
  sectorSize: number,
  logical: Partition[],
  recordsSoFar: number,
): Promise<number> {
  const first = container.firstLba;
  const end = first + container.sectorCount;
  const visited = new Set<number>();
  let records = recordsSoFar;
  let previous = -1;
  for (let lba = first; ; ) {
    const offset = lba * sectorSize;
    if (visited.has(lba)) throw fail('DISK_EBR_LOOP', previous * sectorSize, offset);
    if (++records > MAX_LOGICAL_PARTITIONS) throw fail('DISK_EBR_TOO_MANY', MAX_LOGICAL_PARTITIONS);
    visited.add(lba);
    if (lba >= end) {
      throw fail('DISK_EBR_BAD', offset, `it lies outside its extended partition [${first * sectorSize}, ${end * sectorSize})`);
    }
    if (offset + MBR_SIZE > source.size) {
      throw fail('DISK_EBR_BAD', offset, `it runs past the end of the image (${source.size} bytes)`);
    }
    const bytes = await readExact(source, offset, MBR_SIZE, 'an extended boot record');
    const record = viewOf(bytes);
    if (record.getUint16(MBR_SIGNATURE_OFFSET, true) !== MBR_SIGNATURE) {
      const found = hexBytes(bytes.subarray(MBR_SIGNATURE_OFFSET, MBR_SIZE));
      throw fail('DISK_EBR_BAD', offset, `expected the boot signature 55 aa at offset ${offset + MBR_SIGNATURE_OFFSET}, found ${found}`);
    }
    const [data, link] = readMbrEntries(record);
    // Empty data entries are skipped without using up a number, as Linux and libfdisk do.
    if (!isEmpty(data) && !MBR_EXTENDED_TYPES.has(data.type)) {
      const number = MBR_ENTRY_COUNT + logical.length + 1;
      logical.push(makePartition(source, number, lba + data.firstLba, data.sectorCount, sectorSize, mbrType(data.type)));
    }
    if (isEmpty(link)) return records;
    if (!MBR_EXTENDED_TYPES.has(link.type)) {
      throw fail('DISK_EBR_BAD', offset, `its second entry has type ${mbrType(link.type)}, expected a link to the next record (0x05, 0x0f or 0x85) or an empty entry`);
    }
    previous = lba;
    lba = first + link.firstLba;
  }
}

function mbrType(type: number): string {
  return '0x' + type.toString(16).padStart(2, '0');
}

// ---------------------------------------------------------------------------------------------
// GPT

interface GptHeader {
  alternateLba: bigint;
  diskGuid: string;
  entries: Uint8Array;
  entryCount: number;
  entrySize: number;
}

/** A header that failed a check: why, and where its backup claims to be if its CRC held. */
interface GptRejection {
  reason: string;
  alternateLba?: bigint;
}

async function readGpt(source: Source, head: Uint8Array, sectorSize: number | undefined): Promise<PartitionTable> {
  const sizes =
    sectorSize !== undefined
      ? [sectorSize]
      : GPT_SECTOR_SIZES.filter((size) => hasSignatureAt(head, size)).slice(0, 1);
  // With no signature at either LBA 1, the primary is gone: look for a backup at both sizes.
  if (sizes.length === 0) sizes.push(...GPT_SECTOR_SIZES);

  const problems: string[] = [];
  const backups: Array<{ size: number; lba: bigint }> = [];
  for (const size of sizes) {
    const primary = await readGptHeader(source, head, size, 1n);
    if ('entries' in primary) return gptTable(source, primary, size);
    problems.push(`primary header at offset ${size} (lba 1 of ${size}-byte sectors): ${primary.reason}`);
    const lastLba = BigInt(Math.floor(source.size / size) - 1);
    if (primary.alternateLba !== undefined && primary.alternateLba !== lastLba) {
      backups.push({ size, lba: primary.alternateLba });
    }
    if (lastLba > 1n) backups.push({ size, lba: lastLba });
  }
  for (const { size, lba } of backups) {
    const backup = await readGptHeader(source, head, size, lba);
    if ('entries' in backup) return gptTable(source, backup, size);
    problems.push(`backup header at offset ${lba * BigInt(size)} (lba ${lba} of ${size}-byte sectors): ${backup.reason}`);
  }
  throw fail('DISK_GPT_NO_HEADER', problems.join('; '));
}

function hasSignatureAt(head: Uint8Array, offset: number): boolean {
  return head.length >= offset + GPT_SIGNATURE.length && GPT_SIGNATURE.every((byte, i) => head[offset + i] === byte);
}

/** Reads and checks the header at `lba` and its entry array; never throws for bad data. */
async function readGptHeader(
  source: Source,
  head: Uint8Array,
  sectorSize: number,
  lba: bigint,
): Promise<GptHeader | GptRejection> {
  const offset = safeBytes(lba, sectorSize);
  if (offset === undefined || offset + GPT_HEADER_MIN_SIZE > source.size) {
    return { reason: `it lies past the end of the image (${source.size} bytes)` };
  }
  const length = Math.min(sectorSize, source.size - offset);
  const bytes =
    offset + length <= head.length
      ? head.subarray(offset, offset + length)
      : await readExact(source, offset, length, 'a GPT header');
  const header = viewOf(bytes);
  if (!hasSignatureAt(bytes, 0)) {
    return { reason: `expected the signature "EFI PART" (${hexBytes(GPT_SIGNATURE)}), found ${hexBytes(bytes.subarray(0, 8))}` };
  }
  // +8 revision (not checked: Linux and libfdisk accept any)
  const headerSize = header.getUint32(12, true); // +12 header size
  if (headerSize < GPT_HEADER_MIN_SIZE || headerSize > length) {
    return { reason: `header size ${headerSize} is outside [${GPT_HEADER_MIN_SIZE}, ${length}]` };
  }
  const storedCrc = header.getUint32(GPT_HEADER_CRC_OFFSET, true); // +16 header CRC-32
  const zeroed = bytes.slice(0, headerSize);
  zeroed.fill(0, GPT_HEADER_CRC_OFFSET, GPT_HEADER_CRC_OFFSET + 4);
  const computedCrc = crc32(zeroed);
  if (storedCrc !== computedCrc) {
    return { reason: `header crc-32 is ${hex32(storedCrc)}, the header gives ${hex32(computedCrc)}` };
  }
  // +20 reserved
  const myLba = header.getBigUint64(24, true); // +24 LBA of this header
  const alternateLba = header.getBigUint64(32, true); // +32 LBA of the other header
  // +40 first usable LBA, +48 last usable LBA (not needed: entries are checked against the image)
  const diskGuid = formatGuid(bytes.subarray(56, 72)); // +56 disk GUID
  const entriesLba = header.getBigUint64(72, true); // +72 LBA of the partition entry array
  const entryCount = header.getUint32(80, true); // +80 number of entries
  const entrySize = header.getUint32(84, true); // +84 size of one entry
  const entriesCrc = header.getUint32(88, true); // +88 CRC-32 of the entry array
  const rejected = (reason: string): GptRejection => ({ reason, alternateLba });

  if (myLba !== lba) return rejected(`it says it is at lba ${myLba}, but it was read at lba ${lba}`);
  if (entrySize < GPT_ENTRY_MIN_SIZE || entrySize % GPT_ENTRY_SIZE_ALIGN !== 0) {
    return rejected(`partition entry size ${entrySize} is not a multiple of ${GPT_ENTRY_SIZE_ALIGN} of at least ${GPT_ENTRY_MIN_SIZE}`);
  }
  const arrayBytes = entryCount * entrySize;
  if (entryCount > GPT_MAX_ENTRIES || arrayBytes > GPT_MAX_ARRAY_BYTES) {
    return rejected(`${entryCount} partition entries of ${entrySize} bytes exceed the limit of ${GPT_MAX_ENTRIES} entries and ${formatSize(GPT_MAX_ARRAY_BYTES)}`);
  }
  const arrayStart = safeBytes(entriesLba, sectorSize);
  if (arrayStart === undefined || arrayStart + arrayBytes > source.size) {
    return rejected(`its partition entry array at lba ${entriesLba} (${arrayBytes} bytes) runs past the end of the image (${source.size} bytes)`);
  }
  const entries = await readExact(source, arrayStart, arrayBytes, 'the GPT partition entry array');
  const computedEntriesCrc = crc32(entries);
  if (entriesCrc !== computedEntriesCrc) {
    return rejected(`partition entry array crc-32 is ${hex32(entriesCrc)}, the array gives ${hex32(computedEntriesCrc)}`);
  }
  return { alternateLba, diskGuid, entries, entryCount, entrySize };
}

function gptTable(source: Source, header: GptHeader, sectorSize: number): PartitionTable {
  const view = viewOf(header.entries);
  const nameDecoder = new TextDecoder('utf-16le');
  const partitions: Partition[] = [];
  for (let index = 0; index < header.entryCount; index++) {
    const at = index * header.entrySize;
    const typeGuid = header.entries.subarray(at, at + 16); // +0 partition type GUID
    if (typeGuid.every((byte) => byte === 0)) continue; // an unused entry
    const number = index + 1;
    const uniqueGuid = header.entries.subarray(at + 16, at + 32); // +16 unique partition GUID
    const firstLba = view.getBigUint64(at + 32, true); // +32 first LBA
    const lastLba = view.getBigUint64(at + 40, true); // +40 last LBA, inclusive
    // +48 attributes (not needed to locate the partition)
    const rawName = nameDecoder.decode(header.entries.subarray(at + GPT_NAME_OFFSET, at + GPT_NAME_OFFSET + GPT_NAME_BYTES)); // +56 name
    if (lastLba < firstLba) {
      throw fail('DISK_GPT_BAD_ENTRY', number, `last lba ${lastLba} is before first lba ${firstLba}`);
    }
    const endBytes = safeBytes(lastLba + 1n, sectorSize);
    if (endBytes === undefined) {
      throw fail('DISK_GPT_BAD_ENTRY', number, `lbas ${firstLba}–${lastLba} of ${sectorSize}-byte sectors lie beyond 2^53 bytes`);
    }
    const partition = makePartition(source, number, Number(firstLba), Number(lastLba - firstLba + 1n), sectorSize, formatGuid(typeGuid));
    const nul = rawName.indexOf('\0');
    const name = nul === -1 ? rawName : rawName.slice(0, nul);
    if (name !== '') partition.name = name;
    partition.guid = formatGuid(uniqueGuid);
    partitions.push(partition);
  }
  return { scheme: 'gpt', sectorSize, partitions, diskGuid: header.diskGuid };
}

/** GUIDs are stored mixed-endian: the first three fields little-endian, the last eight bytes as is. */
function formatGuid(bytes: Uint8Array): string {
  const hex = (from: number, to: number, reverse: boolean): string => {
    const part = Array.from(bytes.subarray(from, to), (b) => b.toString(16).padStart(2, '0'));
    return (reverse ? part.reverse() : part).join('');
  };
  return [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)].join('-');
}

// ---------------------------------------------------------------------------------------------
// shared

/** Builds a partition after checking that it lies inside the image. */
function makePartition(
  source: Source,
  number: number,
  firstLba: number,
  sectorCount: number,
  sectorSize: number,
  type: string,
): Partition {
  const start = firstLba * sectorSize;
  const size = sectorCount * sectorSize;
  // Both are below 2^53 here: MBR values are 32-bit, and GPT values were checked by safeBytes.
  if (start + size > source.size) throw fail('DISK_PARTITION_PAST_END', number, start, start + size, source.size);
  return { number, start, size, type };
}

/** `lba * sectorSize` as a number, or undefined when it does not fit a safe integer. */
function safeBytes(lba: bigint, sectorSize: number): number | undefined {
  const bytes = lba * BigInt(sectorSize);
  return bytes <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(bytes) : undefined;
}

function checkSectorSize(sectorSize: number): void {
  const powerOfTwo = Number.isInteger(sectorSize) && (sectorSize & (sectorSize - 1)) === 0;
  if (!powerOfTwo || sectorSize < SECTOR_SIZE_MIN || sectorSize > SECTOR_SIZE_MAX) {
    throw fail('BAD_ARGUMENT', `sector size ${sectorSize} must be a power of two from ${SECTOR_SIZE_MIN} to ${SECTOR_SIZE_MAX}`);
  }
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Reads bytes the caller has already checked lie inside the source; a short read means it shrank. */
async function readExact(source: Source, offset: number, length: number, what: string): Promise<Uint8Array> {
  const bytes = await source.read(offset, length);
  if (bytes.length !== length) throw fail('OUT_OF_RANGE', what, offset, length, bytes.length + offset);
  return bytes;
}
