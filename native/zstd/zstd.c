/*
 * seekz_zstd: frame-level zstd over Debian's libzstd, as a Node-API addon (src/native/zstd.ts
 * loads it). The synchronous calls are for worker threads (one frame in, one frame out; each
 * thread that loads the addon gets its own contexts, instance data, reused across calls). The two
 * *Async calls run on libuv's thread pool (src/zstd/codec.ts runs seekz's zstd jobs with them on
 * the main thread, no worker thread started): their contexts come from a process-wide free list
 * under a mutex, so memory follows the jobs in flight, not the threads that ever ran one.
 *   compress(data, level)            -> ArrayBuffer: one frame with content size and checksum
 *   decompress(frame, expectedSize)  -> [Buffer, size]: room for expectedSize + 1 bytes, so a
 *                                       frame that decodes to more shows; checksum verified
 *   streamCreate()                   -> handle for a stream of frames of unknown size
 *   streamPush(handle, input)        -> [Uint8Array[], status]: output so far (checksums verified
 *                                       by libzstd); status 0 when the input ended on a frame end
 *   decompressInto(frame, out)       -> size: decodes into `out` (a Uint8Array the caller reuses, so
 *                                       no fresh pages are faulted in per frame); checksum verified
 *   xxh64Low32(data)                 -> uint32: zstd's checksum of data (xxh64.c)
 *   compressBound(size)              -> the most one frame of `size` bytes can take
 *   compressRunAsync(data, frames, level, output, sizes, stop)
 *                                    -> Promise<boolean>: frames is [start, length] per frame in
 *                                       `data`; each compressed as compress() does, packed one
 *                                       after another into `output` (room: the sum of their
 *                                       bounds), its size in sizes[i]; false when `stop` was set
 *   decompressBatchAsync(bytes, out, frames, stop[, checks, fd, position])
 *                                    -> Promise<[done, size, error, stopped, writeErrno]>: frames
 *                                       is [start, compressedSize, expectedSize] per frame; each
 *                                       decodes into `out` right after the one before (room:
 *                                       expectedSize + 1), checksum verified, until one fails
 *                                       (error: libzstd's name for it; or size: what it gave) or
 *                                       `stop` is set; done counts the frames that gave their size.
 *                                       With `checks` (one per frame: -1 nothing more, -2 the seek
 *                                       table's checksum is known wrong, else the table's checksum
 *                                       of a frame without one of its own, held against XXH64 of
 *                                       its data here) every frame decodes at the start of `out`
 *                                       (room: the largest expectedSize + 1), and once it passed
 *                                       every check it goes to `fd` (unless -1) at `position` + the
 *                                       sizes before it, whole zero 4 KiB blocks left as holes: the
 *                                       bytes are copied to the page cache while still in this
 *                                       core's cache, and no buffer of the run's size is touched.
 *                                       done then counts the frames checked (and written); frame
 *                                       `done` failed a check with its `size` bytes left in `out`,
 *                                       or its write failed with writeErrno
 *
 * Invariant of the async calls: their buffers stay referenced (napi_ref) until the work completes,
 * and `stop` (an Int32Array over a SharedArrayBuffer) is read between frames and, above level 12,
 * between slices of one frame, so a signal stops a job within a slice. A sliced frame is byte for
 * byte the frame compress() makes (pinned by test/zstd.test.ts, "identical for any -T", and
 * test/zstd-async.test.ts).
 */
#include <errno.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* For ZSTD_c_stableInBuffer, a parameter value only: no experimental function is called. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

typedef struct {
  ZSTD_CCtx *cctx;
  ZSTD_DCtx *dctx;
  void *scratch;
  size_t scratchSize;
} Contexts;

