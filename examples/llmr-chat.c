/*
 * llmr-chat: ask the router one question from the command line — the quickest way to check a
 * config against real providers.
 *
 *     llmr-chat [--stats] [--model auto|auto-large] [--system TEXT] CONFIG.json PROMPT...
 *     echo "a question" | llmr-chat CONFIG.json -
 *
 * The answer is streamed to stdout as it arrives. `--stats` then prints which deployment
 * answered, `llmr_router_info` and `llmr_stats` (also after a failure: cooldowns and failure
 * counts say what went wrong). Log lines (skipped config entries, cooldowns) go to stderr at
 * the level in LLMR_LOG (default warn; `LLMR_LOG=debug` shows every attempt).
 *
 * Exit status: 0 on success; on a library error the llmr_status value (2 config,
 * 4 context_overflow, 5 rate_limited, 6 auth, 9 timeout, 10 upstream, ...) with
 * "llmr-chat: <status>: <message>" on stderr; 64 for bad usage; 66 when the config or stdin
 * cannot be read.
 *
 * Built by `make` into target/release/llmr-chat. It uses only the public C API (include/llmr.h)
 * and carries a few lines of JSON reading to stay dependency-free; a real program would use a
 * JSON library.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmr.h"

#define EXIT_USAGE 64   /* sysexits.h EX_USAGE */
#define EXIT_NOINPUT 66 /* sysexits.h EX_NOINPUT */

static void usage(FILE *to) {
    fputs("usage: llmr-chat [--stats] [--model auto|auto-large] [--system TEXT] CONFIG.json PROMPT...\n"
          "       llmr-chat [options] CONFIG.json -     (the prompt from stdin)\n"
          "\n"
          "Streams the router's answer to PROMPT to stdout.\n"
          "  --stats        then print who answered, llmr_router_info and llmr_stats\n"
          "  --model GROUP  the model group: auto (default) or auto-large\n"
          "  --system TEXT  a system message before the prompt\n"
          "Exit status: 0, or the llmr_status of the failure (see include/llmr.h); 64 usage;\n"
          "66 unreadable input. Logs go to stderr at the level in LLMR_LOG (default warn).\n",
          to);
}

/* ---------------------------------------------------------------------------------------- */
/* Memory and text                                                                            */

typedef struct {
    char *data;
    size_t len, cap;
} buf;

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL) {
        fputs("llmr-chat: out of memory\n", stderr);
        exit(EXIT_FAILURE);
    }
    return q;
}

static void buf_add(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* Appends `s` as a JSON string literal. Bytes >= 0x80 pass through: the library checks UTF-8. */
static void buf_json_string(buf *b, const char *s) {
    buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; ++p) {
        char esc[8];
        switch (*p) {
        case '"': buf_add(b, "\\\"", 2); break;
        case '\\': buf_add(b, "\\\\", 2); break;
        case '\n': buf_add(b, "\\n", 2); break;
        case '\r': buf_add(b, "\\r", 2); break;
        case '\t': buf_add(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                buf_add(b, esc, 6);
            } else {
                buf_add(b, (const char *)p, 1);
            }
        }
    }
    buf_add(b, "\"", 1);
}

/* Reads a whole stream; false on a read error. */
static bool read_all(FILE *f, buf *out) {
    char chunk[65536];
    size_t n;
    buf_add(out, "", 0);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_add(out, chunk, n);
    }
    return !ferror(f);
}

/* ---------------------------------------------------------------------------------------- */
/* Just enough JSON reading for the library's own (well-formed) output                        */

static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') {
        ++p;
    }
    return p;
}

/* The end of the value at `p` (after its last character). */
static const char *skip_value(const char *p) {
    p = ws(p);
    if (*p == '"') {
        for (++p; *p && *p != '"'; ++p) {
            if (*p == '\\' && p[1]) {
                ++p;
            }
        }
        return *p ? p + 1 : p;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        while (*p && *p != close) {
            p = skip_value(p); /* a key, or an element */
            p = ws(p);
            if (*p == ':') {
                p = skip_value(p + 1);
                p = ws(p);
            }
            if (*p == ',') {
                p = ws(p + 1);
            } else if (*p != close) {
                return p; /* malformed: stop here */
            }
        }
        return *p ? p + 1 : p;
    }
    while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') {
        ++p;
    }
    return p;
}

/* The value of member `key` of the object at `obj` (its own members only), or NULL. */
static const char *member(const char *obj, const char *key) {
    if (obj == NULL || *(obj = ws(obj)) != '{') {
        return NULL;
    }
    size_t n = strlen(key);
    const char *p = ws(obj + 1);
    while (*p == '"') {
        const char *name = p + 1;
        const char *end = skip_value(p);
        const char *v = ws(end);
        if (*v != ':') {
            return NULL;
        }
        v = ws(v + 1);
        if ((size_t)(end - 1 - name) == n && strncmp(name, key, n) == 0) {
            return v;
        }
        p = ws(skip_value(v));
        if (*p != ',') {
            return NULL;
        }
        p = ws(p + 1);
    }
    return NULL;
}

