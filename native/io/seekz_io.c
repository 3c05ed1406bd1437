/*
 * seekz_io: the file-descriptor calls Node does not have, so that a decompressor can leave
 * holes in a stdout that the shell redirected to a regular file, as `xz -dc > FILE` does: lseek
 * (to learn where the shell left the offset, and to move it over a run of zeros, so that the
 * offset ends where the data ends and a later command in `{ …; …; } > FILE` appends after it)
 * and fcntl(F_GETFL) (a file opened with O_APPEND, `>>`, cannot get holes). Used by
 * sparseStdout in src/io/atomic-file.ts; without this addon stdout is written in full. Pinned by
 * test/cli-manners.test.ts ("holes in stdout"). And fcntl(F_SETPIPE_SZ): a larger pipe buffer
 * for a stdout that is a pipe (streamSink), so that `seekzstd -dc | …` wakes its reader once a
 * MiB instead of once every 64 KiB.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <unistd.h>

/* seek(fd: number, offset: number, whence: 0 | 1 | 2): the new offset, or -errno. */
static napi_value seek_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd, whence;
  int64_t offset;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok || napi_get_value_int32(env, argv[2], &whence) != napi_ok) {
    napi_throw_type_error(env, NULL, "seekz_io.seek(fd, offset, whence): bad arguments");
    return NULL;
  }
  off_t at = lseek(fd, (off_t)offset, whence);
  napi_create_int64(env, at < 0 ? -(int64_t)errno : (int64_t)at, &result);
  return result;
}

/* appendMode(fd: number): 1 when the file is open with O_APPEND, 0 when not, or -errno. */
static napi_value append_mode_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "seekz_io.appendMode(fd): bad arguments");
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  napi_create_int32(env, flags < 0 ? -errno : (flags & O_APPEND) != 0, &result);
  return result;
}

/* pipeSize(fd: number, size: number): with size 0 the pipe's buffer size (F_GETPIPE_SZ), else asks
   for at least `size` bytes (F_SETPIPE_SZ) and returns the size it got; -errno on failure. */
static napi_value pipe_size_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, size;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &size) != napi_ok || size < 0) {
    napi_throw_type_error(env, NULL, "seekz_io.pipeSize(fd, size): bad arguments");
    return NULL;
  }
  int got = size == 0 ? fcntl(fd, F_GETPIPE_SZ) : fcntl(fd, F_SETPIPE_SZ, size);
  napi_create_int32(env, got < 0 ? -errno : got, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"seek", NULL, seek_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"appendMode", NULL, append_mode_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pipeSize", NULL, pipe_size_js, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
