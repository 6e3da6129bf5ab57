/*
 * Compiles include/llmr.h as a user would, in C and in C++:
 *
 *     cc  -std=c99   -Wall -Wextra -Werror -pedantic -fsyntax-only -Iinclude tests/c/header_check.c
 *     c++ -x c++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only -Iinclude tests/c/header_check.c
 *
 * Run by tests/c_harness.rs. It uses the header's types, status constants and synchronous
 * functions, so a declaration that one of the languages rejects shows up here; the C++ build
 * links nothing, the `extern "C"` block is what keeps the names unmangled.
 */

#include "llmr.h"
#include "llmr.h" /* the include guard works */

static int32_t chunk(const char *chunk_json, void *user_data) {
    (void)chunk_json;
    (void)user_data;
    return 0;
}

int header_check(void);

int header_check(void) {
    llmr_chunk_cb cb = chunk;
    llmr_status statuses[] = {LLMR_OK,
                              LLMR_ERR_INVALID_ARGUMENT,
                              LLMR_ERR_CONFIG,
                              LLMR_ERR_NOT_INITIALIZED,
                              LLMR_ERR_CONTEXT_OVERFLOW,
                              LLMR_ERR_RATE_LIMITED,
                              LLMR_ERR_AUTH,
                              LLMR_ERR_BAD_REQUEST,
                              LLMR_ERR_CONTENT_POLICY,
                              LLMR_ERR_TIMEOUT,
                              LLMR_ERR_UPSTREAM,
                              LLMR_ERR_CANCELLED,
                              LLMR_ERR_INTERNAL};
    char *out = NULL;
    const char *version = llmr_version();
    int n = LLMR_VERSION_MAJOR + LLMR_VERSION_MINOR + LLMR_VERSION_PATCH;
    bool auto_mode = llmr_is_auto_mode(LLMR_AUTO_MODE_ID);
    bool initialized = llmr_is_initialized();
    size_t models = llmr_model_count();
    llmr_status st = llmr_init("{}", &out);
    llmr_string_free(out);
    st = llmr_complete("{}", &out);
    llmr_string_free(out);
    st = llmr_stream("{}", cb, NULL, &out);
    llmr_string_free(out);
    st = llmr_router_info(&out);
    llmr_string_free(out);
    st = llmr_stats(&out);
    llmr_string_free(out);
    st = llmr_shutdown();
    const char *name = llmr_status_name(statuses[st]);
    return n + (int)auto_mode + (int)initialized + (int)models + (version != NULL) + (name != NULL);
}
