/*
 * The C harness: a real C program that drives the synchronous API of include/llmr.h (version,
 * init/shutdown, the small queries, complete, stream, router info, stats, string_free,
 * status_name) the way a C user would, checks statuses and JSON, and feeds the library every
 * kind of bad input: NULLs, invalid UTF-8, malformed and 100000-deep JSON, schema violations.
 * Also: a callback that stops a stream, 8 threads at once, requests racing shutdown/init, and
 * real HTTP (OPENAI and CUSTOM deployments on the stand-in) with every failure status.
 *
 * The asynchronous calls (llmr_complete_async, llmr_stream_async, llmr_cancel), on MOCK and on
 * the stand-in: results and errors in on_done, chunks in order, requests that cannot start
 * (id 0, on_done once), cancellation (llmr_cancel, a callback returning non-zero, llmr_shutdown
 * with requests in flight, also from inside a callback), 1,000 requests in flight from one
 * thread with every second one cancelled, callbacks that call back into the library. Hostile
 * input and timing: 100 MB strings, deep nesting in free-form fields, absurd settings, init from
 * 16 threads at once, llmr_shutdown with blocking and async calls and streams in flight (then
 * llmr_init again), callbacks that call llmr_shutdown / llmr_init, slow callbacks. Every
 * callback is checked to run on the library's one "llmr-callbacks" thread (never the caller's,
 * never two at once), every on_done exactly once; waits are bounded (a failed check, not a hang).
 *
 *     harness [--quick]
 *
 * Environment:
 *   LLMR_STANDIN_URL   http://127.0.0.1:PORT of a running llmr stand-in (testkit); without it
 *                      the HTTP cases are skipped with a note.
 *
 * --quick runs a reduced set (fewer iterations, no lifecycle race, 200 async requests in flight
 * instead of 1,000) for slow runs (valgrind).
 *
 * Driven from `cargo test --release --test c_harness` (tests/c_harness.rs), which also builds it
 * with AddressSanitizer/UBSan and runs it under valgrind. Exit status 0 only when every check
 * passed. Each failing check prints file:line, the section and what it got.
 *
 * The harness configures deployments with the two API keys below and checks that neither ever
 * comes back in any string the library returns (results, errors, chunks, info, stats); the cargo
 * test checks the same of everything the process printed, logs included.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "llmr.h"

/* Keep in step with tests/c_harness.rs, which looks for them in the output. */
#define KEY_INLINE "sk-harness-inline-3b9d0f6e2a7c41d8"
#define KEY_ENV "sk-harness-env-8e1f4c7a9b2d05e3"
#define KEY_ENV_VAR "LLMR_HARNESS_ENV_KEY"

/* The status values are ABI: a changed number breaks every compiled user. */
_Static_assert(LLMR_OK == 0, "LLMR_OK");
_Static_assert(LLMR_ERR_INVALID_ARGUMENT == 1, "LLMR_ERR_INVALID_ARGUMENT");
_Static_assert(LLMR_ERR_CONFIG == 2, "LLMR_ERR_CONFIG");
_Static_assert(LLMR_ERR_NOT_INITIALIZED == 3, "LLMR_ERR_NOT_INITIALIZED");
_Static_assert(LLMR_ERR_CONTEXT_OVERFLOW == 4, "LLMR_ERR_CONTEXT_OVERFLOW");
_Static_assert(LLMR_ERR_RATE_LIMITED == 5, "LLMR_ERR_RATE_LIMITED");
_Static_assert(LLMR_ERR_AUTH == 6, "LLMR_ERR_AUTH");
_Static_assert(LLMR_ERR_BAD_REQUEST == 7, "LLMR_ERR_BAD_REQUEST");
_Static_assert(LLMR_ERR_CONTENT_POLICY == 8, "LLMR_ERR_CONTENT_POLICY");
_Static_assert(LLMR_ERR_TIMEOUT == 9, "LLMR_ERR_TIMEOUT");
_Static_assert(LLMR_ERR_UPSTREAM == 10, "LLMR_ERR_UPSTREAM");
_Static_assert(LLMR_ERR_CANCELLED == 11, "LLMR_ERR_CANCELLED");
_Static_assert(LLMR_ERR_INTERNAL == 12, "LLMR_ERR_INTERNAL");
_Static_assert(LLMR_AUTO_MODE_ID == 0, "LLMR_AUTO_MODE_ID");
_Static_assert(sizeof(llmr_status) == 4, "llmr_status is int32_t");

/* ============================================================================================ */
/* Checks                                                                                        */

static atomic_int g_checks;
static atomic_int g_failures;
static _Thread_local const char *g_section = "";
static bool g_quick;

/* A string safe to print: a library output holding a key is withheld (the cargo test scans
 * everything printed for the keys). */
static const char *printable(const char *s) {
    if (s == NULL) {
        return "(NULL)";
    }
    if (strstr(s, KEY_INLINE) != NULL || strstr(s, KEY_ENV) != NULL) {
        return "(withheld: it contains an API key)";
    }
    return s;
}

static bool check_(bool ok, const char *expr, const char *file, int line, const char *detail) {
    atomic_fetch_add(&g_checks, 1);
    if (!ok) {
        atomic_fetch_add(&g_failures, 1);
        fprintf(stderr, "%s:%d: FAILED [%s]: %s\n", file, line, g_section, expr);
        if (detail != NULL) {
            fprintf(stderr, "    got: %.2000s\n", printable(detail));
        }
    }
    return ok;
}

/* CHECK(cond); CHECK_D(cond, json) also prints `json` when it fails. */
#define CHECK(cond) check_((cond) ? true : false, #cond, __FILE__, __LINE__, NULL)
#define CHECK_D(cond, detail) check_((cond) ? true : false, #cond, __FILE__, __LINE__, (detail))

static bool check_status_(llmr_status got, llmr_status want, const char *json, const char *expr,
                          const char *file, int line) {
    char what[512];
    snprintf(what, sizeof what, "%s == %s (got %s/%d)", expr, llmr_status_name(want),
             llmr_status_name(got), (int)got);
    return check_(got == want, what, file, line, got == want ? NULL : json);
}

/* CHECK_STATUS(status, LLMR_X, json): the status, with names and the JSON on failure. */
#define CHECK_STATUS(got, want, json) check_status_((got), (want), (json), #got, __FILE__, __LINE__)

/* ============================================================================================ */
/* A few lines of JSON reading: enough for checks, no dependency.                                */

static const char *skip_string(const char *p) {
    for (++p; *p && *p != '"'; ++p) {
        if (*p == '\\' && p[1]) {
            ++p;
        }
    }
    return *p ? p + 1 : p;
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') {
        ++p;
    }
    return p;
}

/* The value of the first member named `key`, depth-first in document order, or NULL. */
static const char *json_find(const char *json, const char *key) {
    if (json == NULL) {
        return NULL;
    }
    size_t key_len = strlen(key);
    for (const char *p = json; *p;) {
        if (*p != '"') {
            ++p;
            continue;
        }
        const char *start = p + 1;
        p = skip_string(p);
        const char *after = skip_ws(p);
        if (*after == ':' && (size_t)(p - 1 - start) == key_len &&
            strncmp(start, key, key_len) == 0) {
            return skip_ws(after + 1);
        }
    }
    return NULL;
}

/* The length of the JSON value at `v`. */
static size_t json_span(const char *v) {
    const char *p = v;
    if (*p == '"') {
        return (size_t)(skip_string(p) - v);
    }
    int depth = 0;
    while (*p) {
        if (*p == '"') {
            p = skip_string(p);
            continue;
        }
        if (*p == '{' || *p == '[') {
            ++depth;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0) {
                break;
            }
            if (--depth == 0) {
                ++p;
                break;
            }
        } else if (*p == ',' && depth == 0) {
            break;
        }
        ++p;
    }
    return (size_t)(p - v);
}

/* Whether member `key` is exactly the JSON text `literal` (e.g. "\"stop\"", "4", "null"). */
static bool json_is(const char *json, const char *key, const char *literal) {
    const char *v = json_find(json, key);
    size_t n = strlen(literal);
    return v != NULL && json_span(v) == n && strncmp(v, literal, n) == 0;
}

/* Whether member `key` exists and starts with `c` ('"' string, '{' object, '[' array...). */
static bool json_kind(const char *json, const char *key, char c) {
    const char *v = json_find(json, key);
    return v != NULL && *v == c;
}

/* Appends the decoded JSON string at `v` (only the escapes JSON output uses for text) to
 * out[*len], cut to `cap`. */
static void json_append_string(const char *v, char *out, size_t *len, size_t cap) {
    if (*v != '"') {
        return;
    }
    for (const char *p = v + 1; *p && *p != '"'; ++p) {
        char c = *p;
        if (c == '\\') {
            ++p;
            c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
            if (*p == 'u') { /* not expected in the texts used here: keep a marker */
                c = '?';
                p += 4;
            }
        }
        if (*len + 1 < cap) {
            out[(*len)++] = c;
        }
    }
    out[*len] = '\0';
}

/* Whether `json` is the ABI's error JSON for `status`:
 * {"error": {"status": "<name>", "code": N, "message": "...", ...}}. */
static bool is_error_json(const char *json, llmr_status status) {
    if (json == NULL || *skip_ws(json) != '{' || !json_kind(json, "error", '{')) {
        return false;
    }
    char name[64], code[16];
    snprintf(name, sizeof name, "\"%s\"", llmr_status_name(status));
    snprintf(code, sizeof code, "%d", (int)status);
    return json_is(json, "status", name) && json_is(json, "code", code) &&
           json_kind(json, "message", '"');
}

/* CHECK_ERROR(status, LLMR_X, json): the status, and `json` is the matching error JSON. */
#define CHECK_ERROR(got, want, json)                                                              \
    do {                                                                                          \
        if (CHECK_STATUS(got, want, json)) {                                                      \
            CHECK_D(is_error_json((json), (want)), (json));                                       \
        }                                                                                         \
    } while (0)

/* ============================================================================================ */
/* Calls                                                                                         */

/* Out-parameters start as this, so that a call that forgets to set them is caught. */
static char g_sentinel_byte;
#define SENTINEL (&g_sentinel_byte)

/* Every string the library hands back goes through here: never a key in it; freed once. */
static void release(char *s) {
    if (s == SENTINEL) {
        return;
    }
    if (s != NULL) {
        CHECK(strstr(s, KEY_INLINE) == NULL);
        CHECK(strstr(s, KEY_ENV) == NULL);
    }
    llmr_string_free(s);
}

typedef struct {
    llmr_status status;
    char *json; /* owned: release() it */
} result;

/* Checks an out-parameter after a call: written (not left as the sentinel), and non-NULL. */
static char *settled(char *out, const char *fn) {
    if (!check_(out != SENTINEL, "out-parameter written", __FILE__, __LINE__, fn)) {
        return NULL;
    }
    check_(out != NULL, "out-parameter holds a string", __FILE__, __LINE__, fn);
    return out;
}

static result complete(const char *request) {
    char *out = SENTINEL;
    result r;
    r.status = llmr_complete(request, &out);
    r.json = settled(out, "llmr_complete");
    return r;
}

/* What a stream callback saw. */
typedef struct {
    pthread_t caller;      /* the thread that called llmr_stream */
    int chunks;            /* callbacks so far */
    int stop_after;        /* return non-zero at this chunk (0: never) */
    int tool_chunks;       /* chunks carrying tool-call deltas */
    bool reenter;          /* call llmr_stats / llmr_model_count from inside the callback */
    bool wrong_thread;     /* a callback ran on another thread */
    bool bad_chunk;        /* a chunk that is not a chat.completion.chunk */
    char text[8192];       /* the content deltas, concatenated */
    size_t len;
} stream_ctx;

static void stream_ctx_init(stream_ctx *c) {
    memset(c, 0, sizeof *c);
    c->caller = pthread_self();
}

static int32_t on_chunk(const char *chunk_json, void *user_data) {
    stream_ctx *c = user_data;
    c->chunks++;
    if (!pthread_equal(pthread_self(), c->caller)) {
        c->wrong_thread = true;
    }
    if (chunk_json == NULL || !json_is(chunk_json, "object", "\"chat.completion.chunk\"") ||
        !json_kind(chunk_json, "choices", '[')) {
        c->bad_chunk = true;
    } else {
        CHECK(strstr(chunk_json, KEY_INLINE) == NULL);
        CHECK(strstr(chunk_json, KEY_ENV) == NULL);
        const char *content = json_find(chunk_json, "content");
        if (content != NULL) {
            json_append_string(content, c->text, &c->len, sizeof c->text);
        }
        if (json_kind(chunk_json, "tool_calls", '[')) {
            c->tool_chunks++;
        }
    }
    if (c->reenter) {
        /* The header says the callback may call other llmr functions. */
        char *stats = NULL;
        CHECK_STATUS(llmr_stats(&stats), LLMR_OK, stats);
        release(stats);
        CHECK(llmr_model_count() > 0);
    }
    return c->stop_after > 0 && c->chunks >= c->stop_after ? 1 : 0;
}

static result stream(const char *request, stream_ctx *ctx) {
    char *out = SENTINEL;
    result r;
    r.status = llmr_stream(request, on_chunk, ctx, &out);
    r.json = settled(out, "llmr_stream");
    CHECK(!ctx->wrong_thread);
    CHECK(!ctx->bad_chunk);
    return r;
}

/* llmr_init that must succeed, and sets the out-parameter to NULL on success. */
/* `apply` (llmr_init or llmr_reload) must succeed and leave no error JSON. */
static bool applied_ok(llmr_status (*apply)(const char *, char **), const char *config) {
    char *err = SENTINEL;
    llmr_status st = apply(config, &err);
    bool ok = CHECK_STATUS(st, LLMR_OK, err == SENTINEL ? NULL : err);
    CHECK(err == NULL);
    release(err);
    return ok && llmr_is_initialized();
}

static bool init_ok(const char *config) {
    return applied_ok(llmr_init, config);
}

/* Initialises with one MOCK deployment `id` that streams `count` words ("word word …"),
 * `delay_ms` apart. */
static bool init_words(const char *id, int count, int delay_ms) {
    char words[512] = "", config[1024];
    for (int i = 0; i < count && strlen(words) + 6 < sizeof words; ++i) {
        strcat(words, i ? " word" : "word");
    }
    snprintf(config, sizeof config,
             "{\"global_llm_configs\": [{\"id\": \"%s\", \"provider\": \"MOCK\", \"model_name\": \"m\","
             " \"litellm_params\": {\"mock_response\": \"%s\", \"mock_chunk_delay_ms\": %d}}]}",
             id, words, delay_ms);
    return init_ok(config);
}

