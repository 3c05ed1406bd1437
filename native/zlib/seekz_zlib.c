/*
 * seekz_zlib: zlib's raw inflate with Z_BLOCK, for the gzip index builder (src/gzip/index/build.ts)
 * and indexed reads (src/gzip/index/indexed-reader.ts). C glue over the system zlib, nothing more:
 *
 *   createInflater(dictionary?) -> handle        a raw inflate stream (windowBits -15)
 *   inflateBlocks(handle, input, output, bits?, stopBit?) -> Promise<[inUsed, outUsed, ended, boundaries]>
 *   inflateBlocksSync(...)                        the same on the calling thread
 *   crc32(data, previous?) -> number              libdeflate's CRC-32 (PCLMUL), zlib's semantics
 *   findBlock(input, fromBit) -> number           the first bit at or past fromBit where a dynamic
 *                                                 block plausibly starts, or -1 (see find_block)
 *
 * inflateBlocks runs on libuv's thread pool. It inflates `input` into `output` until one of them
 * is used up or the deflate stream ends, and returns, for every block boundary it passed (not
 * after the final block), the stream-relative bit offset where the next block header starts and
 * the stream-relative output offset there, as pairs in a Float64Array: the same boundaries zran.c
 * and gztool take from data_type. `bits` (1-7, first call only) primes the stream with the top
 * bits of input[0], so inflation can start inside a byte (inflatePrime), and the first byte is
 * then skipped. `stopBit` (optional, stream-relative, -1 for none) ends the call at the boundary
 * found exactly there (it is the last pair returned), so that another inflater can take over.
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
  double stop_bit; /* stop at the boundary at this stream-relative bit; -1: none */
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
      double bit = (double)strm->total_in * 8 - (strm->data_type & 7);
      add_boundary(job, bit, (double)strm->total_out);
      if (bit == job->stop_bit) break;
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
  size_t argc = 5;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "seekz_zlib: node-api call failed");
    return NULL;
  }
  Inflater *inflater;
  if (argc < 3 || napi_get_value_external(env, argv[0], (void **)&inflater) != napi_ok) {
    napi_throw_type_error(env, NULL, "seekz_zlib: inflateBlocks(handle, input, output[, bits[, stopBit]])");
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
  job->stop_bit = -1;
  kind = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &kind);
  if (kind == napi_number) napi_get_value_double(env, argv[4], &job->stop_bit);
  if (inflater->busy) {
    free(job);
    napi_throw_error(env, NULL, "seekz_zlib: one inflateBlocks call at a time per inflater");
    return NULL;
  }
  return job;
}

