//! llmr — an LLM router with a C ABI.
//!
//! One process-wide router, initialised once from a JSON config, load-balances OpenAI-shaped
//! chat completions over many provider deployments: usage-based (or shuffle, least-busy,
//! latency) routing, rpm/tpm limits reserved before sending, cooldowns, retries, failover,
//! context-window fallback, streaming, and an error taxonomy that tells a context overflow apart
//! from everything else. The C ABI is in [`ffi`]; this module is the Rust face of the same.
//!
//! Module map:
//! - [`config`]: config JSON → deployments and settings;
//! - [`router`]: groups, selection, state, the retry/failover/fallback loop;
//! - [`providers`]: wire formats (OpenAI-compatible, Anthropic, MOCK) and the HTTP driver;
//! - [`types`]: the OpenAI-shaped request/response/chunk types;
//! - [`errors`], [`overflow`]: statuses and context-overflow classification;
//! - [`model_info`]: the embedded model table (windows, output caps, prices);
//! - [`ffi`]: the C boundary; [`global`]: the singletons behind it.

pub mod cancel;
pub mod config;
pub mod errors;
pub mod ffi;
pub mod global;
pub mod log;
pub mod model_info;
pub mod overflow;
pub mod providers;
pub mod router;
pub mod secret;
pub mod sse;
pub mod types;

pub use errors::{Error, Status};

/// The special config id of Auto mode (the seed's `AUTO_MODE_ID`).
pub const AUTO_MODE_ID: i64 = 0;

/// Initialises the process-wide router (no-op when already initialised).
pub fn init(config_json: &str) -> Result<(), Error> {
    global::init(config_json)
}

/// Drops the router; `init` works again afterwards.
pub fn shutdown() {
    global::shutdown();
}

pub fn is_initialized() -> bool {
    global::is_initialized()
}

/// Deployments built from the config (not counting the `auto-large` copies).
pub fn model_count() -> usize {
    global::current().map_or(0, |r| r.deployments.len())
}

pub fn is_auto_mode(llm_config_id: i64) -> bool {
    llm_config_id == AUTO_MODE_ID
}

/// A chat completion (blocking); request and response are JSON.
pub fn complete_json(request_json: &str) -> Result<String, Error> {
    global::complete_blocking(request_json)
}

/// A streamed chat completion (blocking): `on_chunk` gets each chunk's JSON in order and
/// returns false to stop. Returns the assembled response JSON.
pub fn stream_json(
    request_json: &str,
    on_chunk: impl FnMut(&str) -> bool,
) -> Result<String, Error> {
    global::stream_blocking(request_json, on_chunk)
}

pub fn router_info() -> Result<String, Error> {
    Ok(global::current()?.info_json())
}

pub fn stats() -> Result<String, Error> {
    Ok(global::current()?.stats_json())
}
