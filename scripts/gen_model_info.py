#!/usr/bin/env python3
"""Generate src/model_info/table.rs, llmr's embedded model-info table.

Inputs (both committed, so users build without the shared data folder):

* data/model_context_windows.json -- LiteLLM's public model map (model name ->
  provider, max_input_tokens, max_output_tokens, input/output_cost_per_token,
  tools). This is the source of truth.
* data/model_info_extra.json -- a small, hand-kept supplement with published
  values for ids the app's configs commonly name but that the main file no
  longer lists, because LiteLLM drops retired ids: Anthropic's dated Claude 3.x /
  4.0 / 4.1 ids and aliases, Gemini 1.5 / 2.0, Groq-hosted Llama / Mixtral /
  Gemma, xAI Grok 2 / 3 / 4, Cohere's undated command-r(-plus), Zhipu GLM-4,
  Moonshot Kimi K2 previews and OpenAI o1-mini / o1-preview. An extra entry is
  used only when the main file has no entry of the same lowercased name, so a
  refreshed main file always wins. Keys starting with "_" are comments, and an
  entry's "source" field says where its values were published; neither is
  embedded.

Rules: names are lowercased (lookups are case-insensitive) and sorted by their
UTF-8 bytes, which is the order Rust's `str` comparison and binary search use.
Only entries with a positive integer max_input_tokens (chat models) are kept;
a missing max_output_tokens becomes 0, missing costs 0.0, missing tools false.
The output depends on the inputs alone: same input, same bytes.

Usage:
    python3 scripts/gen_model_info.py          # (re)write the table
    python3 scripts/gen_model_info.py --check  # exit 1 if the committed table is stale
"""

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIN_DATA = ROOT / "data" / "model_context_windows.json"
EXTRA_DATA = ROOT / "data" / "model_info_extra.json"
TABLE = ROOT / "src" / "model_info" / "table.rs"

U32_MAX = 2**32 - 1
KNOWN_FIELDS = {
    "provider",
    "max_input_tokens",
    "max_output_tokens",
    "input_cost_per_token",
    "output_cost_per_token",
    "tools",
    "source",
}


class DataError(Exception):
    pass


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def rust_str(name):
    """A Rust string literal; names are printable ASCII in practice."""
    out = []
    for ch in name:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("\\u{%x}" % ord(ch))
    return '"' + "".join(out) + '"'


def rust_f64(value):
    # repr() is the shortest text that round-trips, e.g. 2.5e-06 or 0.0; Rust parses it as is.
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise DataError("non-finite cost %r" % value)
    return text


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError("%s: %s" % (path, e)) from e
    if not isinstance(doc, dict):
        raise DataError("%s: expected a JSON object of model name -> fields" % path)
    return doc


def entry(path, name, fields):
    """(max_in, max_out, in_cost, out_cost, tools), or None for a non-chat entry."""
    where = "%s: %r" % (path.name, name)
    if not isinstance(fields, dict):
        raise DataError("%s: expected an object" % where)
    unknown = set(fields) - KNOWN_FIELDS
    if unknown:
        raise DataError("%s: unknown fields %s" % (where, sorted(unknown)))
    max_in = fields.get("max_input_tokens")
    if not (is_int(max_in) and max_in > 0):
        return None
    max_out = fields.get("max_output_tokens", 0)
    for label, value in (("max_input_tokens", max_in), ("max_output_tokens", max_out)):
        if not (is_int(value) and 0 <= value <= U32_MAX):
            raise DataError("%s: %s must be an integer in 0..=%d, got %r" % (where, label, U32_MAX, value))
    costs = []
    for label in ("input_cost_per_token", "output_cost_per_token"):
        value = fields.get(label, 0.0)
        if not (is_number(value) and value >= 0):
            raise DataError("%s: %s must be a non-negative number, got %r" % (where, label, value))
        costs.append(value)
    tools = fields.get("tools", False)
    if not isinstance(tools, bool):
        raise DataError("%s: tools must be true or false, got %r" % (where, tools))
    return (max_in, max_out, costs[0], costs[1], tools)