/* inflateBlocksSync: the same work on this thread, for reads that wait for it anyway. */
static napi_value inflate_blocks_sync(napi_env env, napi_callback_info info) {
  napi_value argv[5], result, error;
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
  napi_value argv[5], promise, name;
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

/*
 * findBlock: where a second inflater may start, for the gzip index builder's second core
 * (src/gzip/index/build.ts, "speculative streams"). It tries every bit from `fromBit` on for a
 * non-final dynamic block (RFC 1951 §3.2.7) whose code tables are complete, as zlib requires,
 * and whose symbols run to an end-of-block code followed by a valid block type. It only guesses:
 * the builder uses a start only after zlib, inflating from the member's start, reports a block
 * boundary at exactly that bit. A wrong guess costs time, never a wrong index.
 */
#define FAST_BITS 9
#define DIST_FAST_BITS 8

typedef struct {
  uint16_t fast[1 << FAST_BITS]; /* symbol << 4 | code length; 0: a longer code (slow path) */
  uint16_t count[16];
  uint16_t symbol[320];
  int fast_bits;
} Huffman;

typedef struct {
  const unsigned char *in;
  size_t length, pos; /* pos may run past length: zero bytes, noticed by overrun() */
  uint64_t buffer;
  unsigned bits;
} BitReader;

static inline void refill(BitReader *r) {
  if (r->pos + 8 <= r->length) {
    uint64_t word;
    memcpy(&word, r->in + r->pos, 8);
    r->buffer |= word << r->bits;
    r->pos += (63 - r->bits) >> 3;
    r->bits |= 56;
  } else {
    while (r->bits <= 56) {
      uint64_t byte = r->pos < r->length ? r->in[r->pos] : 0;
      r->buffer |= byte << r->bits;
      r->pos++;
      r->bits += 8;
    }
  }
}

static inline uint32_t take(BitReader *r, unsigned n) {
  uint32_t value = (uint32_t)(r->buffer & ((1ull << n) - 1));
  r->buffer >>= n;
  r->bits -= n;
  return value;
}

static inline int overrun(const BitReader *r) { return (double)r->pos * 8 - r->bits > (double)r->length * 8; }

/* Canonical Huffman code from code lengths: 1 when complete, or when it has a single code, else 0. */
static int build_huffman(Huffman *h, const uint8_t *lengths, int n, int fast_bits) {
  uint16_t offsets[16];
  int next_code[16];
  memset(h->count, 0, sizeof h->count);
  for (int i = 0; i < n; i++) h->count[lengths[i]]++;
  h->count[0] = 0;
  int left = 1, codes = 0;
  for (int len = 1; len < 16; len++) {
    left = (left << 1) - h->count[len];
    codes += h->count[len];
    if (left < 0) return 0;
  }
  if (left > 0 && codes != 1) return 0;
  offsets[1] = 0;
  for (int len = 1; len < 15; len++) offsets[len + 1] = offsets[len] + h->count[len];
  for (int i = 0; i < n; i++)
    if (lengths[i]) h->symbol[offsets[lengths[i]]++] = (uint16_t)i;
  h->fast_bits = fast_bits;
  memset(h->fast, 0, sizeof(uint16_t) << fast_bits);
  /* RFC 1951 §3.2.2: the first code of each length. */
  int code = 0;
  for (int len = 1; len < 16; len++) {
    code = (code + (len > 1 ? h->count[len - 1] : 0)) << 1;
    next_code[len] = code;
  }
  for (int i = 0; i < n; i++) {
    int len = lengths[i];
    if (!len) continue;
    int c = next_code[len]++;
    if (len > fast_bits) continue;
    int reversed = 0;
    for (int b = 0; b < len; b++) reversed |= ((c >> b) & 1) << (len - 1 - b);
    for (int at = reversed; at < (1 << fast_bits); at += 1 << len) h->fast[at] = (uint16_t)(i << 4 | len);
  }
  return 1;
}

/* One symbol; -1 when no code matches. Needs at least 15 bits in the buffer. */
static inline int decode(BitReader *r, const Huffman *h) {
  uint16_t entry = h->fast[r->buffer & ((1u << h->fast_bits) - 1)];
  if (entry) {
    take(r, entry & 15);
    return entry >> 4;
  }
  int code = 0, first = 0, index = 0;
  for (int len = 1; len < 16; len++) {
    code |= (int)take(r, 1);
    int count = h->count[len];
    if (code - count < first) return h->symbol[index + (code - first)];
    index += count;
    first = (first + count) << 1;
    code <<= 1;
  }
  return -1;
}

static const uint8_t length_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint8_t distance_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* One block's symbols, without output: 1 at its end-of-block code, 0 on bad data or overrun. */
static int walk_symbols(BitReader *r, const Huffman *literals, const Huffman *distances) {
  for (;;) {
    refill(r); /* 56 bits or more: enough for a length and a distance with their extra bits */
    if (r->pos > r->length + 16) return 0;
    int symbol = decode(r, literals);
    if (symbol < 256) {
      if (symbol < 0) return 0;
      continue;
    }
    if (symbol == 256) return 1;
    symbol -= 257;
    if (symbol >= 29) return 0;
    take(r, length_extra[symbol]);
    int distance = decode(r, distances);
    if (distance < 0 || distance >= 30) return 0;
    take(r, distance_extra[distance]);
  }
}

static const uint8_t code_length_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* A dynamic block's code tables (RFC 1951 §3.2.7); 0 on bad data. */
static int read_dynamic_tables(BitReader *r, Huffman *literals, Huffman *distances) {
  refill(r);
  int literal_count = (int)take(r, 5) + 257, distance_count = (int)take(r, 5) + 1, code_count = (int)take(r, 4) + 4;
  if (literal_count > 286 || distance_count > 30) return 0;
  uint8_t lengths[320];
  memset(lengths, 0, 19);
  int kraft = 0; /* a complete code-length code sums to 2^7 (checked before building any table) */
  for (int i = 0; i < code_count; i++) {
    if (r->bits < 3) refill(r);
    int len = (int)take(r, 3);
    lengths[code_length_order[i]] = (uint8_t)len;
    if (len) kraft += 128 >> len;
  }
  if (kraft != 128) return 0;
  Huffman code_lengths;
  if (!build_huffman(&code_lengths, lengths, 19, 7)) return 0;
  int total = literal_count + distance_count;
  for (int i = 0; i < total;) {
    refill(r);
    if (r->pos > r->length + 16) return 0;
    int symbol = decode(r, &code_lengths);
    if (symbol < 0) return 0;
    if (symbol < 16) {
      lengths[i++] = (uint8_t)symbol;
      continue;
    }
    int repeat, value = 0;
    if (symbol == 16) {
      if (i == 0) return 0;
      value = lengths[i - 1];
      repeat = 3 + (int)take(r, 2);
    } else if (symbol == 17) repeat = 3 + (int)take(r, 3);
    else repeat = 11 + (int)take(r, 7);
    if (i + repeat > total) return 0;
    while (repeat--) lengths[i++] = (uint8_t)value;
  }
  if (lengths[256] == 0) return 0;
  return build_huffman(literals, lengths, literal_count, FAST_BITS) && build_huffman(distances, lengths + literal_count, distance_count, DIST_FAST_BITS);
}

/*
 * Whether a whole non-final dynamic block starts at bit `bit` of input (see findBlock). Counts in
 * *walks each guess whose tables were complete, so that hostile data cannot make the scan long.
 */
static int block_starts_at(const unsigned char *input, size_t length, double bit, Huffman *literals, Huffman *distances, int *walks) {
  size_t byte = (size_t)(bit / 8);
  BitReader r = {input, length, byte, 0, 0};
  refill(&r);
  take(&r, (unsigned)(bit - (double)byte * 8));
  if ((r.buffer & 7) != 4) return 0; /* BFINAL 0, BTYPE 2 */
  take(&r, 3);
  if (!read_dynamic_tables(&r, literals, distances)) return 0;
  ++*walks;
  if (!walk_symbols(&r, literals, distances) || overrun(&r)) return 0;
  refill(&r);
  return ((r.buffer >> 1) & 3) != 3 && !overrun(&r);
}

/* Guesses with complete tables that findBlock walks before it gives up (real data needs one or two). */
#define MAX_WALKS 64

/* findBlock(input, fromBit) -> bit or -1 */
static napi_value find_block(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  unsigned char *input;
  size_t length;
  double from = 0;
  if (argc < 2 || !bytes_of(env, argv[0], &input, &length) || napi_get_value_double(env, argv[1], &from) != napi_ok || !(from >= 0)) {
    napi_throw_type_error(env, NULL, "seekz_zlib: findBlock(input: Uint8Array, fromBit: number)");
    return NULL;
  }
  Huffman *tables = malloc(2 * sizeof(Huffman));
  double found = -1;
  if (tables) {
    int walks = 0;
    for (double bit = from; bit < (double)length * 8 && walks < MAX_WALKS; bit++) {
      if (block_starts_at(input, length, bit, tables, tables + 1, &walks)) {
        found = bit;
        break;
      }
    }
    free(tables);
  }
  CHECK(napi_create_double(env, found, &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"createInflater", NULL, create_inflater, NULL, NULL, NULL, napi_default, NULL},
      {"inflateBlocks", NULL, inflate_blocks, NULL, NULL, NULL, napi_default, NULL},
      {"inflateBlocksSync", NULL, inflate_blocks_sync, NULL, NULL, NULL, napi_default, NULL},
      {"crc32", NULL, crc32_of, NULL, NULL, NULL, napi_default, NULL},
      {"findBlock", NULL, find_block, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value version;
  napi_create_string_utf8(env, zlibVersion(), NAPI_AUTO_LENGTH, &version);
  napi_set_named_property(env, exports, "zlibVersion", version);
  napi_define_properties(env, exports, sizeof properties / sizeof *properties, properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