static void shutdown_ok(void) {
    CHECK_STATUS(llmr_shutdown(), LLMR_OK, NULL);
    CHECK(!llmr_is_initialized());
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* A request whose single user message is `n` copies of 'x' (about n/4 tokens). */
static char *big_request(size_t n, const char *model) {
    char head[128];
    if (model != NULL) {
        snprintf(head, sizeof head, "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"",
                 model);
    } else {
        snprintf(head, sizeof head, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    }
    size_t h = strlen(head);
    char *s = malloc(h + n + 8);
    if (s == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memcpy(s, head, h);
    memset(s + h, 'x', n);
    strcpy(s + h + n, "\"}]}");
    return s;
}

/* prefix + `depth` × open + `depth` × close + suffix. */
static char *nested(size_t depth, const char *prefix, const char *open, const char *close,
                    const char *suffix) {
    size_t po = strlen(open), pc = strlen(close), pp = strlen(prefix), ps = strlen(suffix);
    char *s = malloc(pp + depth * (po + pc) + ps + 1);
    if (s == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    char *w = s;
    memcpy(w, prefix, pp);
    w += pp;
    for (size_t i = 0; i < depth; ++i, w += po) {
        memcpy(w, open, po);
    }
    for (size_t i = 0; i < depth; ++i, w += pc) {
        memcpy(w, close, pc);
    }
    memcpy(w, suffix, ps + 1);
    return s;
}

#define HELLO "{\"messages\":[{\"role\":\"user\",\"content\":\"hello harness\"}]}"
#define MOCK_TEXT "alpha beta gamma delta"

/* Two MOCK deployments with different windows (so `auto-large` exists), plus an entry that
 * must be skipped (unknown provider, no api_base) and carries a key: its warning must not
 * leak the key. */
static const char *const MOCK_CONFIG =
    "{\"global_llm_configs\": ["
    " {\"id\": \"m1\", \"provider\": \"MOCK\", \"model_name\": \"mock-a\", \"max_input_tokens\": 4000,"
    "  \"litellm_params\": {\"mock_response\": \"" MOCK_TEXT "\"}},"
    " {\"id\": \"m2\", \"provider\": \"mock\", \"model_name\": \"mock-b\", \"max_input_tokens\": 16000,"
    "  \"litellm_params\": {\"mock_response\": \"" MOCK_TEXT "\"}},"
    " {\"id\": \"skipped\", \"provider\": \"NOPE\", \"model_name\": \"x\", \"api_key\": \"" KEY_INLINE "\"}"
    "], \"router_settings\": {\"num_retries\": 1, \"timeout\": 60}}";

/* ============================================================================================ */
/* Functions that need no router                                                                 */

static void test_static_functions(void) {
    g_section = "static functions";

    const char *v = llmr_version();
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", LLMR_VERSION_MAJOR, LLMR_VERSION_MINOR,
             LLMR_VERSION_PATCH);
    CHECK_D(v != NULL && strcmp(v, want) == 0, v);
    CHECK(llmr_version() == v); /* static */

    static const char *const names[] = {
        "ok",      "invalid_argument", "config",         "not_initialized", "context_overflow",
        "rate_limited", "auth",        "bad_request",    "content_policy",  "timeout",
        "upstream", "cancelled",       "internal"};
    for (int i = 0; i <= 12; ++i) {
        const char *n = llmr_status_name(i);
        CHECK_D(n != NULL && strcmp(n, names[i]) == 0, n);
        CHECK(llmr_status_name(i) == n);
    }
    const llmr_status unknown[] = {-1, 13, 100, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; ++i) {
        const char *n = llmr_status_name(unknown[i]);
        CHECK_D(n != NULL && strcmp(n, "unknown") == 0, n);
    }

    CHECK(llmr_is_auto_mode(0));
    CHECK(llmr_is_auto_mode(LLMR_AUTO_MODE_ID));
    CHECK(!llmr_is_auto_mode(1));
    CHECK(!llmr_is_auto_mode(-1));
    CHECK(!llmr_is_auto_mode(INT64_MAX));
    CHECK(!llmr_is_auto_mode(INT64_MIN));

    llmr_string_free(NULL); /* NULL is ignored */
}

static void test_before_init(void) {
    g_section = "before init";
    CHECK(!llmr_is_initialized());
    CHECK(llmr_model_count() == 0);
    CHECK_STATUS(llmr_shutdown(), LLMR_OK, NULL); /* also when not initialised */

    result r = complete(HELLO);
    CHECK_ERROR(r.status, LLMR_ERR_NOT_INITIALIZED, r.json);
    release(r.json);

    stream_ctx ctx;
    stream_ctx_init(&ctx);
    r = stream(HELLO, &ctx);
    CHECK_ERROR(r.status, LLMR_ERR_NOT_INITIALIZED, r.json);
    CHECK(ctx.chunks == 0);
    release(r.json);

    char *out = SENTINEL;
    llmr_status st = llmr_router_info(&out);
    out = settled(out, "llmr_router_info");
    CHECK_ERROR(st, LLMR_ERR_NOT_INITIALIZED, out);
    release(out);

    out = SENTINEL;
    st = llmr_stats(&out);
    out = settled(out, "llmr_stats");
    CHECK_ERROR(st, LLMR_ERR_NOT_INITIALIZED, out);
    release(out);

    /* NULL out-parameters: the status alone. */
    CHECK_STATUS(llmr_complete(HELLO, NULL), LLMR_ERR_NOT_INITIALIZED, NULL);
    CHECK_STATUS(llmr_router_info(NULL), LLMR_ERR_NOT_INITIALIZED, NULL);
    CHECK_STATUS(llmr_stats(NULL), LLMR_ERR_NOT_INITIALIZED, NULL);
}

/* llmr_init that must fail with `want` and an error JSON. */
static void init_fails(const char *config, llmr_status want, const char *message_part) {
    char *err = SENTINEL;
    llmr_status st = llmr_init(config, &err);
    err = settled(err, "llmr_init");
    CHECK_ERROR(st, want, err);
    if (message_part != NULL && err != NULL) {
        const char *m = json_find(err, "message");
        CHECK_D(m != NULL && strstr(m, message_part) != NULL, err);
    }
    release(err);
    CHECK(!llmr_is_initialized());
    CHECK(llmr_model_count() == 0);
}

static void test_init_errors(void) {
    g_section = "init errors";
    init_fails(NULL, LLMR_ERR_INVALID_ARGUMENT, "config_json");
    CHECK_STATUS(llmr_init(NULL, NULL), LLMR_ERR_INVALID_ARGUMENT, NULL);

    /* Not UTF-8: a lone continuation byte, a truncated sequence, an overlong '/', a surrogate. */
    init_fails("{\"global_llm_configs\": [\x80]}", LLMR_ERR_INVALID_ARGUMENT, "UTF-8");
    init_fails("{\"global_llm_configs\": \"\xc3\"}", LLMR_ERR_INVALID_ARGUMENT, "UTF-8");
    init_fails("{\"global_llm_configs\": \"\xc0\xaf\"}", LLMR_ERR_INVALID_ARGUMENT, "UTF-8");
    init_fails("{\"global_llm_configs\": \"\xed\xa0\x80\"}", LLMR_ERR_INVALID_ARGUMENT, "UTF-8");

    /* Bad JSON, wrong shapes, nothing usable. */
    init_fails("", LLMR_ERR_CONFIG, NULL);
    init_fails("{", LLMR_ERR_CONFIG, NULL);
    init_fails("null", LLMR_ERR_CONFIG, NULL);
    init_fails("[]", LLMR_ERR_CONFIG, NULL);
    init_fails("{}", LLMR_ERR_CONFIG, NULL);
    init_fails("{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"m\"}]} trailing",
               LLMR_ERR_CONFIG, NULL);
    init_fails("{\"global_llm_configs\": {}}", LLMR_ERR_CONFIG, NULL);
    init_fails("{\"global_llm_configs\": []}", LLMR_ERR_CONFIG, NULL);
    init_fails("{\"global_llm_configs\": [{\"provider\": \"MOCK\"}]}", LLMR_ERR_CONFIG,
               "model_name");
    init_fails("{\"global_llm_configs\": [{\"provider\": \"OPENAI\", \"model_name\": \"gpt-4o\"}]}",
               LLMR_ERR_CONFIG, "api_key");
    init_fails("{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"m\"}],"
               " \"router_settings\": {\"routing_strategy\": \"fastest\"}}",
               LLMR_ERR_CONFIG, "routing_strategy");
    /* Unusable entries that carry keys: the message names them, never their keys. */
    init_fails("{\"global_llm_configs\": ["
               " {\"provider\": \"NOPE\", \"model_name\": \"x\", \"api_key\": \"" KEY_INLINE "\"},"
               " {\"provider\": \"AZURE_OPENAI\", \"model_name\": \"x\", \"api_key\": \"" KEY_INLINE "\"}]}",
               LLMR_ERR_CONFIG, "NOPE");
    init_fails("{\"global_llm_configs\": [{\"provider\": \"OPENAI\", \"model_name\": \"gpt-4o\","
               " \"api_key\": \"os.environ/LLMR_HARNESS_UNSET_VARIABLE\"}]}",
               LLMR_ERR_CONFIG, "LLMR_HARNESS_UNSET_VARIABLE");
    CHECK_STATUS(llmr_init("{", NULL), LLMR_ERR_CONFIG, NULL);

    /* 100000-deep nesting, as the whole config and inside an entry: an error, not a stack
     * overflow. */
    char *deep = nested(100000, "", "[", "]", "");
    init_fails(deep, LLMR_ERR_CONFIG, NULL);
    free(deep);
    deep = nested(100000, "{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"m\","
                  " \"litellm_params\": {\"x\": ", "{\"a\":", "}", "}}]}");
    init_fails(deep, LLMR_ERR_CONFIG, NULL);
    free(deep);
}

/* ============================================================================================ */
/* Lifecycle                                                                                     */

static void test_lifecycle(void) {
    g_section = "lifecycle";
    if (!init_ok(MOCK_CONFIG)) {
        return;
    }
    CHECK(llmr_is_initialized());
    CHECK(llmr_model_count() == 2);

    /* A second init returns OK and changes nothing, even with another config. */
    CHECK(init_ok("{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"other\"}]}"));
    CHECK(llmr_model_count() == 2);
    CHECK_STATUS(llmr_init(MOCK_CONFIG, NULL), LLMR_OK, NULL);
    CHECK(llmr_model_count() == 2);

    /* Shutdown, then everything answers NOT_INITIALIZED, then init works again. */
    shutdown_ok();
    CHECK(llmr_model_count() == 0);
    result r = complete(HELLO);
    CHECK_ERROR(r.status, LLMR_ERR_NOT_INITIALIZED, r.json);
    release(r.json);
    shutdown_ok(); /* twice is fine */

    CHECK(init_ok("{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"only\"}]}"));
    CHECK(llmr_model_count() == 1);
    r = complete(HELLO);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
    shutdown_ok();

    /* A failed init leaves the library uninitialised and usable. */
    init_fails("{", LLMR_ERR_CONFIG, NULL);
    CHECK(init_ok(MOCK_CONFIG));
    CHECK(llmr_model_count() == 2);
}

/* ============================================================================================ */
/* MOCK: completions, streams, router info, stats                                                */

static void check_completion(const char *json, const char *content) {
    char want[512];
    CHECK_D(json_is(json, "object", "\"chat.completion\""), json);
    CHECK_D(json_kind(json, "id", '"'), json);
    CHECK_D(json_find(json, "created") != NULL, json);
    CHECK_D(json_kind(json, "model", '"'), json);
    CHECK_D(json_kind(json, "choices", '['), json);
    CHECK_D(json_is(json, "role", "\"assistant\""), json);
    if (content != NULL) {
        snprintf(want, sizeof want, "\"%s\"", content);
        CHECK_D(json_is(json, "content", want), json);
        CHECK_D(json_is(json, "finish_reason", "\"stop\""), json);
    }
    CHECK_D(json_kind(json, "usage", '{'), json);
    CHECK_D(json_find(json, "prompt_tokens") != NULL, json);
    CHECK_D(json_find(json, "completion_tokens") != NULL, json);
    CHECK_D(json_find(json, "total_tokens") != NULL, json);
    /* llmr's own metadata */
    const char *meta = json_find(json, "llmr");
    CHECK_D(meta != NULL && *meta == '{', json);
    CHECK_D(json_kind(meta, "deployment_id", '"'), json);
    CHECK_D(json_kind(meta, "provider", '"'), json);
    CHECK_D(json_find(meta, "attempts") != NULL, json);
    CHECK_D(json_find(meta, "latency_ms") != NULL, json);
}

static void test_mock_calls(void) {
    g_section = "mock calls";
    if (!llmr_is_initialized() && !init_ok(MOCK_CONFIG)) {
        return;
    }

    /* A completion. */
    result r = complete(HELLO);
    if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
        check_completion(r.json, MOCK_TEXT);
        CHECK_D(json_is(r.json, "provider", "\"mock\""), r.json);
    }
    release(r.json);

    /* The groups by name; an unknown one is an error that names it. */
    r = complete("{\"model\": \"auto\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
    r = complete("{\"model\": \"auto-large\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
    if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
        CHECK_D(json_is(r.json, "deployment_id", "\"m2\""), r.json); /* the only large one */
    }
    release(r.json);
    r = complete("{\"model\": \"gpt-unknown\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
    CHECK_ERROR(r.status, LLMR_ERR_INVALID_ARGUMENT, r.json);
    CHECK_D(r.json && strstr(r.json, "gpt-unknown") != NULL, r.json);
    release(r.json);

    /* `stream` in the body is ignored: the function decides. Extra fields pass through. */
    r = complete("{\"stream\": true, \"temperature\": 0.5, \"max_tokens\": 50, \"seed\": 7,"
                 " \"messages\": [{\"role\": \"system\", \"content\": \"be brief\"},"
                 " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"}]}]}");
    if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
        check_completion(r.json, MOCK_TEXT);
    }
    release(r.json);

    /* Context-window fallback: ~8000 tokens fit only m2; ~100000 fit nothing. */
    char *big = big_request(32000, NULL);
    r = complete(big);
    if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
        CHECK_D(json_is(r.json, "deployment_id", "\"m2\""), r.json);
    }
    release(r.json);
    free(big);
    big = big_request(400000, NULL);
    r = complete(big);
    CHECK_ERROR(r.status, LLMR_ERR_CONTEXT_OVERFLOW, r.json);
    release(r.json);
    stream_ctx ctx;
    stream_ctx_init(&ctx);
    r = stream(big, &ctx);
    CHECK_ERROR(r.status, LLMR_ERR_CONTEXT_OVERFLOW, r.json);
    CHECK(ctx.chunks == 0);
    release(r.json);
    free(big);

    /* NULL response_out: the status alone. */
    CHECK_STATUS(llmr_complete(HELLO, NULL), LLMR_OK, NULL);

    /* A stream: one chunk per word, in order, on this thread; the assembled result. */
    stream_ctx_init(&ctx);
    ctx.reenter = true;
    r = stream(HELLO, &ctx);
    if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
        check_completion(r.json, MOCK_TEXT);
        CHECK(ctx.chunks == 4);
        CHECK_D(strcmp(ctx.text, MOCK_TEXT) == 0, ctx.text);
    }
    release(r.json);

    /* A stream with a NULL result_out. */
    stream_ctx_init(&ctx);
    CHECK_STATUS(llmr_stream(HELLO, on_chunk, &ctx, NULL), LLMR_OK, NULL);
    CHECK(ctx.chunks == 4);
    CHECK_D(strcmp(ctx.text, MOCK_TEXT) == 0, ctx.text);

    /* Router info: the static view, no key. */
    char *info = SENTINEL;
    llmr_status st = llmr_router_info(&info);
    info = settled(info, "llmr_router_info");
    if (CHECK_STATUS(st, LLMR_OK, info)) {
        CHECK_D(json_kind(info, "deployments", '['), info);
        CHECK_D(strstr(info, "\"m1\"") != NULL && strstr(info, "\"m2\"") != NULL, info);
        CHECK_D(strstr(info, "\"skipped\"") == NULL, info);
        CHECK_D(json_kind(info, "groups", '['), info);
        CHECK_D(strstr(info, "\"auto-large\"") != NULL, info);
        CHECK_D(json_kind(info, "context_window_fallbacks", '['), info);
        CHECK_D(json_kind(info, "router_settings", '{'), info);
        CHECK_D(json_kind(info, "routing_strategy", '"'), info);
        CHECK_D(json_is(info, "num_retries", "1"), info);
        const char *profile = json_find(info, "profile");
        CHECK_D(profile != NULL && json_is(profile, "max_input_tokens", "4000"), info);
        CHECK_D(json_find(info, "rpm") != NULL && json_find(info, "tpm") != NULL, info);
        CHECK_D(json_find(info, "api_base") != NULL, info);
    }
    release(info);
    CHECK_STATUS(llmr_router_info(NULL), LLMR_OK, NULL);

    /* Stats: the live view; the calls above were counted. */
    char *stats = SENTINEL;
    st = llmr_stats(&stats);
    stats = settled(stats, "llmr_stats");
    if (CHECK_STATUS(st, LLMR_OK, stats)) {
        CHECK_D(json_kind(stats, "deployments", '['), stats);
        CHECK_D(strstr(stats, "\"m1\"") != NULL && strstr(stats, "\"m2\"") != NULL, stats);
        CHECK_D(json_find(stats, "requests") != NULL, stats);
        CHECK_D(json_find(stats, "successes") != NULL, stats);
        CHECK_D(json_kind(stats, "failures", '{'), stats);
        CHECK_D(json_find(stats, "in_flight") != NULL, stats);
        CHECK_D(strstr(stats, "context_overflow") != NULL, stats); /* the failure above */
        CHECK_D(json_find(stats, "cooldown") != NULL, stats);
        CHECK_D(json_find(stats, "time_to_first_chunk_ms") != NULL, stats);
    }
    release(stats);
    CHECK_STATUS(llmr_stats(NULL), LLMR_OK, NULL);
}

/* ============================================================================================ */
/* Bad requests: a status and an error JSON, never a crash                                       */

static void request_fails(const char *request, llmr_status want) {
    int failures_before = atomic_load(&g_failures);
    result r = complete(request);
    CHECK_ERROR(r.status, want, r.json);
    release(r.json);

    stream_ctx ctx;
    stream_ctx_init(&ctx);
    r = stream(request, &ctx);
    CHECK_ERROR(r.status, want, r.json);
    CHECK(ctx.chunks == 0);
    release(r.json);

    CHECK_STATUS(llmr_complete(request, NULL), want, NULL);
    if (atomic_load(&g_failures) != failures_before) {
        fprintf(stderr, "    request: %.160s%s\n", request, strlen(request) > 160 ? "..." : "");
    }
}

static void test_bad_requests(void) {
    g_section = "bad requests";
    if (!llmr_is_initialized() && !init_ok(MOCK_CONFIG)) {
        return;
    }

    /* NULL for every pointer that must not be NULL. */
    result r = complete(NULL);
    CHECK_ERROR(r.status, LLMR_ERR_INVALID_ARGUMENT, r.json);
    CHECK_D(r.json && strstr(r.json, "request_json") != NULL, r.json);
    release(r.json);
    CHECK_STATUS(llmr_complete(NULL, NULL), LLMR_ERR_INVALID_ARGUMENT, NULL);

    stream_ctx ctx;
    stream_ctx_init(&ctx);
    r = stream(NULL, &ctx);
    CHECK_ERROR(r.status, LLMR_ERR_INVALID_ARGUMENT, r.json);
    release(r.json);
    char *out = SENTINEL;
    llmr_status st = llmr_stream(HELLO, NULL, NULL, &out);
    out = settled(out, "llmr_stream");
    CHECK_ERROR(st, LLMR_ERR_INVALID_ARGUMENT, out);
    CHECK_D(out && strstr(out, "on_chunk") != NULL, out);
    release(out);
    CHECK_STATUS(llmr_stream(NULL, NULL, NULL, NULL), LLMR_ERR_INVALID_ARGUMENT, NULL);
    CHECK_STATUS(llmr_stream(HELLO, NULL, NULL, NULL), LLMR_ERR_INVALID_ARGUMENT, NULL);
    /* user_data NULL is fine: it is passed through untouched. */

    /* Not UTF-8. */
    request_fails("{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
                  LLMR_ERR_INVALID_ARGUMENT);
    request_fails("{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xc3\"}]}",
                  LLMR_ERR_INVALID_ARGUMENT);
    request_fails("{\"messages\":[{\"role\":\"\xed\xa0\x80\",\"content\":\"x\"}]}",
                  LLMR_ERR_INVALID_ARGUMENT);

    /* Malformed JSON. */
    static const char *const malformed[] = {
        "",          " ",       "{",        "{\"messages\": [",  "null",  "[]", "42",
        "\"text\"",  "{}}",     "{'messages': []}",
        /* a valid request followed by more text is not valid JSON either */
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]} trailing",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}{}"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; ++i) {
        request_fails(malformed[i], LLMR_ERR_INVALID_ARGUMENT);
    }

    /* Schema violations. */
    static const char *const schema[] = {
        "{}",
        "{\"messages\": []}",
        "{\"messages\": \"hello\"}",
        "{\"messages\": [\"hello\"]}",
        "{\"messages\": [{\"content\": \"no role\"}]}",
        "{\"messages\": [{\"role\": \"\", \"content\": \"empty role\"}]}",
        "{\"messages\": [{\"role\": 7, \"content\": \"x\"}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": \"hot\"}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": -5}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"model\": 42}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"timeout\": -1}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"timeout\": 0}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": {}}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"model\": \"no-such-group\"}",
    };
    for (size_t i = 0; i < sizeof schema / sizeof schema[0]; ++i) {
        request_fails(schema[i], LLMR_ERR_INVALID_ARGUMENT);
    }

    /* 100000-deep nesting: as the whole request, and inside a message's content. */
    char *deep = nested(100000, "", "[", "]", "");
    request_fails(deep, LLMR_ERR_INVALID_ARGUMENT);
    free(deep);
    deep = nested(100000, "{\"messages\": [{\"role\": \"user\", \"content\": ", "[", "]", "}]}");
    request_fails(deep, LLMR_ERR_INVALID_ARGUMENT);
    free(deep);
    deep = nested(100000, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"extra\": ",
                  "{\"a\":", "}", "}");
    request_fails(deep, LLMR_ERR_INVALID_ARGUMENT);
    free(deep);

    /* The library is still fine. */
    r = complete(HELLO);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
}

/* ============================================================================================ */
/* Cancellation by the callback                                                                  */

static void test_cancel(void) {
    g_section = "cancel";
    /* 40 words, 50 ms apart: about 2 s if not cancelled. */
    shutdown_ok();
    if (!init_words("slow", 40, 50)) {
        return;
    }
    for (int stop_at = 1; stop_at <= 3; stop_at += 2) {
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        ctx.stop_after = stop_at;
        double t0 = now_s();
        result r = stream(HELLO, &ctx);
        double took = now_s() - t0;
        CHECK_ERROR(r.status, LLMR_ERR_CANCELLED, r.json);
        CHECK(ctx.chunks == stop_at); /* no callback after it said stop */
        CHECK(took < 1.5);
        release(r.json);
    }
    /* The router still answers after a cancelled stream. */
    stream_ctx ctx;
    stream_ctx_init(&ctx);
    result r = stream(HELLO, &ctx);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    CHECK(ctx.chunks == 40);
    release(r.json);
    shutdown_ok();
}

