//! `classify`: see `llmr_fuzz::classify` (fuzz/src/lib.rs) for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmr_fuzz::classify(data));
