/**
 * Jobs that run without a worker thread: on the calling thread, with their heavy part inside the
 * seekz addons as async work on libuv's thread pool. A worker thread costs ~25 ms of start-up,
 * ~30 ms of CPU and ~10 MiB of memory, and loads its own copy of the codecs; a 4 KiB read or a
 * 256 MiB decompression pays that more than once. A job kind is listed here only when its codec
 * has an async native path: Node's own zlib for deflate (always), an addon for the others, whose
 * loader gives undefined when the addon is not built (SEEKZ_NATIVE=0); the pool then runs the kind
 * on worker threads.
 *
 * A runner gets the job as the caller made it (nothing is copied or transferred: the caller has
 * given up its buffers, as with a worker) and the pool's stop flag, which the native code checks
 * between slices, so a signal still stops a job within one slice.
 */
import { runDeflate, type DeflateJob, type Done, type Job } from './jobs.js';

export interface InProcessRunner {
  (job: Job, stop: Int32Array): Promise<Done<unknown>>;
  /**
   * Whether the job touches nothing but its own buffers (no file, no shared state): a pool that
   * stops for a signal need not wait for such a job, and drops its result whenever it comes.
   */
  detached?: (job: Job) => boolean;
}

const deflateRunner: InProcessRunner = Object.assign((job: Job) => runDeflate(job as DeflateJob), { detached: () => true });
const zstd = () => import('../zstd/codec.js').then((codec) => codec.zstdRunner());
const xz = () => import('../xz/block-codec.js').then((codec) => codec.xzRunner());

const loaders: { [K in Job['kind']]?: () => Promise<InProcessRunner | undefined> } = {
  deflate: async () => deflateRunner,
  'zstd-decode': zstd,
  'zstd-decode-batch': zstd,
  'zstd-encode-run': zstd,
  'xz-decode': xz,
  'xz-encode': xz,
};

const loaded = new Map<Job['kind'], InProcessRunner | undefined>();

/** The kind's in-process runner, if it has one and the addon is built: a promise only the first time. */
export function inProcessRunner(kind: Job['kind']): InProcessRunner | undefined | Promise<InProcessRunner | undefined> {
  if (loaded.has(kind)) return loaded.get(kind);
  const load = loaders[kind];
  if (!load) {
    loaded.set(kind, undefined);
    return undefined;
  }
  return load().then((runner) => {
    loaded.set(kind, runner);
    return runner;
  });
}

/** Whether jobs of `kind` run in process: then no worker takes a core, and the caller leaves its own to them. */
export async function runsInProcess(kind: Job['kind']): Promise<boolean> {
  return (await inProcessRunner(kind)) !== undefined;
}
