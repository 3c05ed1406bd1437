/*
 * seekz_xz: one xz block decoded by Debian's liblzma straight into the caller's buffer.
 *
 * Invariant: decodeBlock returns 0 only when liblzma's block decoder reached the end of the block
 * with every check it makes passed: the block header CRC32, the compressed size against the index's
 * unpadded size, the uncompressed size against the index, the block padding, and the block's
 * integrity check; and when exactly `output.length` bytes came out and all of `input` was used.
 * Anything else returns a nonzero code and the JavaScript side throws (src/native/xz-engine.ts).
 * decodeBlockToFile makes the same checks but writes each 256 KiB as it is decoded, so its bytes
 * are in the file before the check is read: its caller removes the temp file, or truncates the
 * stdout back, when it fails (src/io/atomic-file.ts; test/cli-manners.test.ts "holes in stdout").
 *
 * Interruptible: lzma_code runs on at most SLICE_IN bytes of input and SLICE_OUT bytes of output
 * at a time, and the shared stop flag (the worker pool's SharedArrayBuffer) is read between calls,
 * so a signal waits for one slice, never a whole block (see src/workers/pool.ts). Pinned by
 * test/trust-xz-signals.test.ts and test/xz-native.test.ts.
 *
 * Every entry point is async (napi_async_work on libuv's thread pool; the JavaScript thread only
 * queues the job and gets a Promise of its code): the pool in src/workers/pool.ts keeps at most
 * `threads` jobs in flight, and node-api references keep the job's buffers and stop flag alive
 * until it completes. The JavaScript side must not touch a buffer it gave until then.
 *
 * Coders (lzma_streams) sit in two free lists, decoders and encoders, shared by every thread of the
 * process under a mutex: a job takes one and gives it back. liblzma keeps a coder's allocations
 * when the next block asks for the same sizes, so a block costs no mmap and no page faults for an
 * 8 MiB dictionary or a 94 MiB match finder (-6), and the coders alive are at most the jobs that
 * ever ran at once: per libuv thread they would be 4 encoders (376 MiB at -6) on 2 cores. When a
 * file is done (writeXz, a reader's close), releaseCoders frees the idle ones, so a process that
 * goes on does not keep them (test/xz-native.test.ts "releaseXzCoders").
 */
#include <errno.h>
#include <lzma.h>
#include <node_api.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLICE_IN (64 * 1024)
#define SLICE_OUT (4 * 1024 * 1024)

/* Codes beyond lzma_ret's, for the JavaScript side's message table. */
#define SEEKZ_INTERRUPTED 100
#define SEEKZ_TOO_MUCH_OUTPUT 101
#define SEEKZ_TOO_LITTLE_OUTPUT 102
#define SEEKZ_INPUT_LEFT 103
/* A write to the output file failed: SEEKZ_WRITE_ERRNO + errno. */
#define SEEKZ_WRITE_ERRNO 10000

/*
 * decodeBlockToFile decodes through a small buffer and writes each piece at once, from the thread
 * that decoded it, while the bytes are still in that core's cache: a 16 MiB block decoded whole
 * and written later is copied into the page cache from memory (measured: the kernel's copy took
 * 8 % of a no-zeros decompression that way, against 0.5 % for xz, which writes 8 KiB at a time).
 */
#define FILE_WINDOW (256 * 1024)
/* Holes: whole zero blocks of this size (aligned to the file) are skipped, as xz -d does. */
#define HOLE_BLOCK 4096
static const uint8_t zero_block[HOLE_BLOCK];

/* Where decode_block writes when it writes to a file: pwrite at `position` + the block's offset. */
typedef struct {
  int fd;
  uint64_t position;
} file_out;

/* A decoder or an encoder, in its free list while no job holds it. */
typedef struct coder {
  lzma_stream stream;
  uint8_t *window; /* a decoder's FILE_WINDOW bytes for decodeBlockToFile, allocated on first use */
  struct coder *next;
} coder;

typedef struct {
  pthread_mutex_t lock;
  coder *free;
} coder_list;

static coder_list decoders = {PTHREAD_MUTEX_INITIALIZER, NULL};
static coder_list encoders = {PTHREAD_MUTEX_INITIALIZER, NULL};

