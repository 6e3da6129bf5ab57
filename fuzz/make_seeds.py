#!/usr/bin/env python3
"""Builds the seed corpora fuzz/corpus/<target>/ from the bodies in llmr's own unit tests.

The string literals of each module's `#[cfg(test)]` section (raw strings, escaped strings and
`concat!` of them) are sorted into response/error bodies (JSON) and stream bodies (SSE or
NDJSON), and each is written with the input header its target expects (fuzz/src/lib.rs:
byte 0 mode/variant, then the status or the split lengths). Bedrock's streams are rebuilt from
the `ev("TYPE", json!(...))` lines of its tests as event-stream frames. Seeds are named by the
hash of their content, so running this again only adds what is new.

Run from the repository root: python3 fuzz/make_seeds.py
"""

import hashlib
import json
import os
import re
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
MAX_SEED = 16 * 1024

RESPONSE, ERROR, STREAM, FRAMED = 0, 1, 2, 3
# Split headers: one piece; pieces of 1, 7 and 3 bytes in turn; pieces of 64 bytes.
SPLITS = [b"\x00", b"\x03\x01\x07\x03", b"\x01\x40"]


def literals(src):
    """String literals in source order, `concat!(...)` joined into one."""
    out = []
    i = 0
    pat = re.compile(r'concat!\(|b?r(#*)"|b?"|//[^\n]*|\'(?:\\.|[^\\\'])\'')
    while True:
        m = pat.search(src, i)
        if not m:
            return out
        tok = m.group(0)
        if tok.startswith("//") or tok.startswith("'"):
            i = m.end()
        elif tok == "concat!(":
            parts, i = [], m.end()
            while True:
                m2 = re.compile(r'\s*(?://[^\n]*\s*)*(b?r(#*)"|b?"|\))').match(src, i)
                if not m2 or m2.group(1) == ")":
                    i = m2.end() if m2 else i + 1
                    break
                text, i = read_literal(src, m2.start(1), m2.group(1), m2.group(2))
                parts.append(text)
                m3 = re.compile(r"\s*,?").match(src, i)
                i = m3.end()
            out.append("".join(parts))
        else:
            text, i = read_literal(src, m.start(), tok, m.group(1))
            out.append(text)


def read_literal(src, start, opener, hashes):
    body = start + len(opener)
    if "r" in opener:
        end = src.index('"' + (hashes or ""), body)
        return src[body:end], end + 1 + len(hashes or "")
    j, buf = body, []
    while src[j] != '"':
        c = src[j]
        if c == "\\":
            n = src[j + 1]
            if n == "\n":
                j += 2
                while src[j] in " \t\n":
                    j += 1
                continue
            if n == "u":
                end = src.index("}", j)
                buf.append(chr(int(src[j + 3 : end], 16)))
                j = end + 1
                continue
            if n == "x":
                buf.append(chr(int(src[j + 2 : j + 4], 16)))
                j += 4
                continue
            buf.append({"n": "\n", "r": "\r", "t": "\t", "0": "\0"}.get(n, n))
            j += 2
            continue
        buf.append(c)
        j += 1
    return "".join(buf), j + 1


def test_section(path):
    src = open(path, encoding="utf-8").read()
    at = src.find("#[cfg(test)]")
    return src[at:] if at >= 0 else ""