/* ============================================================================================ */
/* MOCK failures: each status comes back with its error JSON                                    */

static void mock_failure(const char *mock_error, llmr_status want) {
    char config[1024];
    snprintf(config, sizeof config,
             "{\"global_llm_configs\": [{\"id\": \"e1\", \"provider\": \"MOCK\", \"model_name\": \"m\","
             " \"litellm_params\": {\"mock_error\": %s}}],"
             " \"router_settings\": {\"num_retries\": 0, \"retry_after\": 0}}",
             mock_error);
    /* A fresh router for each call: a failure may cool the only deployment down. */
    for (int streaming = 0; streaming <= 1; ++streaming) {
        if (!init_ok(config)) {
            return;
        }
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        result r = streaming ? stream(HELLO, &ctx) : complete(HELLO);
        CHECK_ERROR(r.status, want, r.json);
        CHECK_D(json_is(r.json, "deployment_id", "\"e1\""), r.json);
        CHECK_D(json_is(r.json, "provider", "\"mock\""), r.json);
        CHECK(ctx.chunks == 0);
        release(r.json);
        shutdown_ok();
    }
}

static void test_mock_failures(void) {
    g_section = "mock failures";
    shutdown_ok();
    mock_failure("\"rate_limited\"", LLMR_ERR_RATE_LIMITED);
    mock_failure("\"auth\"", LLMR_ERR_AUTH);
    mock_failure("\"bad_request\"", LLMR_ERR_BAD_REQUEST);
    mock_failure("\"content_policy\"", LLMR_ERR_CONTENT_POLICY);
    mock_failure("\"context_overflow\"", LLMR_ERR_CONTEXT_OVERFLOW);
    mock_failure("\"upstream\"", LLMR_ERR_UPSTREAM);
    mock_failure("{\"http_status\": 429, \"message\": \"slow down\", \"retry_after\": 3}",
                 LLMR_ERR_RATE_LIMITED);
    mock_failure("{\"http_status\": 400, \"code\": \"context_length_exceeded\","
                 " \"message\": \"This model's maximum context length is 10 tokens\"}",
                 LLMR_ERR_CONTEXT_OVERFLOW);

    /* A bad mock_error is a config problem. */
    init_fails("{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"m\","
               " \"litellm_params\": {\"mock_error\": \"no_such_status\"}}]}",
               LLMR_ERR_CONFIG, NULL);

    /* A deployment slower than the request's timeout. */
    if (init_ok("{\"global_llm_configs\": [{\"id\": \"slow\", \"provider\": \"MOCK\", \"model_name\": \"m\","
                " \"litellm_params\": {\"mock_delay_ms\": 20000}}], \"router_settings\": {\"num_retries\": 0}}")) {
        double t0 = now_s();
        result r = complete("{\"timeout\": 0.3, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
        CHECK_ERROR(r.status, LLMR_ERR_TIMEOUT, r.json);
        CHECK(now_s() - t0 < 10.0);
        release(r.json);
        shutdown_ok();
    }
    if (init_ok("{\"global_llm_configs\": [{\"id\": \"slow\", \"provider\": \"MOCK\", \"model_name\": \"m\","
                " \"litellm_params\": {\"mock_delay_ms\": 20000}}], \"router_settings\": {\"num_retries\": 0}}")) {
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        double t0 = now_s();
        result r = stream("{\"timeout\": 0.3, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", &ctx);
        CHECK_ERROR(r.status, LLMR_ERR_TIMEOUT, r.json);
        CHECK(now_s() - t0 < 10.0);
        release(r.json);
        shutdown_ok();
    }

    /* Failover: a failing deployment and a good one; every request succeeds. */
    if (init_ok("{\"global_llm_configs\": ["
                " {\"id\": \"bad\", \"provider\": \"MOCK\", \"model_name\": \"m\","
                "  \"litellm_params\": {\"mock_error\": \"upstream\"}},"
                " {\"id\": \"good\", \"provider\": \"MOCK\", \"model_name\": \"m\"}],"
                " \"router_settings\": {\"num_retries\": 2, \"retry_after\": 0,"
                " \"routing_strategy\": \"simple-shuffle\"}}")) {
        for (int i = 0; i < 6; ++i) {
            stream_ctx ctx;
            stream_ctx_init(&ctx);
            result r = i % 2 ? stream(HELLO, &ctx) : complete(HELLO);
            if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
                CHECK_D(json_is(r.json, "deployment_id", "\"good\""), r.json);
            }
            release(r.json);
        }
        shutdown_ok();
    }
}

/* ============================================================================================ */
/* Tool calls                                                                                    */

static void test_mock_tools(void) {
    g_section = "mock tools";
    if (!init_ok("{\"global_llm_configs\": [{\"id\": \"t\", \"provider\": \"MOCK\", \"model_name\": \"m\","
                 " \"litellm_params\": {\"mock_tool_calls\": [{\"name\": \"get_weather\","
                 " \"arguments\": {\"city\": \"Paris\"}}]}}]}")) {
        return;
    }
    const char *req =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"weather in Paris?\"}],"
        " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
        " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}],"
        " \"tool_choice\": \"auto\"}";
    result r = complete(req);
    if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
        check_completion(r.json, NULL);
        CHECK_D(json_kind(r.json, "tool_calls", '['), r.json);
        CHECK_D(json_is(r.json, "name", "\"get_weather\""), r.json);
        CHECK_D(json_kind(r.json, "arguments", '"'), r.json); /* a JSON string */
        CHECK_D(json_is(r.json, "finish_reason", "\"tool_calls\""), r.json);
    }
    release(r.json);

    stream_ctx ctx;
    stream_ctx_init(&ctx);
    r = stream(req, &ctx);
    if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
        CHECK(ctx.tool_chunks >= 1);
        CHECK_D(json_kind(r.json, "tool_calls", '['), r.json);
        CHECK_D(json_is(r.json, "name", "\"get_weather\""), r.json);
        CHECK_D(json_kind(r.json, "arguments", '"'), r.json);
        CHECK_D(r.json && strstr(r.json, "Paris") != NULL, r.json);
        CHECK_D(json_is(r.json, "finish_reason", "\"tool_calls\""), r.json);
    }
    release(r.json);

    /* A conversation that carries the tool result back. */
    r = complete("{\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"},"
                 " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\","
                 " \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": \"{}\"}}]},"
                 " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": {\"temp\": 21}}]}");
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
    shutdown_ok();
}

/* ============================================================================================ */
/* Threads                                                                                       */

#define THREADS 8

typedef struct {
    int index;
    int iterations;
    atomic_bool *stop; /* lifecycle race: run until set */
    int ok, not_initialized, cancelled;
} worker;

static void *worker_calls(void *arg) {
    worker *w = arg;
    g_section = "threads";
    for (int i = 0; i < w->iterations; ++i) {
        char req[256];
        snprintf(req, sizeof req,
                 "{\"user\": \"thread-%d\", \"messages\": [{\"role\": \"user\", \"content\": \"call %d\"}]}",
                 w->index, i);
        result r = complete(req);
        if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
            char want[64];
            snprintf(want, sizeof want, "\"%s\"", MOCK_TEXT);
            CHECK_D(json_is(r.json, "content", want), r.json);
        }
        release(r.json);

        stream_ctx ctx;
        stream_ctx_init(&ctx);
        ctx.reenter = (i % 4) == 0;
        r = stream(req, &ctx);
        if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
            CHECK_D(strcmp(ctx.text, MOCK_TEXT) == 0, ctx.text);
            CHECK(ctx.chunks == 4);
        }
        release(r.json);

        char *s = NULL;
        CHECK_STATUS(llmr_stats(&s), LLMR_OK, s);
        release(s);
        s = NULL;
        CHECK_STATUS(llmr_router_info(&s), LLMR_OK, s);
        release(s);
        CHECK(llmr_is_initialized());
        CHECK(llmr_model_count() == 2);
    }
    return NULL;
}

static void test_threads(void) {
    g_section = "threads";
    if (!llmr_is_initialized() && !init_ok(MOCK_CONFIG)) {
        return;
    }
    pthread_t t[THREADS];
    worker w[THREADS];
    int started = 0;
    for (int i = 0; i < THREADS; ++i) {
        w[i] = (worker){.index = i, .iterations = g_quick ? 2 : 25};
        if (CHECK(pthread_create(&t[i], NULL, worker_calls, &w[i]) == 0)) {
            started++;
        }
    }
    for (int i = 0; i < started; ++i) {
        pthread_join(t[i], NULL);
    }
    /* Every call was counted: 2 per iteration per thread, plus what came before. */
    char *stats = NULL;
    if (CHECK_STATUS(llmr_stats(&stats), LLMR_OK, stats)) {
        const char *totals = json_find(stats, "totals");
        const char *requests = totals ? json_find(totals, "requests") : NULL;
        CHECK_D(requests != NULL && atol(requests) >= (long)THREADS * w[0].iterations * 2, stats);
    }
    release(stats);
}

/* Concurrent llmr_init calls initialise once; all return OK. */
static void *worker_init(void *arg) {
    (void)arg;
    g_section = "concurrent init";
    char *err = SENTINEL;
    CHECK_STATUS(llmr_init(MOCK_CONFIG, &err), LLMR_OK, err == SENTINEL ? NULL : err);
    CHECK(err == NULL);
    release(err);
    return NULL;
}

/* Requests racing shutdown/init: each is OK, NOT_INITIALIZED (it started after a shutdown) or
 * CANCELLED (a shutdown cancelled it in flight), with the matching JSON. */
static void *worker_race(void *arg) {
    worker *w = arg;
    g_section = "lifecycle race";
    for (int i = 0; !atomic_load(w->stop); ++i) {
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        result r = (i % 2) ? stream(HELLO, &ctx) : complete(HELLO);
        if (r.status == LLMR_OK) {
            w->ok++;
            CHECK_D(json_is(r.json, "object", "\"chat.completion\""), r.json);
        } else if (r.status == LLMR_ERR_CANCELLED) {
            w->cancelled++;
            CHECK_D(is_error_json(r.json, LLMR_ERR_CANCELLED), r.json);
        } else {
            w->not_initialized++;
            CHECK_ERROR(r.status, LLMR_ERR_NOT_INITIALIZED, r.json);
        }
        release(r.json);
        char *s = NULL;
        llmr_status st = llmr_stats(&s);
        CHECK_D(st == LLMR_OK || st == LLMR_ERR_NOT_INITIALIZED, s);
        release(s);
        (void)llmr_model_count();
        (void)llmr_is_initialized();
    }
    return NULL;
}

static void test_concurrent_lifecycle(void) {
    g_section = "concurrent init";
    shutdown_ok();
    pthread_t t[THREADS];
    int started = 0;
    for (int i = 0; i < THREADS; ++i) {
        if (CHECK(pthread_create(&t[i], NULL, worker_init, NULL) == 0)) {
            started++;
        }
    }
    for (int i = 0; i < started; ++i) {
        pthread_join(t[i], NULL);
    }
    CHECK(llmr_is_initialized());
    CHECK(llmr_model_count() == 2);

    if (g_quick) {
        return;
    }
    g_section = "lifecycle race";
    atomic_bool stop;
    atomic_init(&stop, false);
    worker w[4];
    started = 0;
    for (int i = 0; i < 4; ++i) {
        w[i] = (worker){.index = i, .stop = &stop};
        if (CHECK(pthread_create(&t[i], NULL, worker_race, &w[i]) == 0)) {
            started++;
        }
    }
    for (int cycle = 0; cycle < 20; ++cycle) {
        sleep_ms(5);
        shutdown_ok();
        sleep_ms(2);
        CHECK(init_ok(MOCK_CONFIG));
    }
    atomic_store(&stop, true);
    int ok = 0;
    for (int i = 0; i < started; ++i) {
        pthread_join(t[i], NULL);
        ok += w[i].ok;
    }
    CHECK(ok > 0);
}

/* ============================================================================================ */
/* Hot reload                                                                                    */

#define RELOAD_TEXT "reloaded answer"

/* MOCK_CONFIG's m1 survives (same answer), m2 goes, m3 comes (another answer, a little slow so
 * that requests are in flight during the swaps); the skipped entry carries a key. */
static const char *const RELOAD_CONFIG =
    "{\"global_llm_configs\": ["
    " {\"id\": \"m1\", \"provider\": \"MOCK\", \"model_name\": \"mock-a\", \"max_input_tokens\": 4000,"
    "  \"litellm_params\": {\"mock_response\": \"" MOCK_TEXT "\"}},"
    " {\"id\": \"m3\", \"provider\": \"MOCK\", \"model_name\": \"mock-c\","
    "  \"litellm_params\": {\"mock_response\": \"" RELOAD_TEXT "\", \"mock_delay_ms\": 20}},"
    " {\"id\": \"skipped\", \"provider\": \"NOPE\", \"model_name\": \"x\", \"api_key\": \"" KEY_INLINE "\"}"
    "], \"router_settings\": {\"num_retries\": 2, \"timeout\": 60, \"routing_strategy\": \"least-busy\"}}";

/* llmr_reload that must fail with `want` and an error JSON, changing nothing. */
static void reload_fails(const char *config, llmr_status want, const char *message_part) {
    char *before = NULL;
    bool initialised = llmr_is_initialized();
    if (initialised) {
        CHECK_STATUS(llmr_router_info(&before), LLMR_OK, before);
    }
    char *err = SENTINEL;
    llmr_status st = llmr_reload(config, &err);
    err = settled(err, "llmr_reload");
    CHECK_ERROR(st, want, err);
    if (message_part != NULL && err != NULL) {
        const char *m = json_find(err, "message");
        CHECK_D(m != NULL && strstr(m, message_part) != NULL, err);
    }
    release(err);
    CHECK(llmr_is_initialized() == initialised);
    if (initialised) {
        char *after = NULL;
        CHECK_STATUS(llmr_router_info(&after), LLMR_OK, after);
        CHECK_D(before != NULL && after != NULL && strcmp(before, after) == 0, after);
        release(after);
    }
    release(before);
}

static bool reload_ok(const char *config) {
    return applied_ok(llmr_reload, config);
}

/* Requests while the config is swapped under them: every one succeeds, with either answer. */
static void *worker_reload(void *arg) {
    worker *w = arg;
    g_section = "reload under load";
    for (int i = 0; !atomic_load(w->stop); ++i) {
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        result r = (i % 2) ? stream(HELLO, &ctx) : complete(HELLO);
        if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
            w->ok++;
            CHECK_D(json_is(r.json, "content", "\"" MOCK_TEXT "\"") ||
                        json_is(r.json, "content", "\"" RELOAD_TEXT "\""),
                    r.json);
        }
        release(r.json);
    }
    return NULL;
}

static void test_reload(void) {
    g_section = "reload";
    shutdown_ok();
    reload_fails(MOCK_CONFIG, LLMR_ERR_NOT_INITIALIZED, "llmr_init");
    CHECK_STATUS(llmr_reload(MOCK_CONFIG, NULL), LLMR_ERR_NOT_INITIALIZED, NULL);
    CHECK(!llmr_is_initialized());
    if (!init_ok(MOCK_CONFIG)) {
        return;
    }

    /* Bad arguments and unusable configs: the status, an error JSON without the key, and the
     * router as it was. */
    reload_fails(NULL, LLMR_ERR_INVALID_ARGUMENT, "config_json");
    CHECK_STATUS(llmr_reload(NULL, NULL), LLMR_ERR_INVALID_ARGUMENT, NULL);
    reload_fails("{\"global_llm_configs\": [\x80]}", LLMR_ERR_INVALID_ARGUMENT, "UTF-8");
    reload_fails("{", LLMR_ERR_CONFIG, NULL);
    reload_fails("{\"global_llm_configs\": []}", LLMR_ERR_CONFIG, "no usable deployment");
    reload_fails("{\"global_llm_configs\": ["
                 " {\"provider\": \"NOPE\", \"model_name\": \"x\", \"api_key\": \"" KEY_INLINE "\"}]}",
                 LLMR_ERR_CONFIG, "NOPE");
    reload_fails("{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"m\"}],"
                 " \"router_settings\": {\"max_wait_when_cooling\": -1}}",
                 LLMR_ERR_CONFIG, "max_wait_when_cooling");
    CHECK_STATUS(llmr_reload("{", NULL), LLMR_ERR_CONFIG, NULL);
    CHECK(llmr_model_count() == 2);

    /* A good one: m2 gone, m3 there, the new settings in force. */
    if (!reload_ok(RELOAD_CONFIG)) {
        return;
    }
    CHECK(llmr_model_count() == 2);
    char *info = NULL;
    if (CHECK_STATUS(llmr_router_info(&info), LLMR_OK, info)) {
        CHECK_D(strstr(info, "\"m3\"") != NULL && strstr(info, "\"m2\"") == NULL, info);
        CHECK_D(json_is(info, "routing_strategy", "\"least-busy\""), info);
    }
    release(info);
    char *stats = NULL;
    if (CHECK_STATUS(llmr_stats(&stats), LLMR_OK, stats)) {
        CHECK_D(strstr(stats, "\"m3\"") != NULL && strstr(stats, "\"m2\"") == NULL, stats);
    }
    release(stats);

    /* Under load: four threads call while the config is swapped back and forth. */
    g_section = "reload under load";
    atomic_bool stop;
    atomic_init(&stop, false);
    pthread_t t[4];
    worker w[4];
    int started = 0;
    for (int i = 0; i < 4; ++i) {
        w[i] = (worker){.index = i, .stop = &stop};
        if (CHECK(pthread_create(&t[i], NULL, worker_reload, &w[i]) == 0)) {
            started++;
        }
    }
    int swaps = g_quick ? 4 : 30;
    for (int i = 0; i < swaps; ++i) {
        sleep_ms(10);
        CHECK(reload_ok(i % 2 ? RELOAD_CONFIG : MOCK_CONFIG));
    }
    sleep_ms(50);
    atomic_store(&stop, true);
    int ok = 0;
    for (int i = 0; i < started; ++i) {
        pthread_join(t[i], NULL);
        ok += w[i].ok;
    }
    CHECK(ok > 0);

    /* Back to a fresh MOCK_CONFIG router for what follows. */
    shutdown_ok();
    CHECK(init_ok(MOCK_CONFIG));
}

/* ============================================================================================ */
/* A real HTTP provider: the stand-in                                                            */

static const char *g_url;

/* One deployment of `provider` at the stand-in's `tenant`, keyed with `key_json` (a JSON value:
 * the key itself or "os.environ/NAME"). */
