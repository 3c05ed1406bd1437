/*
 * seekz_zstd: frame-level zstd over Debian's libzstd, as a Node-API addon (src/native/zstd.ts
 * loads it). Every call is synchronous and meant for worker threads: one frame in, one frame out.
 * Each thread that loads the addon gets its own contexts (instance data), reused across calls.
 *   compress(data, level)            -> ArrayBuffer: one frame with content size and checksum
 *   decompress(frame, expectedSize)  -> [Buffer, size]: room for expectedSize + 1 bytes, so a
 *                                       frame that decodes to more shows; checksum verified
 *   streamCreate()                   -> handle for a stream of frames of unknown size
 *   streamPush(handle, input)        -> [Uint8Array[], status]: output so far (checksums verified
 *                                       by libzstd); status 0 when the input ended on a frame end
 *   decompressInto(frame, out)       -> size: decodes into `out` (a Uint8Array the caller reuses, so
 *                                       no fresh pages are faulted in per frame); checksum verified
 *   xxh64Low32(data)                 -> uint32: zstd's checksum of data (xxh64.c)
 */
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

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
  ZSTD_CCtx_reset(contexts->cctx, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(contexts->cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(contexts->cctx, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(contexts->cctx, ZSTD_c_contentSizeFlag, 1);
  size_t written = ZSTD_compress2(contexts->cctx, contexts->scratch, bound, data, length);
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
    if (in.pos == in.size && output.pos < output.size) break;
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
  };
  napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties);
  return exports;
}