#define CALL(env, call)                                           \
  do {                                                            \
    if ((call) != napi_ok) {                                      \
      napi_throw_error((env), NULL, "seekz_zstd: " #call " failed"); \
      return NULL;                                                \
    }                                                             \
  } while (0)

static void freeContexts(napi_env env, void *data, void *hint) {
  Contexts *contexts = data;
  ZSTD_freeCCtx(contexts->cctx);
  ZSTD_freeDCtx(contexts->dctx);
  free(contexts->scratch);
  free(contexts);
}

static Contexts *contextsOf(napi_env env) {
  Contexts *contexts = NULL;
  napi_get_instance_data(env, (void **)&contexts);
  return contexts;
}

static int bytesOf(napi_env env, napi_value value, void **data, size_t *length) {
  bool is;
  napi_is_typedarray(env, value, &is);
  if (is) {
    napi_typedarray_type type;
    napi_value buffer;
    size_t offset;
    if (napi_get_typedarray_info(env, value, &type, length, data, &buffer, &offset) != napi_ok || type != napi_uint8_array) return 0;
    return 1;
  }
  napi_is_arraybuffer(env, value, &is);
  if (is) return napi_get_arraybuffer_info(env, value, data, length) == napi_ok;
  return 0;
}

static napi_value throwZstd(napi_env env, const char *code, size_t result) {
  napi_throw_error(env, code, ZSTD_getErrorName(result));
  return NULL;
}

/* The (bytes, number) arguments both calls take; false (with a TypeError thrown) when they are not. */
static int bytesAndNumber(napi_env env, napi_callback_info info, void **data, size_t *length, double *number, const char *usage) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !bytesOf(env, argv[0], data, length) ||
      napi_get_value_double(env, argv[1], number) != napi_ok || *number < 0) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

/* Frames above this level (a few MB/s) are compressed in slices of this many bytes when a stop flag is given. */
#define SLICED_LEVEL 12
#define SLICE (256 << 10)

static int stopped(const int32_t *stop) { return stop && __atomic_load_n(stop, __ATOMIC_RELAXED) != 0; }

/*
 * One frame of `length` bytes at `level`, with content size and checksum, into dst: its size, a
 * zstd error code, or 0 when `stop` was set (no frame is 0 bytes). With a stop flag and a slow
 * level the input goes in SLICE-byte steps through the same context, the flag read between them;
 * the pledged size and the stable input make it the frame ZSTD_compress2 gives in one step.
 */
static size_t compressFrame(ZSTD_CCtx *cctx, int level, const void *src, size_t length, void *dst, size_t capacity, const int32_t *stop) {
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  if (!stop || level <= SLICED_LEVEL || length <= SLICE) return ZSTD_compress2(cctx, dst, capacity, src, length);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_stableInBuffer, 1);
  ZSTD_CCtx_setPledgedSrcSize(cctx, length);
  ZSTD_inBuffer in = {src, 0, 0};
  ZSTD_outBuffer out = {dst, capacity, 0};
  for (;;) {
    if (stopped(stop)) return 0;
    in.size = length - in.size > SLICE ? in.size + SLICE : length;
    ZSTD_EndDirective end = in.size == length ? ZSTD_e_end : ZSTD_e_continue;
    size_t left = ZSTD_compressStream2(cctx, &out, &in, end);
    if (ZSTD_isError(left)) return left;
    if (end == ZSTD_e_end && left == 0) return out.pos;
  }
}

static napi_value compress(napi_env env, napi_callback_info info) {
  void *data;
  size_t length;
  double levelNumber;
  if (!bytesAndNumber(env, info, &data, &length, &levelNumber, "compress(data: Uint8Array, level: number)")) return NULL;
  int level = (int)levelNumber;
  Contexts *contexts = contextsOf(env);
  size_t bound = ZSTD_compressBound(length);
  if (contexts->scratchSize < bound) {
    free(contexts->scratch);
    contexts->scratch = malloc(bound);
    contexts->scratchSize = contexts->scratch ? bound : 0;
    if (!contexts->scratch) {
      napi_throw_error(env, NULL, "seekz_zstd: out of memory");
      return NULL;
    }
  }
  size_t written = compressFrame(contexts->cctx, level, data, length, contexts->scratch, bound, NULL);
  if (ZSTD_isError(written)) return throwZstd(env, "ZSTD_COMPRESS", written);
  void *out;
  napi_value result;
  CALL(env, napi_create_arraybuffer(env, written, &out, &result));
  memcpy(out, contexts->scratch, written);
  return result;
}