/* Element `i` of the array at `arr`, or NULL. */
static const char *element(const char *arr, size_t i) {
    if (arr == NULL || *(arr = ws(arr)) != '[') {
        return NULL;
    }
    const char *p = ws(arr + 1);
    for (size_t k = 0; *p && *p != ']'; ++k) {
        if (k == i) {
            return p;
        }
        p = ws(skip_value(p));
        if (*p != ',') {
            return NULL;
        }
        p = ws(p + 1);
    }
    return NULL;
}

static unsigned hex4(const char *p, bool *ok) {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        } else {
            *ok = false;
            return 0;
        }
    }
    return v;
}

static void put_utf8(buf *b, unsigned cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_add(b, u, n);
}

/* Decodes the JSON string at `v` into `out` (replacing its contents); false if `v` is not a
 * string. */
static bool string_value(const char *v, buf *out) {
    out->len = 0;
    buf_add(out, "", 0);
    if (v == NULL || *v != '"') {
        return false;
    }
    for (const char *p = v + 1; *p && *p != '"'; ++p) {
        if (*p != '\\') {
            buf_add(out, p, 1);
            continue;
        }
        char c = *++p;
        switch (c) {
        case 'n': buf_add(out, "\n", 1); break;
        case 't': buf_add(out, "\t", 1); break;
        case 'r': buf_add(out, "\r", 1); break;
        case 'b': buf_add(out, "\b", 1); break;
        case 'f': buf_add(out, "\f", 1); break;
        case 'u': {
            bool ok = true;
            unsigned cp = hex4(p + 1, &ok);
            if (!ok) {
                return true;
            }
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u') {
                unsigned lo = hex4(p + 3, &ok);
                if (ok && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            put_utf8(out, cp);
            break;
        }
        case '\0': return true;
        default: buf_add(out, &c, 1); /* \" \\ \/ */
        }
    }
    return true;
}

/* Prints JSON indented by two spaces; strings are copied as they are. */
static void print_pretty(FILE *to, const char *json) {
    int depth = 0;
    for (const char *p = ws(json); *p; ++p) {
        char c = *p;
        if (c == '"') {
            const char *end = skip_value(p);
            fwrite(p, 1, (size_t)(end - p), to);
            p = end - 1;
        } else if (c == '{' || c == '[') {
            const char *next = ws(p + 1);
            if (*next == (c == '{' ? '}' : ']')) {
                fputc(c, to);
                fputc(*next, to);
                p = next;
                continue;
            }
            fprintf(to, "%c\n%*s", c, 2 * ++depth, "");
        } else if (c == '}' || c == ']') {
            fprintf(to, "\n%*s%c", 2 * (depth > 0 ? --depth : 0), "", c);
        } else if (c == ',') {
            fprintf(to, ",\n%*s", 2 * depth, "");
        } else if (c == ':') {
            fputs(": ", to);
        } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
            fputc(c, to);
        }
    }
    fputc('\n', to);
}

/* ---------------------------------------------------------------------------------------- */
/* The chat                                                                                   */

typedef struct {
    buf text;            /* scratch for one delta */
    bool printed;        /* some content reached stdout */
    bool ends_with_newline;
} answer;

/* Prints each chunk's content delta as it arrives. */
static int32_t on_chunk(const char *chunk_json, void *user_data) {
    answer *a = user_data;
    const char *delta = member(element(member(chunk_json, "choices"), 0), "delta");
    if (string_value(member(delta, "content"), &a->text) && a->text.len > 0) {
        fwrite(a->text.data, 1, a->text.len, stdout);
        fflush(stdout);
        a->printed = true;
        a->ends_with_newline = a->text.data[a->text.len - 1] == '\n';
    }
    return 0;
}

/* Tool calls of the assembled answer, one a line: `[tool call] name(arguments)`. */
static void print_tool_calls(const char *response) {
    const char *message = member(element(member(response, "choices"), 0), "message");
    const char *calls = member(message, "tool_calls");
    buf name = {0}, args = {0};
    for (size_t i = 0;; ++i) {
        const char *fn = member(element(calls, i), "function");
        if (fn == NULL) {
            break;
        }
        string_value(member(fn, "name"), &name);
        string_value(member(fn, "arguments"), &args);
        printf("[tool call] %s(%s)\n", name.data, args.data);
    }
    free(name.data);
    free(args.data);
}

