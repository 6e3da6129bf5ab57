/*
 * llmr demo: an offline tour of the C API.
 *
 *     make demo        (builds the library, compiles this file, runs it on examples/mock_config.json)
 *
 * or by hand, after `cargo build --release`:
 *
 *     cc -std=c11 -Wall -Wextra -O2 -Iinclude examples/demo.c \
 *        -Ltarget/release -lllmr -Wl,-rpath,$PWD/target/release -o llmr-demo
 *     ./llmr-demo examples/mock_config.json
 *
 * The config uses MOCK deployments, which answer in-process: no network, no API key. Swap them
 * for real providers ("provider": "OPENAI", "api_key": "os.environ/OPENAI_API_KEY", ...) and the
 * program runs unchanged.
 *
 * What it shows, in order:
 *   1. llmr_version, llmr_init from a config file, llmr_router_info;
 *   2. llmr_stream: an answer printed delta by delta as it arrives, then the assembled result's
 *      finish_reason, usage and the "llmr" routing metadata;
 *   3. an error handled: a prompt too large for every context window gives
 *      LLMR_ERR_CONTEXT_OVERFLOW; the program trims the prompt and retries with llmr_complete;
 *   4. llmr_stats and llmr_shutdown.
 *
 * The rules to remember (see include/llmr.h):
 *   - every `char **` out-parameter receives a string you own: free it with llmr_string_free(),
 *     never with free();
 *   - every failing call tells you why through its own out-parameter, as an error JSON
 *     {"error": {"status": "...", "code": N, "message": "...", ...}}.
 *
 * A real program would read JSON with a JSON library (cJSON, jansson, yyjson...). To stay
 * dependency-free this demo carries three tiny helpers at the bottom of the file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmr.h"

/* Tiny JSON helpers (defined at the end of the file). */
static const char *json_find(const char *json, const char *key);
static size_t json_span(const char *value);
static int json_string(const char *value, char *out, size_t cap);

static char *read_file(const char *path);
static void print_field(const char *json, const char *key);
static void print_error(const char *what, llmr_status status, const char *error_json);

/* Called by llmr_stream on the calling thread, once per chunk that carries a delta, in order.
 * `chunk_json` is an OpenAI chat.completion.chunk, valid only during this call. Returning
 * non-zero would stop the stream (llmr_stream then returns LLMR_ERR_CANCELLED). */
static int32_t on_chunk(const char *chunk_json, void *user_data) {
    int *chunks = user_data;
    char delta[1024];
    /* choices[0].delta.content; tool-call deltas carry no "content" string. */
    const char *content = json_find(chunk_json, "content");
    if (content != NULL && json_string(content, delta, sizeof delta) == 0) {
        fputs(delta, stdout);
        fflush(stdout); /* show each word as it arrives */
    }
    ++*chunks;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG.json\n", argv[0]);
        return 2;
    }

    /* 1. Version, init, router info. -------------------------------------------------------- */
    printf("llmr %s (header %d.%d.%d)\n", llmr_version(), LLMR_VERSION_MAJOR, LLMR_VERSION_MINOR,
           LLMR_VERSION_PATCH);

    char *config = read_file(argv[1]);
    if (config == NULL) {
        return 1;
    }
    char *error = NULL;
    llmr_status status = llmr_init(config, &error);
    free(config); /* our own buffer: llmr only borrows it for the call */
    if (status != LLMR_OK) {
        print_error("llmr_init", status, error);
        llmr_string_free(error); /* NULL-safe */
        return 1;
    }
    printf("%zu deployment(s) ready\n", llmr_model_count());

    char *info = NULL;
    status = llmr_router_info(&info);
    if (status != LLMR_OK) {
        print_error("llmr_router_info", status, info);
        llmr_string_free(info);
        return 1;
    }
    printf("\nrouter info: %s\n", info);
    llmr_string_free(info);

    /* 2. Stream an answer. ----------------------------------------------------------------- */
    /* "model" is optional: "auto" (every deployment) is the default group. */
    const char *request =
        "{\"messages\": ["
        "  {\"role\": \"system\", \"content\": \"You are a concise assistant.\"},"
        "  {\"role\": \"user\", \"content\": \"What does llmr do?\"}"
        "], \"max_tokens\": 200}";

    printf("\nstreaming: ");
    fflush(stdout);
    int chunks = 0;
    char *result = NULL;
    status = llmr_stream(request, on_chunk, &chunks, &result);
    printf("\n");
    if (status != LLMR_OK) {
        print_error("llmr_stream", status, result);
        llmr_string_free(result);
        llmr_shutdown();
        return 1;
    }
    /* `result` is the whole answer assembled as a chat.completion. */
    printf("%d chunks\n", chunks);
    print_field(result, "finish_reason");
    print_field(result, "usage");
    print_field(result, "llmr"); /* which deployment answered, attempts, latency */
    llmr_string_free(result);

    /* 3. An error, handled. ---------------------------------------------------------------- */
    /* About 10000 tokens of history: larger than every deployment's window (2000 and 8000).
     * llmr first tries the largest window, then reports a context overflow, distinct from every
     * other failure so that the caller knows what to do about it: shorten the prompt. */
    size_t filler = 40000;
    char *big = malloc(filler + 256);
    if (big == NULL) {
        fprintf(stderr, "out of memory\n");
        llmr_shutdown();
        return 1;
    }
    int head = snprintf(big, 256, "{\"messages\": [{\"role\": \"user\", \"content\": \"");
    memset(big + head, 'x', filler);
    strcpy(big + head + filler, "\"}]}");

    printf("\nsending a prompt of about %zu tokens...\n", filler / 4);
    char *response = NULL;
    status = llmr_complete(big, &response);
    free(big);
    if (status == LLMR_ERR_CONTEXT_OVERFLOW) {
        printf("handled %s (code %d): ", llmr_status_name(status), (int)status);
        print_field(response, "message");
        llmr_string_free(response);

        /* Trim the history and try again, now with a blocking llmr_complete. */
        printf("retrying with the prompt trimmed...\n");
        response = NULL;
        status = llmr_complete(request, &response);
        if (status != LLMR_OK) {
            print_error("llmr_complete", status, response);
            llmr_string_free(response);
            llmr_shutdown();
            return 1;
        }
        print_field(response, "content");
        print_field(response, "llmr");
        llmr_string_free(response);
    } else {
        /* Any other status is unexpected here: report it like any failure. */
        print_error("llmr_complete (oversized prompt)", status, response);
        llmr_string_free(response);
        llmr_shutdown();
        return 1;
    }

    /* 4. Live stats, shutdown. ------------------------------------------------------------- */
    char *stats = NULL;
    status = llmr_stats(&stats);
    if (status != LLMR_OK) {
        print_error("llmr_stats", status, stats);
        llmr_string_free(stats);
        llmr_shutdown();
        return 1;
    }
    printf("\nstats: %s\n", stats);
    llmr_string_free(stats);

    llmr_shutdown();
    printf("\ndone\n");
    return 0;
}