def collect(path, doc):
    """Lowercased name -> entry for the chat models of one data file."""
    out = {}
    for name, fields in doc.items():
        if name.startswith("_"):
            continue
        key = name.strip().lower()
        if not key or key != name.lower():
            raise DataError("%s: %r: empty name or surrounding spaces" % (path.name, name))
        row = entry(path, name, fields)
        if row is None:
            continue
        if key in out:
            raise DataError("%s: %r: two names differ only in case" % (path.name, name))
        out[key] = row
    return out


def generate():
    models = collect(MAIN_DATA, load(MAIN_DATA))
    n_main = len(models)
    extra = collect(EXTRA_DATA, load(EXTRA_DATA)) if EXTRA_DATA.exists() else {}
    n_extra = 0
    for key, row in extra.items():
        if key not in models:  # the main file wins
            models[key] = row
            n_extra += 1

    lines = [
        "// @generated by scripts/gen_model_info.py from data/model_context_windows.json",
        "// and data/model_info_extra.json. Do not edit: change the data and regenerate with",
        "// `python3 scripts/gen_model_info.py` (or `make model-info`);",
        "// CI runs `python3 scripts/gen_model_info.py --check`.",
        "//",
        "// %d models (%d from the main file, %d from the extra file), lowercased and sorted"
        % (len(models), n_main, n_extra),
        "// by name bytes for binary search. Columns of `m`: max_input_tokens, max_output_tokens",
        "// (0 = unpublished), input and output USD per token (0.0 = unpublished), supports_tools.",
        "",
        "use super::ModelInfo;",
        "",
        "/// Keeps the table at one entry per line.",
        "const fn m(",
        "    max_input_tokens: u32,",
        "    max_output_tokens: u32,",
        "    input_cost_per_token: f64,",
        "    output_cost_per_token: f64,",
        "    supports_tools: bool,",
        ") -> ModelInfo {",
        "    ModelInfo {",
        "        max_input_tokens,",
        "        max_output_tokens,",
        "        input_cost_per_token,",
        "        output_cost_per_token,",
        "        supports_tools,",
        "    }",
        "}",
        "",
        "#[rustfmt::skip]",
        "pub(super) static MODELS: &[(&str, ModelInfo)] = &[",
    ]
    for key in sorted(models, key=lambda k: k.encode("utf-8")):
        max_in, max_out, in_cost, out_cost, tools = models[key]
        lines.append(
            "    (%s, m(%d, %d, %s, %s, %s)),"
            % (rust_str(key), max_in, max_out, rust_f64(in_cost), rust_f64(out_cost), "true" if tools else "false")
        )
    lines.append("];")
    return "\n".join(lines) + "\n", len(models)


def main():
    parser = argparse.ArgumentParser(description="Generate src/model_info/table.rs from data/*.json.")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the committed table differs from what would be generated",
    )
    args = parser.parse_args()
    try:
        text, count = generate()
    except DataError as e:
        print("gen_model_info: %s" % e, file=sys.stderr)
        return 2
    rel = TABLE.relative_to(ROOT)
    current = TABLE.read_bytes() if TABLE.exists() else None
    if args.check:
        if current != text.encode("utf-8"):
            print(
                "gen_model_info: %s is stale; run `python3 scripts/gen_model_info.py` and commit it" % rel,
                file=sys.stderr,
            )
            return 1
        print("gen_model_info: %s is up to date (%d models)" % (rel, count))
        return 0
    if current != text.encode("utf-8"):  # leave the mtime alone when nothing changed
        TABLE.parent.mkdir(parents=True, exist_ok=True)
        TABLE.write_bytes(text.encode("utf-8"))
        print("gen_model_info: wrote %s (%d models)" % (rel, count))
    else:
        print("gen_model_info: %s already up to date (%d models)" % (rel, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