static bool standin_init(const char *provider, const char *tenant, const char *key_json,
                         const char *settings) {
    char config[2048];
    snprintf(config, sizeof config,
             "{\"global_llm_configs\": [{\"id\": \"s-%s\", \"provider\": \"%s\","
             " \"model_name\": \"gpt-4o-mini\", \"api_key\": %s, \"api_base\": \"%s/%s/v1\"}],"
             " \"router_settings\": %s}",
             tenant, provider, key_json, g_url, tenant, settings ? settings : "{\"num_retries\": 0}");
    return init_ok(config);
}

/* A tenant that must fail with `want`, as a completion and as a stream. */
static void standin_failure(const char *provider, const char *tenant, llmr_status want,
                            const char *http_status) {
    for (int streaming = 0; streaming <= 1; ++streaming) {
        if (!standin_init(provider, tenant, "\"" KEY_INLINE "\"", NULL)) {
            return;
        }
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        result r = streaming ? stream(HELLO, &ctx) : complete(HELLO);
        CHECK_ERROR(r.status, want, r.json);
        if (http_status != NULL) {
            CHECK_D(json_is(r.json, "http_status", http_status), r.json);
        }
        char id[64];
        snprintf(id, sizeof id, "\"s-%s\"", tenant);
        CHECK_D(json_is(r.json, "deployment_id", id), r.json);
        CHECK_D(json_find(r.json, "attempts") != NULL, r.json);
        CHECK(ctx.chunks == 0);
        release(r.json);
        shutdown_ok();
    }
}

static void test_standin(void) {
    g_section = "stand-in";
    g_url = getenv("LLMR_STANDIN_URL");
    if (g_url == NULL || *g_url == '\0') {
        printf("NOTE: LLMR_STANDIN_URL is not set: the HTTP cases are skipped\n");
        return;
    }
    shutdown_ok();

    /* OPENAI, answering: the stand-in echoes the last user message. */
    if (standin_init("OPENAI", "ok", "\"" KEY_INLINE "\"", NULL)) {
        result r = complete(HELLO);
        if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
            check_completion(r.json, "echo: hello harness");
            CHECK_D(json_is(r.json, "provider", "\"openai\""), r.json);
            CHECK_D(json_is(r.json, "deployment_id", "\"s-ok\""), r.json);
        }
        release(r.json);

        stream_ctx ctx;
        stream_ctx_init(&ctx);
        r = stream(HELLO, &ctx);
        if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
            check_completion(r.json, "echo: hello harness");
            CHECK(ctx.chunks >= 2);
            CHECK_D(strcmp(ctx.text, "echo: hello harness") == 0, ctx.text);
        }
        release(r.json);

        /* Cancelled by the callback at the first chunk. */
        stream_ctx_init(&ctx);
        ctx.stop_after = 1;
        r = stream(HELLO, &ctx);
        CHECK_ERROR(r.status, LLMR_ERR_CANCELLED, r.json);
        CHECK(ctx.chunks == 1);
        release(r.json);

        /* Info and stats hold the base URL and no key. */
        char *info = NULL;
        if (CHECK_STATUS(llmr_router_info(&info), LLMR_OK, info)) {
            CHECK_D(strstr(info, g_url) != NULL, info);
            CHECK_D(json_is(info, "id", "\"s-ok\""), info);
        }
        release(info);
        char *stats = NULL;
        if (CHECK_STATUS(llmr_stats(&stats), LLMR_OK, stats)) {
            CHECK_D(strstr(stats, "\"s-ok\"") != NULL, stats);
        }
        release(stats);
        shutdown_ok();
    }

    /* CUSTOM (any OpenAI-compatible server), its key read from the environment. */
    setenv(KEY_ENV_VAR, KEY_ENV, 1);
    if (standin_init("CUSTOM", "ok-custom", "\"os.environ/" KEY_ENV_VAR "\"", NULL)) {
        result r = complete(HELLO);
        if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
            check_completion(r.json, "echo: hello harness");
        }
        release(r.json);
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        r = stream(HELLO, &ctx);
        CHECK_STATUS(r.status, LLMR_OK, r.json);
        CHECK_D(strcmp(ctx.text, "echo: hello harness") == 0, ctx.text);
        release(r.json);
        shutdown_ok();
    }

    /* Failures, each with its status, its error JSON and no key. */
    standin_failure("OPENAI", "overflow", LLMR_ERR_CONTEXT_OVERFLOW, "400");
    standin_failure("CUSTOM", "overflow-custom", LLMR_ERR_CONTEXT_OVERFLOW, "400");
    standin_failure("OPENAI", "e429", LLMR_ERR_RATE_LIMITED, "429");
    standin_failure("OPENAI", "e401", LLMR_ERR_AUTH, "401");
    standin_failure("CUSTOM", "e403", LLMR_ERR_AUTH, "403");
    standin_failure("OPENAI", "e400", LLMR_ERR_BAD_REQUEST, "400");
    standin_failure("OPENAI", "policy", LLMR_ERR_CONTENT_POLICY, "400");
    standin_failure("OPENAI", "e500", LLMR_ERR_UPSTREAM, "500");
    standin_failure("OPENAI", "garbage", LLMR_ERR_UPSTREAM, NULL);

    /* The overflow in detail: the status name the bindings map to their own error type. */
    if (standin_init("OPENAI", "overflow", "\"" KEY_INLINE "\"", NULL)) {
        result r = complete(HELLO);
        CHECK_ERROR(r.status, LLMR_ERR_CONTEXT_OVERFLOW, r.json);
        CHECK_D(json_is(r.json, "status", "\"context_overflow\""), r.json);
        CHECK_D(json_is(r.json, "code", "4"), r.json);
        CHECK_D(json_is(r.json, "provider", "\"openai\""), r.json);
        release(r.json);
        shutdown_ok();
    }

    /* A 429 says when to come back. */
    if (standin_init("OPENAI", "e429", "\"" KEY_INLINE "\"", NULL)) {
        result r = complete(HELLO);
        CHECK_ERROR(r.status, LLMR_ERR_RATE_LIMITED, r.json);
        CHECK_D(json_find(r.json, "retry_after") != NULL, r.json);
        release(r.json);
        shutdown_ok();
    }

    /* Slower than the request's timeout. */
    if (standin_init("OPENAI", "slow-20000", "\"" KEY_INLINE "\"", NULL)) {
        double t0 = now_s();
        result r = complete("{\"timeout\": 0.3, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
        CHECK_ERROR(r.status, LLMR_ERR_TIMEOUT, r.json);
        CHECK(now_s() - t0 < 10.0);
        release(r.json);
        shutdown_ok();
    }

    /* A stream that breaks after its first chunk. */
    if (standin_init("OPENAI", "midstreamerror", "\"" KEY_INLINE "\"", NULL)) {
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        result r = stream(HELLO, &ctx);
        CHECK_ERROR(r.status, LLMR_ERR_UPSTREAM, r.json);
        CHECK(ctx.chunks >= 1);
        release(r.json);
        shutdown_ok();
    }

    /* Failover over HTTP: a 500ing deployment and a good one; every request succeeds. */
    char config[2048];
    snprintf(config, sizeof config,
             "{\"global_llm_configs\": ["
             " {\"id\": \"down\", \"provider\": \"OPENAI\", \"model_name\": \"gpt-4o-mini\","
             "  \"api_key\": \"" KEY_INLINE "\", \"api_base\": \"%s/e500-failover/v1\"},"
             " {\"id\": \"up\", \"provider\": \"CUSTOM\", \"model_name\": \"gpt-4o-mini\","
             "  \"api_key\": \"os.environ/" KEY_ENV_VAR "\", \"api_base\": \"%s/ok-failover/v1\"}],"
             " \"router_settings\": {\"num_retries\": 2, \"retry_after\": 0,"
             " \"routing_strategy\": \"simple-shuffle\"}}",
             g_url, g_url);
    if (init_ok(config)) {
        for (int i = 0; i < 4; ++i) {
            stream_ctx ctx;
            stream_ctx_init(&ctx);
            result r = i % 2 ? stream(HELLO, &ctx) : complete(HELLO);
            if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
                CHECK_D(json_is(r.json, "deployment_id", "\"up\""), r.json);
            }
            release(r.json);
        }
        shutdown_ok();
    }

    /* Context-window fallback over HTTP: the small window overflows (ctx-1000), the large one
     * answers. */
    snprintf(config, sizeof config,
             "{\"global_llm_configs\": ["
             " {\"id\": \"small\", \"provider\": \"OPENAI\", \"model_name\": \"gpt-4o-mini\","
             "  \"api_key\": \"" KEY_INLINE "\", \"api_base\": \"%s/ctx-1000/v1\", \"max_input_tokens\": 100000},"
             " {\"id\": \"large\", \"provider\": \"OPENAI\", \"model_name\": \"gpt-4o-mini\","
             "  \"api_key\": \"" KEY_INLINE "\", \"api_base\": \"%s/ok-large/v1\", \"max_input_tokens\": 200000}],"
             " \"router_settings\": {\"num_retries\": 1, \"retry_after\": 0}}",
             g_url, g_url);
    if (init_ok(config)) {
        char *big = big_request(8000, NULL); /* ~2000 tokens: over ctx-1000 */
        for (int i = 0; i < 3; ++i) {
            stream_ctx ctx;
            stream_ctx_init(&ctx);
            result r = i % 2 ? stream(big, &ctx) : complete(big);
            if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
                CHECK_D(json_is(r.json, "deployment_id", "\"large\""), r.json);
            }
            release(r.json);
        }
        free(big);
        shutdown_ok();
    }
    printf("stand-in cases ran against %s\n", g_url);
}

/* ============================================================================================ */
/* Asynchronous calls: llmr_complete_async, llmr_stream_async, llmr_cancel                       */
/*                                                                                              */
/* Every async callback goes through async_enter()/async_leave(), which record the contract of  */
/* the callback thread: never the caller's thread, always the same one thread (named            */
/* "llmr-callbacks"), never two callbacks at once. Each request has its own async_req (its      */
/* user_data) that counts its callbacks; on_done copies the JSON (valid only during the call).  */
/* Waiting is bounded: a condition variable with a deadline, a failed check instead of a hang.  */

/* The longest any wait for callbacks may take before it is a failure. */
#define ASYNC_WAIT_S 30.0

static pthread_mutex_t g_async_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_async_cv; /* CLOCK_MONOTONIC: set up in async_setup() */
static pthread_t g_main_thread;
static long g_done_seq;          /* under g_async_mu: the order in which on_done calls ran */
static bool g_cb_thread_known;   /* under g_async_mu */
static pthread_t g_cb_thread;    /* under g_async_mu: the thread of the first callback */
static atomic_int g_cb_active;   /* callbacks running right now */
static atomic_int g_cb_calls;    /* callbacks so far */
static atomic_int g_cb_overlaps; /* a callback started while another one ran */
static atomic_int g_cb_on_main;  /* a callback ran on the harness's main thread */
static atomic_int g_cb_other_thread; /* a callback ran on another thread than the first one */
static atomic_int g_cb_misnamed; /* a callback ran on a thread not named llmr-callbacks */
static char g_cb_name[32];       /* under g_async_mu: the name it had, when wrong */

static void async_setup(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_async_cv, &attr);
    pthread_condattr_destroy(&attr);
    g_main_thread = pthread_self();
}

static void async_enter(void) {
    if (atomic_fetch_add(&g_cb_active, 1) != 0) {
        atomic_fetch_add(&g_cb_overlaps, 1);
    }
    atomic_fetch_add(&g_cb_calls, 1);
    pthread_t self = pthread_self();
    if (pthread_equal(self, g_main_thread)) {
        atomic_fetch_add(&g_cb_on_main, 1);
    }
    char name[32] = "";
#ifdef __linux__
    prctl(PR_GET_NAME, name, 0, 0, 0);
#else
    strcpy(name, "llmr-callbacks");
#endif
    bool named = strcmp(name, "llmr-callbacks") == 0;
    pthread_mutex_lock(&g_async_mu);
    if (!g_cb_thread_known) {
        g_cb_thread = self;
        g_cb_thread_known = true;
    } else if (!pthread_equal(self, g_cb_thread)) {
        atomic_fetch_add(&g_cb_other_thread, 1);
    }
    if (!named) {
        atomic_fetch_add(&g_cb_misnamed, 1);
        snprintf(g_cb_name, sizeof g_cb_name, "%s", name);
    }
    pthread_mutex_unlock(&g_async_mu);
}

static void async_leave(void) {
    atomic_fetch_sub(&g_cb_active, 1);
}

/* The callback-thread contract, so far. */
static void check_callback_thread(void) {
    CHECK(atomic_load(&g_cb_overlaps) == 0);
    CHECK(atomic_load(&g_cb_on_main) == 0);
    CHECK(atomic_load(&g_cb_other_thread) == 0);
    pthread_mutex_lock(&g_async_mu);
    char name[32];
    snprintf(name, sizeof name, "%s", g_cb_name);
    pthread_mutex_unlock(&g_async_mu);
    CHECK_D(atomic_load(&g_cb_misnamed) == 0, name);
}

/* The on_done calls a group of requests has had (under g_async_mu). */
typedef struct {
    int done;
} async_batch;

typedef struct async_req async_req;

/* One asynchronous request: its user_data. */
struct async_req {
    async_batch *batch;
    pthread_t caller;                    /* the thread that started it */
    bool check_caller;                   /* no callback may run on `caller` */
    uint64_t id;                         /* under g_async_mu (a callback may read it) */
    int stop_after;                      /* on_chunk returns stop_value at this chunk (0: never) */
    int32_t stop_value;
    void (*on_chunk_hook)(async_req *);  /* runs inside on_chunk */
    void (*on_done_hook)(async_req *);   /* runs inside on_done, before it is counted */
    void *hook_data;
    /* Written by the callbacks (on the callback thread), read after on_done was counted. */
    atomic_int done_calls;
    atomic_int chunks;
    int chunks_after_stop;  /* chunks delivered after on_chunk said stop */
    int chunks_after_done;  /* chunks delivered after on_done */
    bool stopped;
    bool bad_chunk;
    bool on_caller_thread;
    bool key_seen;
    llmr_status status;     /* of the first on_done */
    char *json;             /* a copy of the first on_done's JSON (malloc) */
    double done_at;
    long done_seq;
    char text[1024];        /* the content deltas, concatenated */
    size_t len;
};

static void req_init(async_req *r, async_batch *b) {
    memset(r, 0, sizeof *r);
    atomic_init(&r->done_calls, 0);
    atomic_init(&r->chunks, 0);
    r->batch = b;
    r->caller = pthread_self();
    r->check_caller = true;
    r->stop_value = 1;
}

static void req_set_id(async_req *r, uint64_t id) {
    pthread_mutex_lock(&g_async_mu);
    r->id = id;
    pthread_mutex_unlock(&g_async_mu);
}

static uint64_t req_id(async_req *r) {
    pthread_mutex_lock(&g_async_mu);
    uint64_t id = r->id;
    pthread_mutex_unlock(&g_async_mu);
    return id;
}

/* The id as seen from a callback: on_done or on_chunk may run before llmr_*_async has returned
 * the id to the starting thread (valgrind runs one thread at a time, so the starter may not have
 * stored it yet). Waits for it, at most 10 s; 0 if it never came. */
static uint64_t req_id_from_callback(async_req *r) {
    for (int i = 0; i < 10000; ++i) {
        uint64_t id = req_id(r);
        if (id != 0) {
            return id;
        }
        sleep_ms(1);
    }
    return 0;
}

static bool has_key(const char *s) {
    return s != NULL && (strstr(s, KEY_INLINE) != NULL || strstr(s, KEY_ENV) != NULL);
}

static int32_t async_on_chunk(const char *chunk_json, void *user_data) {
    async_enter();
    async_req *r = user_data;
    int n = atomic_fetch_add(&r->chunks, 1) + 1;
    if (r->stopped) {
        r->chunks_after_stop++;
    }
    if (atomic_load(&r->done_calls) != 0) {
        r->chunks_after_done++;
    }
    if (r->check_caller && pthread_equal(pthread_self(), r->caller)) {
        r->on_caller_thread = true;
    }
    if (chunk_json == NULL || !json_is(chunk_json, "object", "\"chat.completion.chunk\"") ||
        !json_kind(chunk_json, "choices", '[')) {
        r->bad_chunk = true;
    } else {
        r->key_seen |= has_key(chunk_json);
        const char *content = json_find(chunk_json, "content");
        if (content != NULL) {
            json_append_string(content, r->text, &r->len, sizeof r->text);
        }
    }
    if (r->on_chunk_hook != NULL) {
        r->on_chunk_hook(r);
    }
    int32_t ret = 0;
    if (r->stopped || (r->stop_after > 0 && n >= r->stop_after)) {
        r->stopped = true;
        ret = r->stop_value;
    }
    async_leave();
    return ret;
}

static void async_on_done(llmr_status status, const char *json, void *user_data) {
    async_enter();
    async_req *r = user_data;
    int calls = atomic_fetch_add(&r->done_calls, 1) + 1;
    if (calls == 1) {
        r->status = status;
        r->json = json != NULL ? strdup(json) : NULL;
        r->key_seen |= has_key(json);
        r->done_at = now_s();
        if (r->check_caller && pthread_equal(pthread_self(), r->caller)) {
            r->on_caller_thread = true;
        }
        if (r->on_done_hook != NULL) {
            r->on_done_hook(r);
        }
    }
    async_leave();
    /* Counted last: once the waiter sees the count it may free `r`. */
    pthread_mutex_lock(&g_async_mu);
    r->done_seq = g_done_seq++;
    if (r->batch != NULL) {
        r->batch->done++;
    }
    pthread_cond_broadcast(&g_async_cv);
    pthread_mutex_unlock(&g_async_mu);
}

static uint64_t start_complete(async_req *r, const char *request) {
    uint64_t id = llmr_complete_async(request, async_on_done, r);
    req_set_id(r, id);
    return id;
}

static uint64_t start_stream(async_req *r, const char *request) {
    uint64_t id = llmr_stream_async(request, async_on_chunk, async_on_done, r);
    req_set_id(r, id);
    return id;
}

