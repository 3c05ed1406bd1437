/**
 * Cursors for the small binary structures seekz reads and writes (gzip headers, the seekz map,
 * journals). Reading past the end calls `onTruncated`, so each format reports its own error.
 */
export class ByteReader {
  private readonly view: DataView;
  offset = 0;
  constructor(
    readonly bytes: Uint8Array,
    private readonly onTruncated: (what: string, offset: number) => Error,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get remaining(): number {
    return this.bytes.length - this.offset;
  }
  private need(count: number, what: string): number {
    if (this.offset + count > this.bytes.length) throw this.onTruncated(what, this.offset);
    const at = this.offset;
    this.offset += count;
    return at;
  }
  u8(what: string): number {
    return this.view.getUint8(this.need(1, what));
  }
  u16le(what: string): number {
    return this.view.getUint16(this.need(2, what), true);
  }
  u32le(what: string): number {
    return this.view.getUint32(this.need(4, what), true);
  }
  /** A little-endian u64 that must fit a safe integer; larger values are reported as truncation of sense. */
  u64le(what: string): number {
    const at = this.need(8, what);
    const value = this.view.getUint32(at, true) + this.view.getUint32(at + 4, true) * 2 ** 32;
    if (!Number.isSafeInteger(value)) throw this.onTruncated(`${what} (value above 2^53)`, at);
    return value;
  }
  u32be(what: string): number {
    return this.view.getUint32(this.need(4, what), false);
  }
  /** A big-endian u64 as [high, low] 32-bit halves, for fields that may hold 2^64 - 1. */
  u64beParts(what: string): [number, number] {
    const at = this.need(8, what);
    return [this.view.getUint32(at, false), this.view.getUint32(at + 4, false)];
  }
  bytesOf(count: number, what: string): Uint8Array {
    const at = this.need(count, what);
    return this.bytes.subarray(at, at + count);
  }
  /** Unsigned LEB128, at most 8 groups (56 bits) and never above 2^53. */
  varint(what: string): number {
    let value = 0;
    let scale = 1;
    for (let group = 0; group < 8; group++) {
      const byte = this.u8(what);
      value += (byte & 0x7f) * scale;
      if (!Number.isSafeInteger(value)) break;
      if ((byte & 0x80) === 0) return value;
      scale *= 128;
    }
    throw this.onTruncated(`${what} (varint longer than 53 bits)`, this.offset);
  }
}

export class ByteWriter {
  private buffer = new Uint8Array(64);
  length = 0;
  private ensure(count: number): number {
    if (this.length + count > this.buffer.length) {
      const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + count));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    const at = this.length;
    this.length += count;
    return at;
  }
  u8(value: number): this {
    const at = this.ensure(1);
    this.buffer[at] = value;
    return this;
  }
  u16le(value: number): this {
    const at = this.ensure(2);
    this.buffer[at] = value & 0xff;
    this.buffer[at + 1] = (value >>> 8) & 0xff;
    return this;
  }
  u32le(value: number): this {
    const at = this.ensure(4);
    new DataView(this.buffer.buffer).setUint32(at, value >>> 0, true);
    return this;
  }
  u64le(value: number): this {
    this.u32le(value % 2 ** 32);
    return this.u32le(Math.floor(value / 2 ** 32));
  }
  bytes(data: Uint8Array): this {
    const at = this.ensure(data.length); // before reading this.buffer: ensure may replace it
    this.buffer.set(data, at);
    return this;
  }
  varint(value: number): this {
    let rest = value;
    while (rest >= 0x80) {
      this.u8((rest % 128) | 0x80);
      rest = Math.floor(rest / 128);
    }
    return this.u8(rest);
  }
  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

export function varintLength(value: number): number {
  let count = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 128)) count++;
  return count;
}