/* A coder from `list`, or a new one; NULL when out of memory. */
static coder *take_coder(coder_list *list) {
  pthread_mutex_lock(&list->lock);
  coder *taken = list->free;
  if (taken) list->free = taken->next;
  pthread_mutex_unlock(&list->lock);
  if (taken) return taken;
  taken = calloc(1, sizeof *taken);
  if (taken) {
    lzma_stream blank = LZMA_STREAM_INIT;
    taken->stream = blank;
  }
  return taken;
}

static void give_coder(coder_list *list, coder *given) {
  pthread_mutex_lock(&list->lock);
  given->next = list->free;
  list->free = given;
  pthread_mutex_unlock(&list->lock);
}

/* Frees the coders in `list`: those no job holds. */
static void release_coders(coder_list *list) {
  pthread_mutex_lock(&list->lock);
  coder *held = list->free;
  list->free = NULL;
  pthread_mutex_unlock(&list->lock);
  while (held) {
    coder *next = held->next;
    lzma_end(&held->stream);
    free(held->window);
    free(held);
    held = next;
  }
}

static void free_filters(lzma_filter *filters) {
  for (int index = 0; index < LZMA_FILTERS_MAX && filters[index].id != LZMA_VLI_UNKNOWN; index++) {
    free(filters[index].options);
    filters[index].options = NULL;
  }
}

static int bytes_of(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  napi_typedarray_type type;
  size_t count;
  void *pointer;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, &count, &pointer, &buffer, &offset) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *data = pointer;
  *length = count;
  return 1;
}

static int stop_requested(const int32_t *flag) { return flag != NULL && __atomic_load_n(flag, __ATOMIC_SEQ_CST) != 0; }

static int get_stop(napi_env env, napi_value value, const int32_t **stop) {
  napi_valuetype type;
  *stop = NULL;
  napi_typeof(env, value, &type);
  if (type == napi_null || type == napi_undefined) return 1;
  napi_typedarray_type array_type;
  size_t count;
  void *pointer;
  if (napi_get_typedarray_info(env, value, &array_type, &count, &pointer, NULL, NULL) != napi_ok || array_type != napi_int32_array || count < 1) return 0;
  *stop = pointer;
  return 1;
}

static int write_all(const file_out *file, const uint8_t *bytes, size_t length, uint64_t at) {
  while (length > 0) {
    ssize_t written = pwrite(file->fd, bytes, length, (off_t)at);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return SEEKZ_WRITE_ERRNO + (written < 0 ? errno : EIO);
    bytes += written;
    length -= (size_t)written;
    at += (uint64_t)written;
  }
  return 0;
}

/* Writes `length` bytes that belong at file offset `at`, leaving whole zero HOLE_BLOCKs as holes. */
static int write_sparse(const file_out *file, const uint8_t *bytes, size_t length, uint64_t at) {
  size_t from = 0; /* start of the data run not yet written */
  size_t cut = (size_t)((HOLE_BLOCK - at % HOLE_BLOCK) % HOLE_BLOCK);
  for (; cut + HOLE_BLOCK <= length; cut += HOLE_BLOCK) {
    if (memcmp(bytes + cut, zero_block, HOLE_BLOCK) != 0) continue;
    if (cut > from) {
      int error = write_all(file, bytes + from, cut - from, at + from);
      if (error) return error;
    }
    from = cut + HOLE_BLOCK;
  }
  return from < length ? write_all(file, bytes + from, length - from, at + from) : 0;
}

/*
 * The decode itself; returns 0 or an lzma_ret / SEEKZ_* code. Into `output` (`output_length`
 * bytes), or, with `file`, through `output` as a window of `window` bytes written out each time it
 * fills (so the bytes reach the file before the block's check is read: the caller removes or
 * truncates its output when the decode fails).
 */