/* Waits (at most `timeout_s`) until the batch has had `n` on_done calls. */
static bool wait_batch_(async_batch *b, int n, double timeout_s, const char *file, int line) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)timeout_s;
    deadline.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g_async_mu);
    while (b->done < n) {
        if (pthread_cond_timedwait(&g_async_cv, &g_async_mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    int done = b->done;
    pthread_mutex_unlock(&g_async_mu);
    char what[160];
    snprintf(what, sizeof what, "%d of %d on_done calls within %.0f s (got %d)", n, n, timeout_s,
             done);
    return check_(done >= n, what, file, line, NULL);
}

/* WAIT_BATCH(batch, n): every on_done came, in ASYNC_WAIT_S at most. When it fails the requests
 * must not be freed (a late callback would write to them): the callers leak them then. */
#define WAIT_BATCH(b, n) wait_batch_((b), (n), ASYNC_WAIT_S, __FILE__, __LINE__)

static int batch_done(async_batch *b) {
    pthread_mutex_lock(&g_async_mu);
    int n = b->done;
    pthread_mutex_unlock(&g_async_mu);
    return n;
}

/* Lets stray callbacks (a second on_done, a chunk after on_done) arrive before the counts are
 * checked. */
static void settle(void) {
    sleep_ms(g_quick ? 300 : 150);
}

static void req_free(async_req *r) {
    free(r->json);
    r->json = NULL;
}

/* Checks common to every finished request: one on_done, not on the caller's thread, no key,
 * no chunk after on_done or after a stop, chunks well-formed. */
static void check_req_(async_req *r, const char *file, int line) {
    char what[128];
    snprintf(what, sizeof what, "on_done ran exactly once (ran %d times)",
             atomic_load(&r->done_calls));
    check_(atomic_load(&r->done_calls) == 1, what, file, line, r->json);
    check_(!r->on_caller_thread, "no callback on the caller's thread", file, line, NULL);
    check_(!r->key_seen, "no API key in a callback's JSON", file, line, NULL);
    check_(!r->bad_chunk, "every chunk is a chat.completion.chunk", file, line, NULL);
    check_(r->chunks_after_done == 0, "no chunk after on_done", file, line, NULL);
    check_(r->chunks_after_stop == 0, "no chunk after on_chunk said stop", file, line, NULL);
    check_(r->json != NULL, "on_done got a JSON", file, line, NULL);
}
#define CHECK_REQ(r) check_req_((r), __FILE__, __LINE__)

/* The content of a chat.completion JSON, decoded. */
static void content_of(const char *json, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    const char *c = json_find(json, "content");
    if (c != NULL) {
        json_append_string(c, out, &len, cap);
    }
}

/* A finished stream: OK, the chunks concatenated are the final content, and are `want`. */
static void check_stream_ok_(async_req *r, const char *want, const char *file, int line) {
    check_status_(r->status, LLMR_OK, r->json, "stream status", file, line);
    char content[1024];
    content_of(r->json, content, sizeof content);
    check_(strcmp(r->text, content) == 0, "the chunks concatenated are the final content", file,
           line, r->text);
    if (want != NULL) {
        check_(strcmp(r->text, want) == 0, "the chunks, in order, are the answer", file, line,
               r->text);
    }
    check_(atomic_load(&r->chunks) >= 1, "chunks arrived", file, line, r->json);
}
#define CHECK_STREAM_OK(r, want) check_stream_ok_((r), (want), __FILE__, __LINE__)

/* A request that ended with `want` and the matching error JSON, no chunk. */
#define CHECK_ASYNC_ERROR(r, want) CHECK_ERROR((r)->status, (want), (r)->json)

/* ------------------------------------------------------------------------------------------- */

static void test_async_basics(void) {
    g_section = "async basics";
    shutdown_ok();
    if (!init_ok(MOCK_CONFIG)) {
        return;
    }
    async_batch b = {0};
    async_req c, s;
    req_init(&c, &b);
    req_init(&s, &b);
    double t0 = now_s();
    uint64_t id1 = start_complete(&c, HELLO);
    uint64_t id2 = start_stream(&s, HELLO);
    CHECK(now_s() - t0 < 2.0); /* returns at once */
    CHECK(id1 != 0 && id2 != 0 && id1 != id2);
    if (!WAIT_BATCH(&b, 2)) {
        return;
    }
    settle();
    CHECK(batch_done(&b) == 2);
    CHECK_REQ(&c);
    CHECK_REQ(&s);
    if (CHECK_STATUS(c.status, LLMR_OK, c.json)) {
        check_completion(c.json, MOCK_TEXT);
        CHECK_D(json_is(c.json, "provider", "\"mock\""), c.json);
    }
    CHECK(atomic_load(&c.chunks) == 0);
    CHECK_STREAM_OK(&s, MOCK_TEXT);
    CHECK(atomic_load(&s.chunks) == 4);
    if (s.status == LLMR_OK) {
        check_completion(s.json, MOCK_TEXT);
    }
    req_free(&c);
    req_free(&s);

    /* Streams in parallel, each 20 chunks 5 ms apart: every one gets its own chunks, in order;
     * completions and errors mixed in; callbacks never overlap. */
    char words[512] = "", config[2048];
    for (int i = 0; i < 20; ++i) {
        char w[8];
        snprintf(w, sizeof w, "%sw%02d", i ? " " : "", i);
        strcat(words, w);
    }
    snprintf(config, sizeof config,
             "{\"global_llm_configs\": [{\"id\": \"drip\", \"provider\": \"MOCK\", \"model_name\": \"m\","
             " \"litellm_params\": {\"mock_response\": \"%s\", \"mock_chunk_delay_ms\": 5}}]}",
             words);
    shutdown_ok();
    if (!init_ok(config)) {
        return;
    }
    enum { PAR = 24 };
    async_batch pb = {0};
    async_req *p = calloc(PAR, sizeof *p);
    if (p == NULL) {
        exit(2);
    }
    for (int i = 0; i < PAR; ++i) {
        req_init(&p[i], &pb);
        uint64_t id = i % 3 == 2 ? start_complete(&p[i], HELLO)
                                 : start_stream(&p[i], HELLO);
        CHECK(id != 0);
    }
    if (!WAIT_BATCH(&pb, PAR)) {
        return; /* leaked: late callbacks may still write to them */
    }
    settle();
    CHECK(batch_done(&pb) == PAR);
    for (int i = 0; i < PAR; ++i) {
        CHECK_REQ(&p[i]);
        if (i % 3 == 2) {
            CHECK_STATUS(p[i].status, LLMR_OK, p[i].json);
            CHECK(atomic_load(&p[i].chunks) == 0);
        } else {
            CHECK_STREAM_OK(&p[i], words);
            CHECK(atomic_load(&p[i].chunks) == 20);
        }
        req_free(&p[i]);
    }
    free(p);
    shutdown_ok();
    check_callback_thread();

    /* Failures: the status and the error JSON come in on_done; a stream gets no chunk. */
    static const struct {
        const char *mock_error;
        llmr_status want;
        const char *http_status;
    } failures[] = {
        {"\"rate_limited\"", LLMR_ERR_RATE_LIMITED, "429"},
        {"\"upstream\"", LLMR_ERR_UPSTREAM, "500"},
        {"\"context_overflow\"", LLMR_ERR_CONTEXT_OVERFLOW, "400"},
        {"\"auth\"", LLMR_ERR_AUTH, "401"},
        {"{\"http_status\": 429, \"message\": \"slow down\", \"retry_after\": 3}",
         LLMR_ERR_RATE_LIMITED, "429"},
    };
    for (size_t i = 0; i < sizeof failures / sizeof failures[0]; ++i) {
        snprintf(config, sizeof config,
                 "{\"global_llm_configs\": [{\"id\": \"e1\", \"provider\": \"MOCK\", \"model_name\": \"m\","
                 " \"litellm_params\": {\"mock_error\": %s}}],"
                 " \"router_settings\": {\"num_retries\": 0, \"retry_after\": 0}}",
                 failures[i].mock_error);
        for (int streaming = 0; streaming <= 1; ++streaming) {
            if (!init_ok(config)) {
                return;
            }
            async_batch eb = {0};
            async_req r;
            req_init(&r, &eb);
            uint64_t id = streaming ? start_stream(&r, HELLO) : start_complete(&r, HELLO);
            CHECK(id != 0);
            if (!WAIT_BATCH(&eb, 1)) {
                return;
            }
            CHECK_REQ(&r);
            CHECK_ASYNC_ERROR(&r, failures[i].want);
            CHECK_D(json_is(r.json, "http_status", failures[i].http_status), r.json);
            CHECK_D(json_is(r.json, "deployment_id", "\"e1\""), r.json);
            CHECK_D(json_is(r.json, "provider", "\"mock\""), r.json);
            CHECK(atomic_load(&r.chunks) == 0);
            req_free(&r);
            shutdown_ok();
        }
    }

    /* Slower than the request's timeout. */
    if (init_ok("{\"global_llm_configs\": [{\"id\": \"slow\", \"provider\": \"MOCK\", \"model_name\": \"m\","
                " \"litellm_params\": {\"mock_delay_ms\": 20000}}], \"router_settings\": {\"num_retries\": 0}}")) {
        async_batch tb = {0};
        async_req r[2];
        const char *req = "{\"timeout\": 0.3, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}";
        req_init(&r[0], &tb);
        req_init(&r[1], &tb);
        t0 = now_s();
        CHECK(start_complete(&r[0], req) != 0);
        CHECK(start_stream(&r[1], req) != 0);
        if (!WAIT_BATCH(&tb, 2)) {
            return;
        }
        CHECK(now_s() - t0 < 10.0);
        for (int i = 0; i < 2; ++i) {
            CHECK_REQ(&r[i]);
            CHECK_ASYNC_ERROR(&r[i], LLMR_ERR_TIMEOUT);
            req_free(&r[i]);
        }
        shutdown_ok();
    }
    check_callback_thread();
}

/* ------------------------------------------------------------------------------------------- */

/* Requests that cannot start, checked in groups: each gets id 0 and one on_done, with `want`
 * and an error JSON that mentions `part` (when given). They are started one after the other,
 * then waited for together, then checked after one settle(). */
typedef struct {
    async_req req;
    llmr_status want;
    const char *part;
    const char *file;
    int line;
} refused_case;

enum { REFUSED_MAX = 32 };
static refused_case *g_refused;
static int g_refused_n;
static async_batch g_refused_batch;

/* `streaming` 2: llmr_stream_async with a NULL on_chunk. */
static void async_refused_(const char *request, int streaming, llmr_status want,
                           const char *part, const char *file, int line) {
    if (g_refused == NULL) {
        g_refused = calloc(REFUSED_MAX, sizeof *g_refused);
        if (g_refused == NULL) {
            exit(2);
        }
    }
    if (g_refused_n == REFUSED_MAX) {
        check_(false, "REFUSED_MAX is large enough", file, line, NULL);
        return;
    }
    refused_case *c = &g_refused[g_refused_n++];
    req_init(&c->req, &g_refused_batch);
    c->want = want;
    c->part = part;
    c->file = file;
    c->line = line;
    uint64_t id = streaming == 2 ? llmr_stream_async(request, NULL, async_on_done, &c->req)
                  : streaming    ? start_stream(&c->req, request)
                                 : start_complete(&c->req, request);
    char what[256];
    snprintf(what, sizeof what, "id 0 for a request that cannot start (%s, %.60s)",
             streaming == 2 ? "stream, NULL on_chunk" : streaming ? "stream" : "complete",
             request ? request : "NULL");
    check_(id == 0, what, file, line, NULL);
}
#define ASYNC_REFUSED(request, streaming, want, part)                                             \
    async_refused_((request), (streaming), (want), (part), __FILE__, __LINE__)

/* Waits for the requests given to ASYNC_REFUSED so far and checks them. */
static void refused_check(void) {
    int n = g_refused_n;
    if (n == 0) {
        return;
    }
    if (!WAIT_BATCH(&g_refused_batch, n)) {
        g_refused = NULL; /* leaked: late callbacks may still write to them */
        g_refused_n = 0;
        g_refused_batch.done = 0;
        return;
    }
    settle();
    CHECK(batch_done(&g_refused_batch) == n); /* exactly one on_done each */
    for (int i = 0; i < n; ++i) {
        refused_case *c = &g_refused[i];
        async_req *r = &c->req;
        check_req_(r, c->file, c->line);
        if (check_status_(r->status, c->want, r->json, "on_done status", c->file, c->line)) {
            check_(is_error_json(r->json, c->want), "the error JSON", c->file, c->line, r->json);
            if (c->part != NULL) {
                const char *m = json_find(r->json, "message");
                check_(m != NULL && strstr(m, c->part) != NULL, "the message says why", c->file,
                       c->line, r->json);
            }
        }
        check_(atomic_load(&r->chunks) == 0, "no chunk", c->file, c->line, NULL);
        req_free(r);
    }
    free(g_refused);
    g_refused = NULL;
    g_refused_n = 0;
    pthread_mutex_lock(&g_async_mu);
    g_refused_batch.done = 0;
    pthread_mutex_unlock(&g_async_mu);
}

/* Callbacks for NULL user_data: they count in g_null_ud_batch; g_null_ud_seen counts a
 * user_data that was not NULL. */
static async_batch g_null_ud_batch;
static atomic_int g_null_ud_seen;

static int32_t null_ud_chunk(const char *chunk_json, void *user_data) {
    async_enter();
    (void)chunk_json;
    if (user_data != NULL) {
        atomic_fetch_add(&g_null_ud_seen, 1);
    }
    async_leave();
    return 0;
}

static void null_ud_done(llmr_status status, const char *json, void *user_data) {
    async_enter();
    (void)status;
    (void)json;
    if (user_data != NULL) {
        atomic_fetch_add(&g_null_ud_seen, 1);
    }
    async_leave();
    pthread_mutex_lock(&g_async_mu);
    g_null_ud_batch.done++;
    pthread_cond_broadcast(&g_async_cv);
    pthread_mutex_unlock(&g_async_mu);
}

static void test_async_cannot_start(void) {
    g_section = "async cannot start";
    shutdown_ok();
    /* Not initialised. */
    ASYNC_REFUSED(HELLO, 0, LLMR_ERR_NOT_INITIALIZED, NULL);
    ASYNC_REFUSED(HELLO, 1, LLMR_ERR_NOT_INITIALIZED, NULL);
    ASYNC_REFUSED(NULL, 0, LLMR_ERR_INVALID_ARGUMENT, NULL); /* NULL is NULL, initialised or not */
    refused_check();

    if (!init_ok(MOCK_CONFIG)) {
        return;
    }
    for (int streaming = 0; streaming <= 1; ++streaming) {
        ASYNC_REFUSED(NULL, streaming, LLMR_ERR_INVALID_ARGUMENT, "request_json");
        ASYNC_REFUSED("{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", streaming,
                      LLMR_ERR_INVALID_ARGUMENT, "UTF-8");
        ASYNC_REFUSED("{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xc3\"}]}", streaming,
                      LLMR_ERR_INVALID_ARGUMENT, NULL);
        ASYNC_REFUSED("{", streaming, LLMR_ERR_INVALID_ARGUMENT, NULL);
        ASYNC_REFUSED("", streaming, LLMR_ERR_INVALID_ARGUMENT, NULL);
        ASYNC_REFUSED("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]} trailing",
                      streaming, LLMR_ERR_INVALID_ARGUMENT, NULL);
        ASYNC_REFUSED("{}", streaming, LLMR_ERR_INVALID_ARGUMENT, NULL);
        ASYNC_REFUSED("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"timeout\": -1}",
                      streaming, LLMR_ERR_INVALID_ARGUMENT, NULL);
    }
    char *deep = nested(100000, "", "[", "]", "");
    ASYNC_REFUSED(deep, 0, LLMR_ERR_INVALID_ARGUMENT, NULL);
    ASYNC_REFUSED(deep, 1, LLMR_ERR_INVALID_ARGUMENT, NULL);
    free(deep);
    /* A stream without on_chunk. */
    ASYNC_REFUSED(HELLO, 2, LLMR_ERR_INVALID_ARGUMENT, "on_chunk");
    ASYNC_REFUSED(NULL, 2, LLMR_ERR_INVALID_ARGUMENT, NULL);
    refused_check();

    /* Without on_done nothing can be reported: 0, and nothing runs. */
    async_batch b = {0};
    async_req r;
    req_init(&r, &b);
    CHECK(llmr_complete_async(HELLO, NULL, &r) == 0);
    CHECK(llmr_complete_async(NULL, NULL, &r) == 0);
    CHECK(llmr_complete_async("{", NULL, NULL) == 0);
    CHECK(llmr_stream_async(HELLO, async_on_chunk, NULL, &r) == 0);
    CHECK(llmr_stream_async(HELLO, NULL, NULL, &r) == 0);
    CHECK(llmr_stream_async(NULL, NULL, NULL, NULL) == 0);
    settle();
    CHECK(atomic_load(&r.chunks) == 0);
    CHECK(atomic_load(&r.done_calls) == 0);
    CHECK(batch_done(&b) == 0);

    /* A group that does not exist is found when the request is routed: id or not, on_done
     * says INVALID_ARGUMENT and names it. */
    for (int streaming = 0; streaming <= 1; ++streaming) {
        async_batch gb = {0};
        async_req g;
        req_init(&g, &gb);
        const char *req =
            "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"model\": \"no-such-group\"}";
        (void)(streaming ? start_stream(&g, req) : start_complete(&g, req));
        if (WAIT_BATCH(&gb, 1)) {
            settle();
            CHECK_REQ(&g);
            CHECK_ASYNC_ERROR(&g, LLMR_ERR_INVALID_ARGUMENT);
            CHECK_D(g.json != NULL && strstr(g.json, "no-such-group") != NULL, g.json);
            CHECK(atomic_load(&g.chunks) == 0);
            req_free(&g);
        }
    }

    /* user_data is handed back untouched, NULL included. */
    atomic_store(&g_null_ud_seen, 0);
    CHECK(llmr_complete_async(HELLO, null_ud_done, NULL) != 0);
    CHECK(llmr_stream_async(HELLO, null_ud_chunk, null_ud_done, NULL) != 0);
    CHECK(llmr_complete_async(NULL, null_ud_done, NULL) == 0);
    if (WAIT_BATCH(&g_null_ud_batch, 3)) {
        settle();
        CHECK(batch_done(&g_null_ud_batch) == 3);
        CHECK(atomic_load(&g_null_ud_seen) == 0);
    }
    check_callback_thread();
}

/* ------------------------------------------------------------------------------------------- */

static void test_async_cancel(void) {
    g_section = "async cancel";
    CHECK_STATUS(llmr_cancel(0), LLMR_ERR_INVALID_ARGUMENT, NULL);
    /* Ids that never were: nothing to do. */
    CHECK_STATUS(llmr_cancel(UINT64_MAX), LLMR_OK, NULL);
    CHECK_STATUS(llmr_cancel(UINT64_MAX - 1), LLMR_OK, NULL);

    shutdown_ok();
    CHECK_STATUS(llmr_cancel(0), LLMR_ERR_INVALID_ARGUMENT, NULL); /* also not initialised */
    CHECK_STATUS(llmr_cancel(12345678), LLMR_OK, NULL);
    if (!init_ok(MOCK_CONFIG)) {
        return;
    }

    /* A finished request keeps its result; cancelling it (twice) does nothing. */
    async_batch b = {0};
    async_req r;
    req_init(&r, &b);
    uint64_t id = start_complete(&r, HELLO);
    CHECK(id != 0);
    if (!WAIT_BATCH(&b, 1)) {
        return;
    }
    CHECK_STATUS(llmr_cancel(id), LLMR_OK, NULL);
    CHECK_STATUS(llmr_cancel(id), LLMR_OK, NULL);
    CHECK_STATUS(llmr_cancel(id + 1000000), LLMR_OK, NULL); /* not started yet */
    settle();
    CHECK(batch_done(&b) == 1);
    CHECK_REQ(&r);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    req_free(&r);
    shutdown_ok();

    /* In flight (a 20 s answer): on_done comes at once with CANCELLED; cancelling again (and
     * after it ended) changes nothing. */
    if (!init_ok("{\"global_llm_configs\": [{\"id\": \"slow\", \"provider\": \"MOCK\", \"model_name\": \"m\","
                 " \"litellm_params\": {\"mock_delay_ms\": 20000}}]}")) {
        return;
    }
    async_batch cb = {0};
    async_req c[2];
    for (int i = 0; i < 2; ++i) {
        req_init(&c[i], &cb);
        CHECK((i ? start_stream(&c[i], HELLO) : start_complete(&c[i], HELLO)) != 0);
    }
    sleep_ms(50);
    CHECK(batch_done(&cb) == 0);
    double t0 = now_s();
    for (int i = 0; i < 2; ++i) {
        CHECK_STATUS(llmr_cancel(c[i].id), LLMR_OK, NULL);
        CHECK_STATUS(llmr_cancel(c[i].id), LLMR_OK, NULL);
    }
    if (!WAIT_BATCH(&cb, 2)) {
        return;
    }
    CHECK(now_s() - t0 < 5.0);
    for (int i = 0; i < 2; ++i) {
        CHECK_STATUS(llmr_cancel(c[i].id), LLMR_OK, NULL);
    }
    settle();
    CHECK(batch_done(&cb) == 2);
    for (int i = 0; i < 2; ++i) {
        CHECK_REQ(&c[i]);
        CHECK_ASYNC_ERROR(&c[i], LLMR_ERR_CANCELLED);
        CHECK(atomic_load(&c[i].chunks) == 0);
        req_free(&c[i]);
    }
    shutdown_ok();

    /* A stream cancelled between chunks: no chunk after on_done. */
    if (!init_words("drip", 40, 50)) {
        return;
    }
    async_batch sb = {0};
    async_req s;
    req_init(&s, &sb);
    id = start_stream(&s, HELLO);
    CHECK(id != 0);
    sleep_ms(g_quick ? 600 : 300);
    CHECK_STATUS(llmr_cancel(id), LLMR_OK, NULL);
    if (!WAIT_BATCH(&sb, 1)) {
        return;
    }
    settle();
    CHECK_REQ(&s);
    CHECK_ASYNC_ERROR(&s, LLMR_ERR_CANCELLED);
    CHECK(atomic_load(&s.chunks) < 40);
    req_free(&s);
    shutdown_ok();
    check_callback_thread();
}

/* ------------------------------------------------------------------------------------------- */

static void test_async_stop_by_callback(void) {
    g_section = "async stop by callback";
    /* 40 words, 50 ms apart: about 2 s if not stopped. */
    shutdown_ok();
    if (!init_words("drip", 40, 50)) {
        return;
    }
    for (int stop_at = 1; stop_at <= 3; stop_at += 2) {
        async_batch b = {0};
        async_req r;
        req_init(&r, &b);
        r.stop_after = stop_at;
        r.stop_value = stop_at == 1 ? 1 : -7; /* any non-zero value stops */
        double t0 = now_s();
        CHECK(start_stream(&r, HELLO) != 0);
        if (!WAIT_BATCH(&b, 1)) {
            return;
        }
        CHECK(now_s() - t0 < 1.5);
        settle();
        CHECK_REQ(&r);
        CHECK_ASYNC_ERROR(&r, LLMR_ERR_CANCELLED);
        CHECK(atomic_load(&r.chunks) == stop_at);
        req_free(&r);
    }
    shutdown_ok();

    /* A fast stream (every chunk ready at once): a stop at the first chunk still ends the
     * request with CANCELLED, and no later chunk is delivered. */
    if (!init_ok(MOCK_CONFIG)) {
        return;
    }
    enum { FAST = 20 };
    async_batch fb = {0};
    async_req f[FAST];
    for (int i = 0; i < FAST; ++i) {
        req_init(&f[i], &fb);
        f[i].stop_after = 1;
        CHECK(start_stream(&f[i], HELLO) != 0);
        if (i % 2 == 0) {
            sleep_ms(10); /* some alone, some queued behind each other */
        }
    }
    if (!WAIT_BATCH(&fb, FAST)) {
        return;
    }
    settle();
    int not_cancelled = 0;
    for (int i = 0; i < FAST; ++i) {
        CHECK_REQ(&f[i]);
        CHECK(atomic_load(&f[i].chunks) == 1);
        if (f[i].status != LLMR_ERR_CANCELLED) {
            not_cancelled++;
            if (not_cancelled == 1) {
                CHECK_ASYNC_ERROR(&f[i], LLMR_ERR_CANCELLED); /* reports the first */
            }
        } else {
            CHECK_D(is_error_json(f[i].json, LLMR_ERR_CANCELLED), f[i].json);
        }
        req_free(&f[i]);
    }
    char what[64];
    snprintf(what, sizeof what, "%d of %d", not_cancelled, FAST);
    CHECK_D(not_cancelled == 0, what);

    /* The router still answers. */
    async_batch ob = {0};
    async_req o;
    req_init(&o, &ob);
    CHECK(start_stream(&o, HELLO) != 0);
    if (WAIT_BATCH(&ob, 1)) {
        CHECK_REQ(&o);
        CHECK_STREAM_OK(&o, MOCK_TEXT);
        req_free(&o);
    }
    shutdown_ok();
    check_callback_thread();
}

/* ------------------------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The number `key` holds in `json` (first occurrence), or -1. */
static long json_long(const char *json, const char *key) {
    const char *v = json_find(json, key);
    return v != NULL && (*v == '-' || (*v >= '0' && *v <= '9')) ? atol(v) : -1;
}

/* 1,000 requests in flight at once, started from this one thread (completions and streams),
 * every second one cancelled: exactly half cancelled, half answered, each on_done once, the
 * cancelled ones before any answer. */
static void test_async_thousand(void) {
    g_section = "async 1000 in flight";
    const int n = g_quick ? 200 : 1000;
    const int delay_ms = g_quick ? 5000 : 1000;
    char config[1024];
    snprintf(config, sizeof config,
             "{\"global_llm_configs\": [{\"id\": \"slow\", \"provider\": \"MOCK\", \"model_name\": \"m\","
             " \"litellm_params\": {\"mock_response\": \"slow answer\", \"mock_delay_ms\": %d}}],"
             " \"router_settings\": {\"num_retries\": 0}}",
             delay_ms);
    shutdown_ok();
    if (!init_ok(config)) {
        return;
    }
    async_batch b = {0};
    async_req *r = calloc((size_t)n, sizeof *r);
    uint64_t *ids = calloc((size_t)n, sizeof *ids);
    if (r == NULL || ids == NULL) {
        exit(2);
    }
    double t0 = now_s();
    int zero = 0;
    for (int i = 0; i < n; ++i) {
        req_init(&r[i], &b);
        /* complete, complete, stream, stream, ...: both kinds among the cancelled ones */
        ids[i] = i % 4 < 2 ? start_complete(&r[i], HELLO) : start_stream(&r[i], HELLO);
        zero += ids[i] == 0;
    }
    double started = now_s() - t0;
    CHECK(zero == 0);
    CHECK(batch_done(&b) == 0); /* nothing answered yet: all in flight at once */

    /* The router sees them in flight (asking for a short while: the runtime may still be
     * picking the last ones up). */
    long in_flight = -1;
    char *stats = NULL;
    for (int tries = 0; tries < 10 && in_flight < n * 9 / 10; ++tries) {
        if (tries > 0) {
            sleep_ms(20);
        }
        release(stats);
        stats = NULL;
        if (!CHECK_STATUS(llmr_stats(&stats), LLMR_OK, stats)) {
            break;
        }
        in_flight = json_long(stats, "in_flight");
    }
    CHECK_D(in_flight >= n * 9 / 10, stats);
    release(stats);

    for (int i = 1; i < n; i += 2) {
        CHECK_STATUS(llmr_cancel(ids[i]), LLMR_OK, NULL);
    }
    double cancelled_at = now_s() - t0;
    char timing[128];
    snprintf(timing, sizeof timing, "started in %.2f s, cancelled by %.2f s, answer delay %.1f s",
             started, cancelled_at, delay_ms / 1000.0);
    CHECK_D(cancelled_at < delay_ms / 1000.0 * 0.8, timing);

    uint64_t *sorted = malloc((size_t)n * sizeof *sorted);
    if (sorted == NULL) {
        exit(2);
    }
    memcpy(sorted, ids, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_u64);
    int dups = 0;
    for (int i = 1; i < n; ++i) {
        dups += sorted[i] == sorted[i - 1];
    }
    CHECK(dups == 0); /* distinct */
    free(sorted);

    if (!WAIT_BATCH(&b, n)) {
        free(ids);
        return; /* `r` leaked: late callbacks may still write to it */
    }
    double all_done = now_s() - t0;
    settle();
    CHECK(batch_done(&b) == n);
    int ok = 0, cancelled = 0, other = 0, once = 0;
    long last_cancelled = -1, first_ok = -1;
    for (int i = 0; i < n; ++i) {
        bool stream = i % 4 >= 2;
        once += atomic_load(&r[i].done_calls) == 1;
        CHECK_REQ(&r[i]);
        if (r[i].status == LLMR_OK) {
            ok++;
            if (first_ok < 0 || r[i].done_seq < first_ok) {
                first_ok = r[i].done_seq;
            }
            CHECK_D(i % 2 == 0, r[i].json); /* not one that was cancelled */
            if (stream) {
                CHECK_STREAM_OK(&r[i], "slow answer");
                CHECK(atomic_load(&r[i].chunks) == 2);
            } else {
                CHECK_D(json_is(r[i].json, "content", "\"slow answer\""), r[i].json);
            }
        } else if (r[i].status == LLMR_ERR_CANCELLED) {
            cancelled++;
            if (r[i].done_seq > last_cancelled) {
                last_cancelled = r[i].done_seq;
            }
            CHECK_D(i % 2 == 1, r[i].json);
            CHECK_D(is_error_json(r[i].json, LLMR_ERR_CANCELLED), r[i].json);
            CHECK(atomic_load(&r[i].chunks) == 0);
        } else {
            if (other++ == 0) {
                CHECK_STATUS(r[i].status, LLMR_OK, r[i].json);
            }
        }
        req_free(&r[i]);
    }
    CHECK(once == n);
    char counts[128];
    snprintf(counts, sizeof counts, "%d ok, %d cancelled, %d other of %d", ok, cancelled, other, n);
    CHECK_D(ok == n / 2 && cancelled == n / 2 && other == 0, counts);
    /* Every cancelled on_done came before the first answer. */
    CHECK_D(last_cancelled >= 0 && first_ok >= 0 && last_cancelled < first_ok, timing);
    /* They ran at once, not one after the other. */
    snprintf(timing, sizeof timing, "all done after %.2f s (answer delay %.1f s)", all_done,
             delay_ms / 1000.0);
    CHECK_D(all_done < delay_ms / 1000.0 + (g_quick ? 20.0 : 5.0), timing);
    free(ids);
    free(r);
    shutdown_ok();
    check_callback_thread();
}

/* ------------------------------------------------------------------------------------------- */

/* A callback that shuts the library down (the header allows it). */
static void hook_shutdown(async_req *r) {
    (void)r;
    g_section = "async shutdown (callback)";
    CHECK_STATUS(llmr_shutdown(), LLMR_OK, NULL);
    CHECK(!llmr_is_initialized());
}

static void test_async_shutdown(void) {
    g_section = "async shutdown";
    const int n = g_quick ? 50 : 100;
    const char *slow =
        "{\"global_llm_configs\": [{\"id\": \"slow\", \"provider\": \"MOCK\", \"model_name\": \"m\","
        " \"litellm_params\": {\"mock_delay_ms\": 20000}}]}";
    shutdown_ok();
    if (!init_ok(slow)) {
        return;
    }
    async_batch b = {0};
    async_req *r = calloc((size_t)n, sizeof *r);
    if (r == NULL) {
        exit(2);
    }
    for (int i = 0; i < n; ++i) {
        req_init(&r[i], &b);
        CHECK((i % 2 ? start_stream(&r[i], HELLO) : start_complete(&r[i], HELLO)) != 0);
    }
    sleep_ms(50);
    CHECK(batch_done(&b) == 0);
    double t0 = now_s();
    CHECK_STATUS(llmr_shutdown(), LLMR_OK, NULL);
    double took = now_s() - t0;
    char what[64];
    snprintf(what, sizeof what, "llmr_shutdown took %.3f s", took);
    CHECK_D(took < (g_quick ? 5.0 : 1.0), what); /* it does not wait for the callbacks */
    CHECK(!llmr_is_initialized());
    if (!WAIT_BATCH(&b, n)) {
        return;
    }
    snprintf(what, sizeof what, "every on_done after %.2f s", now_s() - t0);
    CHECK_D(now_s() - t0 < 10.0, what); /* not the 20 s answers */
    settle();
    CHECK(batch_done(&b) == n);
    for (int i = 0; i < n; ++i) {
        CHECK_REQ(&r[i]);
        CHECK_ASYNC_ERROR(&r[i], LLMR_ERR_CANCELLED);
        CHECK(atomic_load(&r[i].chunks) == 0);
        req_free(&r[i]);
    }
    free(r);

    /* After it: async calls cannot start; llmr_init works again and a request succeeds. */
    ASYNC_REFUSED(HELLO, 0, LLMR_ERR_NOT_INITIALIZED, NULL);
    ASYNC_REFUSED(HELLO, 1, LLMR_ERR_NOT_INITIALIZED, NULL);
    refused_check();
    if (init_ok(MOCK_CONFIG)) {
        async_batch ob = {0};
        async_req o[2];
        req_init(&o[0], &ob);
        req_init(&o[1], &ob);
        CHECK(start_complete(&o[0], HELLO) != 0);
        CHECK(start_stream(&o[1], HELLO) != 0);
        if (WAIT_BATCH(&ob, 2)) {
            CHECK_REQ(&o[0]);
            CHECK_REQ(&o[1]);
            if (CHECK_STATUS(o[0].status, LLMR_OK, o[0].json)) {
                check_completion(o[0].json, MOCK_TEXT);
            }
            CHECK_STREAM_OK(&o[1], MOCK_TEXT);
            req_free(&o[0]);
            req_free(&o[1]);
        }
    }
    shutdown_ok();

    /* llmr_shutdown from inside a callback (of a request that could not start): it returns,
     * and the slow requests in flight end CANCELLED. */
    if (!init_ok(slow)) {
        return;
    }
    enum { SLOW = 10 };
    async_batch sb = {0};
    async_req s[SLOW + 1];
    for (int i = 0; i < SLOW; ++i) {
        req_init(&s[i], &sb);
        CHECK((i % 2 ? start_stream(&s[i], HELLO) : start_complete(&s[i], HELLO)) != 0);
    }
    req_init(&s[SLOW], &sb);
    s[SLOW].on_done_hook = hook_shutdown;
    CHECK(start_complete(&s[SLOW], "{") == 0);
    if (!WAIT_BATCH(&sb, SLOW + 1)) {
        return;
    }
    settle();
    CHECK(!llmr_is_initialized());
    CHECK_ASYNC_ERROR(&s[SLOW], LLMR_ERR_INVALID_ARGUMENT);
    for (int i = 0; i <= SLOW; ++i) {
        CHECK_REQ(&s[i]);
        if (i < SLOW) {
            CHECK_ASYNC_ERROR(&s[i], LLMR_ERR_CANCELLED);
        }
        req_free(&s[i]);
    }
    check_callback_thread();
}

/* ------------------------------------------------------------------------------------------- */
/* Callbacks that call into the library.                                                        */

/* on_done calls the blocking llmr_complete and llmr_stream, llmr_stats, llmr_model_count and
 * llmr_cancel (of itself, finished). */
static void hook_blocking_calls(async_req *r) {
    g_section = "async reentry (on_done)";
    result c = complete(HELLO);
    if (CHECK_STATUS(c.status, LLMR_OK, c.json)) {
        check_completion(c.json, MOCK_TEXT);
    }
    release(c.json);
    stream_ctx ctx;
    stream_ctx_init(&ctx);
    result s = stream(HELLO, &ctx); /* its on_chunk runs right here, on this thread */
    if (CHECK_STATUS(s.status, LLMR_OK, s.json)) {
        CHECK_D(strcmp(ctx.text, MOCK_TEXT) == 0, ctx.text);
    }
    release(s.json);
    char *stats = NULL;
    CHECK_STATUS(llmr_stats(&stats), LLMR_OK, stats);
    release(stats);
    CHECK(llmr_model_count() == 2);
    CHECK_STATUS(llmr_cancel(req_id_from_callback(r)), LLMR_OK, NULL);
    r->hook_data = r; /* "it ran" */
}

/* on_chunk: llmr_stats, llmr_complete, and at the second chunk llmr_cancel of its own stream. */
static void hook_chunk_calls(async_req *r) {
    g_section = "async reentry (on_chunk)";
    char *stats = NULL;
    CHECK_STATUS(llmr_stats(&stats), LLMR_OK, stats);
    release(stats);
    if (atomic_load(&r->chunks) == 1) {
        CHECK_STATUS(llmr_complete(HELLO, NULL), LLMR_OK, NULL);
    }
    if (atomic_load(&r->chunks) == 2) {
        CHECK_STATUS(llmr_cancel(req_id_from_callback(r)), LLMR_OK, NULL);
    }
}

/* on_done starts the next request of a chain (hook_data): complete → stream → complete. */
static void hook_chain(async_req *r) {
    g_section = "async reentry (chain)";
    async_req *next = r->hook_data;
    if (next == NULL) {
        return;
    }
    next->caller = pthread_self();
    next->check_caller = false; /* started on the callback thread: its callbacks come there */
    uint64_t id = next->stop_value == 2 ? start_stream(next, HELLO) : start_complete(next, HELLO);
    CHECK(id != 0);
}

static void test_async_reentry(void) {
    g_section = "async reentry";
    shutdown_ok();
    if (!init_ok(MOCK_CONFIG)) {
        return;
    }
    async_batch b = {0};
    async_req r[2];
    for (int i = 0; i < 2; ++i) {
        req_init(&r[i], &b);
        r[i].on_done_hook = hook_blocking_calls;
    }
    CHECK(start_complete(&r[0], HELLO) != 0);
    CHECK(start_stream(&r[1], HELLO) != 0);
    if (!WAIT_BATCH(&b, 2)) {
        return;
    }
    settle();
    CHECK_STREAM_OK(&r[1], MOCK_TEXT);
    for (int i = 0; i < 2; ++i) {
        CHECK_REQ(&r[i]);
        CHECK_STATUS(r[i].status, LLMR_OK, r[i].json);
        CHECK(r[i].hook_data == &r[i]); /* the hook ran to its end */
        req_free(&r[i]);
    }

    /* A chain: each on_done starts the next one. */
    async_batch cb = {0};
    async_req chain[3];
    for (int i = 0; i < 3; ++i) {
        req_init(&chain[i], &cb);
        chain[i].on_done_hook = hook_chain;
        chain[i].hook_data = i < 2 ? &chain[i + 1] : NULL;
    }
    chain[1].stop_value = 2; /* marks "start as a stream" for hook_chain; never stops */
    CHECK(start_complete(&chain[0], HELLO) != 0);
    if (WAIT_BATCH(&cb, 3)) {
        settle();
        CHECK(batch_done(&cb) == 3);
        for (int i = 0; i < 3; ++i) {
            CHECK_REQ(&chain[i]);
            if (CHECK_STATUS(chain[i].status, LLMR_OK, chain[i].json)) {
                check_completion(chain[i].json, MOCK_TEXT);
            }
            CHECK(req_id(&chain[i]) != 0);
        }
        CHECK_STREAM_OK(&chain[1], MOCK_TEXT);
        CHECK(req_id(&chain[0]) != req_id(&chain[1]) && req_id(&chain[1]) != req_id(&chain[2]));
        for (int i = 0; i < 3; ++i) {
            req_free(&chain[i]);
        }
    }
    shutdown_ok();

    /* on_chunk calling in, and cancelling its own stream (slow chunks: it is still running). */
    if (!init_words("drip", 40, 50)) {
        return;
    }
    async_batch sb = {0};
    async_req s;
    req_init(&s, &sb);
    s.on_chunk_hook = hook_chunk_calls;
    CHECK(start_stream(&s, HELLO) != 0);
    if (WAIT_BATCH(&sb, 1)) {
        settle();
        CHECK_REQ(&s);
        CHECK_ASYNC_ERROR(&s, LLMR_ERR_CANCELLED);
        CHECK(atomic_load(&s.chunks) == 2);
        req_free(&s);
    }
    shutdown_ok();
    g_section = "async reentry";
    check_callback_thread();
}

static void test_async(void) {
    test_async_basics();
    test_async_cannot_start();
    test_async_cancel();
    test_async_stop_by_callback();
    test_async_thousand();
    test_async_shutdown();
    test_async_reentry();
    g_section = "async";
    check_callback_thread();
    CHECK(atomic_load(&g_cb_calls) > 0);
    printf("async cases ran: %d callbacks, all on one thread\n", atomic_load(&g_cb_calls));
}

/* ------------------------------------------------------------------------------------------- */
/* Asynchronous calls over HTTP (the stand-in).                                                 */

static void standin_async_failure(const char *tenant, llmr_status want, const char *http_status) {
    for (int streaming = 0; streaming <= 1; ++streaming) {
        if (!standin_init("OPENAI", tenant, "\"" KEY_INLINE "\"", NULL)) {
            return;
        }
        async_batch b = {0};
        async_req r;
        req_init(&r, &b);
        CHECK((streaming ? start_stream(&r, HELLO) : start_complete(&r, HELLO)) != 0);
        if (!WAIT_BATCH(&b, 1)) {
            return;
        }
        CHECK_REQ(&r);
        CHECK_ASYNC_ERROR(&r, want);
        if (http_status != NULL) {
            CHECK_D(json_is(r.json, "http_status", http_status), r.json);
        }
        char id[64];
        snprintf(id, sizeof id, "\"s-%s\"", tenant);
        CHECK_D(json_is(r.json, "deployment_id", id), r.json);
        CHECK(atomic_load(&r.chunks) == 0);
        req_free(&r);
        shutdown_ok();
    }
}

static void test_async_standin(void) {
    g_section = "async stand-in";
    if (g_url == NULL || *g_url == '\0') {
        return;
    }
    shutdown_ok();
    if (standin_init("OPENAI", "ok", "\"" KEY_INLINE "\"", NULL)) {
        async_batch b = {0};
        async_req c, s;
        req_init(&c, &b);
        req_init(&s, &b);
        CHECK(start_complete(&c, HELLO) != 0);
        CHECK(start_stream(&s, HELLO) != 0);
        if (WAIT_BATCH(&b, 2)) {
            settle();
            CHECK_REQ(&c);
            CHECK_REQ(&s);
            if (CHECK_STATUS(c.status, LLMR_OK, c.json)) {
                check_completion(c.json, "echo: hello harness");
                CHECK_D(json_is(c.json, "deployment_id", "\"s-ok\""), c.json);
            }
            CHECK_STREAM_OK(&s, "echo: hello harness");
            CHECK(atomic_load(&s.chunks) >= 2);
            if (s.status == LLMR_OK) {
                check_completion(s.json, "echo: hello harness");
            }
            req_free(&c);
            req_free(&s);
        }

        /* Many at once, each its own question: every answer reaches its own user_data. */
        enum { MANY = 40 };
        async_batch mb = {0};
        async_req *m = calloc(MANY, sizeof *m);
        if (m == NULL) {
            exit(2);
        }
        for (int i = 0; i < MANY; ++i) {
            char req[160];
            snprintf(req, sizeof req,
                     "{\"messages\": [{\"role\": \"user\", \"content\": \"question %d\"}]}", i);
            req_init(&m[i], &mb);
            CHECK((i % 2 ? start_stream(&m[i], req) : start_complete(&m[i], req)) != 0);
        }
        if (WAIT_BATCH(&mb, MANY)) {
            settle();
            for (int i = 0; i < MANY; ++i) {
                char want[64];
                snprintf(want, sizeof want, "echo: question %d", i);
                CHECK_REQ(&m[i]);
                if (i % 2) {
                    CHECK_STREAM_OK(&m[i], want);
                } else if (CHECK_STATUS(m[i].status, LLMR_OK, m[i].json)) {
                    char content[128];
                    content_of(m[i].json, content, sizeof content);
                    CHECK_D(strcmp(content, want) == 0, m[i].json);
                }
                req_free(&m[i]);
            }
            free(m);
        }

        /* Stopped by its callback at the first chunk. */
        async_batch sb = {0};
        async_req st;
        req_init(&st, &sb);
        st.stop_after = 1;
        CHECK(start_stream(&st, HELLO) != 0);
        if (WAIT_BATCH(&sb, 1)) {
            settle();
            CHECK_REQ(&st);
            CHECK_ASYNC_ERROR(&st, LLMR_ERR_CANCELLED);
            CHECK(atomic_load(&st.chunks) == 1);
            req_free(&st);
        }
        shutdown_ok();
    }

    /* Failures, each with its status and error JSON in on_done. */
    standin_async_failure("e429", LLMR_ERR_RATE_LIMITED, "429");
    standin_async_failure("e401", LLMR_ERR_AUTH, "401");
    standin_async_failure("e400", LLMR_ERR_BAD_REQUEST, "400");
    standin_async_failure("overflow", LLMR_ERR_CONTEXT_OVERFLOW, "400");
    standin_async_failure("e500", LLMR_ERR_UPSTREAM, "500");
    standin_async_failure("garbage", LLMR_ERR_UPSTREAM, NULL);

    /* A stream that breaks after its first chunk. */
    if (standin_init("OPENAI", "midstreamerror", "\"" KEY_INLINE "\"", NULL)) {
        async_batch b = {0};
        async_req r;
        req_init(&r, &b);
        CHECK(start_stream(&r, HELLO) != 0);
        if (WAIT_BATCH(&b, 1)) {
            CHECK_REQ(&r);
            CHECK_ASYNC_ERROR(&r, LLMR_ERR_UPSTREAM);
            CHECK(atomic_load(&r.chunks) >= 1);
            req_free(&r);
        }
        shutdown_ok();
    }

    /* A provider that never answers: llmr_cancel ends the wait at once. */
    if (standin_init("OPENAI", "hang", "\"" KEY_INLINE "\"", NULL)) {
        async_batch b = {0};
        async_req r[2];
        for (int i = 0; i < 2; ++i) {
            req_init(&r[i], &b);
            CHECK((i ? start_stream(&r[i], HELLO) : start_complete(&r[i], HELLO)) != 0);
        }
        sleep_ms(200);
        CHECK(batch_done(&b) == 0);
        double t0 = now_s();
        for (int i = 0; i < 2; ++i) {
            CHECK_STATUS(llmr_cancel(req_id(&r[i])), LLMR_OK, NULL);
        }
        if (WAIT_BATCH(&b, 2)) {
            CHECK(now_s() - t0 < 5.0);
            settle();
            for (int i = 0; i < 2; ++i) {
                CHECK_REQ(&r[i]);
                CHECK_ASYNC_ERROR(&r[i], LLMR_ERR_CANCELLED);
                req_free(&r[i]);
            }
        }

        /* And llmr_shutdown ends every one of them. */
        enum { HUNG = 10 };
        async_batch hb = {0};
        async_req h[HUNG];
        for (int i = 0; i < HUNG; ++i) {
            req_init(&h[i], &hb);
            CHECK((i % 2 ? start_stream(&h[i], HELLO) : start_complete(&h[i], HELLO)) != 0);
        }
        sleep_ms(200);
        t0 = now_s();
        shutdown_ok();
        CHECK(now_s() - t0 < (g_quick ? 5.0 : 1.0));
        if (WAIT_BATCH(&hb, HUNG)) {
            CHECK(now_s() - t0 < 10.0);
            settle();
            for (int i = 0; i < HUNG; ++i) {
                CHECK_REQ(&h[i]);
                CHECK_ASYNC_ERROR(&h[i], LLMR_ERR_CANCELLED);
                req_free(&h[i]);
            }
        }
    }
    check_callback_thread();
    printf("async stand-in cases ran\n");
}

/* ============================================================================================ */
/* Hostile input and hostile timing                                                             */
/*                                                                                              */
/* 100 MB strings, deep nesting in more places, NULLs once initialised, init from 16 threads at  */
/* once, llmr_shutdown while blocking and asynchronous requests and streams are in flight (then  */
/* llmr_init again), callbacks that call llmr_shutdown / llmr_init, slow callbacks.             */

/* `before`, `n` bytes of 'x', `after`. */
static char *huge_in(size_t n, const char *before, const char *after) {
    size_t b = strlen(before), a = strlen(after);
    char *s = malloc(b + n + a + 1);
    if (s == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memcpy(s, before, b);
    memset(s + b, 'x', n);
    memcpy(s + b + n, after, a + 1);
    return s;
}

/* A failing call whose error JSON is short: it quotes at most an excerpt of the input. */
static void huge_fails(const char *request, llmr_status want) {
    result r = complete(request);
    CHECK_ERROR(r.status, want, r.json);
    CHECK_D(r.json != NULL && strlen(r.json) < 4096, "a short error JSON");
    release(r.json);
    stream_ctx ctx;
    stream_ctx_init(&ctx);
    r = stream(request, &ctx);
    CHECK_ERROR(r.status, want, r.json);
    CHECK(ctx.chunks == 0);
    CHECK_D(r.json != NULL && strlen(r.json) < 4096, "a short error JSON");
    release(r.json);
}

static void test_huge_strings(void) {
    g_section = "100 MB strings";
    shutdown_ok();
    if (!init_ok(MOCK_CONFIG)) {
        return;
    }
    /* valgrind is slow on big copies: 8 MB there, 100 MB otherwise. */
    const size_t n = g_quick ? ((size_t)8 << 20) : ((size_t)100 << 20);
    /* A prompt no window takes. */
    char *s = huge_in(n, "{\"messages\":[{\"role\":\"user\",\"content\":\"", "\"}]}");
    huge_fails(s, LLMR_ERR_CONTEXT_OVERFLOW);
    free(s);
    /* The same string where a number belongs, and as the group name. */
    s = huge_in(n, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"", "\"}");
    huge_fails(s, LLMR_ERR_INVALID_ARGUMENT);
    free(s);
    s = huge_in(n, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":\"", "\"}");
    huge_fails(s, LLMR_ERR_INVALID_ARGUMENT);
    free(s);
    /* Never closed. */
    s = huge_in(n, "{\"messages\":[{\"role\":\"user\",\"content\":\"", "");
    huge_fails(s, LLMR_ERR_INVALID_ARGUMENT);
    free(s);
    /* Invalid UTF-8 at its very end. */
    s = huge_in(n, "{\"messages\":[{\"role\":\"user\",\"content\":\"", "\xff\"}]}");
    huge_fails(s, LLMR_ERR_INVALID_ARGUMENT);
    free(s);
    /* A huge field the router does not read passes through: the call succeeds. */
    s = huge_in(n, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"metadata_blob\":\"", "\"}");
    result r = complete(s);
    if (CHECK_STATUS(r.status, LLMR_OK, r.json)) {
        check_completion(r.json, MOCK_TEXT);
    }
    release(r.json);
    free(s);
    /* A config with a 100 MB provider name: a short CONFIG error. */
    shutdown_ok();
    s = huge_in(n, "{\"global_llm_configs\": [{\"model_name\": \"m\", \"provider\": \"", "\"}]}");
    char *err = SENTINEL;
    llmr_status st = llmr_init(s, &err);
    err = settled(err, "llmr_init");
    CHECK_ERROR(st, LLMR_ERR_CONFIG, err);
    CHECK_D(err != NULL && strlen(err) < 4096, "a short error JSON");
    release(err);
    free(s);
    CHECK(!llmr_is_initialized());
}

static void test_more_bad_input(void) {
    g_section = "more bad input";
    shutdown_ok();
    if (!init_ok(MOCK_CONFIG)) {
        return;
    }
    /* NULL out-parameters and user_data once initialised: the status alone. */
    CHECK_STATUS(llmr_init(MOCK_CONFIG, NULL), LLMR_OK, NULL);
    CHECK_STATUS(llmr_complete(HELLO, NULL), LLMR_OK, NULL);
    CHECK_STATUS(llmr_router_info(NULL), LLMR_OK, NULL);
    CHECK_STATUS(llmr_stats(NULL), LLMR_OK, NULL);
    stream_ctx ctx;
    stream_ctx_init(&ctx);
    CHECK_STATUS(llmr_stream(HELLO, on_chunk, &ctx, NULL), LLMR_OK, NULL);
    CHECK(ctx.chunks == 4);
    CHECK_STATUS(llmr_cancel(0), LLMR_ERR_INVALID_ARGUMENT, NULL);
    CHECK_STATUS(llmr_cancel(UINT64_MAX), LLMR_OK, NULL); /* not in flight: nothing to do */

    /* Invalid UTF-8 in a member name, and in a field the router never reads. */
    request_fails("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"\xff\":1}",
                  LLMR_ERR_INVALID_ARGUMENT);
    request_fails("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"user\":\"\xc3\x28\"}",
                  LLMR_ERR_INVALID_ARGUMENT);

    /* Wrong types the schema names. */
    static const char *const wrong[] = {
        "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": {}}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": 5}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": [1]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tool_choice\": 1}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tool_choice\": \"sometimes\"}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": \"yes\"}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"timeout\": 1e300}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"parallel_tool_calls\": 1}",
        "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [[\"c\", \"function\", {}]]}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}],"
        " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": 3}}]}",
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; ++i) {
        request_fails(wrong[i], LLMR_ERR_INVALID_ARGUMENT);
    }

    /* 100000-deep nesting in the fields that hold free-form JSON. */
    char *deep = nested(100000, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\":"
                        " [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": ",
                        "{\"a\":", "}", "}}]}");
    request_fails(deep, LLMR_ERR_INVALID_ARGUMENT);
    free(deep);
    deep = nested(100000, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": ", "[",
                  "]", "}");
    request_fails(deep, LLMR_ERR_INVALID_ARGUMENT);
    free(deep);
    deep = nested(100000, "{\"messages\": [{\"role\": \"tool\", \"content\": ", "[", "]", "}]}");
    request_fails(deep, LLMR_ERR_INVALID_ARGUMENT);
    free(deep);
    /* Deep but within the limit: fine. */
    deep = nested(50, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"metadata\": ", "[",
                  "]", "}");
    result r = complete(deep);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
    free(deep);

    /* Absurd settings: a status and the field's name. */
    static const char *const absurd[][2] = {
        {"{\"num_retries\": 1e9}", "num_retries"},
        {"{\"num_retries\": -1}", "num_retries"},
        {"{\"allowed_fails\": -1}", "allowed_fails"},
        {"{\"cooldown_time\": -5}", "cooldown_time"},
        {"{\"cooldown_time\": \"NaN\"}", "cooldown_time"},
        {"{\"timeout\": 0}", "timeout"},
        {"{\"timeout\": -1}", "timeout"},
        {"{\"timeout\": 1e308}", "timeout"},
        {"{\"retry_after\": 1e20}", "retry_after"},
    };
    shutdown_ok();
    for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; ++i) {
        char cfg[512];
        snprintf(cfg, sizeof cfg,
                 "{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"m\"}],"
                 " \"router_settings\": %s}",
                 absurd[i][0]);
        init_fails(cfg, LLMR_ERR_CONFIG, absurd[i][1]);
    }
    static const char *const entries[][2] = {
        {"\"rpm\": 0", "rpm"},
        {"\"tpm\": -1", "tpm"},
        {"\"timeout\": 1e300", "timeout"},
        {"\"weight\": 1e300", "weight"},
        {"\"max_input_tokens\": \"big\"", "max_input_tokens"},
        {"\"litellm_params\": []", "litellm_params"},
        {"\"litellm_params\": {\"mock_delay_ms\": -1}", "mock_delay_ms"},
        {"\"provider\": 7", "provider"},
    };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; ++i) {
        char cfg[512];
        snprintf(cfg, sizeof cfg,
                 "{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"m\", %s}]}",
                 entries[i][0]);
        init_fails(cfg, LLMR_ERR_CONFIG, entries[i][1]);
    }
}

