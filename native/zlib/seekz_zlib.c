/*
 * seekz_zlib: zlib's raw inflate with Z_BLOCK, for the gzip index builder (src/gzip/index/build.ts)
 * and indexed reads (src/gzip/index/indexed-reader.ts). C glue over the system zlib, nothing more:
 *
 *   createInflater(dictionary?) -> handle        a raw inflate stream (windowBits -15)
 *   inflateBlocks(handle, input, output, bits?) -> Promise<[inUsed, outUsed, ended, boundaries]>
 *   inflateBlocksSync(...)                        the same on the calling thread
 *   crc32(data, previous?) -> number              libdeflate's CRC-32 (PCLMUL), zlib's semantics
 *
 * inflateBlocks runs on libuv's thread pool. It inflates `input` into `output` until one of them
 * is used up or the deflate stream ends, and returns, for every block boundary it passed (not
 * after the final block), the stream-relative bit offset where the next block header starts and
 * the stream-relative output offset there, as pairs in a Float64Array: the same boundaries zran.c
 * and gztool take from data_type. `bits` (1-7, first call only) primes the stream with the top
 * bits of input[0], so inflation can start inside a byte (inflatePrime), and the first byte is
 * then skipped.
 *
 * Invariant: one call at a time per handle (the JavaScript side awaits each), and input/output
 * stay referenced until the call completes. Pinned by test/gzip-index-engines.test.ts, which
 * compares both engines' indexes and reads.
 */
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <libdeflate.h>

typedef struct {
  z_stream strm;
  int ended;
  int busy;
} Inflater;

typedef struct {
  Inflater *inflater;
  napi_ref input_ref, output_ref, handle_ref;
  unsigned char *input;
  size_t input_length;
  unsigned char *output;
  size_t output_length;
  int prime_bits;
  /* results */
  size_t in_used, out_used;
  int status; /* zlib code of a failure, or Z_OK */
  char message[200];
  double *boundaries;
  size_t boundary_count, boundary_capacity;
  napi_deferred deferred;
  napi_async_work work;
} Job;

#define CHECK(call)                                                      \
  do {                                                                   \
    if ((call) != napi_ok) {                                             \
      napi_throw_error(env, NULL, "seekz_zlib: node-api call failed");   \
      return NULL;                                                       \
    }                                                                    \
  } while (0)

static void finalize_inflater(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Inflater *inflater = data;
  inflateEnd(&inflater->strm);
  free(inflater);
}

static int bytes_of(napi_env env, napi_value value, unsigned char **data, size_t *length) {
  napi_typedarray_type type;
  void *base;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, length, &base, &buffer, &offset) != napi_ok || type != napi_uint8_array) return 0;
  *data = base;
  return 1;
}

static napi_value create_inflater(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Inflater *inflater = calloc(1, sizeof *inflater);
  if (!inflater || inflateInit2(&inflater->strm, -15) != Z_OK) {
    free(inflater);
    napi_throw_error(env, NULL, "seekz_zlib: inflateInit2 failed (out of memory)");
    return NULL;
  }
  napi_valuetype kind = napi_undefined;
  if (argc >= 1) CHECK(napi_typeof(env, argv[0], &kind));
  if (kind != napi_undefined) {
    unsigned char *dictionary;
    size_t length;
    if (!bytes_of(env, argv[0], &dictionary, &length) || length > 32768 ||
        (length > 0 && inflateSetDictionary(&inflater->strm, dictionary, (uInt)length) != Z_OK)) {
      finalize_inflater(env, inflater, NULL);
      napi_throw_type_error(env, NULL, "seekz_zlib: the dictionary must be a Uint8Array of at most 32 KiB");
      return NULL;
    }
  }
  CHECK(napi_create_external(env, inflater, finalize_inflater, NULL, &result));
  return result;
}

static void add_boundary(Job *job, double bit, double out) {
  if (job->boundary_count + 2 > job->boundary_capacity) {
    size_t capacity = job->boundary_capacity ? job->boundary_capacity * 2 : 64;
    double *grown = realloc(job->boundaries, capacity * sizeof *grown);
    if (!grown) {
      job->status = Z_MEM_ERROR;
      return;
    }
    job->boundaries = grown;
    job->boundary_capacity = capacity;
  }
  job->boundaries[job->boundary_count++] = bit;
  job->boundaries[job->boundary_count++] = out;
}

