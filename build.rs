//! Generates the C header from the Rust source with cbindgen (pinned). The header lands in
//! OUT_DIR; `make header` copies it to include/llmr.h, and a test fails when the checked-in
//! copy is stale.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("llmr.h");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    // Only the C boundary is parsed (src/ffi/mod.rs and the modules it declares): public items
    // elsewhere in the crate (limits, wire-format constants) are Rust API, not the C contract.
    let builder = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi/mod.rs"));
    match builder.generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(&out);
        }
        Err(e) => panic!("cbindgen could not generate the header: {e}"),
    }
}