/* 16 threads call llmr_init at the same moment, 12 with a good config and 4 with a bad one:
 * the good ones return OK, the bad ones OK (already initialised) or CONFIG; one router. */
#define INIT_THREADS 16
static atomic_bool g_init_go;

typedef struct {
    const char *config;
    llmr_status status;
    char *err;
} init_call;

static void *worker_init_at_once(void *arg) {
    init_call *c = arg;
    while (!atomic_load(&g_init_go)) {
        /* spin: every thread calls llmr_init at once */
    }
    char *err = SENTINEL;
    c->status = llmr_init(c->config, &err);
    c->err = err;
    return NULL;
}

static void test_init_sixteen_at_once(void) {
    g_section = "init from 16 threads";
    for (int round = 0; round < (g_quick ? 1 : 5); ++round) {
        shutdown_ok();
        atomic_store(&g_init_go, false);
        pthread_t t[INIT_THREADS];
        init_call c[INIT_THREADS];
        int started = 0;
        for (int i = 0; i < INIT_THREADS; ++i) {
            c[i] = (init_call){.config = i % 4 == 3 ? "{\"global_llm_configs\": 5}" : MOCK_CONFIG};
            if (CHECK(pthread_create(&t[i], NULL, worker_init_at_once, &c[i]) == 0)) {
                started++;
            }
        }
        atomic_store(&g_init_go, true);
        for (int i = 0; i < started; ++i) {
            pthread_join(t[i], NULL);
        }
        for (int i = 0; i < started; ++i) {
            CHECK(c[i].err != SENTINEL);
            if (c[i].config == MOCK_CONFIG) {
                CHECK_STATUS(c[i].status, LLMR_OK, c[i].err);
                CHECK(c[i].err == NULL);
            } else if (c[i].status != LLMR_OK) {
                CHECK_ERROR(c[i].status, LLMR_ERR_CONFIG, c[i].err);
            }
            if (c[i].err != SENTINEL) {
                release(c[i].err);
            }
        }
        CHECK(llmr_is_initialized());
        CHECK(llmr_model_count() == 2);
        result r = complete(HELLO);
        CHECK_STATUS(r.status, LLMR_OK, r.json);
        release(r.json);
    }
}

