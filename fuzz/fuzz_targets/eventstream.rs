//! `eventstream`: see `llmr_fuzz::eventstream` (fuzz/src/lib.rs) for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmr_fuzz::eventstream(data));