def is_json(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def write(target, data):
    if not data or len(data) > MAX_SEED:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def bodies(module):
    """(json bodies, stream bodies) of one module's tests."""
    found = literals(test_section(os.path.join(ROOT, "src", module)))
    js, streams = [], []
    for t in found:
        if "{{" in t or len(t) < 8:
            continue  # a format! template, or too small to matter
        s = t.strip()
        if s[:1] in "{[" and is_json(s):
            js.append(t)
        elif "data:" in t or "event:" in t:
            streams.append(t)
        elif t.count("\n") >= 1 and all(
            l.strip()[:1] in ("{", "") for l in t.splitlines()
        ):
            streams.append(t)  # NDJSON
    return js, streams


def provider(target, module, variants=(0,)):
    js, streams = bodies(module)
    for v in variants:
        for b in js:
            raw = b.encode()
            write(target, bytes([RESPONSE | v << 2]) + raw)
            for status in (0, 7, 9, 10):  # 400, 413, 422, 429
                write(target, bytes([ERROR | v << 2, status]) + raw)
        for s in streams:
            for split in SPLITS:
                write(target, bytes([STREAM | v << 2]) + split + s.encode())


def frame(headers, payload):
    """One AWS event-stream message (string headers only)."""
    h = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        h += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    msg = prelude + h + payload
    return msg + struct.pack(">I", zlib.crc32(msg))


def event_frame(kind, payload):
    if kind.endswith("Exception"):
        headers = [(":exception-type", kind), (":content-type", "application/json"),
                   (":message-type", "exception")]
    else:
        headers = [(":event-type", kind), (":content-type", "application/json"),
                   (":message-type", "event")]
    return frame(headers, payload)


def bedrock_streams():
    """Each run of `ev("TYPE", json!(...))` lines in Bedrock's tests, as `TYPE JSON` lines."""
    src = test_section(os.path.join(ROOT, "src", "providers", "bedrock.rs"))
    runs, run = [], []
    for line in src.splitlines():
        m = re.match(r'\s*ev\("(\w+)",\s*json!\((.*)\)\),?\s*$', line)
        if m and is_json(m.group(2)):
            run.append((m.group(1), json.dumps(json.loads(m.group(2)), ensure_ascii=False)))
        elif run:
            runs.append(run)
            run = []
    runs.append(
        [("messageStart", '{"role":"assistant"}'),
         ("throttlingException", '{"message":"Too many tokens, please wait before trying again."}')]
    )
    runs.append([("validationException", '{"message":"Input is too long for requested model."}')])
    return [r for r in runs if r]


def main():
    provider("openai", "providers/openai.rs", variants=(0, 1))
    provider("openai", "providers/azure.rs", variants=(1,))
    provider("anthropic", "providers/anthropic.rs")
    provider("gemini", "providers/gemini.rs")
    provider("ollama", "providers/ollama.rs")
    provider("cohere", "providers/cohere.rs")
    provider("vertex", "providers/vertex.rs", variants=(0, 1, 2))
    provider("bedrock", "providers/bedrock.rs")

    for run in bedrock_streams():
        text = "".join(f"{k} {p}\n" for k, p in run).encode()
        raw = b"".join(event_frame(k, p.encode()) for k, p in run)
        for split in SPLITS:
            write("bedrock", bytes([FRAMED]) + split + text)
            write("bedrock", bytes([STREAM]) + split + raw)
            write("eventstream", b"\x00" + split + raw)
        write("eventstream", b"\x01\x00" + raw)
    for name, body in [
        ("ThrottlingException", b'{"message":"Too many requests, please wait before trying again."}'),
        ("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         b'{"message":"The model returned the following errors: prompt is too long: 200049 tokens > 200000 maximum"}'),
    ]:
        write("bedrock", bytes([ERROR, 0]) + b"x-amzn-ErrorType: " + name.encode() + b"\n" + body)

    # Replicate: predictions, problem details, its SSE, successive polls.
    js, streams = bodies("providers/replicate.rs")
    for b in js:
        write("replicate", bytes([RESPONSE]) + b.encode())
        write("replicate", bytes([RESPONSE | 6 << 2]) + b.encode())  # max_tokens 6
        write("replicate", bytes([ERROR, 9]) + b.encode())
    for s in streams:
        for split in SPLITS:
            write("replicate", bytes([STREAM]) + split + s.encode())
    polls = [
        '{"id":"p1","status":"starting","output":null}',
        '{"id":"p1","status":"processing","output":["Hel"]}',
        '{"id":"p1","status":"processing","output":["Hel","lo"]}',
        '{"id":"p1","status":"succeeded","output":["Hel","lo","!"],"metrics":{"input_token_count":3,"output_token_count":3}}',
    ]
    write("replicate", bytes([FRAMED, 0]) + "\0".join(polls).encode())
    write("replicate", bytes([FRAMED, 0]) + '{"id":"p2","status":"processing","output":"ab"}\0{"id":"p2","status":"failed","output":"abc","error":"CUDA out of memory"}'.encode())

    # Requests, configs and SSE framing from the tests that exercise them.
    for module in ["types.rs", "providers/openai.rs", "providers/anthropic.rs",
                   "providers/gemini.rs", "providers/bedrock.rs", "providers/cohere.rs"]:
        for t in literals(test_section(os.path.join(ROOT, "src", module))):
            if '"messages"' in t and "{{" not in t and is_json(t):
                write("request", b"\x00" + t.encode())
                write("request", b"\x01" + t.encode())
    for path in ["examples/mock_config.json"]:
        write("config", open(os.path.join(ROOT, path), "rb").read())
    config_sources = [os.path.join(ROOT, "src", "config.rs")] + [
        os.path.join(ROOT, "src", "providers", f)
        for f in sorted(os.listdir(os.path.join(ROOT, "src", "providers")))
    ]
    for path in config_sources:
        for t in literals(test_section(path)):
            if "global_llm_configs" not in t:
                continue
            # format! templates: `{{`/`}}` are braces, `{name}` an argument left out.
            t = re.sub(r"\{[A-Za-z_]*\}", "", t).replace("{{", "{").replace("}}", "}")
            if is_json(t):
                write("config", t.encode())
    # One deployment of every provider the registry knows, and Vertex with inline credentials.
    registry = open(os.path.join(ROOT, "src", "providers", "registry.rs"), encoding="utf-8").read()
    keys = sorted(set(re.findall(r'key: "([A-Z0-9_]+)"', registry)))
    every = [{"provider": k, "model_name": "m/model-1", "api_key": "k-123456",
              "api_base": "https://h.example/v1", "litellm_params": {"timeout": 5}} for k in keys]
    write("config", json.dumps({"global_llm_configs": every}).encode())
    write("config", json.dumps({"global_llm_configs": [{
        "provider": "VERTEX_AI", "model_name": "gemini-2.5-pro",
        "litellm_params": {"vertex_project": "p", "vertex_credentials": {
            "type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
            "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n",
            "token_uri": "https://oauth2.googleapis.com/token"}}}]}).encode())

    for module in ["sse.rs", "providers/openai.rs", "providers/anthropic.rs"]:
        for s in bodies(module)[1]:
            for split in SPLITS:
                write("sse", split + s.encode())

    # Classification: every error message in the overflow and classify tests, with a status.
    for module in ["overflow.rs", "providers/classify.rs"]:
        for t in literals(test_section(os.path.join(ROOT, "src", module))):
            if len(t) >= 12 and "{{" not in t:
                write("classify", b"\x00\n\n" + t.encode())  # 400, no code, no kind
                write("classify", b"\xff\n\n" + t.encode())  # in-stream error
    write("classify", b"\x07context_length_exceeded\ninvalid_request_error\nThis model's maximum context length is 8192 tokens.")
    write("classify", b"\x09rate_limit_exceeded\n\nRequest too large for model on tokens per minute (TPM): Limit 6000. Please try again in 7.5s.")


if __name__ == "__main__":
    main()
