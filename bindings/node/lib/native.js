'use strict';
// The FFI layer: finds libllmr, declares its C functions with koffi, converts and checks.
// Nothing here knows about promises or requests; see relay.js for that.

const fs = require('node:fs');
const path = require('node:path');
const { isMainThread } = require('node:worker_threads');
const koffi = require('koffi');

// The library calls back into the JS thread that started a request, through koffi's native
// code. A worker thread that ends takes its koffi instance with it (and, if the main thread has
// not loaded koffi, unmaps koffi's code): a callback still on its way then crashes the whole
// process. So llmr runs on the main thread unless the user opts in (see the README).
if (!isMainThread && process.env.LLMR_ALLOW_WORKER !== '1') {
  throw new Error(
    'llmr: load it on the main thread. To use it in a worker thread, set LLMR_ALLOW_WORKER=1, ' +
      "require('llmr') on the main thread too, and never end that worker while requests are " +
      'pending (their callbacks would crash the process).',
  );
}

const LIB_FILE = { darwin: 'libllmr.dylib', win32: 'llmr.dll' }[process.platform] ?? 'libllmr.so';

/**
 * Where libllmr is loaded from, in order: `$LLMR_LIB`; the library `make build` leaves in the
 * checkout (`../../target/release` from this package); the system's (`make install`), found by
 * the dynamic loader's own search path.
 */
function libraryPath() {
  if (process.env.LLMR_LIB) return process.env.LLMR_LIB;
  const inCheckout = path.resolve(__dirname, '..', '..', '..', 'target', 'release', LIB_FILE);
  if (fs.existsSync(inCheckout)) return inCheckout;
  return LIB_FILE;
}

const LIBRARY_PATH = libraryPath();

let lib;
try {
  lib = koffi.load(LIBRARY_PATH);
} catch (e) {
  throw new Error(
    `llmr: cannot load the native library from ${JSON.stringify(LIBRARY_PATH)} ` +
      '(set LLMR_LIB to its path, run `make build` in the llmr checkout, or `make install`): ' +
      e.message,
    { cause: e },
  );
}

// A string the library allocates and the caller frees with llmr_string_free: koffi decodes it
// to a JS string and then calls the free function on the original pointer.
const llmr_string_free = lib.func('void llmr_string_free(void *s)');
koffi.disposable('llmr_owned_str', 'const char *', llmr_string_free);

// `user_data` is declared as a pointer-sized integer: the binding passes a small request key,
// never a pointer, and gets it back as a JS number in the callbacks.
const DoneCallback = koffi.proto(
  'void llmr_done_cb(int32_t status, const char *json, uintptr_t user_data)',
);
const ChunkCallback = koffi.proto('int32_t llmr_chunk_cb(const char *chunk_json, uintptr_t user_data)');
const LogCallback = koffi.proto(
  'void llmr_log_cb(int32_t level, const char *message_json, uintptr_t user_data)',
);

const fn = {
  version: lib.func('const char *llmr_version(void)'),
  init: lib.func('int32_t llmr_init(const char *config_json, _Out_ llmr_owned_str *error_out)'),
  reload: lib.func('int32_t llmr_reload(const char *config_json, _Out_ llmr_owned_str *error_out)'),
  shutdown: lib.func('int32_t llmr_shutdown(void)'),
  isInitialized: lib.func('bool llmr_is_initialized(void)'),
  modelCount: lib.func('size_t llmr_model_count(void)'),
  isAutoMode: lib.func('bool llmr_is_auto_mode(int64_t llm_config_id)'),
  routerInfo: lib.func('int32_t llmr_router_info(_Out_ llmr_owned_str *info_out)'),
  stats: lib.func('int32_t llmr_stats(_Out_ llmr_owned_str *stats_out)'),
  statusName: lib.func('const char *llmr_status_name(int32_t status)'),
  // Only the asynchronous request functions: the blocking llmr_complete / llmr_stream would
  // hold the JS thread while their callbacks wait for it (a deadlock with koffi's relay).
  completeAsync: lib.func(
    'uint64_t llmr_complete_async(const char *request_json, llmr_done_cb *on_done, uintptr_t user_data)',
  ),
  streamAsync: lib.func(
    'uint64_t llmr_stream_async(const char *request_json, llmr_chunk_cb *on_chunk, llmr_done_cb *on_done, uintptr_t user_data)',
  ),
  cancel: lib.func('int32_t llmr_cancel(uint64_t request_id)'),
  setLogger: lib.func('int32_t llmr_set_logger(llmr_log_cb *on_log, int32_t max_level, uintptr_t user_data)'),
  metrics: lib.func('int32_t llmr_metrics(_Out_ llmr_owned_str *text_out)'),
};

/** Calls a function whose one argument is a `char **` out-string; returns [status, string]. */
function withOutString(f, ...args) {
  const out = [null];
  const status = f(...args, out);
  return [status, out[0]];
}

module.exports = { koffi, fn, withOutString, DoneCallback, ChunkCallback, LogCallback, LIBRARY_PATH };