static napi_value decompress(napi_env env, napi_callback_info info) {
  void *data;
  size_t length;
  double expected;
  if (!bytesAndNumber(env, info, &data, &length, &expected, "decompress(frame: Uint8Array, expectedSize: number)")) return NULL;
  Contexts *contexts = contextsOf(env);
  void *out;
  napi_value result;
  // One byte more than expected: a frame that decodes to more is caught, not cut short. A Buffer,
  // not an ArrayBuffer: its memory is not zero-filled first (the decoder writes every byte kept).
  CALL(env, napi_create_buffer(env, (size_t)expected + 1, &out, &result));
  size_t got = ZSTD_decompressDCtx(contexts->dctx, out, (size_t)expected + 1, data, length);
  if (ZSTD_isError(got)) return throwZstd(env, "ZSTD_DECOMPRESS", got);
  napi_value size;
  CALL(env, napi_create_double(env, (double)got, &size));
  napi_value pair;
  CALL(env, napi_create_array_with_length(env, 2, &pair));
  napi_set_element(env, pair, 0, result);
  napi_set_element(env, pair, 1, size);
  return pair;
}

static napi_value decompressInto(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  void *data, *out;
  size_t length, room;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !bytesOf(env, argv[0], &data, &length) ||
      !bytesOf(env, argv[1], &out, &room)) {
    napi_throw_type_error(env, NULL, "decompressInto(frame: Uint8Array, out: Uint8Array)");
    return NULL;
  }
  size_t got = ZSTD_decompressDCtx(contextsOf(env)->dctx, out, room, data, length);
  if (ZSTD_isError(got)) return throwZstd(env, "ZSTD_DECOMPRESS", got);
  napi_value size;
  CALL(env, napi_create_double(env, (double)got, &size));
  return size;
}

static void freeStream(napi_env env, void *data, void *hint) { ZSTD_freeDStream(data); }

static napi_value streamCreate(napi_env env, napi_callback_info info) {
  ZSTD_DStream *stream = ZSTD_createDStream();
  if (!stream) {
    napi_throw_error(env, NULL, "seekz_zstd: out of memory");
    return NULL;
  }
  ZSTD_initDStream(stream);
  napi_value handle;
  CALL(env, napi_create_external(env, stream, freeStream, NULL, &handle));
  return handle;
}

/* Pushes input; returns [chunks, lastResult]: lastResult 0 means a frame just ended. */
static napi_value streamPush(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ZSTD_DStream *stream;
  void *data;
  size_t length;
  if (argc < 2 || napi_get_value_external(env, argv[0], (void **)&stream) != napi_ok || !bytesOf(env, argv[1], &data, &length)) {
    napi_throw_type_error(env, NULL, "streamPush(handle, input: Uint8Array)");
    return NULL;
  }
  napi_value chunks;
  CALL(env, napi_create_array(env, &chunks));
  uint32_t count = 0;
  ZSTD_inBuffer in = {data, length, 0};
  size_t last = 1;
  size_t outSize = ZSTD_DStreamOutSize() * 8;
  for (;;) {
    void *out;
    napi_value buffer;
    CALL(env, napi_create_arraybuffer(env, outSize, &out, &buffer));
    ZSTD_outBuffer output = {out, outSize, 0};
    last = ZSTD_decompressStream(stream, &output, &in);
    if (ZSTD_isError(last)) return throwZstd(env, "ZSTD_DECOMPRESS", last);
    if (output.pos > 0) {
      napi_value view;
      CALL(env, napi_create_typedarray(env, napi_uint8_array, output.pos, buffer, 0, &view));
      napi_set_element(env, chunks, count++, view);
    }
    /* Done when the input is used up and either the output has room left (nothing more to flush)
     * or a frame just ended flushed (0): another call would start reading the next frame and
     * report its header's size as the status, as if this frame were cut short. */
    if (in.pos == in.size && (output.pos < output.size || last == 0)) break;
  }
  napi_value pair, status;
  CALL(env, napi_create_array_with_length(env, 2, &pair));
  CALL(env, napi_create_double(env, (double)last, &status));
  napi_set_element(env, pair, 0, chunks);
  napi_set_element(env, pair, 1, status);
  return pair;
}

static napi_value versionNumber(napi_env env, napi_callback_info info) {
  napi_value result;
  CALL(env, napi_create_uint32(env, ZSTD_versionNumber(), &result));
  return result;
}