/* Blocking calls in flight on their own threads when llmr_shutdown comes. */
typedef struct {
    bool streaming;
    result r;
    stream_ctx ctx;
    atomic_int *started;
} blocking_call;

static int32_t count_and_go(const char *chunk_json, void *user_data) {
    (void)chunk_json;
    blocking_call *b = user_data;
    __atomic_fetch_add(&b->ctx.chunks, 1, __ATOMIC_SEQ_CST); /* read by the main thread */
    return 0;
}

static void *worker_blocking(void *arg) {
    blocking_call *b = arg;
    atomic_fetch_add(b->started, 1);
    if (b->streaming) {
        char *out = SENTINEL;
        b->r.status = llmr_stream(HELLO, count_and_go, b, &out);
        b->r.json = out;
    } else {
        char *out = SENTINEL;
        b->r.status = llmr_complete(HELLO, &out);
        b->r.json = out;
    }
    return NULL;
}

static void shutdown_with_blocking_in_flight(const char *config, bool wait_for_chunks,
                                             const char *what) {
    g_section = what;
    shutdown_ok();
    if (!init_ok(config)) {
        return;
    }
    enum { BLOCKING = 8, ASYNC = 6 };
    atomic_int started;
    atomic_init(&started, 0);
    blocking_call b[BLOCKING];
    pthread_t t[BLOCKING];
    int running = 0;
    for (int i = 0; i < BLOCKING; ++i) {
        memset(&b[i], 0, sizeof b[i]);
        /* all streams when the chunks matter, else half and half */
        b[i].streaming = wait_for_chunks || (i % 2) == 1;
        b[i].started = &started;
        if (CHECK(pthread_create(&t[i], NULL, worker_blocking, &b[i]) == 0)) {
            running++;
        }
    }
    async_batch ab = {0};
    async_req a[ASYNC];
    for (int i = 0; i < ASYNC; ++i) {
        req_init(&a[i], &ab);
        /* the drip config answers completions at once: only its streams are in flight */
        bool as_stream = wait_for_chunks || (i % 2) == 1;
        CHECK((as_stream ? start_stream(&a[i], HELLO) : start_complete(&a[i], HELLO)) != 0);
    }
    /* Wait (bounded) until every blocking call is inside the library — and, for the drip
     * config, until every stream got a chunk. */
    double until = now_s() + 10.0;
    for (;;) {
        bool ready = atomic_load(&started) == running;
        if (wait_for_chunks) {
            for (int i = 0; i < running; ++i) {
                ready = ready && __atomic_load_n(&b[i].ctx.chunks, __ATOMIC_SEQ_CST) > 0;
            }
        }
        if (ready || now_s() > until) {
            break;
        }
        sleep_ms(10);
    }
    sleep_ms(g_quick ? 400 : 100); /* from "started" to inside llmr_complete / llmr_stream */
    double t0 = now_s();
    shutdown_ok();
    for (int i = 0; i < running; ++i) {
        pthread_join(t[i], NULL);
    }
    char took[96];
    snprintf(took, sizeof took, "the blocking calls returned %.2f s after llmr_shutdown",
             now_s() - t0);
    CHECK_D(now_s() - t0 < 10.0, took); /* not the 20 s answers */
    for (int i = 0; i < running; ++i) {
        CHECK(b[i].r.json != SENTINEL);
        CHECK_ERROR(b[i].r.status, LLMR_ERR_CANCELLED, b[i].r.json);
        if (b[i].r.json != SENTINEL) {
            release(b[i].r.json);
        }
        if (wait_for_chunks) {
            CHECK(b[i].ctx.chunks > 0);
        }
    }
    if (WAIT_BATCH(&ab, ASYNC)) {
        settle();
        for (int i = 0; i < ASYNC; ++i) {
            CHECK_REQ(&a[i]);
            CHECK_ASYNC_ERROR(&a[i], LLMR_ERR_CANCELLED);
            req_free(&a[i]);
        }
    }
    /* And llmr_init works again. */
    if (init_ok(MOCK_CONFIG)) {
        result r = complete(HELLO);
        CHECK_STATUS(r.status, LLMR_OK, r.json);
        release(r.json);
        stream_ctx ctx;
        stream_ctx_init(&ctx);
        r = stream(HELLO, &ctx);
        CHECK_STATUS(r.status, LLMR_OK, r.json);
        release(r.json);
    }
    shutdown_ok();
}