static void run_job(Job *job) {
  z_stream *strm = &job->inflater->strm;
  strm->next_in = job->input;
  strm->avail_in = (uInt)job->input_length;
  strm->next_out = job->output;
  strm->avail_out = (uInt)job->output_length;
  job->status = Z_OK;
  if (job->prime_bits > 0 && strm->avail_in > 0) {
    /* The block starts at bit (8 - prime_bits) of the first byte: feed its top bits. */
    int bits = job->prime_bits;
    inflatePrime(strm, bits, job->input[0] >> (8 - bits));
    strm->next_in++;
    strm->avail_in--;
  }
  while (job->status == Z_OK) {
    int ret = inflate(strm, Z_BLOCK);
    if (ret == Z_STREAM_END) {
      job->inflater->ended = 1;
      break;
    }
    if (ret == Z_BUF_ERROR) break; /* no progress: more input or more room needed */
    if (ret != Z_OK) {
      job->status = ret;
      strncpy(job->message, strm->msg ? strm->msg : "inflate failed", sizeof job->message - 1);
      break;
    }
    /* 128: stopped at a block boundary; 64: inside the last block (nothing follows it). */
    if ((strm->data_type & 128) && !(strm->data_type & 64)) {
      if ((strm->data_type & 63) > 7) {
        job->status = Z_STREAM_ERROR;
        strncpy(job->message, "more than 7 bits pending at a block boundary", sizeof job->message - 1);
        break;
      }
      add_boundary(job, (double)strm->total_in * 8 - (strm->data_type & 7), (double)strm->total_out);
    }
    if (strm->avail_in == 0 || strm->avail_out == 0) break;
  }
  job->in_used = job->input_length - strm->avail_in;
  job->out_used = job->output_length - strm->avail_out;
}

static void execute(napi_env env, void *data) {
  (void)env;
  run_job(data);
}

/* The outcome of a job: [inUsed, outUsed, ended, boundaries] in *result, or an error in *error. */
static void job_outcome(napi_env env, Job *job, napi_value *result, napi_value *error) {
  *result = NULL;
  *error = NULL;
  if (job->status != Z_OK) {
    napi_value message, code;
    napi_create_string_utf8(env, job->message, NAPI_AUTO_LENGTH, &message);
    const char *name = job->status == Z_DATA_ERROR ? "Z_DATA_ERROR" : job->status == Z_MEM_ERROR ? "Z_MEM_ERROR" : "Z_STREAM_ERROR";
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, message, error);
  } else {
    napi_value in_used, out_used, ended, array, boundaries;
    void *storage;
    napi_create_double(env, (double)job->in_used, &in_used);
    napi_create_double(env, (double)job->out_used, &out_used);
    napi_get_boolean(env, job->inflater->ended, &ended);
    napi_create_arraybuffer(env, job->boundary_count * sizeof(double), &storage, &array);
    if (job->boundary_count) memcpy(storage, job->boundaries, job->boundary_count * sizeof(double));
    napi_create_typedarray(env, napi_float64_array, job->boundary_count, array, 0, &boundaries);
    napi_create_array_with_length(env, 4, result);
    napi_set_element(env, *result, 0, in_used);
    napi_set_element(env, *result, 1, out_used);
    napi_set_element(env, *result, 2, ended);
    napi_set_element(env, *result, 3, boundaries);
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  Job *job = data;
  job->inflater->busy = 0;
  napi_value result = NULL, error = NULL;
  if (status != napi_ok) {
    napi_value message;
    napi_create_string_utf8(env, "seekz_zlib: the job was cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
  } else {
    job_outcome(env, job, &result, &error);
  }
  if (error) napi_reject_deferred(env, job->deferred, error);
  else napi_resolve_deferred(env, job->deferred, result);
  napi_delete_reference(env, job->input_ref);
  napi_delete_reference(env, job->output_ref);
  napi_delete_reference(env, job->handle_ref);
  napi_delete_async_work(env, job->work);
  free(job->boundaries);
  free(job);
}

/* A job from (handle, input, output[, bits]), or NULL with an exception pending. */
static Job *new_job(napi_env env, napi_callback_info info, napi_value *argv) {
  size_t argc = 4;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "seekz_zlib: node-api call failed");
    return NULL;
  }
  Inflater *inflater;
  if (argc < 3 || napi_get_value_external(env, argv[0], (void **)&inflater) != napi_ok) {
    napi_throw_type_error(env, NULL, "seekz_zlib: inflateBlocks(handle, input, output[, bits])");
    return NULL;
  }
  Job *job = calloc(1, sizeof *job);
  if (!job) {
    napi_throw_error(env, NULL, "seekz_zlib: out of memory");
    return NULL;
  }
  job->inflater = inflater;
  if (!bytes_of(env, argv[1], &job->input, &job->input_length) || !bytes_of(env, argv[2], &job->output, &job->output_length) ||
      job->input_length > 0xffffffffu || job->output_length > 0xffffffffu) {
    free(job);
    napi_throw_type_error(env, NULL, "seekz_zlib: input and output must be Uint8Arrays below 4 GiB");
    return NULL;
  }
  napi_valuetype kind = napi_undefined;
  if (argc >= 4) napi_typeof(env, argv[3], &kind);
  if (kind == napi_number) napi_get_value_int32(env, argv[3], &job->prime_bits);
  if (job->prime_bits < 0 || job->prime_bits > 7) job->prime_bits = 0;
  if (inflater->busy) {
    free(job);
    napi_throw_error(env, NULL, "seekz_zlib: one inflateBlocks call at a time per inflater");
    return NULL;
  }
  return job;
}

