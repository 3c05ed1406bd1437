/**
 * NBD request streams against `seekz serve FILE --unix SOCK --readonly`: after a correct
 * handshake (fixed newstyle, NBD_OPT_EXPORT_NAME, no zeroes), a case pipelines a few requests,
 * some valid reads and some broken on purpose (bad magic, unknown commands and flags, huge and
 * zero lengths, offsets past the end, writes to a read-only export, truncated requests, a
 * disconnect mid-request). Then a fresh connection must still read the right bytes.
 *
 * Verdicts: crash (the server exited), hang (no reply, or the probe stalls), wrong (a read that
 * succeeds with bytes other than the original's, or a request that cannot succeed answered with
 * success), exact otherwise. The protocol is NetworkBlockDevice/nbd doc/proto.md; the constants
 * are written out here so the test does not lean on the code under test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Random } from './random.js';
import { distCli, oneLine, RSS_LIMIT, type Verdict } from './run.js';

const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const IHAVEOPT = 0x49484156454f5054n;
const OPT_EXPORT_NAME = 1;
const CLIENT_FLAGS = 0b11; // FIXED_NEWSTYLE | NO_ZEROES
const CMD = { read: 0, write: 1, disc: 2, flush: 3 } as const;

/** A connection that reads exact byte counts, with a deadline. */
class Connection {
  private buffered = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  closed = false;
  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.wake?.();
    });
    const end = () => {
      this.closed = true;
      this.wake?.();
    };
    socket.on('close', end).on('error', end);
  }
  /** `length` bytes, or 'closed' when the server hung up first, or 'timeout'. */
  async read(length: number, deadline: number): Promise<Buffer | 'closed' | 'timeout'> {
    while (this.buffered.length < length) {
      if (this.closed) return 'closed';
      const left = deadline - Date.now();
      if (left <= 0) return 'timeout';
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.wake = undefined;
    }
    const out = this.buffered.subarray(0, length);
    this.buffered = this.buffered.subarray(length);
    return out;
  }
  write(bytes: Uint8Array): void {
    if (!this.closed) this.socket.write(bytes);
  }
  destroy(): void {
    this.socket.destroy();
  }
}

async function connect(socketPath: string, deadline: number): Promise<{ connection: Connection; size: number } | string> {
  const socket = createConnection(socketPath);
  const connection = new Connection(socket);
  const greeting = await connection.read(18, deadline);
  if (!Buffer.isBuffer(greeting)) return `handshake: ${greeting}`;
  const option = Buffer.alloc(4 + 8 + 4 + 4);
  option.writeUInt32BE(CLIENT_FLAGS, 0);
  option.writeBigUInt64BE(IHAVEOPT, 4);
  option.writeUInt32BE(OPT_EXPORT_NAME, 12);
  option.writeUInt32BE(0, 16); // export name ''
  connection.write(option);
  const export_ = await connection.read(10, deadline);
  if (!Buffer.isBuffer(export_)) return `export name: ${export_}`;
  return { connection, size: Number(export_.readBigUInt64BE(0)) };
}

function request(type: number, handle: number, offset: number, length: number, options: { flags?: number; magic?: number } = {}): Buffer {
  const out = Buffer.alloc(28);
  out.writeUInt32BE(options.magic ?? REQUEST_MAGIC, 0);
  out.writeUInt16BE(options.flags ?? 0, 4);
  out.writeUInt16BE(type, 6);
  out.writeBigUInt64BE(BigInt(handle), 8);
  out.writeBigUInt64BE(BigInt(offset), 16);
  out.writeUInt32BE(length >>> 0, 24);
  return out;
}

interface Sent {
  kind: string;
  handle: number;
  type: number;
  offset: number;
  length: number;
  /** Success would be wrong: past the end, a write to a read-only export, an unknown command. */
  mustFail: boolean;
}

export interface NbdServer {
  child: ChildProcess;
  socket: string;
  stderr: string;
  exited: boolean;
}