/*
 * Contexts for the async calls: a process-wide free list under a mutex. A job takes one for its
 * run and gives it back; at most SPARE_MAX wait, so memory follows the jobs in flight (at most
 * libuv's pool size at once), and the pool's threads keep none of their own. A context above
 * SPARE_MAX_BYTES is freed after its job instead (-3 keeps 1.3 MiB; -19 on 1 MiB frames 17 MiB;
 * -22 on 4 MiB frames 65 MiB): a process that once compressed at a high level keeps no such memory.
 */
#define SPARE_MAX 16
#define SPARE_MAX_BYTES (32 << 20)
typedef struct {
  void *spare[SPARE_MAX];
  int count;
} FreeList;
static pthread_mutex_t spareLock = PTHREAD_MUTEX_INITIALIZER;
/* One decoding thread writes at a time: the kernel takes the file's inode lock for each buffered
 * write anyway, and a writer waiting for it spins on the CPU (rwsem_spin_on_owner) where one
 * waiting here sleeps. */
static pthread_mutex_t writeLock = PTHREAD_MUTEX_INITIALIZER;
static FreeList spareCCtx, spareDCtx;

/* A context left by an earlier job, or NULL (the caller creates one). */
static void *take(FreeList *list) {
  pthread_mutex_lock(&spareLock);
  void *context = list->count > 0 ? list->spare[--list->count] : NULL;
  pthread_mutex_unlock(&spareLock);
  return context;
}

/* Keeps `context` for a later job; false when SPARE_MAX already wait (the caller frees it). */
static int keep(FreeList *list, void *context) {
  pthread_mutex_lock(&spareLock);
  int kept = list->count < SPARE_MAX;
  if (kept) list->spare[list->count++] = context;
  pthread_mutex_unlock(&spareLock);
  return kept;
}

/* A typed array of `type` (its data and element count), or false. */
static int typedOf(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *count) {
  bool is;
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_is_typedarray(env, value, &is) != napi_ok || !is) return 0;
  return napi_get_typedarray_info(env, value, &type, count, data, &buffer, &offset) == napi_ok && type == want;
}

#define MAX_REFS 6

/* One async call: its arguments (kept referenced), its outcome, and the promise it settles. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref refs[MAX_REFS];
  int refCount;
  const int32_t *stop;
  /* Both calls: the frames (compress: start, length each; decompress: start, compressed size, expected size each). */
  const double *frames;
  size_t count;
  /* compressRunAsync */
  const uint8_t *data;
  int level;
  uint8_t *output;
  size_t outputLength;
  double *sizes;
  /* decompressBatchAsync */
  const uint8_t *bytes;
  uint8_t *out;
  size_t outLength;
  const double *checks; /* with checks: frames decode at out[0], are checked here, and go to fd */
  int fd;
  double position;
  int writeErrno;
  /* The outcome: frames done; the failing frame's size (decode) or a zstd error; stopped. */
  size_t done;
  size_t size;
  size_t error;
  int wasStopped;
} Work;

static void compressExecute(napi_env env, void *data) {
  (void)env;
  Work *work = data;
  ZSTD_CCtx *cctx = take(&spareCCtx);
  if (!cctx) cctx = ZSTD_createCCtx();
  if (!cctx) {
    work->error = (size_t)-ZSTD_error_memory_allocation;
    return;
  }
  size_t at = 0;
  for (; work->done < work->count; work->done++) {
    if (stopped(work->stop)) break;
    const double *frame = work->frames + 2 * work->done;
    size_t written = compressFrame(cctx, work->level, work->data + (size_t)frame[0], (size_t)frame[1], work->output + at, work->outputLength - at, work->stop);
    if (ZSTD_isError(written)) {
      work->error = written;
      break;
    }
    if (written == 0) break; /* stopped inside the frame */
    work->sizes[work->done] = (double)written;
    at += written;
  }
  work->wasStopped = work->done < work->count && !work->error;
  if (ZSTD_sizeof_CCtx(cctx) > SPARE_MAX_BYTES || !keep(&spareCCtx, cctx)) ZSTD_freeCCtx(cctx);
}

uint64_t seekzXxh64(const uint8_t *p, size_t length); /* xxh64.c */

/* Holes: whole zero blocks of this size (aligned to the file) are skipped, as zstd -d and xz -d do. */
#define HOLE_BLOCK 4096
static const uint8_t zeroBlock[HOLE_BLOCK];