/* inflateBlocksSync: the same work on this thread, for reads that wait for it anyway. */
static napi_value inflate_blocks_sync(napi_env env, napi_callback_info info) {
  napi_value argv[4], result, error;
  Job *job = new_job(env, info, argv);
  if (!job) return NULL;
  run_job(job);
  job_outcome(env, job, &result, &error);
  free(job->boundaries);
  free(job);
  if (error) {
    napi_throw(env, error);
    return NULL;
  }
  return result;
}

static napi_value inflate_blocks(napi_env env, napi_callback_info info) {
  napi_value argv[4], promise, name;
  Job *job = new_job(env, info, argv);
  if (!job) return NULL;
  Inflater *inflater = job->inflater;
  inflater->busy = 1;
  CHECK(napi_create_reference(env, argv[0], 1, &job->handle_ref));
  CHECK(napi_create_reference(env, argv[1], 1, &job->input_ref));
  CHECK(napi_create_reference(env, argv[2], 1, &job->output_ref));
  CHECK(napi_create_promise(env, &job->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "seekz_zlib.inflateBlocks", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, execute, complete, job, &job->work));
  CHECK(napi_queue_async_work(env, job->work));
  return promise;
}

/* crc32(data, previous): libdeflate folds with PCLMUL/VPCLMULQDQ, several times zlib's speed. */
static napi_value crc32_of(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  unsigned char *data;
  size_t length;
  uint32_t previous = 0;
  if (argc < 1 || !bytes_of(env, argv[0], &data, &length)) {
    napi_throw_type_error(env, NULL, "seekz_zlib: crc32(data: Uint8Array, previous?: number)");
    return NULL;
  }
  if (argc >= 2) napi_get_value_uint32(env, argv[1], &previous);
  /* An empty array may have no data pointer, and libdeflate_crc32 answers 0 for NULL. */
  CHECK(napi_create_uint32(env, length == 0 ? previous : libdeflate_crc32(previous, data, length), &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"createInflater", NULL, create_inflater, NULL, NULL, NULL, napi_default, NULL},
      {"inflateBlocks", NULL, inflate_blocks, NULL, NULL, NULL, napi_default, NULL},
      {"inflateBlocksSync", NULL, inflate_blocks_sync, NULL, NULL, NULL, napi_default, NULL},
      {"crc32", NULL, crc32_of, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value version;
  napi_create_string_utf8(env, zlibVersion(), NAPI_AUTO_LENGTH, &version);
  napi_set_named_property(env, exports, "zlibVersion", version);
  napi_define_properties(env, exports, sizeof properties / sizeof *properties, properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
