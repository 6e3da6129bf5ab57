# llmr — the two front-door commands are `make demo` and `make test` (see README.md).
#
# Everything is built with the release profile: the library users link, the stand-in the
# binding tests start, and the Rust tests themselves, so one compile serves all of them.

CARGO   ?= cargo
CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR_NAME ?= lib

OUT     := target/release
LIB_SO  := $(OUT)/libllmr.so
LIB_A   := $(OUT)/libllmr.a
CFLAGS_STRICT := -std=c11 -Wall -Wextra -Werror -O2

.PHONY: all build demo test test-rust test-go test-node test-fuzz header header-check model-info bench install uninstall lint clean

all: build

## build: libllmr.so, libllmr.a, the loopback stand-in and llmr-chat (target/release)
build:
	$(CARGO) build --release --workspace
	$(CC) $(CFLAGS_STRICT) -Iinclude examples/llmr-chat.c -L$(OUT) -lllmr -Wl,-rpath,$(abspath $(OUT)) -o $(OUT)/llmr-chat

## demo: an offline C program streaming an answer from a MOCK config
demo: build
	$(CC) $(CFLAGS_STRICT) -Iinclude examples/demo.c -L$(OUT) -lllmr -Wl,-rpath,$(abspath $(OUT)) -o $(OUT)/llmr-demo
	$(OUT)/llmr-demo examples/mock_config.json

## test: every test — Rust unit and integration tests, the C harness, Go and Node bindings,
## and a short run of every fuzz target
test: build test-rust test-go test-node test-fuzz

test-rust:
	$(CARGO) test --release --workspace

test-go: build
	cd bindings/go && go vet ./... && go test -race -count=1 ./...

test-node: build
	cd bindings/node && { [ -d node_modules/koffi ] || npm ci --no-audit --no-fund; } && npm test

## test-fuzz: builds the fuzz targets (fuzz/, cargo-fuzz, installed if missing) and runs each
## for FUZZ_SECONDS (10); a crash fails with its reproducer
test-fuzz:
	fuzz/run.sh

## header: regenerate include/llmr.h from the Rust source (pinned cbindgen, via build.rs)
header:
	$(CARGO) build --release -p llmr
	cp "$$(ls -t $(OUT)/build/llmr-*/out/llmr.h | head -1)" include/llmr.h

## model-info: regenerate src/model_info/table.rs from data/*.json
model-info:
	python3 scripts/gen_model_info.py

## bench: llmr through its C ABI against a bare reqwest client and LiteLLM's Router, on a
## loopback stand-in; prints the table and writes bench/results.md (see bench/README.md).
## Its own workspace (bench/), built into target/bench: never part of build or test.
BENCH_TARGET := $(abspath target/bench)
bench:
	cd bench && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release
	$(BENCH_TARGET)/release/llmr-bench run

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd bench && $(CARGO) fmt -- --check && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) clippy --all-targets -- -D warnings

install: build
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/$(LIBDIR_NAME)/pkgconfig
	install -m 644 include/llmr.h $(DESTDIR)$(PREFIX)/include/llmr.h
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/$(LIBDIR_NAME)/libllmr.so
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/$(LIBDIR_NAME)/libllmr.a
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PREFIX)/$(LIBDIR_NAME)|g' \
	    -e "s|@VERSION@|$$(sed -n 's/^version = \"\(.*\)\"/\1/p' Cargo.toml | head -1)|g" \
	    llmr.pc.in > $(DESTDIR)$(PREFIX)/$(LIBDIR_NAME)/pkgconfig/llmr.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/llmr.h $(DESTDIR)$(PREFIX)/$(LIBDIR_NAME)/libllmr.so \
	      $(DESTDIR)$(PREFIX)/$(LIBDIR_NAME)/libllmr.a $(DESTDIR)$(PREFIX)/$(LIBDIR_NAME)/pkgconfig/llmr.pc

clean:
	$(CARGO) clean
