#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short time (CI: `make test-fuzz`). Fails on the
# first crash, printing the reproducer and how to replay it.
#
#   fuzz/run.sh                    every target, FUZZ_SECONDS (default 10) each
#   fuzz/run.sh sse bedrock        only these targets
#   fuzz/run.sh --replay T FILE    runs one input through target T once (a crash's reproducer)
#
# Toolchain: cargo-fuzz needs nightly features (`-Zsanitizer`, `-Cpasses=sancov-module`).
# There is no nightly here, so RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. No
# sanitizer: the parsers are safe Rust, so what the fuzzer hunts is panics (debug assertions
# and overflow checks are on in cargo-fuzz builds), which libFuzzer catches without ASan,
# and a build without ASan is faster to make and to run.
#
# New inputs the fuzzer finds go to a scratch corpus (fuzz/target/corpus), never into the
# committed seeds: fuzz/corpus/<target>/ holds the seeds (fuzz/make_seeds.py) and the
# minimized crashes, all of them replayed by `cargo test` (tests/fuzz_corpus.rs).
set -euo pipefail
# A reproducer's path is the caller's: made absolute before moving to fuzz/.
if [ "${1:-}" = "--replay" ] && [ $# -eq 3 ]; then
    set -- "$1" "$2" "$(cd "$(dirname "$3")" && pwd)/$(basename "$3")"
fi
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${FUZZ_SECONDS:-10}
export RUSTC_BOOTSTRAP=1
FLAGS=(--sanitizer none)

if ! cargo fuzz --version 2>/dev/null | grep -q " ${CARGO_FUZZ_VERSION}\$"; then
    echo "fuzz: installing cargo-fuzz ${CARGO_FUZZ_VERSION}" >&2
    cargo install cargo-fuzz --version "=${CARGO_FUZZ_VERSION}" --locked --quiet
fi

if [ "${1:-}" = "--replay" ]; then
    [ $# -eq 3 ] || { echo "usage: fuzz/run.sh --replay TARGET FILE" >&2; exit 2; }
    exec cargo fuzz run "${FLAGS[@]}" "$2" "$3"
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

start=$(date +%s)
cargo fuzz build "${FLAGS[@]}"
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s" >&2

for t in "${targets[@]}"; do
    scratch="target/corpus/$t"
    artifacts="target/artifacts/$t"
    log="target/fuzz-$t.log"
    mkdir -p "$scratch" "$artifacts"
    if cargo fuzz run "${FLAGS[@]}" "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
        echo "fuzz: $t: $(grep -o 'Done [0-9]* runs' "$log" || echo 'done'), no crash" >&2
        continue
    fi
    echo "fuzz: $t FAILED. libFuzzer's report:" >&2
    grep -v '^#[0-9]' "$log" | tail -60 >&2
    for f in "$artifacts"/*; do
        [ -f "$f" ] || continue
        echo "fuzz: reproducer $PWD/$f ($(wc -c <"$f") bytes):" >&2
        od -A d -c "$f" | head -40 >&2
        echo "fuzz: replay: fuzz/run.sh --replay $t $PWD/$f" >&2
        echo "fuzz: minimize: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin --sanitizer none $t $PWD/$f)," >&2
        echo "      then fix it and commit the minimized input under fuzz/corpus/$t/ (a regression test)" >&2
    done
    exit 1
done
echo "fuzz: all ${#targets[@]} targets ran ${SECONDS_EACH} s each without a crash; $(($(date +%s) - start)) s in all" >&2
