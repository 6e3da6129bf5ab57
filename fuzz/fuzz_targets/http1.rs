//! `http1`: see `llmr_fuzz::http1` (fuzz/src/lib.rs) for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmr_fuzz::http1(data));