static int decode_block(lzma_stream *stream, const uint8_t *input, size_t input_length, uint32_t check, uint64_t unpadded_size,
                        uint8_t *output, size_t output_length, const file_out *file, size_t window, const int32_t *stop) {
  if (input_length == 0 || input[0] == 0) return LZMA_DATA_ERROR; /* an index indicator, not a block header */
  lzma_filter filters[LZMA_FILTERS_MAX + 1];
  lzma_block block;
  memset(&block, 0, sizeof block);
  block.version = 1;
  block.check = (lzma_check)check;
  block.filters = filters;
  block.header_size = lzma_block_header_size_decode(input[0]);
  if (block.header_size > input_length) return LZMA_DATA_ERROR;
  lzma_ret ret = lzma_block_header_decode(&block, NULL, input);
  if (ret != LZMA_OK) return ret; /* lzma_block_header_decode frees its filter options on failure */
  /* The index's record: the unpadded size fixes the compressed size, the uncompressed size is the buffer's length. */
  ret = lzma_block_compressed_size(&block, unpadded_size);
  if (ret == LZMA_OK && block.uncompressed_size != LZMA_VLI_UNKNOWN && block.uncompressed_size != output_length) ret = LZMA_DATA_ERROR;
  if (ret != LZMA_OK) {
    free_filters(filters);
    return ret;
  }
  block.uncompressed_size = output_length;
  ret = lzma_block_decoder(stream, &block);
  free_filters(filters); /* the decoder has copied what it needs */
  if (ret != LZMA_OK) return ret;

  size_t in_at = block.header_size;
  size_t out_at = 0;
  size_t flushed = 0; /* with `file`: bytes written out; the window holds out_at - flushed */
  uint8_t spare;
  for (;;) {
    if (stop_requested(stop)) return SEEKZ_INTERRUPTED;
    size_t in_take = input_length - in_at < SLICE_IN ? input_length - in_at : SLICE_IN;
    int full = out_at == output_length;
    size_t room = output_length - out_at;
    if (file && window - (out_at - flushed) < room) room = window - (out_at - flushed);
    size_t out_take = full ? 1 : (room < SLICE_OUT ? room : SLICE_OUT);
    stream->next_in = input + in_at;
    stream->avail_in = in_take;
    /* A full output still lets liblzma read the padding and the check; a byte in `spare` means more data. */
    stream->next_out = full ? &spare : file ? output + (out_at - flushed) : output + out_at;
    stream->avail_out = out_take;
    ret = lzma_code(stream, in_at + in_take == input_length ? LZMA_FINISH : LZMA_RUN);
    in_at += in_take - stream->avail_in;
    if (full && stream->avail_out == 0) return SEEKZ_TOO_MUCH_OUTPUT;
    if (!full) out_at += out_take - stream->avail_out;
    if (file && out_at > flushed && (out_at - flushed == window || out_at == output_length)) {
      int error = write_sparse(file, output, out_at - flushed, file->position + flushed);
      if (error) return error;
      flushed = out_at;
    }
    if (ret == LZMA_STREAM_END) break;
    if (ret != LZMA_OK) return ret;
  }
  if (out_at != output_length) return SEEKZ_TOO_LITTLE_OUTPUT;
  if (in_at != input_length) return SEEKZ_INPUT_LEFT;
  return 0;
}

/*
 * The encoders' allocator: a large allocation (the match finder's hash table and binary tree,
 * 64 MiB and more at -6, looked up at random for every byte) is aligned to 2 MiB and marked for
 * transparent huge pages, where the kernel gives them only when asked (the usual
 * /sys/kernel/mm/transparent_hugepage/enabled = madvise): one TLB entry per 2 MiB instead of per
 * 4 KiB. Only where memory lies changes, never a byte of the output.
 */
#define HUGE_PAGE (2u << 20)
static void *encoder_alloc(void *opaque, size_t count, size_t size) {
  (void)opaque;
  size_t bytes = count * size;
  if (bytes < HUGE_PAGE) return malloc(bytes);
  void *memory = NULL;
  if (posix_memalign(&memory, HUGE_PAGE, bytes) != 0) return NULL;
  madvise(memory, bytes & ~(size_t)(HUGE_PAGE - 1), MADV_HUGEPAGE); /* advice only: a refusal changes nothing */
  return memory;
}
static void encoder_free(void *opaque, void *memory) {
  (void)opaque;
  free(memory);
}
static const lzma_allocator encoder_allocator = {encoder_alloc, encoder_free, NULL};