/* "answered by m1 (openai) in 1 attempt(s), 812.4 ms" from the response's "llmr" member. */
static void print_answered_by(const char *response) {
    const char *meta = member(response, "llmr");
    if (meta == NULL) {
        return;
    }
    buf id = {0}, provider = {0};
    string_value(member(meta, "deployment_id"), &id);
    string_value(member(meta, "provider"), &provider);
    const char *attempts = member(meta, "attempts");
    const char *latency = member(meta, "latency_ms");
    printf("answered by deployment %s (%s) in %ld attempt(s), %.1f ms\n", id.data ? id.data : "?",
           provider.data ? provider.data : "?", attempts ? strtol(attempts, NULL, 10) : 0L,
           latency ? strtod(latency, NULL) : 0.0);
    free(id.data);
    free(provider.data);
}

static void print_view(const char *title, llmr_status (*get)(char **)) {
    char *json = NULL;
    llmr_status st = get(&json);
    printf("--- %s\n", title);
    if (st == LLMR_OK) {
        print_pretty(stdout, json);
    } else {
        printf("(%s)\n", llmr_status_name(st));
    }
    llmr_string_free(json);
}

/* "llmr-chat: <status>: <message>" from an error JSON; returns the exit status. */
static int report(llmr_status st, const char *error_json) {
    buf message = {0};
    const char *m = member(member(error_json, "error"), "message");
    if (!string_value(m, &message)) {
        buf_puts(&message, error_json ? error_json : "(no detail)");
    }
    fprintf(stderr, "llmr-chat: %s: %s\n", llmr_status_name(st), message.data);
    free(message.data);
    return st > 0 && st < EXIT_USAGE ? (int)st : EXIT_FAILURE;
}

int main(int argc, char **argv) {
    bool stats = false;
    const char *model = "auto";
    const char *system = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; ++i) {
        const char *opt = argv[i];
        if (strcmp(opt, "--") == 0) {
            ++i;
            break;
        } else if (strcmp(opt, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(opt, "--stats") == 0) {
            stats = true;
        } else if ((strcmp(opt, "--model") == 0 || strcmp(opt, "--system") == 0) && i + 1 < argc) {
            *(opt[2] == 'm' ? &model : &system) = argv[++i];
        } else {
            fprintf(stderr, "llmr-chat: unknown option or missing value: %s\n", opt);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - i < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *config_path = argv[i++];

    buf config = {0};
    FILE *f = fopen(config_path, "rb");
    if (f == NULL || !read_all(f, &config)) {
        perror(config_path);
        if (f != NULL) {
            fclose(f);
        }
        free(config.data);
        return EXIT_NOINPUT;
    }
    fclose(f);

    buf prompt = {0};
    if (argc - i == 1 && strcmp(argv[i], "-") == 0) {
        if (!read_all(stdin, &prompt)) {
            perror("stdin");
            free(config.data);
            free(prompt.data);
            return EXIT_NOINPUT;
        }
        while (prompt.len > 0 && (prompt.data[prompt.len - 1] == '\n' || prompt.data[prompt.len - 1] == '\r')) {
            prompt.data[--prompt.len] = '\0';
        }
    } else {
        for (int k = i; k < argc; ++k) {
            if (k > i) {
                buf_puts(&prompt, " ");
            }
            buf_puts(&prompt, argv[k]);
        }
    }

    buf request = {0};
    buf_puts(&request, "{\"model\": ");
    buf_json_string(&request, model);
    buf_puts(&request, ", \"messages\": [");
    if (system != NULL) {
        buf_puts(&request, "{\"role\": \"system\", \"content\": ");
        buf_json_string(&request, system);
        buf_puts(&request, "}, ");
    }
    buf_puts(&request, "{\"role\": \"user\", \"content\": ");
    buf_json_string(&request, prompt.data);
    buf_puts(&request, "}]}");
    free(prompt.data);

    char *err = NULL;
    llmr_status st = llmr_init(config.data, &err);
    free(config.data);
    if (st != LLMR_OK) {
        int code = report(st, err);
        llmr_string_free(err);
        free(request.data);
        return code;
    }

    answer a = {0};
    char *result = NULL;
    st = llmr_stream(request.data, on_chunk, &a, &result);
    free(request.data);
    free(a.text.data);
    if (a.printed && !a.ends_with_newline) {
        putchar('\n');
    }
    int code = 0;
    if (st == LLMR_OK) {
        print_tool_calls(result);
    } else {
        fflush(stdout);
        code = report(st, result);
    }
    if (stats) {
        if (st == LLMR_OK) {
            print_answered_by(result);
        }
        print_view("router info", llmr_router_info);
        print_view("stats", llmr_stats);
    }
    llmr_string_free(result);
    llmr_shutdown();
    return code;
}
