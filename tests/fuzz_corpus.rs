//! Replays every committed fuzz input — the seed corpora and the minimized crashes under
//! `fuzz/corpus/<target>/` — through the fuzz targets' own harnesses, without libFuzzer. So each
//! crash a fuzzer ever found stays a regression test in every `cargo test`.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn every_corpus_file_goes_through_its_target_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, target) in harness::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no seeds", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failures.push(file.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} corpus files panicked (replay one with `fuzz/run.sh --replay TARGET FILE`):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fuzz_target_has_a_harness_and_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut targets: Vec<String> = std::fs::read_dir(root.join("fuzz_targets"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.trim_end_matches(".rs").to_owned()
        })
        .collect();
    targets.sort();
    let mut harnesses: Vec<String> = harness::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    harnesses.sort();
    assert_eq!(targets, harnesses);
}

/// The fuzzer-chosen read boundaries: lengths cycle, 0 counts as 1, no lengths is one piece.
#[test]
fn split_cuts_where_the_header_says() {
    assert_eq!(harness::split(b"\x00abcdef"), vec![&b"abcdef"[..]]);
    assert_eq!(
        harness::split(b"\x02\x01\x03abcdef"),
        vec![&b"a"[..], b"bcd", b"e", b"f"]
    );
    assert_eq!(harness::split(b"\x01\x00abc"), vec![&b"a"[..], b"b", b"c"]);
    assert!(harness::split(b"").is_empty());
}
