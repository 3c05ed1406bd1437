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
 * One lzma_stream per thread (node-api instance data), reused block after block: liblzma keeps its
 * dictionary allocation when the next block asks for the same size, so a block costs no mmap and
 * no page faults for an 8 MiB dictionary.
 */
#include <errno.h>
#include <lzma.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
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

typedef struct {
  lzma_stream stream;  /* the block decoder */
  lzma_stream encoder; /* the block encoder: its match finder (94 MiB at -6) is kept, not freed and page-faulted again per block */
  uint8_t *window;     /* decodeBlockToFile's FILE_WINDOW bytes, allocated on first use */
} thread_state;

static void free_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  thread_state *state = data;
  lzma_end(&state->stream);
  lzma_end(&state->encoder);
  free(state->window);
  free(state);
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
static int decode_block(thread_state *state, const uint8_t *input, size_t input_length, uint32_t check, uint64_t unpadded_size,
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
  ret = lzma_block_decoder(&state->stream, &block);
  free_filters(filters); /* the decoder has copied what it needs */
  if (ret != LZMA_OK) return ret;

  lzma_stream *stream = &state->stream;
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
 * decodeBlock(input: Uint8Array, checkId: number, unpaddedSize: number, output: Uint8Array,
 *             stop: Int32Array | null): number
 * `input` is the block as it sits in the file (header through check, padding included).
 */
static napi_value decode_block_js(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) {
    napi_throw_type_error(env, NULL, "seekz_xz.decodeBlock: 5 arguments");
    return NULL;
  }
  uint8_t *input, *output;
  size_t input_length, output_length;
  uint32_t check;
  double unpadded;
  if (!bytes_of(env, argv[0], &input, &input_length) || !bytes_of(env, argv[3], &output, &output_length) ||
      napi_get_value_uint32(env, argv[1], &check) != napi_ok || napi_get_value_double(env, argv[2], &unpadded) != napi_ok) {
    napi_throw_type_error(env, NULL, "seekz_xz.decodeBlock(input, checkId, unpaddedSize, output, stop): bad arguments");
    return NULL;
  }
  const int32_t *stop;
  if (!get_stop(env, argv[4], &stop)) {
    napi_throw_type_error(env, NULL, "seekz_xz.decodeBlock: stop must be an Int32Array");
    return NULL;
  }
  thread_state *state;
  if (napi_get_instance_data(env, (void **)&state) != napi_ok || state == NULL) {
    napi_throw_error(env, NULL, "seekz_xz: no thread state");
    return NULL;
  }
  int code = decode_block(state, input, input_length, check, (uint64_t)unpadded, output, output_length, NULL, 0, stop);
  napi_create_int32(env, code, &result);
  return result;
}

/*
 * decodeBlockToFile(input: Uint8Array, checkId: number, unpaddedSize: number, size: number, fd: number,
 *                   position: number, stop: Int32Array | null): number
 * As decodeBlock, for a block of `size` bytes, but the bytes go to `fd` at `position` (pwrite), whole
 * zero 4 KiB blocks left as holes: the file must hold nothing there yet. The same codes, plus
 * SEEKZ_WRITE_ERRNO + errno when a write fails.
 */
static napi_value decode_block_to_file_js(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_value result;
  uint8_t *input;
  size_t input_length;
  uint32_t check;
  int32_t fd;
  double unpadded, size, position;
  const int32_t *stop;
  thread_state *state;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 7 || !bytes_of(env, argv[0], &input, &input_length) ||
      napi_get_value_uint32(env, argv[1], &check) != napi_ok || napi_get_value_double(env, argv[2], &unpadded) != napi_ok ||
      napi_get_value_double(env, argv[3], &size) != napi_ok || napi_get_value_int32(env, argv[4], &fd) != napi_ok ||
      napi_get_value_double(env, argv[5], &position) != napi_ok || !get_stop(env, argv[6], &stop) || size < 0 || position < 0) {
    napi_throw_type_error(env, NULL, "seekz_xz.decodeBlockToFile(input, checkId, unpaddedSize, size, fd, position, stop): bad arguments");
    return NULL;
  }
  if (napi_get_instance_data(env, (void **)&state) != napi_ok || state == NULL) {
    napi_throw_error(env, NULL, "seekz_xz: no thread state");
    return NULL;
  }
  if (state->window == NULL && (state->window = malloc(FILE_WINDOW)) == NULL) {
    napi_create_int32(env, LZMA_MEM_ERROR, &result);
    return result;
  }
  file_out file = {fd, (uint64_t)position};
  int code = decode_block(state, input, input_length, check, (uint64_t)unpadded, state->window, (size_t)size, &file, FILE_WINDOW, stop);
  napi_create_int32(env, code, &result);
  return result;
}