/* pwrite until done: 0, or the errno of the write that failed (EIO for one that wrote nothing). */
static int writeAll(int fd, const uint8_t *bytes, size_t length, double at) {
  while (length > 0) {
    ssize_t written = pwrite(fd, bytes, length, (off_t)at);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return written < 0 ? errno : EIO;
    bytes += written;
    length -= (size_t)written;
    at += (double)written;
  }
  return 0;
}

/* Writes `length` bytes that belong at file offset `at` (where the file holds nothing yet), leaving whole zero HOLE_BLOCKs as holes. */
static int writeSparse(int fd, const uint8_t *bytes, size_t length, double at) {
  size_t from = 0; /* start of the data run not yet written */
  size_t cut = (size_t)((HOLE_BLOCK - (uint64_t)at % HOLE_BLOCK) % HOLE_BLOCK);
  for (; cut + HOLE_BLOCK <= length; cut += HOLE_BLOCK) {
    if (memcmp(bytes + cut, zeroBlock, HOLE_BLOCK) != 0) continue;
    if (cut > from) {
      int error = writeAll(fd, bytes + from, cut - from, at + (double)from);
      if (error) return error;
    }
    from = cut + HOLE_BLOCK;
  }
  return from < length ? writeAll(fd, bytes + from, length - from, at + (double)from) : 0;
}

static void decompressExecute(napi_env env, void *data) {
  (void)env;
  Work *work = data;
  ZSTD_DCtx *dctx = take(&spareDCtx);
  if (!dctx) dctx = ZSTD_createDCtx();
  if (!dctx) {
    work->error = (size_t)-ZSTD_error_memory_allocation;
    return;
  }
  size_t at = 0;
  for (; work->done < work->count; work->done++) {
    if (stopped(work->stop)) {
      work->wasStopped = 1;
      break;
    }
    const double *frame = work->frames + 3 * work->done;
    size_t expected = (size_t)frame[2];
    uint8_t *into = work->checks ? work->out : work->out + at;
    /* One byte more than expected: a frame that decodes to more is caught, not cut short. */
    size_t got = ZSTD_decompressDCtx(dctx, into, expected + 1, work->bytes + (size_t)frame[0], (size_t)frame[1]);
    if (ZSTD_isError(got)) {
      work->error = got;
      break;
    }
    if (got != expected) {
      work->size = got;
      break;
    }
    if (work->checks) {
      /* Nothing leaves before every check has passed; the caller names a failed one from `out`. */
      double check = work->checks[work->done];
      work->size = got;
      if (check == -2 || (check >= 0 && (double)(uint32_t)seekzXxh64(into, got) != check)) break;
      if (work->fd >= 0) {
        pthread_mutex_lock(&writeLock);
        work->writeErrno = writeSparse(work->fd, into, got, work->position + (double)at);
        pthread_mutex_unlock(&writeLock);
        if (work->writeErrno) break;
      }
    }
    at += expected;
  }
  if (ZSTD_sizeof_DCtx(dctx) > SPARE_MAX_BYTES || !keep(&spareDCtx, dctx)) ZSTD_freeDCtx(dctx);
}

