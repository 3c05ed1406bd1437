import { parentPort } from 'node:worker_threads';
import { crc32 } from '../crc/crc32.js';
import { deflateChunk, ownedBytes, type ChunkOptions } from './chunk.js';

export interface CompressJob {
  id: number;
  data: Uint8Array;
  options: ChunkOptions;
}
export interface CompressResult {
  id: number;
  /** The input, handed back so the writer can reuse its buffer. */
  data: Uint8Array;
  compressed?: Uint8Array;
  crc?: number;
  error?: string;
}

parentPort!.on('message', (job: CompressJob) => {
  try {
    const compressed = ownedBytes(deflateChunk(job.data, job.options));
    const reply: CompressResult = { id: job.id, data: job.data, compressed, crc: crc32(job.data) };
    parentPort!.postMessage(reply, [compressed.buffer as ArrayBuffer, job.data.buffer as ArrayBuffer]);
  } catch (error) {
    parentPort!.postMessage({ id: job.id, data: job.data, error: (error as Error).message } satisfies CompressResult, [job.data.buffer as ArrayBuffer]);
  }
});