/* -------------------------------------------------------------------------------------------- */
/* Plumbing. */

/* The whole file as a NUL-terminated string (free() it), or NULL after printing why. */
static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                fprintf(stderr, "%s: out of memory\n", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Prints `key: <value>` for the first member named `key` anywhere in `json`. */
static void print_field(const char *json, const char *key) {
    const char *v = json ? json_find(json, key) : NULL;
    if (v == NULL) {
        printf("%s: (absent)\n", key);
        return;
    }
    printf("%s: %.*s\n", key, (int)json_span(v), v);
}

/* Reports a failed call: its status and the error JSON it gave back. */
static void print_error(const char *what, llmr_status status, const char *error_json) {
    fprintf(stderr, "%s failed: %s (%d)\n  %s\n", what, llmr_status_name(status), (int)status,
            error_json ? error_json : "(no detail)");
}

/* Skips a JSON string starting at its opening quote; returns the character after the closing
 * quote. */
static const char *skip_string(const char *p) {
    for (++p; *p && *p != '"'; ++p) {
        if (*p == '\\' && p[1]) {
            ++p;
        }
    }
    return *p ? p + 1 : p;
}

/* The value of the first object member named `key` (depth-first, in document order), or NULL.
 * Only member names match: a string value that happens to equal `key` does not. */
static const char *json_find(const char *json, const char *key) {
    size_t key_len = strlen(key);
    for (const char *p = json; *p;) {
        if (*p != '"') {
            ++p;
            continue;
        }
        const char *start = p + 1;
        p = skip_string(p);
        const char *after = p;
        while (*after == ' ' || *after == '\n' || *after == '\r' || *after == '\t') {
            ++after;
        }
        if (*after == ':' && (size_t)(p - 1 - start) == key_len &&
            strncmp(start, key, key_len) == 0) {
            ++after;
            while (*after == ' ' || *after == '\n' || *after == '\r' || *after == '\t') {
                ++after;
            }
            return after;
        }
    }
    return NULL;
}

/* The length of the JSON value starting at `v` (an object, array, string or scalar). */
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
                break; /* the end of the enclosing container */
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

/* Appends the UTF-8 encoding of `cp` to out[*n], if it fits in `cap` (keeping room for NUL). */
static void put_utf8(char *out, size_t *n, size_t cap, unsigned long cp) {
    unsigned char b[4];
    size_t len;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        len = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 4;
    }
    if (*n + len < cap) {
        memcpy(out + *n, b, len);
        *n += len;
    }
}

/* Reads four hex digits; -1 if they are not. */
static long hex4(const char *p) {
    long v = 0;
    for (int i = 0; i < 4; ++i) {
        char c = p[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) {
            return -1;
        }
        v = v * 16 + d;
    }
    return v;
}

/* Decodes the JSON string at `v` into `out` (cut to fit `cap`). 0 on success, -1 if `v` is not
 * a string. */
static int json_string(const char *v, char *out, size_t cap) {
    if (*v != '"' || cap == 0) {
        return -1;
    }
    size_t n = 0;
    for (const char *p = v + 1; *p && *p != '"'; ++p) {
        if (*p != '\\') {
            if (n + 1 < cap) {
                out[n++] = *p;
            }
            continue;
        }
        ++p;
        char c = *p;
        if (c == '\0') {
            break;
        }
        if (c == 'u') {
            long cp = hex4(p + 1);
            if (cp < 0) {
                return -1;
            }
            p += 4;
            /* A surrogate pair: \uD83D\uDE00 is one code point. */
            if (cp >= 0xD800 && cp <= 0xDBFF && p[1] == '\\' && p[2] == 'u') {
                long lo = hex4(p + 3);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            put_utf8(out, &n, cap, (unsigned long)cp);
            continue;
        }
        char plain = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b'
                   : c == 'f' ? '\f' : c; /* \" \\ \/ stand for themselves */
        if (n + 1 < cap) {
            out[n++] = plain;
        }
    }
    out[n] = '\0';
    return 0;
}