/*
 * Encodes `input` as one block's data with the LZMA2 preset: writes compressed data, block padding
 * and check into `output` (at least lzma_block_buffer_bound(input.length) bytes) and returns the
 * compressed size, or -(lzma_ret / SEEKZ_* code). The filter chain is xz's for the preset, so the
 * bytes are those a liblzma stream encoder gives (node-liblzma's path): the output does not depend
 * on the engine. Interruptible like decode_block.
 *
 * In place: `output` may start before `input` in the same buffer and run over it (the writer keeps
 * one buffer per block, not an input and an output: 16 MiB less per thread at the default block).
 * Each lzma_code call then gets output room only up to the input it consumed before the call: the
 * block encoder hashes the input it consumed in a call (the check) after the call, and liblzma never
 * reads input again once consumed, so no byte is overwritten before it has been read for the last
 * time. LZMA2's output runs ahead of its consumed input by at most 3 bytes per 64 KiB plus its
 * end, padding and check (what lzma_block_buffer_bound adds), so a gap of that much in front of
 * the input always leaves room; a smaller one fails with LZMA_BUF_ERROR, never a wrong byte.
 */
static int64_t encode_block(lzma_stream *stream, const uint8_t *input, size_t input_length, uint32_t preset, uint32_t check,
                            uint8_t *output, size_t output_length, const int32_t *stop) {
  lzma_options_lzma options;
  if (lzma_lzma_preset(&options, preset)) return -LZMA_OPTIONS_ERROR;
  lzma_filter filters[2] = {{LZMA_FILTER_LZMA2, &options}, {LZMA_VLI_UNKNOWN, NULL}};
  lzma_block block;
  memset(&block, 0, sizeof block);
  block.version = 1;
  block.check = (lzma_check)check;
  block.filters = filters;
  block.compressed_size = LZMA_VLI_UNKNOWN;
  block.uncompressed_size = LZMA_VLI_UNKNOWN;
  stream->allocator = &encoder_allocator; /* the same for every block of the stream, and for lzma_end */
  lzma_ret ret = lzma_block_encoder(stream, &block);
  if (ret != LZMA_OK) return -ret;
  size_t in_at = 0;
  const uint8_t *output_end = output + output_length;
  int in_place = output < input + input_length && input < output_end;
  if (in_place && output > input) return -LZMA_PROG_ERROR;
  stream->next_out = output;
  stream->avail_out = output_length;
  for (;;) {
    if (stop_requested(stop)) return -SEEKZ_INTERRUPTED;
    size_t in_take = input_length - in_at < SLICE_IN ? input_length - in_at : SLICE_IN;
    stream->next_in = input + in_at;
    stream->avail_in = in_take;
    if (in_place) {
      const uint8_t *limit = input + in_at < output_end ? input + in_at : output_end;
      stream->avail_out = limit > stream->next_out ? (size_t)(limit - stream->next_out) : 0;
      if (stream->avail_out == 0) return -LZMA_BUF_ERROR;
    }
    ret = lzma_code(stream, in_at + in_take == input_length ? LZMA_FINISH : LZMA_RUN);
    in_at += in_take - stream->avail_in;
    if (ret == LZMA_STREAM_END) break;
    if (ret != LZMA_OK) return -ret;
    if (stream->avail_out == 0 && !in_place) return -LZMA_BUF_ERROR;
  }
  return (int64_t)block.compressed_size;
}

/* The three kinds of job, all run by run_job on one of libuv's threads. */
typedef enum { JOB_DECODE, JOB_DECODE_TO_FILE, JOB_ENCODE } job_kind;

typedef struct {
  job_kind kind;
  const uint8_t *input;
  size_t input_length;
  uint8_t *output; /* decode: the block's bytes; encode: compressed data, padding and check */
  size_t output_length;
  uint32_t check;
  uint32_t preset;        /* encode */
  uint64_t unpadded_size; /* decode */
  file_out file;          /* decode to file: output_length is the block's size */
  const int32_t *stop;
  int64_t result; /* decode: 0 or a code; encode: the compressed size or minus a code */
  napi_ref refs[3]; /* input, output and stop, alive until the job completes */
  napi_deferred deferred;
  napi_async_work work;
} xz_job;