/** `seekz serve PATH --unix DIR/NAME.sock --readonly`, resolved once it says where it listens. */
export async function startServer(path: string, name: string, dir: string, timeoutMs: number): Promise<NbdServer> {
  const socket = join(dir, `${name}.sock`);
  const child = spawn(process.execPath, [distCli('seekz'), 'serve', path, '--unix', socket, '--readonly'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const server: NbdServer = { child, socket, stderr: '', exited: false };
  child.on('exit', () => (server.exited = true));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`seekz serve ${name} did not start in ${timeoutMs} ms: ${server.stderr}`)), timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      server.stderr += text;
      if (server.stderr.includes(' at nbd+unix://')) clearTimeout(timer), resolve();
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`seekz serve ${name} exited (${signal ?? code}): ${server.stderr.trim()}`), { stderr: server.stderr, code, signal }));
    });
  });
  return server;
}

/** One read through a fresh connection: the bytes, or why there are none. */
export async function nbdRead(server: NbdServer, offset: number, length: number, timeoutMs: number): Promise<Buffer | string> {
  const deadline = Date.now() + timeoutMs;
  const opened = await connect(server.socket, deadline);
  if (typeof opened === 'string') return opened;
  opened.connection.write(request(CMD.read, 1, offset, length));
  const header = await opened.connection.read(16, deadline);
  const result = !Buffer.isBuffer(header) ? header : header.readUInt32BE(4) !== 0 ? `error ${header.readUInt32BE(4)}` : await opened.connection.read(length, deadline);
  opened.connection.destroy();
  return Buffer.isBuffer(result) ? Buffer.from(result) : `read: ${result}`;
}

export function serverPeakRss(server: NbdServer): number {
  try {
    return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1]) * 1024;
  } catch {
    return 0;
  }
}