static void complete(napi_env env, napi_status status, void *data) {
  Work *work = data;
  napi_value result = NULL, error = NULL;
  if (status != napi_ok) {
    napi_value message;
    napi_create_string_utf8(env, "seekz_zstd: the job was cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
  } else if (work->error) {
    napi_value code, message;
    napi_create_string_utf8(env, work->out ? "ZSTD_DECOMPRESS" : "ZSTD_COMPRESS", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, ZSTD_getErrorName(work->error), NAPI_AUTO_LENGTH, &message);
    /* A decode error is an outcome (the caller names the frame); a compress error is a failure. */
    if (work->out) {
      napi_value done, size, flag;
      napi_create_double(env, (double)work->done, &done);
      napi_get_undefined(env, &size);
      napi_get_boolean(env, false, &flag);
      napi_create_array_with_length(env, 4, &result);
      napi_set_element(env, result, 0, done);
      napi_set_element(env, result, 1, size);
      napi_set_element(env, result, 2, message);
      napi_set_element(env, result, 3, flag);
    } else {
      napi_create_error(env, code, message, &error);
    }
  } else if (work->out) {
    napi_value done, size, none, flag, writeErrno;
    napi_create_double(env, (double)work->done, &done);
    napi_create_double(env, (double)work->size, &size);
    napi_get_undefined(env, &none);
    napi_get_boolean(env, work->wasStopped, &flag);
    napi_create_int32(env, work->writeErrno, &writeErrno);
    napi_create_array_with_length(env, 5, &result);
    napi_set_element(env, result, 0, done);
    napi_set_element(env, result, 1, size);
    napi_set_element(env, result, 2, none);
    napi_set_element(env, result, 3, flag);
    napi_set_element(env, result, 4, writeErrno);
  } else {
    napi_get_boolean(env, !work->wasStopped, &result);
  }
  if (error) napi_reject_deferred(env, work->deferred, error);
  else napi_resolve_deferred(env, work->deferred, result);
  for (int at = 0; at < work->refCount; at++) napi_delete_reference(env, work->refs[at]);
  napi_delete_async_work(env, work->work);
  free(work);
}

/* Keeps argv[0..count) alive, then queues the work: its promise, or NULL with an exception pending. */
static napi_value queue(napi_env env, Work *work, napi_value *argv, int count, const char *name, napi_async_execute_callback execute) {
  napi_value promise, resource;
  for (; work->refCount < count; work->refCount++) {
    if (napi_create_reference(env, argv[work->refCount], 1, &work->refs[work->refCount]) != napi_ok) goto failed;
  }
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource) != napi_ok || napi_create_promise(env, &work->deferred, &promise) != napi_ok) goto failed;
  if (napi_create_async_work(env, NULL, resource, execute, complete, work, &work->work) != napi_ok) goto failed;
  if (napi_queue_async_work(env, work->work) != napi_ok) {
    napi_delete_async_work(env, work->work);
    goto failed;
  }
  return promise;
failed:
  /* A promise made before a failure is left unsettled: the call throws instead. */
  for (int at = 0; at < work->refCount; at++) napi_delete_reference(env, work->refs[at]);
  free(work);
  napi_throw_error(env, NULL, "seekz_zstd: queueing the work failed");
  return NULL;
}

static napi_value compressRunAsync(napi_env env, napi_callback_info info) {
  const char *usage = "compressRunAsync(data: Uint8Array, frames: Float64Array, level: number, output: Uint8Array, sizes: Float64Array, stop: Int32Array)";
  size_t argc = 6;
  napi_value argv[6];
  void *data, *frames, *output, *sizes, *stop;
  size_t dataLength, values, outputLength, sizeCount, stopCount;
  double level;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 || !typedOf(env, argv[0], napi_uint8_array, &data, &dataLength) ||
      !typedOf(env, argv[1], napi_float64_array, &frames, &values) || values % 2 != 0 || napi_get_value_double(env, argv[2], &level) != napi_ok ||
      !typedOf(env, argv[3], napi_uint8_array, &output, &outputLength) || !typedOf(env, argv[4], napi_float64_array, &sizes, &sizeCount) ||
      !typedOf(env, argv[5], napi_int32_array, &stop, &stopCount) || stopCount < 1 || sizeCount < values / 2) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  /* Every frame inside `data`, and room in `output` for all of them at their bound. */
  double room = 0;
  for (size_t at = 0; at < values; at += 2) {
    const double *frame = (const double *)frames + at;
    if (!(frame[0] >= 0 && frame[1] >= 0 && frame[0] + frame[1] <= (double)dataLength)) room = -1;
    if (room >= 0) room += (double)ZSTD_compressBound((size_t)frame[1]);
  }
  if (!(room >= 0 && room <= (double)outputLength)) {
    napi_throw_range_error(env, NULL, "compressRunAsync: a frame lies outside data, or output is too small");
    return NULL;
  }
  Work *work = calloc(1, sizeof *work);
  if (!work) {
    napi_throw_error(env, NULL, "seekz_zstd: out of memory");
    return NULL;
  }
  *work = (Work){.frames = frames, .count = values / 2, .data = data, .level = (int)level, .output = output, .outputLength = outputLength, .sizes = sizes, .stop = stop};
  napi_value kept[5] = {argv[0], argv[1], argv[3], argv[4], argv[5]};
  return queue(env, work, kept, 5, "seekz_zstd.compressRunAsync", compressExecute);
}