static void run_job(napi_env env, void *data) {
  (void)env;
  xz_job *job = data;
  coder *held = take_coder(job->kind == JOB_ENCODE ? &encoders : &decoders);
  if (held == NULL) {
    job->result = job->kind == JOB_ENCODE ? -LZMA_MEM_ERROR : LZMA_MEM_ERROR;
    return;
  }
  if (job->kind == JOB_ENCODE) {
    job->result = encode_block(&held->stream, job->input, job->input_length, job->preset, job->check, job->output, job->output_length, job->stop);
    give_coder(&encoders, held);
    return;
  }
  if (job->kind == JOB_DECODE) {
    job->result = decode_block(&held->stream, job->input, job->input_length, job->check, job->unpadded_size, job->output, job->output_length, NULL, 0, job->stop);
  } else if (held->window == NULL && (held->window = malloc(FILE_WINDOW)) == NULL) {
    job->result = LZMA_MEM_ERROR;
  } else {
    job->result = decode_block(&held->stream, job->input, job->input_length, job->check, job->unpadded_size, held->window, job->output_length, &job->file,
                               FILE_WINDOW, job->stop);
  }
  give_coder(&decoders, held);
}

static void complete_job(napi_env env, napi_status status, void *data) {
  xz_job *job = data;
  napi_value value;
  if (status == napi_ok) {
    napi_create_int64(env, job->result, &value);
    napi_resolve_deferred(env, job->deferred, value);
  } else {
    napi_value message;
    napi_create_string_utf8(env, "seekz_xz: the job was cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &value);
    napi_reject_deferred(env, job->deferred, value);
  }
  for (int at = 0; at < 3; at++)
    if (job->refs[at]) napi_delete_reference(env, job->refs[at]);
  napi_delete_async_work(env, job->work);
  free(job);
}

/*
 * Queues a job with the fields of `fields` (set from the arguments, which `values` holds: input,
 * output or NULL, stop or NULL) and returns the Promise of its result; throws when node-api fails.
 */
static napi_value queue_job(napi_env env, const xz_job *fields, napi_value values[3], const char *name) {
  napi_value promise, resource_name;
  xz_job *job = malloc(sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "seekz_xz: out of memory");
    return NULL;
  }
  *job = *fields;
  int ok = 1;
  for (int at = 0; at < 3 && ok; at++)
    if (values[at]) ok = napi_create_reference(env, values[at], 1, &job->refs[at]) == napi_ok;
  ok = ok && napi_create_promise(env, &job->deferred, &promise) == napi_ok &&
       napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) == napi_ok &&
       napi_create_async_work(env, NULL, resource_name, run_job, complete_job, job, &job->work) == napi_ok &&
       napi_queue_async_work(env, job->work) == napi_ok;
  if (ok) return promise;
  /* Only before queueing: the promise, if made, is dropped unsettled with its job. */
  for (int at = 0; at < 3; at++)
    if (job->refs[at]) napi_delete_reference(env, job->refs[at]);
  if (job->work) napi_delete_async_work(env, job->work);
  free(job);
  napi_throw_error(env, NULL, "seekz_xz: node-api call failed");
  return NULL;
}

/*
 * decodeBlock(input: Uint8Array, checkId: number, unpaddedSize: number, output: Uint8Array,
 *             stop: Int32Array | null): Promise<number>
 * `input` is the block as it sits in the file (header through check, padding included).
 */
static napi_value decode_block_js(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  uint8_t *input, *output;
  size_t input_length, output_length;
  uint32_t check;
  double unpadded;
  const int32_t *stop;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5 || !bytes_of(env, argv[0], &input, &input_length) ||
      !bytes_of(env, argv[3], &output, &output_length) || napi_get_value_uint32(env, argv[1], &check) != napi_ok ||
      napi_get_value_double(env, argv[2], &unpadded) != napi_ok || !get_stop(env, argv[4], &stop) || unpadded < 0) {
    napi_throw_type_error(env, NULL, "seekz_xz.decodeBlock(input, checkId, unpaddedSize, output, stop): bad arguments");
    return NULL;
  }
  xz_job job = {.kind = JOB_DECODE, .input = input, .input_length = input_length, .output = output, .output_length = output_length,
                .check = check, .unpadded_size = (uint64_t)unpadded, .stop = stop};
  napi_value values[3] = {argv[0], argv[3], stop ? argv[4] : NULL};
  return queue_job(env, &job, values, "seekz_xz.decodeBlock");
}

/*
 * decodeBlockToFile(input: Uint8Array, checkId: number, unpaddedSize: number, size: number, fd: number,
 *                   position: number, stop: Int32Array | null): Promise<number>
 * As decodeBlock, for a block of `size` bytes, but the bytes go to `fd` at `position` (pwrite), whole
 * zero 4 KiB blocks left as holes: the file must hold nothing there yet. The same codes, plus
 * SEEKZ_WRITE_ERRNO + errno when a write fails.
 */