/*
 * Encodes `input` as one block's data with the LZMA2 preset: writes compressed data, block padding
 * and check into `output` (at least lzma_block_buffer_bound(input.length) bytes) and returns the
 * compressed size, or -(lzma_ret / SEEKZ_* code). The filter chain is xz's for the preset, so the
 * bytes are those a liblzma stream encoder gives (node-liblzma's path): the output does not depend
 * on the engine. Interruptible like decode_block.
 */
static int64_t encode_block(thread_state *state, const uint8_t *input, size_t input_length, uint32_t preset, uint32_t check,
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
  lzma_ret ret = lzma_block_encoder(&state->encoder, &block);
  if (ret != LZMA_OK) return -ret;
  lzma_stream *stream = &state->encoder;
  size_t in_at = 0;
  stream->next_out = output;
  stream->avail_out = output_length;
  for (;;) {
    if (stop_requested(stop)) return -SEEKZ_INTERRUPTED;
    size_t in_take = input_length - in_at < SLICE_IN ? input_length - in_at : SLICE_IN;
    stream->next_in = input + in_at;
    stream->avail_in = in_take;
    ret = lzma_code(stream, in_at + in_take == input_length ? LZMA_FINISH : LZMA_RUN);
    in_at += in_take - stream->avail_in;
    if (ret == LZMA_STREAM_END) break;
    if (ret != LZMA_OK) return -ret;
    if (stream->avail_out == 0) return -LZMA_BUF_ERROR;
  }
  return (int64_t)block.compressed_size;
}

/* encodeBlock(input: Uint8Array, preset: number, checkId: number, output: Uint8Array, stop: Int32Array | null): number */
static napi_value encode_block_js(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_value result;
  uint8_t *input, *output;
  size_t input_length, output_length;
  uint32_t preset, check;
  const int32_t *stop;
  thread_state *state;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5 || !bytes_of(env, argv[0], &input, &input_length) ||
      napi_get_value_uint32(env, argv[1], &preset) != napi_ok || napi_get_value_uint32(env, argv[2], &check) != napi_ok ||
      !bytes_of(env, argv[3], &output, &output_length) || !get_stop(env, argv[4], &stop)) {
    napi_throw_type_error(env, NULL, "seekz_xz.encodeBlock(input, preset, checkId, output, stop): bad arguments");
    return NULL;
  }
  if (napi_get_instance_data(env, (void **)&state) != napi_ok || state == NULL) {
    napi_throw_error(env, NULL, "seekz_xz: no thread state");
    return NULL;
  }
  napi_create_int64(env, encode_block(state, input, input_length, preset, check, output, output_length, stop), &result);
  return result;
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

static napi_value version_js(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_create_string_utf8(env, lzma_version_string(), NAPI_AUTO_LENGTH, &result);
  return result;
}

NAPI_MODULE_INIT() {
  thread_state *state = calloc(1, sizeof *state);
  if (state == NULL) return NULL;
  lzma_stream blank = LZMA_STREAM_INIT;
  state->stream = blank;
  state->encoder = blank;
  napi_set_instance_data(env, state, free_state, NULL);
  napi_property_descriptor properties[] = {
      {"decodeBlock", NULL, decode_block_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"decodeBlockToFile", NULL, decode_block_to_file_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"encodeBlock", NULL, encode_block_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"filterFlags", NULL, filter_flags_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"liblzmaVersion", NULL, version_js, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
