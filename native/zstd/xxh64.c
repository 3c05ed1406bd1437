/*
 * XXH64 (seed 0) over a buffer, for zstd's Content_Checksum and the seek table's checksum: an
 * in-place edit of a stored frame recomputes it over up to 1 MiB, and the JavaScript version in
 * src/zstd/xxh64.ts takes ~50 ms a MiB (64-bit multiplies in 16-bit pieces). libzstd has XXH64
 * inside but does not export it. Registered by zstd.c as xxh64Low32(data) -> uint32 (the low 32
 * bits, what zstd stores). Pinned by test/zstd-edit.test.ts against the JavaScript version and
 * against the checksums zstd writes.
 */
#include <node_api.h>
#include <stdint.h>
#include <string.h>

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t read64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; } /* little-endian hosts */
static inline uint32_t read32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t round64(uint64_t acc, uint64_t input) { return rotl64(acc + input * P2, 31) * P1; }
static inline uint64_t merge64(uint64_t acc, uint64_t value) { return (acc ^ round64(0, value)) * P1 + P4; }

uint64_t seekzXxh64(const uint8_t *p, size_t length) {
  const uint8_t *end = p + length;
  uint64_t h;
  if (length >= 32) {
    uint64_t v1 = P1 + P2, v2 = P2, v3 = 0, v4 = -P1;
    const uint8_t *limit = end - 32;
    do {
      v1 = round64(v1, read64(p)); v2 = round64(v2, read64(p + 8));
      v3 = round64(v3, read64(p + 16)); v4 = round64(v4, read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = merge64(h, v1); h = merge64(h, v2); h = merge64(h, v3); h = merge64(h, v4);
  } else {
    h = P5;
  }
  h += (uint64_t)length;
  for (; p + 8 <= end; p += 8) h = rotl64(h ^ round64(0, read64(p)), 27) * P1 + P4;
  if (p + 4 <= end) { h = rotl64(h ^ ((uint64_t)read32(p) * P1), 23) * P2 + P3; p += 4; }
  for (; p < end; p++) h = rotl64(h ^ (*p * P5), 11) * P1;
  h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32;
  return h;
}

napi_value seekzXxh64Low32(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  void *data;
  size_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_typedarray_info(env, argv[0], NULL, &length, &data, NULL, NULL) != napi_ok) {
    napi_throw_type_error(env, NULL, "seekz_zstd: xxh64Low32 takes a Uint8Array");
    return NULL;
  }
  if (napi_create_uint32(env, (uint32_t)seekzXxh64(data, length), &result) != napi_ok) return NULL;
  return result;
}