static napi_value decode_block_to_file_js(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  uint8_t *input;
  size_t input_length;
  uint32_t check;
  int32_t fd;
  double unpadded, size, position;
  const int32_t *stop;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 7 || !bytes_of(env, argv[0], &input, &input_length) ||
      napi_get_value_uint32(env, argv[1], &check) != napi_ok || napi_get_value_double(env, argv[2], &unpadded) != napi_ok ||
      napi_get_value_double(env, argv[3], &size) != napi_ok || napi_get_value_int32(env, argv[4], &fd) != napi_ok ||
      napi_get_value_double(env, argv[5], &position) != napi_ok || !get_stop(env, argv[6], &stop) || unpadded < 0 || size < 0 || position < 0) {
    napi_throw_type_error(env, NULL, "seekz_xz.decodeBlockToFile(input, checkId, unpaddedSize, size, fd, position, stop): bad arguments");
    return NULL;
  }
  xz_job job = {.kind = JOB_DECODE_TO_FILE, .input = input, .input_length = input_length, .output_length = (size_t)size, .check = check,
                .unpadded_size = (uint64_t)unpadded, .file = {fd, (uint64_t)position}, .stop = stop};
  napi_value values[3] = {argv[0], NULL, stop ? argv[6] : NULL};
  return queue_job(env, &job, values, "seekz_xz.decodeBlockToFile");
}

/* encodeBlock(input: Uint8Array, preset: number, checkId: number, output: Uint8Array, stop: Int32Array | null): Promise<number> */
static napi_value encode_block_js(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  uint8_t *input, *output;
  size_t input_length, output_length;
  uint32_t preset, check;
  const int32_t *stop;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5 || !bytes_of(env, argv[0], &input, &input_length) ||
      napi_get_value_uint32(env, argv[1], &preset) != napi_ok || napi_get_value_uint32(env, argv[2], &check) != napi_ok ||
      !bytes_of(env, argv[3], &output, &output_length) || !get_stop(env, argv[4], &stop)) {
    napi_throw_type_error(env, NULL, "seekz_xz.encodeBlock(input, preset, checkId, output, stop): bad arguments");
    return NULL;
  }
  xz_job job = {.kind = JOB_ENCODE, .input = input, .input_length = input_length, .output = output, .output_length = output_length,
                .preset = preset, .check = check, .stop = stop};
  napi_value values[3] = {argv[0], argv[3], stop ? argv[4] : NULL};
  return queue_job(env, &job, values, "seekz_xz.encodeBlock");
}

/* filterFlags(preset: number): Uint8Array — the block header's Filter Flags for encodeBlock's chain. */
static napi_value filter_flags_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t preset;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_uint32(env, argv[0], &preset) != napi_ok) {
    napi_throw_type_error(env, NULL, "seekz_xz.filterFlags(preset): bad arguments");
    return NULL;
  }
  lzma_options_lzma options;
  lzma_filter filter = {LZMA_FILTER_LZMA2, &options};
  uint8_t bytes[16];
  size_t length = 0;
  if (lzma_lzma_preset(&options, preset) || lzma_filter_flags_encode(&filter, bytes, &length, sizeof bytes) != LZMA_OK) {
    napi_throw_error(env, NULL, "seekz_xz.filterFlags: liblzma refused the preset");
    return NULL;
  }
  void *data;
  napi_value buffer;
  napi_create_buffer_copy(env, length, bytes, &data, &buffer);
  return buffer;
}

/*
 * releaseCoders(): frees the idle decoders and encoders (a -9 encoder holds 674 MiB), for a
 * process that goes on after its last block; a later job makes new ones.
 */
static napi_value release_coders_js(napi_env env, napi_callback_info info) {
  (void)info;
  release_coders(&decoders);
  release_coders(&encoders);
  napi_value result;
  napi_get_undefined(env, &result);
  return result;
}

static napi_value version_js(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_create_string_utf8(env, lzma_version_string(), NAPI_AUTO_LENGTH, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"decodeBlock", NULL, decode_block_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"decodeBlockToFile", NULL, decode_block_to_file_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"encodeBlock", NULL, encode_block_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"filterFlags", NULL, filter_flags_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"releaseCoders", NULL, release_coders_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"liblzmaVersion", NULL, version_js, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