export async function runNbdCase(server: NbdServer, original: Uint8Array, random: Random, timeoutMs: number): Promise<{ verdict: Verdict; why: string; plan: string }> {
  const deadline = Date.now() + timeoutMs;
  const opened = await connect(server.socket, deadline);
  if (typeof opened === 'string') return { verdict: server.exited ? 'crash' : 'hang', why: opened, plan: 'handshake' };
  const { connection, size } = opened;
  if (size !== original.length) return { verdict: 'wrong', why: `export size ${size}, the data has ${original.length}`, plan: 'handshake' };

  const sent: Sent[] = [];
  let ended = false; // after a protocol violation or a hang-up no more requests go out
  let last = '';
  const count = random.between(1, 6);
  for (let handle = 1; handle <= count && !ended; handle++) {
    const kind = random.weighted({ read: 5, 'bad-magic': 1, 'unknown-command': 1, 'unknown-flags': 1, 'huge-length': 1, 'zero-length': 1, 'past-end': 1, write: 1, truncated: 1, disconnect: 1, disc: 1 });
    const offset = random.int(size);
    const length = random.between(1, Math.min(64 * 1024, size - offset));
    if (kind === 'read') sent.push({ kind, handle, type: CMD.read, offset, length, mustFail: false });
    else if (kind === 'unknown-flags') sent.push({ kind, handle, type: CMD.read, offset, length, mustFail: false });
    else if (kind === 'unknown-command') sent.push({ kind, handle, type: random.pick([8, 9, 15, 0xff, 0xffff]), offset, length, mustFail: true });
    else if (kind === 'huge-length') sent.push({ kind, handle, type: CMD.read, offset: random.int(2), length: random.pick([0xffffffff, 2 ** 31, 33 * 2 ** 20]), mustFail: true });
    else if (kind === 'zero-length') sent.push({ kind, handle, type: CMD.read, offset, length: 0, mustFail: false });
    else if (kind === 'past-end') {
      const start = random.chance(0.5) ? size + random.int(1 << 20) : random.chance(0.5) ? 2 ** 63 - 1 : size - random.int(16);
      sent.push({ kind, handle, type: CMD.read, offset: start, length: random.between(17, 4096), mustFail: true });
    } else if (kind === 'write') sent.push({ kind, handle, type: CMD.write, offset, length: Math.min(length, 512), mustFail: true });
    const queued = sent[sent.length - 1];
    if (queued?.handle === handle) {
      const flags = kind === 'unknown-flags' ? random.pick([1 << 5, 1 << 7, 1 << 15, 0xffff]) : 0;
      connection.write(request(queued.type, handle, queued.offset, queued.length, { flags }));
      if (queued.type === CMD.write) connection.write(random.bytes(queued.length));
      continue;
    }
    ended = true;
    last = `,${kind}`;
    if (kind === 'bad-magic') connection.write(request(CMD.read, handle, offset, length, { magic: random.int(2 ** 32) }));
    if (kind === 'truncated') connection.write(request(CMD.read, handle, offset, length).subarray(0, random.between(1, 27)));
    if (kind === 'disconnect') connection.write(request(CMD.read, handle, offset, length));
    if (kind === 'disc') connection.write(request(CMD.disc, handle, 0, 0));
    if (kind !== 'bad-magic') connection.socket.end();
    if (kind === 'disconnect') connection.destroy();
  }
  const plan = sent.map((request) => `${request.kind}@${request.offset}+${request.length}`).join(',') + last;

  let verdict: Verdict = 'exact';
  let why = '';
  const outstanding = new Map(sent.map((request) => [request.handle, request]));
  while (outstanding.size > 0 && verdict === 'exact') {
    const header = await connection.read(16, deadline);
    if (header === 'timeout') [verdict, why] = ['hang', `no reply to ${[...outstanding.values()].map((request) => request.kind).join(',')}`];
    if (!Buffer.isBuffer(header)) break; // closed: allowed after a violation, and judged by the probe below
    const magic = header.readUInt32BE(0);
    const error = header.readUInt32BE(4);
    const handle = Number(header.readBigUInt64BE(8));
    const request = outstanding.get(handle);
    if (magic !== SIMPLE_REPLY_MAGIC || !request) {
      [verdict, why] = ['wrong', `reply with magic ${magic.toString(16)} and handle ${handle}`];
      break;
    }
    outstanding.delete(handle);
    if (error !== 0) continue;
    if (request.mustFail) {
      [verdict, why] = ['wrong', `${request.kind} request (type ${request.type}, offset ${request.offset}, length ${request.length}) answered with success`];
      break;
    }
    if (request.type !== CMD.read) continue;
    const data = await connection.read(request.length, deadline);
    if (data === 'timeout') [verdict, why] = ['hang', `read reply data for ${request.kind} never came`];
    else if (data === 'closed') [verdict, why] = ['wrong', `read reply cut short for ${request.kind}`];
    else if (Buffer.compare(data, original.subarray(request.offset, request.offset + request.length)) !== 0) {
      [verdict, why] = ['wrong', `read ${request.offset}+${request.length} returned other bytes than the original`];
    }
  }
  connection.destroy();

  // The server must live on and answer a fresh client correctly.
  if (verdict === 'exact') {
    const probe = await connect(server.socket, Date.now() + timeoutMs);
    if (typeof probe === 'string') return { verdict: server.exited ? 'crash' : 'hang', why: `probe: ${probe}; server stderr: ${oneLine(server.stderr.split('\n').slice(-2).join(' '))}`, plan };
    const offset = random.int(size);
    const length = Math.min(4096, size - offset);
    probe.connection.write(request(CMD.read, 99, offset, length));
    const header = await probe.connection.read(16, Date.now() + timeoutMs);
    const error = Buffer.isBuffer(header) ? header.readUInt32BE(4) : 0;
    const data = Buffer.isBuffer(header) && error === 0 ? await probe.connection.read(length, Date.now() + timeoutMs) : header;
    probe.connection.destroy();
    if (!Buffer.isBuffer(data)) return { verdict: server.exited ? 'crash' : 'hang', why: `probe read: ${data}`, plan };
    if (error !== 0) [verdict, why] = ['clean-error', `probe read of the intact export failed with error ${error}`];
    else if (Buffer.compare(data, original.subarray(offset, offset + length)) !== 0) return { verdict: 'wrong', why: 'probe read gave other bytes', plan };
  }
  if (server.exited) return { verdict: 'crash', why: `server exited: ${oneLine(server.stderr.split('\n').slice(-3).join(' '))}`, plan };
  if (serverPeakRss(server) > RSS_LIMIT) return { verdict: 'over-rss', why: `server peak RSS ${serverPeakRss(server) >> 20} MiB`, plan };
  return { verdict, why, plan };
}