/* A blocking stream's on_chunk that shuts the library down, then initialises it again. */
static int32_t chunk_shutdown_and_init(const char *chunk_json, void *user_data) {
    (void)chunk_json;
    int *n = user_data;
    if (++*n == 1) {
        CHECK_STATUS(llmr_shutdown(), LLMR_OK, NULL);
        CHECK(!llmr_is_initialized());
        char *err = SENTINEL;
        CHECK_STATUS(llmr_init(MOCK_CONFIG, &err), LLMR_OK, err == SENTINEL ? NULL : err);
        if (err != SENTINEL) {
            release(err);
        }
        /* A nested blocking call from inside the callback, on the new router. */
        result r = complete(HELLO);
        CHECK_STATUS(r.status, LLMR_OK, r.json);
        release(r.json);
    }
    return 0;
}

/* An async on_chunk that shuts the library down; its on_done initialises it again. */
static void hook_chunk_shutdown(async_req *r) {
    if (atomic_load(&r->chunks) == 1) {
        CHECK_STATUS(llmr_shutdown(), LLMR_OK, NULL);
    }
}

static void hook_done_init(async_req *r) {
    (void)r;
    char *err = SENTINEL;
    CHECK_STATUS(llmr_init(MOCK_CONFIG, &err), LLMR_OK, err == SENTINEL ? NULL : err);
    if (err != SENTINEL) {
        release(err);
    }
    CHECK(llmr_model_count() == 2);
}

static void test_callbacks_that_reenter_lifecycle(void) {
    g_section = "callbacks: shutdown and init from inside";
    const char *drip =
        "{\"global_llm_configs\": [{\"id\": \"drip\", \"provider\": \"MOCK\", \"model_name\": \"m\","
        " \"litellm_params\": {\"mock_response\": \"a b c d e f g h i j\", \"mock_chunk_delay_ms\": 30}}]}";
    shutdown_ok();
    if (!init_ok(drip)) {
        return;
    }
    int n = 0;
    char *out = SENTINEL;
    llmr_status st = llmr_stream(HELLO, chunk_shutdown_and_init, &n, &out);
    out = settled(out, "llmr_stream");
    CHECK_ERROR(st, LLMR_ERR_CANCELLED, out);
    release(out);
    CHECK(n >= 1 && n < 10);
    CHECK(llmr_is_initialized());
    CHECK(llmr_model_count() == 2); /* the callback's own init */
    result r = complete(HELLO);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);

    shutdown_ok();
    if (!init_ok(drip)) {
        return;
    }
    async_batch b = {0};
    async_req a;
    req_init(&a, &b);
    a.on_chunk_hook = hook_chunk_shutdown;
    a.on_done_hook = hook_done_init;
    CHECK(start_stream(&a, HELLO) != 0);
    if (WAIT_BATCH(&b, 1)) {
        settle();
        CHECK_REQ(&a);
        CHECK_ASYNC_ERROR(&a, LLMR_ERR_CANCELLED);
        CHECK(atomic_load(&a.chunks) == 1);
        req_free(&a);
    }
    CHECK(llmr_is_initialized());
    r = complete(HELLO);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
    shutdown_ok();
    check_callback_thread();
}

/* Slow callbacks: they delay only what runs on their thread. */
static int32_t slow_chunk(const char *chunk_json, void *user_data) {
    (void)chunk_json;
    int *n = user_data;
    ++*n;
    sleep_ms(400);
    return 0;
}

static void hook_slow(async_req *r) {
    (void)r;
    sleep_ms(500);
}

static void test_slow_callbacks(void) {
    g_section = "slow callbacks";
    shutdown_ok();
    /* A request timeout shorter than the callbacks take: the answer was in time, the slow
     * reader is not a timeout. */
    if (!init_ok("{\"global_llm_configs\": [{\"id\": \"m\", \"provider\": \"MOCK\", \"model_name\": \"m\","
                 " \"litellm_params\": {\"mock_response\": \"" MOCK_TEXT "\"}}],"
                 " \"router_settings\": {\"timeout\": 1}}")) {
        return;
    }
    int n = 0;
    char *out = SENTINEL;
    llmr_status st = llmr_stream(HELLO, slow_chunk, &n, &out);
    out = settled(out, "llmr_stream");
    CHECK_STATUS(st, LLMR_OK, out);
    CHECK(n == 4);
    release(out);

    /* An async stream whose chunks take 0.5 s each, and completions queued behind it: all
     * finish; blocking calls meanwhile are not held up by the callback thread. */
    async_batch b = {0};
    async_req s, c[4];
    req_init(&s, &b);
    s.on_chunk_hook = hook_slow;
    CHECK(start_stream(&s, HELLO) != 0);
    /* Once its first chunk is being delivered, the other three are queued behind it. */
    for (double until = now_s() + 10.0; atomic_load(&s.chunks) == 0 && now_s() < until;) {
        sleep_ms(5);
    }
    CHECK(atomic_load(&s.chunks) == 1);
    for (int i = 0; i < 4; ++i) {
        req_init(&c[i], &b);
        CHECK(start_complete(&c[i], HELLO) != 0);
    }
    for (int i = 0; i < (g_quick ? 3 : 10); ++i) {
        result r = complete(HELLO);
        CHECK_STATUS(r.status, LLMR_OK, r.json);
        release(r.json);
    }
    /* The slow chunks (1.5 s more) are still going: the blocking calls did not wait for them,
     * and every on_done waits its turn on the callback thread. */
    CHECK(batch_done(&b) == 0);
    if (WAIT_BATCH(&b, 5)) {
        settle();
        CHECK_REQ(&s);
        CHECK_STREAM_OK(&s, MOCK_TEXT);
        for (int i = 0; i < 4; ++i) {
            CHECK_REQ(&c[i]);
            CHECK_STATUS(c[i].status, LLMR_OK, c[i].json);
            req_free(&c[i]);
        }
        req_free(&s);
    }
    shutdown_ok();
    check_callback_thread();
}

static void test_hostile(void) {
    test_huge_strings();
    test_more_bad_input();
    test_init_sixteen_at_once();
    shutdown_with_blocking_in_flight(
        "{\"global_llm_configs\": [{\"id\": \"slow\", \"provider\": \"MOCK\", \"model_name\": \"m\","
        " \"litellm_params\": {\"mock_delay_ms\": 20000}}]}",
        false, "shutdown with blocking calls in flight");
    shutdown_with_blocking_in_flight(
        "{\"global_llm_configs\": [{\"id\": \"drip\", \"provider\": \"MOCK\", \"model_name\": \"m\","
        " \"litellm_params\": {\"mock_response\": \"w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w\","
        " \"mock_chunk_delay_ms\": 500}}]}",
        true, "shutdown with blocking streams mid-way");
    test_callbacks_that_reenter_lifecycle();
    test_slow_callbacks();
    g_section = "hostile";
    printf("hostile cases ran\n");
}

/* ============================================================================================ */

/* ============================================================================================ */
/* Operability: llmr_set_logger, llmr_metrics                                                    */

/* What the logger saw. Static: a replaced logger may still get the message under way. */
typedef struct {
    atomic_int messages;
    atomic_int not_json;       /* a message that is not a JSON object with a level */
    atomic_int wrong_level;    /* the level argument disagrees with the JSON's, or is above max */
    atomic_int with_key;       /* a message with an API key */
    atomic_int completed;      /* "request completed" lines (debug) */
    atomic_int skipped;        /* "config entry skipped" warnings */
    atomic_int reentered_ok;   /* llmr_metrics from inside the callback returned LLMR_OK */
    atomic_bool on_caller;     /* a message arrived on the thread that installed the logger */
    pthread_t installer;
    int max_level;
} log_seen;

static log_seen g_log;

static void on_log(int32_t level, const char *message_json, void *user_data) {
    log_seen *seen = (log_seen *)user_data;
    atomic_fetch_add(&seen->messages, 1);
    if (pthread_equal(pthread_self(), seen->installer)) {
        atomic_store(&seen->on_caller, true);
    }
    static const char *const names[] = {"", "error", "warn", "info", "debug", "trace"};
    if (message_json == NULL || message_json[0] != '{' || !json_kind(message_json, "level", '"')) {
        atomic_fetch_add(&seen->not_json, 1);
        return;
    }
    char want[32];
    snprintf(want, sizeof want, "\"%s\"", (level >= 1 && level <= 5) ? names[level] : "?");
    if (level < 1 || level > seen->max_level || !json_is(message_json, "level", want)) {
        atomic_fetch_add(&seen->wrong_level, 1);
    }
    if (strstr(message_json, KEY_INLINE) != NULL || strstr(message_json, KEY_ENV) != NULL) {
        atomic_fetch_add(&seen->with_key, 1);
    }
    if (json_is(message_json, "msg", "\"request completed\"")) {
        atomic_fetch_add(&seen->completed, 1);
        /* The callback may call into the library (it runs on no lock and no worker). */
        char *text = NULL;
        if (llmr_metrics(&text) == LLMR_OK && text != NULL) {
            atomic_fetch_add(&seen->reentered_ok, 1);
        }
        llmr_string_free(text);
    }
    if (json_is(message_json, "msg", "\"config entry skipped\"")) {
        atomic_fetch_add(&seen->skipped, 1);
    }
}

/* Waits up to 10 s for `*counter` to reach `n`. */
static bool wait_count(atomic_int *counter, int n) {
    for (int i = 0; i < 2000 && atomic_load(counter) < n; ++i) {
        sleep_ms(5);
    }
    return atomic_load(counter) >= n;
}

static void test_operability(void) {
    g_section = "operability";
    shutdown_ok();

    /* llmr_metrics: a NULL out-parameter asks for nothing (the ABI's rule); works without a router. */
    CHECK_STATUS(llmr_metrics(NULL), LLMR_OK, NULL);
    char *text = SENTINEL;
    CHECK_STATUS(llmr_metrics(&text), LLMR_OK, NULL);
    text = settled(text, "llmr_metrics");
    CHECK_D(text != NULL && strstr(text, "\nllmr_initialized 0\n") != NULL, text);
    CHECK_D(text != NULL && strstr(text, "# TYPE llmr_requests_total counter\n") != NULL, text);
    release(text);

    /* Levels outside 0..5 are refused, with or without a callback. */
    CHECK_STATUS(llmr_set_logger(on_log, 6, &g_log), LLMR_ERR_INVALID_ARGUMENT, NULL);
    CHECK_STATUS(llmr_set_logger(on_log, -1, &g_log), LLMR_ERR_INVALID_ARGUMENT, NULL);
    CHECK_STATUS(llmr_set_logger(NULL, 9, NULL), LLMR_ERR_INVALID_ARGUMENT, NULL);

    /* Installed before llmr_init, it gets init's warnings, then every request's outcome. */
    g_log.installer = pthread_self();
    g_log.max_level = 4;
    CHECK_STATUS(llmr_set_logger(on_log, 4, &g_log), LLMR_OK, NULL);
    CHECK(init_ok(MOCK_CONFIG));
    CHECK(wait_count(&g_log.skipped, 1));
    result r = complete(HELLO);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
    CHECK(wait_count(&g_log.completed, 1));
    CHECK(wait_count(&g_log.reentered_ok, 1));

    /* Metrics through the ABI count that request. */
    text = NULL;
    CHECK_STATUS(llmr_metrics(&text), LLMR_OK, text);
    CHECK_D(text != NULL && strstr(text, "\nllmr_initialized 1\n") != NULL, text);
    CHECK_D(text != NULL && strstr(text, "llmr_requests_total{deployment_id=\"m") != NULL, text);
    CHECK_D(text != NULL && strstr(text, "gen_ai_client_operation_duration_seconds_bucket{") != NULL,
            text);
    release(text);

    /* It survives llmr_shutdown. */
    shutdown_ok();
    int before = atomic_load(&g_log.completed);
    CHECK(init_ok(MOCK_CONFIG));
    r = complete(HELLO);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
    CHECK(wait_count(&g_log.completed, before + 1));

    /* Back to stderr: the logger gets nothing more (but the message already under way). */
    CHECK_STATUS(llmr_set_logger(NULL, 0, NULL), LLMR_OK, NULL);
    sleep_ms(50);
    int after = atomic_load(&g_log.messages);
    r = complete(HELLO);
    CHECK_STATUS(r.status, LLMR_OK, r.json);
    release(r.json);
    sleep_ms(50);
    CHECK(atomic_load(&g_log.messages) == after);

    CHECK(atomic_load(&g_log.not_json) == 0);
    CHECK(atomic_load(&g_log.wrong_level) == 0);
    CHECK(atomic_load(&g_log.with_key) == 0);
    CHECK(!atomic_load(&g_log.on_caller));
    shutdown_ok();
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--quick") == 0) {
            g_quick = true;
        } else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return 2;
        }
    }
    double t0 = now_s();
    async_setup();
    printf("llmr C harness: library %s%s\n", llmr_version(), g_quick ? " (quick)" : "");

    test_static_functions();
    test_before_init();
    test_init_errors();
    test_lifecycle();
    test_mock_calls();
    test_bad_requests();
    test_threads();
    test_concurrent_lifecycle();
    test_reload();
    test_cancel();
    test_mock_failures();
    test_mock_tools();
    test_async();
    test_operability();
    test_hostile();
    test_standin();
    test_async_standin();

    g_section = "end";
    shutdown_ok();

    int failures = atomic_load(&g_failures);
    printf("%d checks, %d failed, %.1f s\n", atomic_load(&g_checks), failures, now_s() - t0);
    return failures == 0 ? 0 : 1;
}