static napi_value decompressBatchAsync(napi_env env, napi_callback_info info) {
  const char *usage = "decompressBatchAsync(bytes: Uint8Array, out: Uint8Array, frames: Float64Array, stop: Int32Array[, checks: Float64Array, fd: number, position: number])";
  size_t argc = 7;
  napi_value argv[7];
  void *bytes, *out, *frames, *stop, *checks = NULL;
  size_t bytesLength, outLength, values, stopCount, checkCount = 0;
  int32_t fd = -1;
  double position = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 || !typedOf(env, argv[0], napi_uint8_array, &bytes, &bytesLength) ||
      !typedOf(env, argv[1], napi_uint8_array, &out, &outLength) || !typedOf(env, argv[2], napi_float64_array, &frames, &values) || values % 3 != 0 ||
      !typedOf(env, argv[3], napi_int32_array, &stop, &stopCount) || stopCount < 1 ||
      (argc > 4 && (argc < 7 || !typedOf(env, argv[4], napi_float64_array, &checks, &checkCount) || checkCount != values / 3 ||
                    napi_get_value_int32(env, argv[5], &fd) != napi_ok || napi_get_value_double(env, argv[6], &position) != napi_ok || !(position >= 0)))) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  /* Every frame inside `bytes`, and room in `out` for all of them (with checks: the largest) plus the one byte that catches more. */
  double room = 1;
  int inside = 1;
  for (size_t at = 0; at < values; at += 3) {
    const double *frame = (const double *)frames + at;
    if (!(frame[0] >= 0 && frame[1] >= 0 && frame[0] + frame[1] <= (double)bytesLength && frame[2] >= 0)) inside = 0;
    if (!checks) room += frame[2];
    else if (frame[2] + 1 > room) room = frame[2] + 1;
  }
  if (!inside || !(room >= 1 && room <= (double)outLength)) {
    napi_throw_range_error(env, NULL, "decompressBatchAsync: a frame lies outside bytes, or out is too small");
    return NULL;
  }
  Work *work = calloc(1, sizeof *work);
  if (!work) {
    napi_throw_error(env, NULL, "seekz_zstd: out of memory");
    return NULL;
  }
  *work = (Work){.frames = frames, .count = values / 3, .bytes = bytes, .out = out, .outLength = outLength, .checks = checks, .fd = fd, .position = position, .stop = stop};
  return queue(env, work, argv, checks ? 5 : 4, "seekz_zstd.decompressBatchAsync", decompressExecute);
}

static napi_value compressBound(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  double size;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_double(env, argv[0], &size) != napi_ok || !(size >= 0)) {
    napi_throw_type_error(env, NULL, "compressBound(size: number)");
    return NULL;
  }
  CALL(env, napi_create_double(env, (double)ZSTD_compressBound((size_t)size), &result));
  return result;
}

napi_value seekzXxh64Low32(napi_env env, napi_callback_info info); /* xxh64.c */

NAPI_MODULE_INIT() {
  Contexts *contexts = calloc(1, sizeof(Contexts));
  if (!contexts) return NULL;
  contexts->cctx = ZSTD_createCCtx();
  contexts->dctx = ZSTD_createDCtx();
  napi_set_instance_data(env, contexts, freeContexts, NULL);
  napi_property_descriptor properties[] = {
      {"compress", NULL, compress, NULL, NULL, NULL, napi_default, NULL},
      {"decompress", NULL, decompress, NULL, NULL, NULL, napi_default, NULL},
      {"decompressInto", NULL, decompressInto, NULL, NULL, NULL, napi_default, NULL},
      {"streamCreate", NULL, streamCreate, NULL, NULL, NULL, napi_default, NULL},
      {"streamPush", NULL, streamPush, NULL, NULL, NULL, napi_default, NULL},
      {"versionNumber", NULL, versionNumber, NULL, NULL, NULL, napi_default, NULL},
      {"xxh64Low32", NULL, seekzXxh64Low32, NULL, NULL, NULL, napi_default, NULL},
      {"compressBound", NULL, compressBound, NULL, NULL, NULL, napi_default, NULL},
      {"compressRunAsync", NULL, compressRunAsync, NULL, NULL, NULL, napi_default, NULL},
      {"decompressBatchAsync", NULL, decompressBatchAsync, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties);
  return exports;
}
